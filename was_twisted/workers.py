"""``--workers N``: one parent owns the listening sockets, N ``twistd was`` children accept on them.

One process is bound by the GIL to about one core.  The parent binds every
``--listen`` endpoint (or adopts systemd's sockets), stops reading them
itself, and starts each child with the sockets as file descriptors 3, 4 ...
(``spawnProcess`` ``childFDs``); a child serves them through the
``inherited:`` endpoint.  All children wait in ``accept`` on one socket, so
the kernel hands each connection to one of them, and a restarted child
serves at once (no port to rebind, no connection refused meanwhile).

The parent speaks to systemd alone: each child's ``NOTIFY_SOCKET`` is a
private socket of the parent, so its ``READY=1`` reaches the parent, which
says ``READY=1`` once every child serves.  A child that exits is restarted,
sooner if it had run a while, later (up to ``MAX_BACKOFF``) if it keeps
dying young.  SIGTERM to the parent is passed to every child, each of which
drains its requests (``drain.py``); children still alive after
``WAS_SHUTDOWN_GRACE`` + ``MARGIN`` are killed.  Only the s3 backend may be
shared: filesystem and memory keep their locks or data in one process.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config import ConfigError, Settings
from .drain import exit_zero_after_sigterm
from .sdnotify import Notifier

log = Logger("was_twisted.workers")

#: Endpoint types whose listening socket a parent can bind and children can inherit.
SHAREABLE = ("tcp", "tcp6", "systemd")
#: Seconds past ``WAS_SHUTDOWN_GRACE`` a child may take to exit before it is killed.
MARGIN = 3.0
#: A child that ran this many seconds was not crash-looping: the next restart is immediate.
STABLE = 10.0
#: The first and the longest wait before restarting a child that keeps dying young.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
#: Environment a child must not inherit: systemd's protocols are the parent's alone.
_PARENT_ONLY = ("NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "WAS_WORKERS")
_FIELD_SEPARATOR = re.compile(r"(?<!\\):")


def check_workers(settings: Settings, workers: int, listen: list[str]) -> None:
    """Refuse, in one sentence, what several processes cannot share."""
    if workers > 1 and settings.backend != "s3":
        raise ConfigError(
            f"--workers {workers} needs WAS_STORAGE_BACKEND=s3: the {settings.backend} backend keeps "
            "its state in one process, so it runs with one worker only."
        )
    for description in listen:
        kind = description.split(":", 1)[0]
        if kind not in SHAREABLE:
            raise ConfigError(
                f"--listen {description} cannot be shared by worker processes; with --workers use "
                "tcp:, tcp6: or systemd: endpoints."
            )


def worker_metrics_endpoint(description: str, index: int) -> str:
    """Worker ``index`` serves its own metrics on the configured port plus ``index`` (0: any port)."""
    fields = _FIELD_SEPARATOR.split(description)
    if fields[0] not in ("tcp", "tcp6"):
        raise ConfigError(
            f"--metrics {description} cannot be split among workers; with --workers use a tcp: "
            "endpoint (worker i serves on its port + i)."
        )
    for position, value in enumerate(fields[1:], 1):
        key, has_key, port = value.partition("=")
        if has_key and key != "port":
            continue
        text = port if has_key else key
        try:
            number = int(text)
        except ValueError:
            raise ConfigError(f"--metrics {description} does not name a port number.") from None
        if number and number + index > 65535:
            raise ConfigError(f"--metrics {description}: port {number} + worker {index} is past 65535.")
        shifted = str(number + index if number else 0)
        fields[position] = f"port={shifted}" if has_key else shifted
        return ":".join(fields)
    raise ConfigError(f"--metrics {description} does not name a port number.")


class SharedListener(Factory):
    """The parent's listeners never accept (children do); this only names them in the log."""

    noisy = False

    def buildProtocol(self, addr: Any) -> Protocol | None:
        return None


def bind(reactor: Any, description: str) -> IListeningPort:
    """Listen on ``description`` now, without accepting: the children will."""
    results: list[Any] = []
    endpoints.serverFromString(reactor, description).listen(SharedListener()).addBoth(results.append)
    if not results:  # tcp and systemd listen synchronously; anything else is not shareable
        raise ConfigError(f"--listen {description} did not bind at once, so it cannot be shared.")
    if isinstance(results[0], Failure):
        raise ConfigError(f"--listen {description} cannot listen: {results[0].getErrorMessage()}.")
    port: IListeningPort = results[0]
    port.stopReading()  # type: ignore[attr-defined]
    return port


def _family_name(port: Any) -> str:
    return "INET6" if port.addressFamily == socket.AF_INET6 else "INET"


