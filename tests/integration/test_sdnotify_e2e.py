"""The real ``twistd -n was`` under systemd's two protocols, played by the test.

``sd_notify``: the test owns the ``NOTIFY_SOCKET`` datagram socket, and the
port must accept connections the moment ``READY=1`` arrives.  Socket
activation: the test binds the listening socket and hands it over as fd 3
with ``LISTEN_FDS``/``LISTEN_FDNAMES``, as systemd does.  ``LISTEN_PID``
must be twistd's own pid, which is known only in the child: a shell sets
it to ``$$`` and then ``exec``s twistd (same pid), moving the socket from
its stdin to fd 3 on the way.
"""

from __future__ import annotations

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

from .processes import REPO, TWISTD, _base_env

pytestmark = pytest.mark.integration

_STARTED = re.compile(rb"WASSite starting on (\d+)")


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """systemd's notify socket, played by the test (a short path: AF_UNIX allows 107 bytes)."""
    with tempfile.TemporaryDirectory(prefix="was-sd-") as tmp:
        path = str(Path(tmp) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(30)
        try:
            yield sock, path
        finally:
            sock.close()


def env_for(tmp_path: Path, notify_path: str, **extra: str) -> dict[str, str]:
    return {
        **_base_env(),
        "PYTHONPATH": str(REPO),
        "WAS_STORAGE_BACKEND": "filesystem",
        "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"),
        "NOTIFY_SOCKET": notify_path,
        **extra,
    }


#: A SIGTERM shutdown that drained cleanly exits 0 (twistd would re-raise the signal; drain.py forgets it).
CLEAN_EXIT = 0


def stop(proc: subprocess.Popen[bytes], sock: socket.socket | None, log_path: Path) -> bytes:
    """SIGTERM: the next notification; asserts a clean shutdown."""
    proc.send_signal(signal.SIGTERM)
    message = sock.recv(4096) if sock is not None else b""
    code = proc.wait(15)
    log = log_path.read_text(errors="replace")
    assert code == CLEAN_EXIT and "Server Shut Down." in log, (code, log)
    return message


def test_ready_only_once_listening_and_stopping_on_sigterm(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    log_path = tmp_path / "twistd.log"
    listen = "tcp:0:interface=127.0.0.1"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "was", "--listen", listen],
            env=env_for(tmp_path, path),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
        )
    try:
        ready = sock.recv(4096)
        assert ready == f"READY=1\nSTATUS=was: serving on {listen}".encode()
        # The bind was logged before READY=1, and the port answers right away.
        match = _STARTED.search(log_path.read_bytes())
        assert match, log_path.read_text(errors="replace")
        url = f"http://127.0.0.1:{int(match.group(1))}"
        assert httpx.get(url + "/health", timeout=5).json() == {"status": "ok"}
        assert httpx.get(url + "/ready", timeout=5).status_code == 200
        assert stop(proc, sock, log_path) == b"STOPPING=1\nSTATUS=was: shutting down"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_no_notify_socket_starts_normally(tmp_path: Path) -> None:
    """Outside systemd nothing is sent and nothing is logged about it."""
    env = env_for(tmp_path, "")
    del env["NOTIFY_SOCKET"]
    log_path = tmp_path / "plain.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [TWISTD, "-n", "--pidfile=", "was", "--listen", "tcp:0:interface=127.0.0.1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(tmp_path),
        )
    try:
        deadline = time.monotonic() + 30
        while not _STARTED.search(log_path.read_bytes()):
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)
        stop(proc, None, log_path)
        assert "sd_notify" not in log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("family", "host", "domain"),
    [(socket.AF_INET, "127.0.0.1", "INET"), (socket.AF_INET6, "::1", "INET6")],
    ids=["INET", "INET6"],
)
def test_socket_activation_adopts_the_inherited_socket(
    tmp_path: Path,
    notify_socket: tuple[socket.socket, str],
    family: socket.AddressFamily,
    host: str,
    domain: str,
) -> None:
    sock, path = notify_socket
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((host, 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    # systemd always names the fds; Twisted ignores LISTEN_FDS unless there are as many names.
    env = env_for(tmp_path, path, LISTEN_FDS="1", LISTEN_FDNAMES="was.socket")
    wrapper = 'export LISTEN_PID=$$; exec "$@" 3<&0 0</dev/null'
    command = [TWISTD, "-n", "--pidfile=", "was", "--listen", f"systemd:domain={domain}:index=0"]
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
    listener.close()  # twistd holds the only copy now: only it can answer
    try:
        assert sock.recv(4096).startswith(b"READY=1\n"), log_path.read_text(errors="replace")
        url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
        assert httpx.get(url + "/health", timeout=5).json() == {"status": "ok"}
        assert stop(proc, sock, log_path).startswith(b"STOPPING=1\n")
        # The right domain: the access log names the real client address.
        text = log_path.read_text(errors="replace")
        assert f'"{host}" - - ' in text and '"GET /health HTTP/1.1" 200' in text, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
