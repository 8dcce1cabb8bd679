"""Metrics: exact counts after a known workload, bounded labels, pool gauges, S3 counts, wiring."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.threadpool import ThreadPool
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, sign
from was_twisted.config import Settings
from was_twisted.errors import StorageFailure, Unavailable
from was_twisted.metrics import Metrics
from was_twisted.operations import Operations
from was_twisted.service import build_service
from was_twisted.storage.base import StorageError
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, PoolRunner, run_inline
from was_twisted.web.app import WASApp
from was_twisted.web.metrics import MetricsPage, MetricsSite, TimedResource, route_template

DID = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"


def make_metered() -> tuple[StubTreq, Metrics]:
    """The app as ``tests/conftest.py`` builds it, with the storage observer and the timing wrapper."""
    clock = Clock()
    clock.advance(time.time())
    metrics = Metrics()
    storage = AsyncStorage(MemoryBackend(), run_inline, metrics.observe_storage)
    ops = Operations(storage, Settings(backend="memory", profile="spec"), clock)
    return StubTreq(TimedResource(WASApp(ops, "memory").resource(), metrics)), metrics


def value(metrics: Metrics, name: str, **labels: str) -> float:
    got = metrics.registry.get_sample_value(name, labels)
    return 0.0 if got is None else got


def label_values(metrics: Metrics, family: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for m in metrics.registry.collect()
        if m.name == family
        for s in m.samples
        if label in s.labels
    }


@pytest.mark.parametrize(
    ("path", "template"),
    [
        (b"/", "/"),
        (b"/health", "/health"),
        (b"/ready", "/ready"),
        (b"/spaces", "/spaces/"),
        (b"/spaces/", "/spaces/"),
        (b"/space/6f1c", "/space/{id}"),
        (b"/space/" + DID.encode(), "/space/{id}"),
        (b"/space/6f1c/", "/space/{id}/"),
        (b"/space/6f1c/a/b.txt", "/space/{id}/{path}"),
        (b"/space/6f1c/a/b/", "/space/{id}/{path}/"),
        (b"/space/" + DID.encode() + b"/policy", "/space/{id}/{path}"),
        (b"/spaces/x", "other"),
        (b"/favicon.ico", "other"),
        (b"/space", "other"),
    ],
)
def test_route_template(path: bytes, template: str) -> None:
    assert route_template(path) == template


@pytest_twisted.ensureDeferred
async def test_known_workload_gives_exact_counts() -> None:
    """Each request counted once under its template, bytes summed, storage calls named by operation."""
    http, metrics = make_metered()
    alice = Ed25519Signer()
    sid = str(uuid.uuid4())
    space = f"/space/{sid}"
    sent = 0
    received = 0

    async def call(method: str, path: str, body: bytes | None = None, signed: bool = True) -> int:
        nonlocal sent, received
        headers = sign(alice, method, path) if signed else {}
        r = await http.request(method, BASE + path, data=body, headers=headers)
        received += len(await r.content())
        sent += len(body or b"")
        return int(r.code)

    doc = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller}).encode()
    assert await call("GET", "/health", signed=False) == 200
    assert await call("GET", "/health", signed=False) == 200
    assert await call("GET", "/", signed=False) == 200
    assert await call("PUT", space, doc) == 201
    assert await call("PUT", space + "/notes/a.txt", b"hello metrics") == 204
    assert await call("GET", space + "/notes/a.txt") == 200
    assert await call("GET", space + "/notes/") == 200
    assert await call("GET", space + "/missing.txt") == 404
    assert await call("GET", f"/space/{DID}/x", signed=False) == 400  # not a space id
    assert await call("GET", "/nowhere", signed=False) == 404
    assert await call("BREW", "/health", signed=False) == 405

    requests = [
        ("/health", "GET", "200", 2),
        ("/", "GET", "200", 1),
        ("/space/{id}", "PUT", "201", 1),
        ("/space/{id}/{path}", "PUT", "204", 1),
        ("/space/{id}/{path}", "GET", "200", 1),
        ("/space/{id}/{path}/", "GET", "200", 1),
        ("/space/{id}/{path}", "GET", "404", 1),
        ("/space/{id}/{path}", "GET", "400", 1),
        ("other", "GET", "404", 1),
        ("/health", "other", "405", 1),
    ]
    for route, method, status, count in requests:
        assert value(metrics, "was_http_requests_total", route=route, method=method, status=status) == count
    total = sum(
        s.value
        for m in metrics.registry.collect()
        if m.name == "was_http_requests"
        for s in m.samples
        if s.name == "was_http_requests_total"
    )
    assert total == 11
    assert value(metrics, "was_http_request_duration_seconds_count", route="/health", method="GET") == 2
    assert (
        value(metrics, "was_http_request_duration_seconds_count", route="/space/{id}/{path}", method="GET")
        == 3
    )
    assert value(metrics, "was_http_request_bytes_total") == sent == len(doc) + len(b"hello metrics")
    assert value(metrics, "was_http_response_bytes_total") == received > 0
    assert value(metrics, "was_http_problems_total", status="404") == 2
    assert value(metrics, "was_http_problems_total", status="400") == 1
    assert value(metrics, "was_http_problems_total", status="405") == 1

    # No label anywhere carries the space id, the DID or a raw path.
    text = metrics.exposition().decode()
    assert sid not in text and DID not in text and "a.txt" not in text and "nowhere" not in text
    assert label_values(metrics, "was_http_requests", "route") == {r[0] for r in requests}

    # One storage call per request that reaches storage: the space and resource writes and the listing
    # are composites, labelled by the operation that built them; the read and the missing read are
    # ``read_resource`` (absent is not an error). A missing single-segment name may still be a
    # created collection: one ``read_collection`` call looks.
    assert _storage_counts(metrics) == {
        ("put_space", "ok"): 1,
        ("write_resource", "ok"): 1,
        ("list_container", "ok"): 1,
        ("read_resource", "ok"): 2,
        ("read_collection", "ok"): 1,
    }
    assert value(metrics, "was_storage_call_duration_seconds_count", operation="write_resource") == 1
    assert value(metrics, "was_storage_call_duration_seconds_count", operation="read_resource") == 2


def _storage_counts(metrics: Metrics) -> dict[tuple[str, str], float]:
    return {
        (s.labels["operation"], s.labels["outcome"]): s.value
        for m in metrics.registry.collect()
        if m.name == "was_storage_calls"
        for s in m.samples
        if s.name == "was_storage_calls_total"
    }


@pytest_twisted.ensureDeferred
async def test_storage_calls_counted_per_operation_against_a_spy() -> None:
    """The observer's counts equal the calls AsyncStorage actually made, operation by operation."""
    metrics = Metrics(process=False)
    seen: Counter[str] = Counter()
    backend = MemoryBackend()
    storage = AsyncStorage(backend, run_inline, metrics.observe_storage)
    assert await storage.get_space("nope") is None
    assert await storage.get_space("nope") is None
    assert await storage.list_spaces(DID) == []
    seen.update(["get_space", "get_space", "list_spaces"])

    def compose() -> int:
        return 7

    assert await storage.run(compose) == 7
    # A composite is labelled by the function it was defined in (an operation's name, in the server).
    seen["test_storage_calls_counted_per_operation_against_a_spy"] += 1
    assert _storage_counts(metrics) == {(op, "ok"): n for op, n in seen.items()}


