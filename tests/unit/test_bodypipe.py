"""The body pipe between the reactor and a storage thread: back-pressure, limits, Digest, disconnect."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest

from was_twisted.auth.digest import DigestCheck, body_digests, multihash_digest_header
from was_twisted.errors import InvalidDigest, PayloadTooLarge
from was_twisted.web import bodypipe
from was_twisted.web.bodypipe import BodyAborted, BodyPipe


class FakeReactor:
    """Runs what threads hand the reactor when the test says so (the test thread plays the reactor)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self.lock = threading.Lock()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        with self.lock:
            self.calls.append((f, args))

    def run(self) -> None:
        with self.lock:
            calls, self.calls = self.calls, []
        for f, args in calls:
            f(*args)


class Transport:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pause(self) -> None:
        self.events.append("pause")

    def resume(self) -> None:
        self.events.append("resume")


@pytest.fixture
def reader() -> Any:
    with ThreadPoolExecutor(1) as pool:
        yield pool


def make(high_water: int = 100) -> tuple[BodyPipe, FakeReactor, Transport, list[str]]:
    reactor, transport, started = FakeReactor(), Transport(), []
    pipe = BodyPipe(
        reactor,  # type: ignore[arg-type]
        transport.pause,
        transport.resume,
        lambda: started.append("continue"),
        high_water=high_water,
    )
    return pipe, reactor, transport, started


def wait_done(future: Future[Any], reactor: FakeReactor, timeout: float = 5.0) -> Any:
    """Play the reactor until the reader's call finishes."""
    for _ in range(int(timeout / 0.01)):
        reactor.run()
        if future.done():
            return future.result()
        threading.Event().wait(0.01)
    raise AssertionError("the reader is still blocked")


def test_nothing_is_read_from_the_client_before_the_body_is_asked_for(reader: Any) -> None:
    """Held from the headers on; the first read sends 100-continue and resumes the transport."""
    pipe, reactor, transport, started = make()
    pipe.hold()
    assert transport.events == ["pause"] and started == []
    first = reader.submit(pipe.read, 10)
    threading.Event().wait(0.05)
    assert not first.done()  # blocked: nothing fed yet
    reactor.run()
    assert started == ["continue"] and transport.events == ["pause", "resume"]
    pipe.feed(b"hello")
    assert wait_done(first, reactor) == b"hello"


def test_back_pressure_pauses_past_high_water_and_resumes_when_drained(reader: Any) -> None:
    pipe, reactor, transport, _ = make(high_water=100)
    pipe.feed(b"a" * 60)
    assert transport.events == []
    pipe.feed(b"b" * 60)  # 120 > 100
    assert transport.events == ["pause"]
    pipe.feed(b"c" * 60)  # still paused: not paused twice
    assert transport.events == ["pause"]
    assert wait_done(reader.submit(pipe.read, 70), reactor) == b"a" * 60 + b"b" * 10
    assert transport.events == ["pause"]  # 110 left: over half
    assert wait_done(reader.submit(pipe.read, 70), reactor) == b"b" * 50 + b"c" * 20
    reactor.run()
    assert transport.events == ["pause", "resume"]  # 40 left: under half
    pipe.end()
    assert wait_done(reader.submit(pipe.read, 1000), reactor) == b"c" * 40
    assert wait_done(reader.submit(pipe.read, 1000), reactor) == b""


def test_a_reader_blocked_on_an_empty_pipe_wakes_at_the_end(reader: Any) -> None:
    pipe, reactor, _, _ = make()
    pending = reader.submit(pipe.read, 10)
    threading.Event().wait(0.05)
    assert not pending.done()
    pipe.end()
    assert wait_done(pending, reactor) == b""


@pytest.mark.parametrize(
    "error", [PayloadTooLarge("too large"), BodyAborted("gone")], ids=["limit", "disconnect"]
)
def test_a_failure_reaches_the_blocked_reader(reader: Any, error: Exception) -> None:
    """Over the limit, or the client went away mid-body: the backend's read raises, so it aborts."""
    pipe, reactor, _, _ = make()
    pipe.feed(b"x" * 10)
    assert wait_done(reader.submit(pipe.read, 10), reactor) == b"x" * 10
    pending = reader.submit(pipe.read, 10)
    threading.Event().wait(0.05)
    pipe.fail(error)
    with pytest.raises(type(error)):
        wait_done(pending, reactor)
    with pytest.raises(type(error)):
        wait_done(reader.submit(pipe.read, 10), reactor)


