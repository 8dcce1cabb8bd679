"""Readiness: whether a load balancer should send this process requests now (``GET /ready``).

``/health`` is liveness: the event loop answers.  Ready means more: the
service tree has started and is not shutting down, the storage pool has
room, and storage answered a cheap check (``Backend.ping``) recently.  The
check's verdict is kept for ``TTL`` seconds and concurrent polls share one
check, so a balancer polling every second costs storage one request every
two.  A check that takes longer than ``TIMEOUT`` answers "not ready" at
once, and keeps running: its verdict, when it comes, is the next one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Seconds a storage check's verdict is reused.
TTL = 2.0
#: Seconds a poll waits for a storage check before answering "not ready".
TIMEOUT = 2.0


@dataclass(frozen=True)
class Verdict:
    """Ready or not, and why not (``reason`` is safe to show the caller)."""

    ready: bool
    reason: str = ""


READY = Verdict(True)
STARTING = Verdict(False, "The server is starting.")
DRAINING = Verdict(False, "The server is shutting down.")
BUSY = Verdict(False, "The storage backlog is full.")
UNREACHABLE = Verdict(False, "Storage did not answer its check.")
SLOW = Verdict(False, f"Storage has not answered its check within {TIMEOUT:g} s.")


def _never() -> bool:
    return False


class Readiness:
    """The process's readiness; ``probe`` runs ``Backend.ping`` where blocking calls belong (the pool)."""

    log = Logger()

    def __init__(
        self,
        probe: Callable[[], defer.Deferred[Any]],
        clock: IReactorTime,
        backlog_full: Callable[[], bool] = _never,
        ttl: float = TTL,
        timeout: float = TIMEOUT,
    ) -> None:
        self._probe = probe
        self._clock = clock
        self._backlog_full = backlog_full
        self._ttl = ttl
        self._timeout = timeout
        self.started = False
        self.draining = False
        self._last: Verdict | None = None
        self._checked_at = 0.0
        self._began_at = 0.0
        self._in_flight = False
        self._timer: IDelayedCall | None = None
        self._waiters: list[defer.Deferred[Verdict]] = []

    def start(self) -> None:
        """The tree has started: check storage now, so the first poll finds a verdict."""
        self.started = True
        if not self._in_flight:
            self._begin()

    def drain(self) -> None:
        """Shutdown has begun: not ready from now on, whatever storage says."""
        self.draining = True

    def check(self) -> defer.Deferred[Verdict]:
        """The verdict now: at once when known, else after one shared storage check (at most ``timeout``)."""
        if self.draining:
            return defer.succeed(DRAINING)
        if not self.started:
            return defer.succeed(STARTING)
        if self._backlog_full():
            return defer.succeed(BUSY)
        now = self._clock.seconds()
        if self._last is not None and now - self._checked_at < self._ttl:
            return defer.succeed(self._last)
        if not self._in_flight:
            self._begin()
            if not self._in_flight:  # it answered synchronously (memory)
                assert self._last is not None
                return defer.succeed(self._last)
        elif now - self._began_at >= self._timeout:
            return defer.succeed(SLOW)
        waiter: defer.Deferred[Verdict] = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    def _begin(self) -> None:
        self._in_flight = True
        self._began_at = self._clock.seconds()
        self._timer = self._clock.callLater(self._timeout, self._too_slow)
        d = defer.maybeDeferred(self._probe)
        d.addCallbacks(lambda _: self._settle(READY), self._failed)

    def _failed(self, failure: Failure) -> None:
        if self._last is None or self._last.ready:
            self.log.warn(
                "ready: storage check failed; /ready answers 503 until it passes: {error}",
                error=failure.getErrorMessage() or repr(failure.value),
            )
        self._settle(UNREACHABLE)

    def _settle(self, verdict: Verdict) -> None:
        self._in_flight = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if verdict.ready and self._last is not None and not self._last.ready:
            self.log.info("ready: storage check passes again")
        self._last = verdict
        self._checked_at = self._clock.seconds()
        self._release(verdict)

    def _too_slow(self) -> None:
        self._timer = None
        self._release(SLOW)

    def _release(self, verdict: Verdict) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(verdict)


class ReadinessService(Service):
    """Marks readiness started with the tree and draining as it stops (also on a direct ``stopService``)."""

    def __init__(self, readiness: Readiness) -> None:
        self.readiness = readiness

    def startService(self) -> None:
        super().startService()
        self.readiness.start()

    def stopService(self) -> defer.Deferred[None] | None:
        self.readiness.drain()
        super().stopService()
        return None