@dataclass
class Worker:
    """One child slot: the process in it now, and how it has been dying."""

    index: int
    notify_name: str
    process: Any = None
    started: float = 0.0
    ready: bool = False
    quick_deaths: int = 0
    restart: Any = None
    pid: int = field(default=0)


class _WorkerProtocol(ProcessProtocol):
    def __init__(self, supervisor: Supervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def processEnded(self, reason: Failure) -> None:
        self.supervisor.ended(self.worker, reason)


class _NotifyListener(DatagramProtocol):
    """A child's ``NOTIFY_SOCKET``: its ``READY=1`` comes here, not to systemd."""

    noisy = False

    def __init__(self, supervisor: Supervisor, worker: Worker) -> None:
        self.supervisor = supervisor
        self.worker = worker

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if b"READY=1" in datagram.split(b"\n"):
            self.supervisor.ready(self.worker)


class Supervisor(Service):
    """Starts ``count`` children on the bound ``ports``, restarts them, and stops them all on shutdown."""

    def __init__(
        self,
        reactor: Any,
        count: int,
        ports: list[IListeningPort],
        argv: Callable[[int], list[str]],
        grace: float,
        status: str,
        notifier: Notifier | None = None,
    ) -> None:
        self.reactor = reactor
        self.ports = ports
        self.argv = argv
        self.grace = grace
        self.status = status
        self.notifier = notifier if notifier is not None else Notifier()
        # The children's notify sockets live in a directory only this user can enter (mode 0700),
        # so no other local user can send a READY=1 in a child's name.
        self.notify_dir = tempfile.mkdtemp(
            prefix="was-workers-", dir=os.environ.get("RUNTIME_DIRECTORY") or None
        )
        self.workers = [Worker(i, os.path.join(self.notify_dir, str(i))) for i in range(count)]
        self.stopping = False
        self.announced = False
        self._listeners: list[Any] = []
        self._gone: defer.Deferred[None] | None = None
        self._stdin = -1

    def startService(self) -> None:
        super().startService()
        self._stdin = os.open(os.devnull, os.O_RDONLY)
        for worker in self.workers:
            self._listeners.append(
                self.reactor.listenUNIXDatagram(worker.notify_name, _NotifyListener(self, worker))
            )
            self.spawn(worker)

    def environment(self, worker: Worker) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PARENT_ONLY}
        env.update(
            WAS_WORKERS="1",
            WAS_WORKER_PARENT=str(os.getpid()),
            WAS_WORKER_INDEX=str(worker.index),  # worker 0 alone sweeps (sweeper.py)
            NOTIFY_SOCKET=worker.notify_name,
        )
        return env

    def spawn(self, worker: Worker) -> None:
        worker.restart = None
        worker.ready = False
        fds: dict[int, Any] = {0: self._stdin, 1: 1, 2: 2}
        for offset, port in enumerate(self.ports):
            fds[3 + offset] = port.fileno()  # type: ignore[attr-defined]
        argv = self.argv(worker.index)
        worker.process = self.reactor.spawnProcess(
            _WorkerProtocol(self, worker), argv[0], argv, env=self.environment(worker), childFDs=fds
        )
        worker.pid = worker.process.pid
        worker.started = self.reactor.seconds()
        log.info("was: worker {index} started (pid {pid})", index=worker.index, pid=worker.pid)

    def ready(self, worker: Worker) -> None:
        if worker.ready or self.stopping:
            return
        worker.ready = True
        log.info("was: worker {index} (pid {pid}) is serving", index=worker.index, pid=worker.pid)
        if not self.announced and all(w.ready for w in self.workers):
            self.announced = True
            log.info("was: all {count} workers are serving", count=len(self.workers))
            self.notifier.ready(self.status)

    def ended(self, worker: Worker, reason: Failure) -> None:
        how = _describe(reason)
        worker.process = None
        if self.stopping:
            log.info("was: worker {index} (pid {pid}) {how}", index=worker.index, pid=worker.pid, how=how)
            if self._gone is not None and all(w.process is None for w in self.workers):
                self._gone.callback(None)
            return
        lived = self.reactor.seconds() - worker.started
        worker.quick_deaths = 0 if lived >= STABLE else worker.quick_deaths + 1
        delay = (
            0.0
            if worker.quick_deaths == 0
            else min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (worker.quick_deaths - 1))
        )
        log.warn(
            "was: worker {index} (pid {pid}) {how} after {lived:.1f} s; restarting it in {delay:g} s",
            index=worker.index,
            pid=worker.pid,
            how=how,
            lived=lived,
            delay=delay,
        )
        worker.restart = self.reactor.callLater(delay, self.spawn, worker)

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        self.stopping = True
        self.notifier.stopping("was: shutting down")
        for worker in self.workers:
            if worker.restart is not None and worker.restart.active():
                worker.restart.cancel()
            worker.restart = None
        self._gone = defer.Deferred()
        alive = [w for w in self.workers if w.process is not None]
        if not alive:
            self._gone.callback(None)
        for worker in alive:
            _signal(worker, signal.SIGTERM)
        timer = self.reactor.callLater(self.grace + MARGIN, self._kill_the_rest)
        self._gone.addBoth(_cancel, timer)
        self._gone.addBoth(lambda _: self._close())
        return self._gone

    def _kill_the_rest(self) -> None:
        for worker in self.workers:
            if worker.process is not None:
                log.warn(
                    "was: worker {index} (pid {pid}) still running {seconds:g} s after SIGTERM; killing it",
                    index=worker.index,
                    pid=worker.pid,
                    seconds=self.grace + MARGIN,
                )
                _signal(worker, signal.SIGKILL)

    def _close(self) -> defer.Deferred[Any]:
        if self._stdin >= 0:
            os.close(self._stdin)
            self._stdin = -1
        waits = [defer.maybeDeferred(p.stopListening) for p in self.ports + self._listeners]
        done: defer.Deferred[Any] = defer.gatherResults(waits, consumeErrors=True)
        done.addBoth(self._remove_notify_dir)
        return done

    def _remove_notify_dir(self, result: object) -> object:
        shutil.rmtree(self.notify_dir, ignore_errors=True)
        return result


