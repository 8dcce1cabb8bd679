"""``sd_notify`` over real Unix datagram sockets: a path, the abstract namespace, none, a dead one."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from twisted.application.service import MultiService, Service
from twisted.logger import ILogObserver, globalLogPublisher

from was_twisted.sdnotify import Notifier, NotifyService, notify_address


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket playing systemd's notify socket, and its ``NOTIFY_SOCKET`` value."""
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    try:
        yield sock, path
    finally:
        sock.close()


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observer)


def sdnotify_warnings(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e.get("log_namespace") == "was_twisted.sdnotify"]


def test_ready_and_stopping_arrive_as_single_datagrams(receiver: tuple[socket.socket, str]) -> None:
    sock, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("serving on tcp:8080") is True
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving on tcp:8080"
    assert notifier.stopping() is True
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.status("two\nlines") is True
    assert sock.recv(4096) == b"STATUS=two lines"


def test_abstract_namespace_address() -> None:
    name = f"was-test-{uuid.uuid4()}"
    assert notify_address({"NOTIFY_SOCKET": "@" + name}) == "\0" + name
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready() is True
        assert sock.recv(4096) == b"READY=1"


def test_unset_or_empty_variable_is_a_no_op(logged: list[dict[str, Any]]) -> None:
    for environ in ({}, {"NOTIFY_SOCKET": ""}):
        notifier = Notifier(environ)
        assert not notifier.enabled
        assert notifier.ready("x") is False and notifier.stopping() is False
    assert sdnotify_warnings(logged) == []


def test_default_environment_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n"))
    assert Notifier().address == str(tmp_path / "n")
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert Notifier().address is None


def test_dead_socket_does_not_raise_and_logs_once(tmp_path: Path, logged: list[dict[str, Any]]) -> None:
    path = str(tmp_path / "gone")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.close()  # the file stays, nobody listens: ECONNREFUSED
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready() is False
    assert notifier.stopping() is False
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "never-existed")}).ready() is False
    warnings = sdnotify_warnings(logged)
    assert len(warnings) == 2  # one per notifier, not one per message
    assert warnings[0]["address"] == path
    os.unlink(path)


def test_full_receive_queue_does_not_block(receiver: tuple[socket.socket, str]) -> None:
    _, path = receiver
    notifier = Notifier({"NOTIFY_SOCKET": path})
    results = [notifier.status("x" * 4000) for _ in range(2000)]  # nobody reads: the queue fills
    assert results[0] is True and results[-1] is False


def test_notify_service_is_ready_after_earlier_children_and_stops_first(
    receiver: tuple[socket.socket, str],
) -> None:
    sock, path = receiver
    order: list[str] = []

    class Listener(Service):
        def startService(self) -> None:
            super().startService()
            order.append("listening")

        def stopService(self) -> None:
            order.append("closed:" + sock.recv(4096).decode())
            super().stopService()

    top = MultiService()
    Listener().setServiceParent(top)
    NotifyService("serving", Notifier({"NOTIFY_SOCKET": path})).setServiceParent(top)
    top.startService()
    assert order == ["listening"]
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving"
    top.stopService()
    # STOPPING=1 was already in the socket when the listener closed.
    assert order == ["listening", "closed:STOPPING=1\nSTATUS=was: shutting down"]
