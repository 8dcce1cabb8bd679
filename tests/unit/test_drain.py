"""Graceful shutdown's parts on a fake clock: counting, waiting, the grace, and the stopping order."""

from __future__ import annotations

import signal
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import Clock

from was_twisted.config import ConfigError, settings_from_env
from was_twisted.drain import DrainService, InFlight, OrderedShutdown, exit_zero_after_sigterm


class FakeTransport:
    def __init__(self) -> None:
        self.disconnected = False
        self.aborted = False
        self.closing = False

    def loseConnection(self) -> None:
        self.closing = True

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnected = True


class FakeChannel:
    def __init__(self) -> None:
        self.transport = FakeTransport()


class FakeRequest:
    def __init__(self, started_writing: bool = False) -> None:
        self.channel = FakeChannel()
        self.finished: defer.Deferred[None] = defer.Deferred()
        self.startedWriting = started_writing
        self.headers: dict[bytes, bytes] = {}

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value

    def notifyFinish(self) -> defer.Deferred[None]:
        return self.finished


def _drain(grace: float, *requests: FakeRequest) -> tuple[Clock, InFlight, defer.Deferred[None]]:
    clock = Clock()
    in_flight = InFlight()
    for request in requests:
        in_flight.add(request)  # type: ignore[arg-type]
    service = DrainService(in_flight, clock, grace)
    service.startService()
    return clock, in_flight, service.stopService()


def test_idle_site_stops_at_once() -> None:
    _, in_flight, stopped = _drain(25)
    assert stopped.called
    assert in_flight.draining


def test_waits_for_requests_in_flight_then_for_their_answers_to_be_sent() -> None:
    first, second = FakeRequest(), FakeRequest()
    clock, in_flight, stopped = _drain(25, first, second)
    clock.advance(5)
    first.finished.callback(None)
    assert not stopped.called
    second.finished.callback(None)
    # Both connections are closed after their answers, and shutdown waits until they are gone.
    assert first.channel.transport.closing and second.channel.transport.closing
    clock.advance(1)
    assert not stopped.called
    first.channel.transport.disconnected = second.channel.transport.disconnected = True
    clock.advance(DrainService.POLL)
    assert stopped.called
    assert not first.channel.transport.aborted


def test_aborts_what_is_left_when_the_grace_is_over() -> None:
    slow, quick = FakeRequest(), FakeRequest()
    clock, in_flight, stopped = _drain(3, slow, quick)
    quick.finished.callback(None)
    quick.channel.transport.disconnected = True
    clock.advance(2.9)
    assert not stopped.called and not slow.channel.transport.aborted
    clock.advance(0.2)
    assert slow.channel.transport.aborted
    # The pools wait until the aborted connection is lost (its upload's body then fails).
    clock.advance(1)
    assert not stopped.called
    slow.finished.errback(ConnectionError("aborted"))  # Twisted errbacks notifyFinish
    clock.advance(DrainService.POLL)
    assert stopped.called


def test_an_aborted_request_that_never_goes_is_given_up_on() -> None:
    stuck = FakeRequest()
    clock, _, stopped = _drain(1, stuck)
    clock.advance(1)
    assert stuck.channel.transport.aborted and not stopped.called
    clock.advance(DrainService.ABORT_WAIT)
    assert stopped.called


def test_requests_under_way_are_told_to_close_their_connection() -> None:
    waiting, answering = FakeRequest(), FakeRequest(started_writing=True)
    _drain(5, waiting, answering)
    assert waiting.headers == {b"connection": b"close"}
    assert answering.headers == {}


def test_a_connection_that_never_closes_does_not_outlive_the_grace() -> None:
    request = FakeRequest()
    clock, _, stopped = _drain(2, request)
    request.finished.callback(None)
    clock.pump([DrainService.POLL] * 200)
    assert stopped.called


def test_children_stop_one_at_a_time_last_added_first() -> None:
    order: list[str] = []
    gate: defer.Deferred[None] = defer.Deferred()

    class Named(Service):
        def __init__(self, name: str, wait: defer.Deferred[None] | None = None) -> None:
            self.name = name
            self.wait = wait

        def stopService(self) -> Any:
            order.append(self.name)
            return self.wait

    top = OrderedShutdown()
    Named("pool").setServiceParent(top)
    Named("drain", gate).setServiceParent(top)
    Named("listener").setServiceParent(top)
    top.startService()
    stopped = top.stopService()
    assert order == ["listener", "drain"]  # the pool waits for the drain
    gate.callback(None)
    assert order == ["listener", "drain", "pool"] and stopped.called


def test_a_completed_sigterm_shutdown_exits_zero() -> None:
    class Reactor:
        _exitSignal: int | None = signal.SIGTERM

        def __init__(self) -> None:
            self.triggers: list[Any] = []

        def addSystemEventTrigger(self, phase: str, event: str, f: Any) -> None:
            self.triggers.append((phase, event, f))

    reactor = Reactor()
    exit_zero_after_sigterm(reactor)
    [(phase, event, forget)] = reactor.triggers
    assert (phase, event) == ("after", "shutdown")
    forget()
    assert reactor._exitSignal is None
    reactor._exitSignal = signal.SIGINT
    forget()
    assert reactor._exitSignal == signal.SIGINT  # only SIGTERM, the service manager's stop


def test_shutdown_grace_setting() -> None:
    assert settings_from_env({}).shutdown_grace == 25
    assert settings_from_env({"WAS_SHUTDOWN_GRACE": "0"}).shutdown_grace == 0
    for bad in ("-1", "soon", "3601"):
        try:
            settings_from_env({"WAS_SHUTDOWN_GRACE": bad})
        except ConfigError as exc:
            assert "WAS_SHUTDOWN_GRACE" in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
