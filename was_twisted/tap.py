"""``twistd was``: options and ``makeService``."""

from __future__ import annotations

import os
from typing import Any

from twisted.application.service import IService, Service
from twisted.internet import task
from twisted.logger import Logger
from twisted.python import usage

from .config import ConfigError, parse_workers, settings_from_env

DEFAULT_ENDPOINT = "tcp:8080"


class Options(usage.Options):
    """Command-line options; storage and the rest come from ``WAS_*`` environment variables."""

    synopsis = "[--listen ENDPOINT ...] [--metrics ENDPOINT] [--workers N|auto]"
    optParameters = [
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this Twisted endpoint, e.g. "
            "tcp:9108:interface=127.0.0.1 (off by default). With --workers, worker i serves "
            "its own on the port + i.",
        ],
        [
            "workers",
            None,
            None,
            "Worker processes sharing the listening sockets (s3 backend only): a number, or auto "
            "for one per core (default: WAS_WORKERS, else 1, a single process).",
        ],
    ]
    longdesc = (
        "Serve Wallet Attached Storage. Storage is chosen by WAS_STORAGE_BACKEND "
        "(filesystem, the default, under WAS_STORAGE_ROOT_DIR; or memory); "
        "WAS_PROFILE is spec (default) or legacy."
    )

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, endpoint: str) -> None:
        """A Twisted endpoint to listen on, e.g. tcp:8080 or systemd:domain=INET:index=0 (repeatable;
        default tcp:8080)."""
        self["listen"].append(endpoint)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_ENDPOINT]
        try:
            self["settings"] = settings = settings_from_env()
            raw = self["workers"]
            self["workers"] = settings.workers if raw is None else parse_workers(raw, "--workers")
        except ConfigError as exc:
            raise SystemExit(f"was: {exc}") from None


class OrphanWatch(Service):
    """A worker stops (gracefully) when its parent is gone, e.g. killed with SIGKILL."""

    log = Logger()
    INTERVAL = 1.0

    def __init__(self, reactor: Any, parent_pid: int) -> None:
        self.reactor = reactor
        self.parent_pid = parent_pid
        self.loop = task.LoopingCall(self._check)
        self.loop.clock = reactor

    def _check(self) -> None:
        if os.getppid() != self.parent_pid:
            self.log.warn("was: the parent process {pid} is gone; stopping", pid=self.parent_pid)
            self.loop.stop()
            self.reactor.stop()

    def startService(self) -> None:
        super().startService()
        self.loop.start(self.INTERVAL, now=True)

    def stopService(self) -> None:
        super().stopService()
        if self.loop.running:
            self.loop.stop()


def makeService(options: Options) -> IService:
    """Build the service tree; an unusable setting stops start-up with one sentence."""
    from twisted.internet import reactor

    try:
        if options["workers"] > 1:
            from .workers import build_supervisor

            return build_supervisor(
                options["settings"],
                reactor,
                options["listen"],
                options["workers"],
                metrics=options["metrics"],
                twistd_options=getattr(options, "parent", None),
            )
        from .service import build_service

        top = build_service(
            options["settings"], reactor, options["listen"], metrics_endpoint=options["metrics"]
        )
        parent = os.environ.get("WAS_WORKER_PARENT", "")
        if parent.isdigit():
            OrphanWatch(reactor, int(parent)).setServiceParent(top)
        return top
    except ConfigError as exc:
        raise SystemExit(f"was: {exc}") from None


__all__ = ["Options", "makeService"]
