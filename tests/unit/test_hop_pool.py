"""``HopPool``: the storage pool's lean hop keeps ``ThreadPool``'s contract."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThreadPool

from was_twisted.storage.threaded import HopPool, PoolRunner, PoolService


@pytest_twisted.ensureDeferred
async def test_results_and_errors_come_back_on_the_reactor() -> None:
    pool = HopPool("test-hop", 4)
    pool.start()
    try:
        runner = PoolRunner(reactor, pool, max_backlog=64)
        main = threading.current_thread()
        seen: list[threading.Thread] = []

        def work(x: int) -> int:
            seen.append(threading.current_thread())
            return x * 2

        assert await defer.gatherResults([runner(work, i) for i in range(50)]) == [i * 2 for i in range(50)]
        assert main not in seen
        assert all(t.name.startswith("PoolThread-test-hop-") for t in seen)

        def fail() -> None:
            raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            await runner(fail)
        assert runner.in_flight == 0
        # The ThreadPool contract others use (deferToThreadPool: reindex, sweeper).
        assert await deferToThreadPool(reactor, pool, lambda a, b=0: a + b, 1, b=2) == 3
    finally:
        pool.stop()
    assert pool.threads == []


@pytest_twisted.ensureDeferred
async def test_at_most_max_threads_and_the_backlog_waits() -> None:
    pool = HopPool("test-hop", 3)
    pool.start()
    release = threading.Event()
    running = 0
    peak = 0
    lock = threading.Lock()

    def hold() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(10)
        with lock:
            running -= 1

    try:
        runner = PoolRunner(reactor, pool, max_backlog=100)
        calls = [runner(hold) for _ in range(10)]
        deadline = time.monotonic() + 5
        while len(pool.working) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(pool.working) == 3 and pool.workers == 3
        release.set()
        await defer.gatherResults(calls)
        assert peak == 3
        assert len(pool.working) == 0
    finally:
        release.set()
        pool.stop()


def test_calls_before_start_wait_for_it_and_stop_finishes_the_queue() -> None:
    service = PoolService("test-hop", 2)
    pool = service.pool
    done: list[int] = []
    results: list[tuple[bool, Any]] = []

    def slow(i: int) -> int:
        time.sleep(0.01)
        done.append(i)
        return i

    for i in range(6):
        pool.callInThreadWithCallback(lambda ok, r: results.append((ok, r)), slow, i)
    time.sleep(0.05)
    assert done == [] and pool.threads == []  # not started: nothing runs
    service.startService()
    for i in range(6, 10):
        pool.callInThread(slow, i)
    service.stopService()  # finishes every queued call, then joins
    assert sorted(done) == list(range(10))
    assert sorted(r for ok, r in results if ok) == list(range(6))
    assert pool.threads == []
    pool.callInThread(slow, 99)  # stopped: refused, as ThreadPool does
    time.sleep(0.05)
    assert 99 not in done


def test_a_failed_call_nobody_waits_for_is_logged() -> None:
    from twisted.logger import globalLogPublisher

    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    pool = HopPool("test-hop", 1)
    pool.start()
    try:

        def fail() -> None:
            raise KeyError("lost")

        pool.callInThreadWithCallback(None, fail)
    finally:
        pool.stop()  # finishes the queued call first
        globalLogPublisher.removeObserver(events.append)
    failures = [e for e in events if e.get("log_namespace") == "was_twisted.storage.threaded"]
    assert len(failures) == 1
    assert failures[0]["pool"] == "test-hop"
    assert failures[0]["log_failure"].check(KeyError)