def test_a_whole_body_is_not_failed_by_a_late_disconnect(reader: Any) -> None:
    pipe, reactor, _, _ = make()
    pipe.feed(b"all of it")
    pipe.end()
    pipe.fail(BodyAborted("gone after sending everything"))
    assert wait_done(reader.submit(pipe.read, 100), reactor) == b"all of it"


@pytest.mark.parametrize("good", [True, False])
def test_digest_is_checked_before_the_end_is_reported(reader: Any, good: bool) -> None:
    body = b"streamed body " * 1000
    claimed = body if good else body + b"!"
    digests = body_digests({"digest": multihash_digest_header(claimed)})
    pipe, reactor, _, _ = make(high_water=1 << 20)
    pipe.check_at_end(DigestCheck(digests))
    for i in range(0, len(body), 999):
        pipe.feed(body[i : i + 999])
    pipe.end()

    def read_all() -> bytes:
        out = b""
        while chunk := pipe.read(4096):
            out += chunk
        return out

    if good:
        assert wait_done(reader.submit(read_all), reactor) == body
    else:
        with pytest.raises(InvalidDigest):
            wait_done(reader.submit(read_all), reactor)


def test_reading_on_the_reactor_thread_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """It would block the reactor that feeds it for ever: a bug, raised at once."""
    pipe, _, _, _ = make()
    monkeypatch.setattr(bodypipe.threadable, "isInIOThread", lambda: True)
    with pytest.raises(RuntimeError):
        pipe.read(10)


def test_discard_drops_the_rest_and_resumes_to_drain() -> None:
    pipe, _, transport, _ = make(high_water=10)
    pipe.feed(b"x" * 20)
    assert transport.events == ["pause"]
    pipe.discard(resume=True)
    assert transport.events == ["pause", "resume"]
    pipe.feed(b"y" * 100)  # dropped: no pause
    assert transport.events == ["pause", "resume"]


def test_collect_reads_a_small_body_on_the_reactor() -> None:
    pipe, _, _, started = make()
    results: list[bytes] = []
    pipe.collect(100).addCallback(results.append)
    assert started == ["continue"] and results == []
    pipe.feed(b"{}")
    pipe.end()
    assert results == [b"{}"]


def test_collect_stops_past_its_limit() -> None:
    pipe, _, _, _ = make(high_water=1000)
    results: list[bytes] = []
    pipe.collect(5).addCallback(results.append)
    pipe.feed(b"0123456789")
    assert results == [b"012345"]  # limit + 1: the caller refuses it as too large


def test_stream_slots_bound_concurrent_uploads() -> None:
    """Each streamed body holds a storage thread: past the limit, 503 rather than a starved pool."""
    from was_twisted.errors import Unavailable
    from was_twisted.web.upload import StreamSlots

    slots = StreamSlots(1)
    pipe, _, _, _ = make()
    with slots.hold(pipe):
        with pytest.raises(Unavailable), slots.hold(pipe):
            pass
        with slots.hold(b"a body read whole"):  # not streamed: no slot needed
            pass
    with slots.hold(pipe):
        assert slots.used == 1
    assert slots.used == 0


def test_a_busy_pipe_never_stalls(reader: Any) -> None:
    """Feeding and reading race for a while: every pause is followed by a resume, every byte arrives."""
    import random

    pipe, reactor, transport, _ = make(high_water=3000)
    body = bytes(random.Random(7).randrange(256) for _ in range(120_000))
    sizes = random.Random(8)

    def read_all() -> bytes:
        out = bytearray()
        while chunk := pipe.read(sizes.randrange(1, 3000)):
            out += chunk
        return bytes(out)

    got = reader.submit(read_all)
    fed = 0
    deadline = time.monotonic() + 20
    while fed < len(body) and time.monotonic() < deadline:
        reactor.run()
        paused = transport.events.count("pause") > transport.events.count("resume")
        if paused:
            threading.Event().wait(0.0005)  # a paused transport delivers nothing
            continue
        step = sizes.randrange(1, 4000)
        pipe.feed(body[fed : fed + step])
        fed += step
    pipe.end()
    assert wait_done(got, reactor) == body
    assert transport.events.count("pause") > 10  # it did apply back-pressure