class _Broken(MemoryBackend):
    def get_space(self, space_id: str) -> Any:
        raise StorageError("disk on fire")


@pytest_twisted.ensureDeferred
async def test_storage_outcomes_error_and_refused() -> None:
    """A backend failure is ``error``; a guard's refusal raised inside the call is ``refused``."""
    metrics = Metrics(process=False)
    storage = AsyncStorage(_Broken(), run_inline, metrics.observe_storage)
    with pytest.raises(StorageFailure):
        await storage.get_space("x")

    def refuse() -> None:
        raise PermissionError("guard says no")

    with pytest.raises(PermissionError):
        await storage.run(refuse)
    assert _storage_counts(metrics) == {
        ("get_space", "error"): 1,
        ("test_storage_outcomes_error_and_refused", "refused"): 1,
    }


@pytest_twisted.ensureDeferred
async def test_pool_gauges_with_real_thread_pools() -> None:
    """Busy threads, backlog and sheds of two real pools, read at scrape time."""
    metrics = Metrics(process=False)
    storage_pool = ThreadPool(minthreads=0, maxthreads=3, name="was-storage")
    zcap_pool = ThreadPool(minthreads=0, maxthreads=2, name="was-zcap")
    storage_pool.start()
    zcap_pool.start()
    try:
        runner = PoolRunner(reactor, storage_pool, max_backlog=1)
        metrics.watch_pool(runner)
        metrics.watch_pool(PoolRunner(reactor, zcap_pool, max_backlog=4))
        started, release = threading.Event(), threading.Event()

        def block() -> str:
            started.set()
            release.wait(5)
            return "done"

        d = runner(block)
        assert started.wait(5)
        assert value(metrics, "was_pool_threads", pool="was-storage") == 3
        assert value(metrics, "was_pool_threads", pool="was-zcap") == 2
        assert value(metrics, "was_pool_busy_threads", pool="was-storage") == 1
        assert value(metrics, "was_pool_busy_threads", pool="was-zcap") == 0
        assert value(metrics, "was_pool_backlog", pool="was-storage") == 1
        with pytest.raises(Unavailable):
            await runner(block)  # backlog full: shed
        assert value(metrics, "was_shed_requests_total", pool="was-storage") == 1
        assert value(metrics, "was_shed_requests_total", pool="was-zcap") == 0
        release.set()
        assert await d == "done"
        assert value(metrics, "was_pool_backlog", pool="was-storage") == 0
        for _ in range(100):
            if value(metrics, "was_pool_busy_threads", pool="was-storage") == 0:
                break
            await _sleep(0.01)
        assert value(metrics, "was_pool_busy_threads", pool="was-storage") == 0
    finally:
        storage_pool.stop()
        zcap_pool.stop()


