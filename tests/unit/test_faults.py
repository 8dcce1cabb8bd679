"""Faults at the HTTP edge: shed load (503 + Retry-After), unexpected failures (500 + request id)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, sign
from was_twisted.config import Settings
from was_twisted.errors import Unavailable
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, HopPool, PoolRunner
from was_twisted.web.app import WASApp


def api_over(backend: Any, run: Any) -> StubTreq:
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(backend, run), Settings(backend="memory"), clock)
    return StubTreq(WASApp(ops, "test").resource())


@pytest.mark.parametrize(
    "make_pool",
    [lambda: ThreadPool(minthreads=1, maxthreads=2, name="test-pool"), lambda: HopPool("test-hop", 2)],
    ids=["ThreadPool", "HopPool"],
)
@pytest_twisted.ensureDeferred
async def test_pool_runner_sheds_load_past_its_backlog(make_pool: Callable[[], ThreadPool]) -> None:
    """With max_backlog calls in flight a new call fails at once with Unavailable; capacity comes back."""
    pool = make_pool()
    pool.start()
    release = threading.Event()
    try:
        runner = PoolRunner(reactor, pool, max_backlog=2)
        blocked = [runner(release.wait, 10) for _ in range(2)]
        refused: list[Any] = []
        runner(lambda: None).addErrback(refused.append)
        assert refused and refused[0].check(Unavailable)
        release.set()
        for d in blocked:
            assert await d is True
        assert runner.in_flight == 0
        assert await runner(lambda: 42) == 42
    finally:
        release.set()
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_unavailable_is_503_with_retry_after() -> None:
    """When storage is unavailable the client gets 503 problem+json with Retry-After."""

    def busy(f: Any, *args: Any) -> Any:
        from twisted.internet import defer

        return defer.fail(Unavailable("The server is busy; retry shortly.", retry_after=2))

    http = api_over(MemoryBackend(), busy)
    alice = Ed25519Signer()
    path = "/space/s1/r"
    r = await http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.code == 503
    assert r.headers.getRawHeaders("retry-after") == ["2"]
    assert r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    doc = json.loads(await r.content())
    assert doc["type"] == "https://wallet.storage/spec#storage-error" and doc["status"] == 503


class Exploding(MemoryBackend):
    """A backend with a bug."""

    def read_resource(self, space_id: str, path: str) -> Any:
        raise RuntimeError("secret internal detail")


@pytest_twisted.ensureDeferred
async def test_unexpected_failure_is_500_with_request_id_and_no_traceback() -> None:
    """A bug answers 500 internal-error with a request id; the body holds no traceback or detail."""
    from twisted.internet import defer

    http = api_over(Exploding(), lambda f, *a: defer.maybeDeferred(f, *a))
    alice = Ed25519Signer()
    path = "/space/s1/r"
    r = await http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.code == 500
    body = await r.content()
    doc = json.loads(body)
    assert doc["type"] == "https://wallet.storage/spec#internal-error"
    assert len(doc["requestId"]) == 16 and doc["requestId"] in doc["detail"]
    assert b"secret internal detail" not in body and b"Traceback" not in body


def test_reuseport_is_refused_for_backends_that_cannot_be_shared(tmp_path: Any) -> None:
    """Sharing a port between processes is refused, in one sentence, unless storage is S3."""
    import pytest

    from was_twisted.config import ConfigError
    from was_twisted.service import build_service

    for backend in ("memory", "filesystem"):
        settings = Settings(backend=backend, root_dir=str(tmp_path))
        with pytest.raises(ConfigError, match="only WAS_STORAGE_BACKEND=s3 is safe to share"):
            build_service(settings, reactor, ["reuseport:8080"])
