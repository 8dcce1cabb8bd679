"""Prometheus metrics: one registry per server (not the global one), so tests can build several.

Every label is bounded: route templates, a fixed set of methods, status codes,
storage operation names and pool names.  Pool gauges and S3 request counts are
read at scrape time by collectors, so the hot paths only bump counters.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Mapping
from contextlib import nullcontext
from itertools import accumulate
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from .storage.threaded import PoolRunner

#: The classic text format ``generate_latest`` writes; every name here is valid in it (Prometheus 2 and 3).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; storage calls and requests range from microseconds (memory) to seconds (S3 uploads).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

__all__ = ["BUCKETS", "CONTENT_TYPE", "HttpCollector", "Metrics", "PoolCollector", "S3Collector"]


class PoolCollector(Collector):
    """``was_pool_*`` and ``was_shed_requests_total`` for each watched ``PoolRunner``, read at scrape."""

    def __init__(self) -> None:
        self.runners: list[PoolRunner] = []

    def collect(self) -> Iterator[Metric]:
        size = GaugeMetricFamily("was_pool_threads", "Maximum threads in the pool.", labels=["pool"])
        busy = GaugeMetricFamily("was_pool_busy_threads", "Threads running a call now.", labels=["pool"])
        backlog = GaugeMetricFamily(
            "was_pool_backlog", "Calls in flight (running or queued) in the pool.", labels=["pool"]
        )
        shed = CounterMetricFamily(
            "was_shed_requests", "Calls refused because the pool's backlog was full.", labels=["pool"]
        )
        for runner in self.runners:
            pool = runner.pool
            name = [pool.name or "unnamed"]
            size.add_metric(name, pool.max)
            busy.add_metric(name, len(pool.working))
            backlog.add_metric(name, runner.in_flight)
            shed.add_metric(name, runner.shed)
        yield from (size, busy, backlog, shed)


class S3Collector(Collector):
    """``was_s3_requests_total{operation}`` from the S3 backend's own per-operation ``calls`` counter."""

    def __init__(self, source: Any) -> None:
        #: Anything with ``calls: Mapping[str, int]`` (and optionally ``_calls_lock``): the S3 backend.
        self.source = source

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "was_s3_requests", "Requests sent to S3, by API operation.", labels=["operation"]
        )
        lock = getattr(self.source, "_calls_lock", None)
        with lock if lock is not None else nullcontext():
            calls: Mapping[str, int] = dict(self.source.calls)
        for operation, count in sorted(calls.items()):
            family.add_metric([operation], count)
        yield family


class _Histogram:
    """Per-bucket (not yet cumulative) counts and the sum, for one label set."""

    __slots__ = ("counts", "total")

    def __init__(self, size: int) -> None:
        self.counts = [0] * size
        self.total = 0.0


class HttpCollector(Collector):
    """``was_http_*``, kept as plain numbers updated on the reactor thread and exported at scrape.

    ``prometheus_client``'s locked counters cost about a microsecond an update; a request updates
    five, so this keeps the per-request cost to dict lookups.  Only the reactor thread touches it
    (requests finish there, and the metrics listener scrapes there).
    """

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.requests: dict[tuple[str, str, str], int] = {}
        self.durations: dict[tuple[str, str], _Histogram] = {}
        self.problems: dict[str, int] = {}
        self.request_bytes = 0
        self.response_bytes = 0

    def observe(self, route: str, method: str, status: str, seconds: float, received: int, sent: int) -> None:
        """One finished request."""
        key = (route, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        hist = self.durations.get((route, method))
        if hist is None:
            hist = self.durations[(route, method)] = _Histogram(len(self.buckets) + 1)
        hist.counts[bisect_left(self.buckets, seconds)] += 1
        hist.total += seconds
        self.request_bytes += received
        self.response_bytes += sent

    def problem(self, status: str) -> None:
        self.problems[status] = self.problems.get(status, 0) + 1

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "was_http_requests", "HTTP requests answered.", labels=["route", "method", "status"]
        )
        for labels, count in self.requests.items():
            requests.add_metric(list(labels), count)
        duration = HistogramMetricFamily(
            "was_http_request_duration_seconds",
            "Time from the request reaching the application to its last byte written.",
            labels=["route", "method"],
        )
        bounds = [floatToGoString(b) for b in self.buckets] + ["+Inf"]
        for pair, hist in self.durations.items():
            cumulative = list(accumulate(hist.counts))
            duration.add_metric(list(pair), list(zip(bounds, cumulative, strict=True)), hist.total)
        problems = CounterMetricFamily(
            "was_http_problems",
            "Error responses (status >= 400) carrying an application/problem+json body.",
            labels=["status"],
        )
        for status, count in self.problems.items():
            problems.add_metric([status], count)
        yield requests
        yield duration
        yield CounterMetricFamily(
            "was_http_request_bytes", "Request body bytes received.", value=self.request_bytes
        )
        yield CounterMetricFamily(
            "was_http_response_bytes", "Response body bytes written.", value=self.response_bytes
        )
        yield problems


class Metrics:
    """The server's metric definitions and the small helpers that update them."""

    def __init__(self, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http = HttpCollector(BUCKETS)
        r.register(self.http)
        self.storage_calls = Counter(
            "was_storage_calls",
            "Storage calls, by operation and outcome.",
            ["operation", "outcome"],
            registry=r,
        )
        self.storage_duration = Histogram(
            "was_storage_call_duration_seconds",
            "Time a storage call took, pool queueing included.",
            ["operation"],
            buckets=BUCKETS,
            registry=r,
        )
        self.pools = PoolCollector()
        r.register(self.pools)
        if process:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        # Label children by key: ``labels()`` costs about a microsecond each, a dict hit far less.
        self._storage_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def observe_storage(self, operation: str, seconds: float, outcome: str) -> None:
        """The ``AsyncStorage`` observer: count and time one call."""
        key = (operation, outcome)
        children = self._storage_children.get(key)
        if children is None:
            with self._lock:
                children = (
                    self.storage_calls.labels(operation, outcome),
                    self.storage_duration.labels(operation),
                )
                self._storage_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def watch_pool(self, runner: PoolRunner) -> None:
        """Export ``runner``'s pool gauges (named by its ``ThreadPool``'s name)."""
        self.pools.runners.append(runner)

    def watch_s3(self, backend: Any) -> None:
        """Export the S3 backend's per-operation request counts."""
        self.registry.register(S3Collector(backend))

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)
