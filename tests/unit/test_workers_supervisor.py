"""The parent's bookkeeping on a fake clock: restart back-off, readiness, shutdown and the kill."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from was_twisted import workers
from was_twisted.inherited import InheritedParser
from was_twisted.workers import Supervisor


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[int] = []

    def signalProcess(self, number: int) -> None:
        self.signals.append(number)


class FakePort:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False

    def fileno(self) -> int:
        return self.fd

    def stopListening(self) -> None:
        self.stopped = True


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict[str, str], dict[int, Any], FakeProcess]] = []
        self.notify: dict[str, Any] = {}

    def spawnProcess(
        self, protocol: Any, executable: str, args: list[str], env: dict[str, str], childFDs: dict[int, Any]
    ) -> FakeProcess:  # noqa: N803, E501
        process = FakeProcess(1000 + len(self.spawned))
        self.spawned.append((protocol, args, env, childFDs, process))
        return process

    def listenUNIXDatagram(self, address: str, protocol: Any) -> FakePort:  # noqa: N802
        self.notify[address] = protocol
        return FakePort(-1)


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []

    def ready(self, status: str = "") -> bool:
        self.sent.append(f"READY {status}")
        return True

    def stopping(self, status: str = "") -> bool:
        self.sent.append("STOPPING")
        return True


@pytest.fixture
def parent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Supervisor, FakeReactor, FakeNotifier]:
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path))
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("LISTEN_FDS", "1")
    reactor, notifier = FakeReactor(), FakeNotifier()
    supervisor = Supervisor(
        reactor,
        2,
        [FakePort(7)],
        lambda i: ["python", f"worker-{i}"],
        5,
        "was: 2 workers",
        notifier,  # type: ignore[arg-type]
    )
    supervisor.startService()
    return supervisor, reactor, notifier


def _end(reactor: FakeReactor, spawn: int, failure: Failure) -> None:
    reactor.spawned[spawn][0].processEnded(failure)


def _ready(reactor: FakeReactor, supervisor: Supervisor, index: int) -> None:
    reactor.notify[supervisor.workers[index].notify_name].datagramReceived(b"READY=1\nSTATUS=x", None)


def test_children_get_the_socket_and_never_systemds_variables(parent: Any) -> None:
    supervisor, reactor, _ = parent
    assert len(reactor.spawned) == 2
    _, args, env, fds, _ = reactor.spawned[1]
    assert args == ["python", "worker-1"]
    assert fds[3] == 7 and fds[1] == 1 and fds[2] == 2
    assert env["NOTIFY_SOCKET"] == supervisor.workers[1].notify_name
    assert os.stat(supervisor.notify_dir).st_mode & 0o777 == 0o700
    assert os.path.dirname(supervisor.notify_dir) == os.environ["RUNTIME_DIRECTORY"]
    assert "LISTEN_FDS" not in env and env["WAS_WORKERS"] == "1"
    assert env["WAS_WORKER_INDEX"] == "1"  # only worker 0 runs the sweeper


def test_ready_once_every_child_serves(parent: Any) -> None:
    supervisor, reactor, notifier = parent
    _ready(reactor, supervisor, 0)
    _ready(reactor, supervisor, 0)
    assert notifier.sent == []
    _ready(reactor, supervisor, 1)
    assert notifier.sent == ["READY was: 2 workers"]


def test_restart_backs_off_while_a_child_keeps_dying_young(parent: Any) -> None:
    supervisor, reactor, _ = parent
    delays = []
    for _ in range(9):
        reactor.advance(1)  # dies 1 s after it started: young
        spawned = len(reactor.spawned)
        _end(reactor, spawned - 2 if len(delays) == 0 else spawned - 1, Failure(ProcessTerminated(1)))
        delays.append(supervisor.workers[0].restart.getTime() - reactor.seconds())
        reactor.advance(delays[-1])
        assert len(reactor.spawned) == spawned + 1
    assert delays == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    reactor.advance(workers.STABLE)  # this one lived long enough: restarted at once
    _end(reactor, len(reactor.spawned) - 1, Failure(ProcessTerminated(signal=signal.SIGKILL)))
    assert supervisor.workers[0].restart.getTime() == reactor.seconds()


def test_sigterm_reaches_every_child_and_the_rest_is_killed_after_the_grace(parent: Any) -> None:
    supervisor, reactor, notifier = parent
    done = supervisor.stopService()
    assert notifier.sent == ["STOPPING"]
    assert [s[4].signals for s in reactor.spawned] == [[signal.SIGTERM], [signal.SIGTERM]]
    _end(reactor, 0, Failure(ProcessDone(0)))
    assert not done.called and reactor.spawned[0][4].signals == [signal.SIGTERM]
    reactor.advance(5 + workers.MARGIN)
    assert reactor.spawned[1][4].signals == [signal.SIGTERM, signal.SIGKILL]
    _end(reactor, 1, Failure(ProcessTerminated(signal=signal.SIGKILL)))
    assert done.called and len(reactor.spawned) == 2  # nothing restarted while stopping
    assert not os.path.exists(supervisor.notify_dir)


def test_inherited_endpoint_domain() -> None:
    endpoint = InheritedParser()._parse(Clock(), "4", "INET6")
    assert endpoint.fd == 4 and endpoint.family.name == "AF_INET6"
    with pytest.raises(ValueError):
        InheritedParser()._parse(Clock(), "4", "UNIX")
