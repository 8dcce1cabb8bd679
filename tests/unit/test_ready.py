"""Readiness: starting, ready, storage failing or slow, backlog full, draining; cached and shared checks."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.threadpool import ThreadPool

from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.ready import BUSY, DRAINING, READY, SLOW, STARTING, UNREACHABLE, Readiness, ReadinessService
from was_twisted.service import build_service, storage_readiness
from was_twisted.storage.base import StorageBusy, StorageError
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, PoolRunner, run_inline
from was_twisted.web.app import WASApp

BASE = "http://was.test"


class Probe:
    """A storage check the test answers by hand."""

    def __init__(self) -> None:
        self.calls: list[defer.Deferred[None]] = []

    def __call__(self) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self.calls.append(d)
        return d


def verdict_of(d: defer.Deferred[Any]) -> Any:
    """The result of a Deferred that has fired (``None`` if it has not)."""
    results: list[Any] = []

    def keep(result: Any) -> Any:
        results.append(result)
        return result

    d.addBoth(keep)
    return results[0] if results else None


# -- the state machine --------------------------------------------------------------


def test_not_ready_until_started_and_the_first_check_passes() -> None:
    clock, probe = Clock(), Probe()
    readiness = Readiness(probe, clock)
    assert verdict_of(readiness.check()) == STARTING and probe.calls == []
    readiness.start()
    assert len(probe.calls) == 1  # the first check starts with the tree
    pending = readiness.check()
    assert verdict_of(pending) is None
    probe.calls[0].callback(None)
    assert verdict_of(pending) == READY


def test_a_verdict_is_reused_for_the_ttl_and_polls_share_one_check() -> None:
    clock, probe = Clock(), Probe()
    readiness = Readiness(probe, clock, ttl=2.0)
    readiness.start()
    probe.calls[0].callback(None)
    for _ in range(5):
        assert verdict_of(readiness.check()) == READY
        clock.advance(0.3)
    assert len(probe.calls) == 1
    clock.advance(0.6)  # 2.1 s since the check
    polls = [readiness.check() for _ in range(3)]
    assert len(probe.calls) == 2 and all(verdict_of(p) is None for p in polls)
    probe.calls[1].callback(None)
    assert [verdict_of(p) for p in polls] == [READY] * 3


def test_storage_failing_is_not_ready_until_it_passes_again() -> None:
    clock, probe = Clock(), Probe()
    readiness = Readiness(probe, clock, ttl=2.0)
    readiness.start()
    probe.calls[0].errback(StorageBusy("S3 unreachable"))
    assert verdict_of(readiness.check()) == UNREACHABLE
    clock.advance(2.5)
    pending = readiness.check()
    probe.calls[1].callback(None)
    assert verdict_of(pending) == READY


def test_a_check_that_hangs_answers_not_ready_after_the_timeout() -> None:
    clock, probe = Clock(), Probe()
    readiness = Readiness(probe, clock, ttl=2.0, timeout=2.0)
    readiness.start()
    pending = readiness.check()
    clock.advance(2.0)
    assert verdict_of(pending) == SLOW
    # Still in flight: later polls answer at once, and no second check piles up.
    clock.advance(5)
    assert verdict_of(readiness.check()) == SLOW and len(probe.calls) == 1
    probe.calls[0].callback(None)  # it answers at last
    assert verdict_of(readiness.check()) == READY


def test_backlog_full_and_draining_answer_without_touching_storage() -> None:
    clock, probe = Clock(), Probe()
    full = [False]
    readiness = Readiness(probe, clock, backlog_full=lambda: full[0])
    readiness.start()
    probe.calls[0].callback(None)
    full[0] = True
    assert verdict_of(readiness.check()) == BUSY
    full[0] = False
    assert verdict_of(readiness.check()) == READY
    readiness.drain()
    clock.advance(10)
    assert verdict_of(readiness.check()) == DRAINING and len(probe.calls) == 1


def test_readiness_service_starts_and_drains_with_the_tree() -> None:
    readiness = Readiness(lambda: defer.succeed(None), Clock())
    service = ReadinessService(readiness)
    service.startService()
    assert verdict_of(readiness.check()) == READY
    service.stopService()
    assert verdict_of(readiness.check()) == DRAINING


# -- backends' pings -------------------------------------------------------------------


def test_filesystem_ping_needs_a_writable_data_directory(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path / "data")
    spaces = tmp_path / "data" / "spaces"
    backend.ping()
    spaces.chmod(0o500)
    try:
        if not os.access(spaces, os.W_OK):  # root may write anyway
            with pytest.raises(StorageError):
                backend.ping()
    finally:
        spaces.chmod(0o700)
    spaces.rmdir()  # e.g. the volume went away
    with pytest.raises(StorageError):
        backend.ping()
    spaces.write_bytes(b"")  # not a directory
    with pytest.raises(StorageError):
        backend.ping()


def test_memory_ping_is_always_fine() -> None:
    MemoryBackend().ping()


def test_s3_ping_lists_one_key_under_the_prefix(mocked_aws: None) -> None:
    import boto3

    from was_twisted.storage.s3 import S3Backend

    boto3.client("s3").create_bucket(Bucket="ready-bucket")
    backend = S3Backend("ready-bucket", "p/", threads=2)
    try:
        backend.calls.clear()
        backend.ping()
        assert backend.calls == {"ListObjectsV2": 1}
    finally:
        backend.close()
    gone = S3Backend("no-such-bucket", "", threads=2)
    try:
        with pytest.raises(StorageError):
            gone.ping()
    finally:
        gone.close()


# -- /ready through the app -----------------------------------------------------------------


class FailingBackend(MemoryBackend):
    def ping(self) -> None:
        raise StorageBusy("S3 unreachable")


def http_for(readiness: Readiness | None, backend: MemoryBackend | None = None) -> StubTreq:
    storage = AsyncStorage(backend or MemoryBackend(), run_inline)
    ops = Operations(storage, Settings(backend="memory"), Clock())
    return StubTreq(WASApp(ops, "memory", readiness).resource())


async def assert_unavailable(http: StubTreq, reason: str) -> None:
    r = await http.get(BASE + "/ready")
    assert r.code == 503
    assert r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    assert r.headers.getRawHeaders("retry-after") == ["1"]
    assert r.headers.getRawHeaders("cache-control") == ["no-store"]
    doc = json.loads(await r.content())
    assert doc["status"] == 503 and doc["detail"] == reason


@pytest_twisted.ensureDeferred
async def test_ready_route_states() -> None:
    backend = MemoryBackend()
    readiness = storage_readiness(backend, Clock())
    http = http_for(readiness, backend)
    await assert_unavailable(http, STARTING.reason)
    readiness.start()
    r = await http.get(BASE + "/ready")
    assert r.code == 200 and json.loads(await r.content()) == {"status": "ready"}
    assert r.headers.getRawHeaders("cache-control") == ["no-store"]
    r = await http.head(BASE + "/ready")
    assert r.code == 200 and await r.content() == b""
    r = await http.post(BASE + "/ready")
    assert r.code == 405
    readiness.drain()
    await assert_unavailable(http, DRAINING.reason)
    r = await http.get(BASE + "/health")  # liveness is unchanged
    assert r.code == 200 and json.loads(await r.content()) == {"status": "ok"}


@pytest_twisted.ensureDeferred
async def test_ready_is_503_while_storage_fails() -> None:
    backend = FailingBackend()
    readiness = storage_readiness(backend, Clock())
    readiness.start()
    await assert_unavailable(http_for(readiness, backend), UNREACHABLE.reason)


@pytest_twisted.ensureDeferred
async def test_ready_checks_blocking_storage_in_the_pool_and_refuses_a_full_backlog() -> None:
    seen: list[str] = []

    class Recording(MemoryBackend):
        def ping(self) -> None:
            seen.append(threading.current_thread().name)

    pool = ThreadPool(minthreads=0, maxthreads=2, name="was-storage")
    pool.start()
    try:
        runner = PoolRunner(reactor, pool, max_backlog=3)
        backend = Recording()
        readiness = storage_readiness(backend, reactor, runner, 3)
        readiness.start()
        http = http_for(readiness, backend)
        # StubTreq only delivers what answers synchronously: wait for the pool, then ask the route.
        assert await readiness.check() == READY
        assert seen and all("was-storage" in name for name in seen), seen
        r = await http.get(BASE + "/ready")
        assert r.code == 200
        runner.in_flight = 3  # as if three storage calls were queued
        await assert_unavailable(http, BUSY.reason)
        runner.in_flight = 0
    finally:
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_ready_without_a_readiness_is_always_ready() -> None:
    r = await http_for(None).get(BASE + "/ready")
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_the_service_tree_wires_start_and_shutdown() -> None:
    """build_service: 503 until the tree starts, 200 once it has, 503 once the reactor shuts down."""
    fake = MemoryReactorClock()
    fake.advance(time.time())
    top = build_service(Settings(backend="memory"), fake, ["tcp:0:interface=127.0.0.1"])
    site = next(s.factory for s in top if hasattr(s, "factory"))
    http = StubTreq(site.resource)
    await assert_unavailable(http, STARTING.reason)
    top.startService()
    try:
        assert (await http.get(BASE + "/ready")).code == 200
        for trigger, args, kwargs in fake.triggers["before"]["shutdown"]:
            trigger(*args, **kwargs)
        await assert_unavailable(http, DRAINING.reason)
    finally:
        top.stopService()
