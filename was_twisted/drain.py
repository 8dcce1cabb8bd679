"""Graceful shutdown: finish the requests in flight, within a grace period, before storage stops.

On SIGTERM (``systemctl restart``, a rolling deploy) a request whose write
has reached storage must still get its answer, or the client cannot know
whether the write happened.  So shutdown goes in order (``OrderedShutdown``):
``/ready`` turns 503 and systemd hears ``STOPPING=1``; the listeners stop
accepting; requests in flight, including uploads still arriving, finish
(their connections are closed after their answers) for up to
``WAS_SHUTDOWN_GRACE`` seconds; whatever is left is aborted (its upload is
abandoned: no object, no S3 part left); only then do the thread pools stop.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request


class InFlight:
    """The requests this site is serving, counted from their first line to their last byte."""

    def __init__(self) -> None:
        self.requests: set[Request] = set()
        self.draining = False
        #: Connections closed after their last answer while draining; shutdown waits until they are.
        self.closing: list[Any] = []
        self._idle: list[defer.Deferred[None]] = []

    def add(self, request: Request) -> None:
        """Count ``request`` until it finishes or its connection is lost."""
        self.requests.add(request)
        transport = getattr(request.channel, "transport", None)
        request.notifyFinish().addBoth(self._done, request, transport)

    def _done(self, _: object, request: Request, transport: Any) -> None:
        self.requests.discard(request)
        if self.draining and transport is not None:
            # The answer may still sit in the transport's buffer: close after it is sent, and
            # keep shutdown waiting until then (the reactor's last step drops connections unflushed).
            transport.loseConnection()
            self.closing.append(transport)
        if not self.requests:
            waiting, self._idle = self._idle, []
            for d in waiting:
                if not d.called:  # the grace may have given up on it already
                    d.callback(None)

    def idle(self) -> defer.Deferred[None]:
        """Fires once no request is in flight (at once if none is)."""
        if not self.requests:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d

    def flushed(self) -> bool:
        """Whether every connection closed while draining is gone (its answer sent)."""
        self.closing = [t for t in self.closing if not getattr(t, "disconnected", True)]
        return not self.closing

    def abort(self) -> int:
        """Drop the connections of the requests still in flight; how many there were."""
        left = list(self.requests)
        for request in left:
            transport = getattr(request.channel, "transport", None)
            if transport is not None:
                transport.abortConnection()
        return len(left)


class TrackedRequest(Request):
    """Counted by its site's ``InFlight``; while draining, the connection closes after the answer."""

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        tracker = getattr(getattr(channel, "site", None), "in_flight", None)
        if isinstance(tracker, InFlight):
            tracker.add(self)

    def process(self) -> None:
        tracker = getattr(getattr(self.channel, "site", None), "in_flight", None)
        if isinstance(tracker, InFlight) and tracker.draining:
            # No keep-alive past shutdown: the client learns to open a new connection elsewhere.
            self.setHeader(b"connection", b"close")
            if self.channel is not None:
                self.channel.persistent = False
        super().process()


class DrainService(Service):
    """Stopped after the listeners: waits for ``InFlight`` to empty, up to ``grace`` seconds."""

    log = Logger()

    def __init__(self, in_flight: InFlight, clock: IReactorTime, grace: float) -> None:
        self.in_flight = in_flight
        self.clock = clock
        self.grace = grace

    #: Seconds between looks at connections whose last answer is being sent.
    POLL = 0.02
    #: Seconds aborted requests get to notice their connection is gone.
    ABORT_WAIT = 5.0

    def stopService(self) -> defer.Deferred[None]:
        super().stopService()
        return defer.ensureDeferred(self._drain())

    async def _drain(self) -> None:
        in_flight = self.in_flight
        in_flight.draining = True
        deadline = self.clock.seconds() + self.grace
        waiting = len(in_flight.requests)
        if waiting:
            self.log.info(
                "was: draining {count} request(s) in flight, up to {grace:g} s",
                count=waiting,
                grace=self.grace,
            )
        for request in in_flight.requests:
            if not request.startedWriting:
                # Requests already under way (streamed ones start on their headers): no keep-alive.
                request.setHeader(b"connection", b"close")
        idle = in_flight.idle()
        timer = self.clock.callLater(self.grace, self._expire, idle)
        idle.addBoth(self._stop_timer, timer)
        await idle
        while not in_flight.flushed() and self.clock.seconds() < deadline:
            await task.deferLater(self.clock, self.POLL, lambda: None)

    @staticmethod
    def _stop_timer(result: object, timer: Any) -> object:
        if timer.active():
            timer.cancel()
        return result

    def _expire(self, idle: defer.Deferred[None]) -> None:
        aborted = self.in_flight.abort()
        self.log.warn("was: shutdown grace is over; aborted {count} request(s) in flight", count=aborted)
        # An aborted connection is lost on the reactor's next turn, which fails the body its upload is
        # still reading; only then may the pools be joined (a thread blocked on that body would hang
        # the join).  ``idle`` fires then; this is a bound in case a request never says it is gone.
        bound = self.clock.callLater(self.ABORT_WAIT, self._give_up, idle)
        idle.addBoth(self._stop_timer, bound)

    def _give_up(self, idle: defer.Deferred[None]) -> None:
        if not idle.called:
            left = len(self.in_flight.requests)
            self.log.warn("was: {count} aborted request(s) still not gone", count=left)
            idle.callback(None)


class OrderedShutdown(MultiService):
    """A ``MultiService`` that stops its children one at a time, last added first.

    Twisted's stops them all at once; here the pools (added first) must
    outlive the requests that use them.
    """

    async def _stop_in_order(self) -> None:
        for service in reversed(list(self)):
            await defer.maybeDeferred(service.stopService)

    def stopService(self) -> defer.Deferred[None]:
        Service.stopService(self)
        return defer.ensureDeferred(self._stop_in_order())


def exit_zero_after_sigterm(reactor: Any) -> None:
    """A SIGTERM shutdown that completed is a clean exit (0), not a death by signal (-15).

    twistd re-raises the signal it stopped on once the reactor has stopped;
    after a graceful drain there is nothing left to report, so forget it.
    """

    def forget() -> None:
        if getattr(reactor, "_exitSignal", None) == signal.SIGTERM:
            reactor._exitSignal = None

    reactor.addSystemEventTrigger("after", "shutdown", forget)
