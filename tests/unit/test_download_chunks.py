"""Large downloads: a small first chunk, then large ones, each next read already running in the pool."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from was_twisted.storage.threaded import CHUNK, STREAM_CHUNK, AsyncBody


class File(io.BufferedReader):
    """A body that is not a BytesIO (so reads go through the runner)."""


def test_chunks_read_ahead_one_at_a_time() -> None:
    data = bytes(range(256)) * (3 * 4096 + 7)  # 3 MiB and a bit
    started: list[defer.Deferred[Any]] = []
    sizes: list[int] = []

    def runner(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        sizes.append(args[0] if args else -1)
        started.append(d)
        d.addCallback(lambda _: f(*args))
        return d

    body = AsyncBody(File(io.BytesIO(data)), runner)  # type: ignore[arg-type]
    got: list[bytes] = []

    async def consume() -> None:
        chunks = body.chunks()
        async for chunk in chunks:
            got.append(chunk)
            # While this chunk is "written", the next read is already in the pool: started, not done.
            assert len(started) == len(got) + 1 and not started[-1].called

    done = defer.ensureDeferred(consume())
    while not done.called:
        pending = [d for d in started if not d.called]
        assert len(pending) == 1  # never more than one read in flight
        pending[0].callback(None)
    done.result  # noqa: B018 - raises if the consumer failed
    assert b"".join(got) == data
    assert sizes[0] == CHUNK and set(sizes[1:]) == {STREAM_CHUNK}


def test_closing_early_waits_for_the_read_in_flight() -> None:
    data = b"x" * (4 * STREAM_CHUNK)
    started: list[defer.Deferred[Any]] = []

    def runner(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        d.addCallback(lambda _: f(*args))
        started.append(d)
        return d

    body = AsyncBody(File(io.BytesIO(data)), runner)  # type: ignore[arg-type]

    async def first_only() -> bytes:
        chunks = body.chunks()
        async for chunk in chunks:
            await chunks.aclose()  # the client went away after one chunk
            return chunk
        return b""

    done = defer.ensureDeferred(first_only())
    started[0].callback(None)
    assert not done.called  # aclose waits for the read-ahead
    started[1].callback(None)
    assert done.called and len(done.result) == CHUNK
