"""``--workers 2`` for real: one parent, two ``twistd was`` children on moto's S3 server.

Which child answers is made certain by freezing the other one (SIGSTOP):
a stopped child cannot accept, so the request is answered by the running
one, and with both frozen nobody answers (the parent never accepts).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import backend_env
from .processes import REPO, TWISTD, WasProcess, _base_env, run_twistd

pytestmark = pytest.mark.integration

_WORKER = re.compile(r"worker (\d+) \(pid (\d+)\) is serving")


def _wait_log(path: Path, pattern: str, start: int = 0, timeout: float = 30.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.compile(pattern).search(path.read_text(errors="replace"), start)
        if match:
            return match
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged in {timeout} s:\n{path.read_text(errors='replace')}")


def _serving(path: Path) -> dict[int, int]:
    """Worker index -> pid of the child now serving it, from the parent's log (latest wins)."""
    return {int(i): int(pid) for i, pid in _WORKER.findall(path.read_text(errors="replace"))}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _health(url: str, timeout: float = 5.0) -> int:
    return httpx.get(url + "/health", timeout=timeout, headers={"connection": "close"}).status_code


def _answered_only_by(url: str, running: int, frozen: int) -> None:
    """With ``frozen`` stopped, ``running`` takes every connection on the shared port."""
    os.kill(frozen, signal.SIGSTOP)
    try:
        for _ in range(5):
            assert _health(url) == 200
    finally:
        os.kill(frozen, signal.SIGCONT)
    assert _alive(running)


@pytest.fixture
def workers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[WasProcess, Path]]:
    env = {**backend_env(request, "s3-moto", tmp_path), "WAS_WORKERS": "2", "WAS_SHUTDOWN_GRACE": "3"}
    log = tmp_path / "twistd.log"
    was = WasProcess(env, log).start()
    try:
        _wait_log(log, r"all 2 workers are serving")
        yield was, log
    finally:
        was.stop()


def test_two_workers_serve_one_port_and_both_answer(workers: tuple[WasProcess, Path]) -> None:
    was, log = workers
    pids = _serving(log)
    assert sorted(pids) == [0, 1] and len(set(pids.values())) == 2
    assert was.proc is not None and was.proc.pid not in pids.values()
    _answered_only_by(was.url, pids[0], frozen=pids[1])
    _answered_only_by(was.url, pids[1], frozen=pids[0])
    # Both frozen: the parent holds the socket but never accepts, so nothing answers...
    for pid in pids.values():
        os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(httpx.TimeoutException):
            httpx.get(was.url + "/health", timeout=1.0)
    finally:
        for pid in pids.values():
            os.kill(pid, signal.SIGCONT)
    # ... and the connection that waited in the backlog meanwhile is not lost either.
    assert _health(was.url) == 200
    text = log.read_text()
    assert text.count("WASSite starting on") == 2, text


def test_a_killed_worker_is_restarted_and_requests_keep_working(workers: tuple[WasProcess, Path]) -> None:
    was, log = workers
    pids = _serving(log)
    victim, survivor = pids[0], pids[1]
    os.kill(victim, signal.SIGKILL)
    for _ in range(10):
        assert _health(was.url) == 200
    _wait_log(log, rf"worker 0 \(pid {victim}\) was killed by SIGKILL after [\d.]+ s; restarting it")
    deadline = time.monotonic() + 30
    while _serving(log)[0] == victim:
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)
    replacement = _serving(log)[0]
    assert not _alive(victim) and _alive(replacement)
    _answered_only_by(was.url, replacement, frozen=survivor)


def test_sigterm_stops_every_worker_and_the_parent_exits_zero(workers: tuple[WasProcess, Path]) -> None:
    was, log = workers
    serving = _serving(log)
    pids = list(serving.values())
    assert _health(was.url) == 200
    assert was.proc is not None
    started = time.monotonic()
    was.proc.send_signal(signal.SIGTERM)
    code = was.proc.wait(20)
    was.proc = None
    assert code == 0, log.read_text()
    assert time.monotonic() - started < 3 + 3  # idle: well within the grace + margin
    assert [pid for pid in pids if _alive(pid)] == []
    text = log.read_text()
    for index, pid in serving.items():
        assert f"worker {index} (pid {pid}) exited with status 0" in text, text
    assert "restarting" not in text