def _cancel(result: object, timer: Any) -> object:
    if timer.active():
        timer.cancel()
    return result


def _signal(worker: Worker, number: int) -> None:
    try:
        worker.process.signalProcess(number)
    except Exception:  # it exited meanwhile (ProcessExitedAlready)
        pass


def _describe(reason: Failure) -> str:
    value = reason.value
    number = getattr(value, "signal", None)
    if number:
        return f"was killed by {signal.Signals(number).name}"
    return f"exited with status {getattr(value, 'exitCode', '?')}"


def child_argv(
    twistd_options: Any, listen: list[str], ports: list[Any], metrics: str | None
) -> Callable[[int], list[str]]:
    """The command line of worker ``index``: the same twistd logging, the inherited sockets."""
    head = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "--nodaemon", "--pidfile="]
    if twistd_options is not None:
        logger = twistd_options.get("logger")
        if callable(logger):  # twistd replaced the --logger name by the function it names
            logger = f"{logger.__module__}.{logger.__qualname__}"
        if logger:
            head.append(f"--logger={logger}")
        logfile = twistd_options.get("logfile")
        if logfile and logfile != "-":
            head.append(f"--logfile={logfile}")
    head += ["was", "--workers", "1"]
    for offset, port in enumerate(ports):
        head += ["--listen", f"inherited:{3 + offset}:domain={_family_name(port)}"]

    def argv(index: int) -> list[str]:
        return head + (["--metrics", worker_metrics_endpoint(metrics, index)] if metrics else [])

    return argv


def build_supervisor(
    settings: Settings,
    reactor: Any,
    listen: list[str],
    workers: int,
    metrics: str | None = None,
    twistd_options: Any = None,
) -> Service:
    """The parent: binds ``listen``, checks storage once, and supervises ``workers`` children."""
    from .service import make_s3_backend

    check_workers(settings, workers, listen)
    if metrics:
        for index in range(workers):
            worker_metrics_endpoint(metrics, index)
    # A missing bucket or bad credentials: one sentence from the parent, not N children crash-looping.
    getattr(make_s3_backend(settings), "close", lambda: None)()
    ports = [bind(reactor, description) for description in listen]
    exit_zero_after_sigterm(reactor)
    where = ", ".join(f"{d} (port {p.getHost().port})" for d, p in zip(listen, ports, strict=True))  # type: ignore[attr-defined]
    log.info(
        "was: {count} worker processes sharing {where}; s3://{bucket}/{prefix}",
        count=workers,
        where=where,
        bucket=settings.bucket,
        prefix=settings.prefix,
    )
    if metrics:
        log.info(
            "was: each worker serves its own metrics: worker i on {endpoint} with port + i", endpoint=metrics
        )
    argv = child_argv(twistd_options, listen, ports, metrics)
    status = f"was: {workers} workers serving on {', '.join(listen)}"
    return Supervisor(reactor, workers, ports, argv, settings.shutdown_grace, status)