def _sleep(seconds: float) -> defer.Deferred[None]:
    d: defer.Deferred[None] = defer.Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


def test_s3_collector_reads_the_backends_counter_at_scrape_time() -> None:
    class FakeS3:
        def __init__(self) -> None:
            self.calls: Counter[str] = Counter({"PutObject": 3, "GetObject": 2})
            self._calls_lock = threading.Lock()

    metrics = Metrics(process=False)
    fake = FakeS3()
    metrics.watch_s3(fake)
    assert value(metrics, "was_s3_requests_total", operation="PutObject") == 3
    assert value(metrics, "was_s3_requests_total", operation="GetObject") == 2
    fake.calls["HeadObject"] += 1
    fake.calls["PutObject"] += 1
    assert value(metrics, "was_s3_requests_total", operation="HeadObject") == 1
    assert value(metrics, "was_s3_requests_total", operation="PutObject") == 4


def test_process_collectors_on_our_registry_only() -> None:
    """Process metrics are on each server's registry; two registries never collide."""
    a, b = Metrics(), Metrics()
    assert value(a, "process_cpu_seconds_total") > 0
    assert b"python_info" in b.exposition()
    assert Metrics(process=False).registry.get_sample_value("process_cpu_seconds_total") is None


@pytest_twisted.ensureDeferred
async def test_metrics_page_serves_exposition_at_metrics_only() -> None:
    metrics = Metrics(process=False)
    metrics.http.observe("/health", "GET", "200", 0.002, 0, 15)
    http = StubTreq(MetricsPage(metrics))
    r = await http.get("http://metrics.test/metrics")
    assert r.code == 200
    assert r.headers.getRawHeaders("content-type")[0] == "text/plain; version=0.0.4; charset=utf-8"
    body = (await r.content()).decode()
    assert 'was_http_requests_total{method="GET",route="/health",status="200"} 1.0' in body
    assert 'was_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/health"} 0.0' in body
    assert 'was_http_request_duration_seconds_bucket{le="0.0025",method="GET",route="/health"} 1.0' in body
    assert 'was_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/health"} 1.0' in body
    assert "was_http_response_bytes_total 15.0" in body
    assert (await http.get("http://metrics.test/")).code == 404
    assert (await http.get("http://metrics.test/metrics/x")).code == 404
    assert (await http.post("http://metrics.test/metrics", data=b"")).code == 405


def _services(top: Any) -> list[Any]:
    return list(top)


def test_build_service_without_metrics_wraps_nothing() -> None:
    top = build_service(Settings(backend="memory"), MemoryReactorClock(), ["tcp:0:interface=127.0.0.1"])
    factories = [getattr(s, "factory", None) for s in _services(top)]
    sites = [f for f in factories if f is not None]
    assert len(sites) == 1 and not isinstance(sites[0].resource, TimedResource)


def test_build_service_with_metrics_adds_the_listener_and_wrapper() -> None:
    top = build_service(
        Settings(backend="memory"),
        MemoryReactorClock(),
        ["tcp:0:interface=127.0.0.1"],
        metrics_endpoint="tcp:0:interface=127.0.0.1",
    )
    factories = [f for f in (getattr(s, "factory", None) for s in _services(top)) if f is not None]
    assert len(factories) == 2
    api_site, metrics_site = factories
    assert isinstance(api_site.resource, TimedResource)
    assert isinstance(metrics_site, MetricsSite)
    assert metrics_site.resource.metrics.http is api_site.resource.http


def test_s3_collector_over_the_real_backend(mocked_aws: None) -> None:
    """The real ``S3Backend``'s counter (moto in-process): the bucket check shows as S3 requests."""
    import boto3

    from was_twisted.storage.s3 import S3Backend

    boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="metrics-test")
    backend = S3Backend("metrics-test", "m/", threads=2)
    try:
        metrics = Metrics(process=False)
        metrics.watch_s3(backend)
        backend.check()
        assert (
            value(metrics, "was_s3_requests_total", operation="ListObjectsV2")
            == backend.calls["ListObjectsV2"]
            >= 1
        )
    finally:
        backend.close()