@pytest.mark.parametrize("backend", ["filesystem", "memory"])
def test_workers_are_refused_without_s3(tmp_path: Path, backend: str) -> None:
    env = {"WAS_STORAGE_BACKEND": backend, "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"), "WAS_WORKERS": "2"}
    result = run_twistd(env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert (
        f"was: --workers 2 needs WAS_STORAGE_BACKEND=s3: the {backend} backend keeps its state in one "
        "process, so it runs with one worker only." in output
    ), output
    assert "Traceback" not in output


def test_notify_and_socket_activation_through_the_parent(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """systemd's socket goes to the parent, then to the children; systemd hears the parent only."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="was-sd-") as tmp:
        notify_path = str(Path(tmp) / "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        notify.settimeout(30)
        env = {
            **_base_env(),
            **backend_env(request, "s3-moto", tmp_path),
            "PYTHONPATH": str(REPO),
            "WAS_WORKERS": "2",
            "NOTIFY_SOCKET": notify_path,
            "LISTEN_FDS": "1",
            "LISTEN_FDNAMES": "was.socket",
        }
        wrapper = 'export LISTEN_PID=$$; exec "$@" 3<&0 0</dev/null'
        command = [TWISTD, "-n", "--pidfile=", "was", "--listen", "systemd:domain=INET:index=0"]
        log_path = tmp_path / "activated.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                ["sh", "-c", wrapper, "sh", *command],
                env=env,
                stdin=listener.fileno(),
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(tmp_path),
            )
        listener.close()
        try:
            ready = notify.recv(4096)
            assert ready == b"READY=1\nSTATUS=was: 2 workers serving on systemd:domain=INET:index=0"
            assert "all 2 workers are serving" in log_path.read_text()
            assert _health(f"http://127.0.0.1:{port}") == 200
            proc.send_signal(signal.SIGTERM)
            assert notify.recv(4096).startswith(b"STOPPING=1\n")
            assert proc.wait(20) == 0
            notify.settimeout(0.5)
            with pytest.raises(TimeoutError):  # the children never spoke to systemd
                notify.recv(4096)
        finally:
            notify.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_json_logs_per_worker_metrics_and_orphans_stop(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Workers log as the parent does, each serves its own /metrics, and they stop if the parent dies."""
    env = {**_base_env(), **backend_env(request, "s3-moto", tmp_path), "PYTHONPATH": str(REPO)}
    env["RUNTIME_DIRECTORY"] = str(tmp_path)  # the notify sockets' directory: left behind by a SIGKILL
    command = [TWISTD, "-n", "--pidfile=", "--logger=was_twisted.logs.json_lines", "was", "--workers", "2"]
    command += ["--listen", "tcp:0:interface=127.0.0.1", "--metrics", "tcp:0:interface=127.0.0.1"]
    log_path = tmp_path / "json.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path))
    try:
        _wait_log(log_path, r"all 2 workers are serving")
        text = log_path.read_text()
        assert all(line.startswith("{") for line in text.splitlines()), text
        port = int(re.search(r"WASSite starting on (\d+)", text).group(1))  # type: ignore[union-attr]
        metrics_ports = [int(p) for p in re.findall(r"MetricsSite starting on (\d+)", text)]
        assert len(set(metrics_ports)) == 2, text
        for _ in range(6):
            assert _health(f"http://127.0.0.1:{port}") == 200
        counts = []
        for metrics_port in metrics_ports:
            body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            counts.append(
                sum(
                    float(line.rsplit(" ", 1)[1])
                    for line in body.splitlines()
                    if line.startswith("was_http_requests_total{") and 'route="/health"' in line
                )
            )
        assert sum(counts) == 6, counts
        pids = list(_serving(log_path).values())
        proc.kill()  # no SIGTERM to pass on: the workers must notice on their own
        proc.wait(10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in pids):
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        assert log_path.read_text().count("the parent process") == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
