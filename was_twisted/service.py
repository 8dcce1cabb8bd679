"""The service tree: thread pool, storage, and the listening endpoints.

``build_service`` is what ``twistd -n was`` runs, kept free of option
parsing so tests can build the same tree.  The tree stops its children one
at a time, last added first (``drain.OrderedShutdown``): systemd and
``/ready`` hear of it, listeners close, requests in flight finish (up to
``WAS_SHUTDOWN_GRACE``), and only then do the pools, added first, join.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import strports
from twisted.application.service import MultiService, Service
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site

from .config import ConfigError, Settings
from .drain import DrainService, InFlight, OrderedShutdown, TrackedRequest, exit_zero_after_sigterm
from .metrics import Metrics
from .operations import Operations
from .ready import Readiness, ReadinessService
from .sdnotify import NotifyService
from .storage.base import Backend, SpaceRecord
from .storage.threaded import AsyncStorage, PoolRunner, PoolService, run_inline
from .sweeper import SweeperService
from .web.app import WASApp
from .web.metrics import MetricsSite, TimedResource
from .web.protocol import AsteriskRequest, ProblemChannel
from .web.proxy import TrustedProxies, access_log_formatter
from .web.upload import request_factory


class WASSite(Site):
    """A ``Site`` whose access log can be switched off (it costs 30-80 us a request).

    Behind trusted proxies the log line names the client, not the proxy.
    ``in_flight`` counts the requests being served, for a graceful shutdown.
    """

    #: Seconds an idle connection is kept (Twisted's default is 12 hours).
    IDLE_TIMEOUT = 120
    #: Twisted's channel, but its own refusals (bad request line, chunking, sizes) are problem documents.
    #: (Plain HTTP/1.1: Twisted's HTTP/2 wrapper needs the h2 package, which is not a dependency.)
    protocol = ProblemChannel  # type: ignore[assignment]

    def __init__(
        self,
        resource: Any,
        access_log: bool,
        max_upload: int = 1 << 30,
        trusted: TrustedProxies | None = None,
        stream: bool = False,
    ) -> None:
        # ``stream``: large resource bodies go to storage as they arrive (needs a storage pool);
        # every request is counted while in flight, for a graceful shutdown.
        bounded = request_factory(max_upload, stream)
        super().__init__(
            resource,
            requestFactory=type("WASRequest", (AsteriskRequest, TrackedRequest, bounded), {}),
            timeout=self.IDLE_TIMEOUT,
            logFormatter=access_log_formatter(trusted) if trusted else None,
        )
        self.access_log = access_log
        self.displayTracebacks = False
        self.in_flight = InFlight()

    def log(self, request: Any) -> None:
        if self.access_log:
            super().log(request)


def make_backend(settings: Settings) -> Backend:
    """The configured backend; an unusable root directory or bucket is a start-up error."""
    if settings.backend == "s3":
        return make_s3_backend(settings)
    if settings.backend == "memory":
        from .storage.memory import MemoryBackend

        return MemoryBackend()
    from .storage.filesystem import FilesystemBackend

    root = settings.root_dir
    try:
        os.makedirs(os.path.join(root, "spaces"), exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"WAS_STORAGE_ROOT_DIR {root!r} cannot be created: {exc.strerror}.") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"WAS_STORAGE_ROOT_DIR {root!r} is not writable by this user.")
    return FilesystemBackend(root, fsync=settings.fsync)


def make_s3_backend(settings: Settings) -> Backend:
    """Check the bucket and credentials now, before listening: fail in one sentence."""
    try:
        from .storage.s3 import S3Backend, S3SetupError, S3Timeouts
        from .storage.space_cache import SpaceCache
    except ImportError:
        raise ConfigError('WAS_STORAGE_BACKEND=s3 needs boto3: pip install "was-twisted[s3]".') from None
    timeouts = S3Timeouts(settings.s3_connect_timeout, settings.s3_read_timeout, settings.s3_max_attempts)
    seconds = settings.space_cache_seconds
    cache: SpaceCache[tuple[SpaceRecord, str | None]] | None = SpaceCache(seconds) if seconds else None
    backend = S3Backend(
        settings.bucket, settings.prefix, threads=settings.threads, timeouts=timeouts, space_cache=cache
    )
    try:
        backend.check()
    except S3SetupError as exc:
        backend.close()
        raise ConfigError(str(exc)) from None
    return backend


class ReindexService(Service):
    """Builds the controller index in the pool after start-up when the bucket lacks one.

    Until it completes, listing spaces scans every space (correct, but O(n)).
    """

    log = Logger()

    def __init__(self, backend: Any, reactor: Any, pool: ThreadPool) -> None:
        self.backend = backend
        self.reactor = reactor
        self.pool = pool

    def startService(self) -> None:
        super().startService()
        if self.backend.indexed:
            return
        self.log.info("s3: the controller index is incomplete; building it in the background")
        d = deferToThreadPool(self.reactor, self.pool, self.backend.reindex)
        d.addCallbacks(
            lambda counts: self.log.info(
                "s3: index built ({added} added, {removed} removed)", added=counts[0], removed=counts[1]
            ),
            lambda failure: self.log.failure(
                "s3: building the index failed; listing keeps scanning", failure
            ),
        )


log = Logger("was_twisted.service")


def _where(settings: Settings) -> str:
    """Where the data lives, for the start-up line an operator reads first."""
    if settings.backend == "s3":
        return f"s3://{settings.bucket}/{settings.prefix}"
    if settings.backend == "filesystem":
        return os.path.abspath(settings.root_dir)
    return "in memory, gone at exit"


def storage_readiness(
    backend: Backend, reactor: Any, runner: PoolRunner | None = None, max_backlog: int = 0
) -> Readiness:
    """``/ready`` over ``backend``: ping in the pool (inline without one); a full backlog is not ready."""
    if runner is None:
        return Readiness(lambda: run_inline(backend.ping), reactor)
    return Readiness(lambda: runner(backend.ping), reactor, lambda: runner.in_flight >= max_backlog)


def build_service(
    settings: Settings, reactor: Any, endpoints: list[str], metrics_endpoint: str | None = None
) -> MultiService:
    """The whole server as a ``MultiService``; raises ``ConfigError`` for unusable settings."""
    shared = [e for e in endpoints if e.split(":", 1)[0] == "reuseport"]
    if shared and settings.backend != "s3":
        raise ConfigError(
            f"--listen {shared[0]} shares the port with other processes; only WAS_STORAGE_BACKEND=s3 "
            "is safe to share (filesystem and memory keep their state in one process)."
        )
    top = OrderedShutdown()
    backend = make_backend(settings)
    # Metrics only with --metrics: without it nothing is wrapped, timed or listened on.
    metrics = Metrics() if metrics_endpoint else None
    observer = metrics.observe_storage if metrics else None
    if settings.backend == "memory":
        storage = AsyncStorage(backend, run_inline, observer)
        readiness = storage_readiness(backend, reactor)
    else:
        pool = PoolService("was-storage", settings.threads)
        pool.setServiceParent(top)
        runner = PoolRunner(reactor, pool.pool, settings.max_backlog)
        storage = AsyncStorage(backend, runner, observer)
        if metrics:
            metrics.watch_pool(runner)
        readiness = storage_readiness(backend, reactor, runner, settings.max_backlog)
        if settings.backend == "s3":
            ReindexService(backend, reactor, pool.pool).setServiceParent(top)
            if metrics:
                metrics.watch_s3(backend)
        # One sweeper per data directory or bucket: with --workers, worker 0's.
        if settings.sweep_interval and os.environ.get("WAS_WORKER_INDEX", "0") == "0":
            SweeperService(
                backend, reactor, pool.pool, settings.sweep_interval, settings.sweep_age
            ).setServiceParent(top)
    log.info(
        "was: {profile} profile, {backend} storage ({where}), listening on {endpoints}",
        profile=settings.profile,
        backend=settings.backend,
        where=_where(settings),
        endpoints=", ".join(endpoints),
    )
    if settings.backend == "filesystem" and not settings.fsync:
        log.warn(
            "was: WAS_FSYNC=off: writes are answered before they reach the disk; a power cut can lose them"
        )
    # Delegation chains not yet cached are canonicalized (pyld, milliseconds) off the reactor.
    zcap_pool = PoolService("was-zcap", 2)
    zcap_pool.setServiceParent(top)
    verify_runner = PoolRunner(reactor, zcap_pool.pool, settings.max_backlog)
    if metrics:
        metrics.watch_pool(verify_runner)
    if not settings.public_url:
        log.info("was: WAS_PUBLIC_URL is not set; capability targets use each request's Host and scheme")
    if settings.trusted_proxies:
        log.info("was: forwarded headers count from {proxies}", proxies=", ".join(settings.trusted_proxies))
    operations = Operations(storage, settings, reactor, verify_runner=verify_runner)
    api = WASApp(operations, settings.backend, readiness)
    trusted = TrustedProxies(settings.trusted_proxies)
    resource = TimedResource(api.resource(), metrics) if metrics else api.resource()
    site = WASSite(resource, settings.access_log, settings.max_upload, trusted, settings.backend != "memory")
    # Before the listeners, so stopped after them: no new connections, then the requests in flight finish.
    DrainService(site.in_flight, reactor, settings.shutdown_grace).setServiceParent(top)
    exit_zero_after_sigterm(reactor)
    for description in endpoints:
        listener = strports.service(description, site, reactor=reactor)
        listener.setServiceParent(top)
    if metrics and metrics_endpoint:
        # Its own port: the log line "MetricsSite starting on N" gives the port actually bound.
        strports.service(metrics_endpoint, MetricsSite(metrics), reactor=reactor).setServiceParent(top)
        log.info("was: metrics at /metrics on {endpoint}", endpoint=metrics_endpoint)
    # Last in the tree: ready once everything has started, draining as soon as shutdown begins.
    ReadinessService(readiness).setServiceParent(top)
    reactor.addSystemEventTrigger("before", "shutdown", readiness.drain)
    # After every listener: READY=1 to systemd once they are bound, STOPPING=1 first on shutdown.
    NotifyService(f"was: serving on {', '.join(endpoints)}").setServiceParent(top)
    return top
