"""Graceful shutdown of the real ``twistd -n was``: SIGTERM lets a slow upload finish, within the grace.

A raw socket plays a slow client: it sends a signed PUT's headers and half
its body, the server gets SIGTERM, and only then does the rest arrive.
Within ``WAS_SHUTDOWN_GRACE`` the write is answered (204) and survives a
restart; past it the connection is dropped unanswered and nothing is
stored.  Either way the process exits 0 and stops accepting at once.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .conftest import backend_env
from .processes import WasProcess

BODY = bytes(range(256)) * 4096  # 1 MiB
#: Three S3 parts; all but the last MiB is sent before SIGTERM, so a multipart upload is under way.
BIG = bytes(range(256)) * 4096 * 24
HELD = 1 << 20


def _provision(url: str, signer: Ed25519Signer, space_id: str) -> None:
    path = f"/space/{space_id}"
    body = json.dumps({"id": space_id, "controller": signer.controller}).encode()
    headers = {
        "authorization": create_authorization_header(signer=signer, method="PUT", url=path),
        "content-type": "application/json",
    }
    r = httpx.put(url + path, content=body, headers=headers, timeout=10)
    assert r.status_code == 201, r.text


def _start_slow_put(
    url: str, signer: Ed25519Signer, path: str, body: bytes = BODY, held: int | None = None
) -> socket.socket:
    """A signed PUT of ``body``, all sent but its last ``held`` bytes (default: half of it)."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    auth = create_authorization_header(signer=signer, method="PUT", url=path)
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[: len(body) - (len(body) // 2 if held is None else held)])
    return sock


def _read_response(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (b"" when it sent nothing)."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _refuses_connections(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except OSError:
        return True
    return False


def _wait_exit(was: WasProcess, timeout: float) -> int:
    assert was.proc is not None
    code = was.proc.wait(timeout)
    was.proc = None
    return code


def test_sigterm_lets_an_upload_in_flight_finish_and_exits_zero(tmp_path: Path) -> None:
    env = {
        "WAS_STORAGE_BACKEND": "filesystem",
        "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"),
        "WAS_SHUTDOWN_GRACE": "20",
    }
    signer = Ed25519Signer()
    space_id = "shutdown-finish"
    path = f"/space/{space_id}/slow.bin"
    was = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        _provision(was.url, signer, space_id)
        sock = _start_slow_put(was.url, signer, path)
        time.sleep(0.3)
        assert was.proc is not None
        was.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert was.proc.poll() is None, "exited with a request in flight"
        assert _refuses_connections(was.url), "still accepting after SIGTERM"
        sock.sendall(BODY[len(BODY) // 2 :])
        response = _read_response(sock)
        sock.close()
        assert response.startswith(b"HTTP/1.1 204"), response[:200]
        assert b"connection: close" in response.lower()
        assert _wait_exit(was, 20) == 0
    finally:
        was.stop()
    log = (tmp_path / "twistd.log").read_text()
    assert "draining 1 request(s) in flight" in log

    with WasProcess(env, tmp_path / "twistd2.log") as again:
        headers = {"authorization": create_authorization_header(signer=signer, method="GET", url=path)}
        r = httpx.get(again.url + path, headers=headers, timeout=10)
        assert r.status_code == 200 and r.content == BODY


def test_sigterm_aborts_what_is_still_in_flight_after_the_grace(tmp_path: Path) -> None:
    env = {
        "WAS_STORAGE_BACKEND": "filesystem",
        "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"),
        "WAS_SHUTDOWN_GRACE": "1",
    }
    signer = Ed25519Signer()
    space_id = "shutdown-abort"
    path = f"/space/{space_id}/never.bin"
    was = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        _provision(was.url, signer, space_id)
        sock = _start_slow_put(was.url, signer, path)
        time.sleep(0.3)
        assert was.proc is not None
        started = time.monotonic()
        was.proc.send_signal(signal.SIGTERM)
        response = _read_response(sock)  # the rest of the body never comes
        sock.close()
        assert response == b"", response[:200]
        assert _wait_exit(was, 20) == 0
        assert 0.8 < time.monotonic() - started < 10
    finally:
        was.stop()
    assert "aborted 1 request(s) in flight" in (tmp_path / "twistd.log").read_text()

    with WasProcess(env, tmp_path / "twistd2.log") as again:
        headers = {"authorization": create_authorization_header(signer=signer, method="GET", url=path)}
        r = httpx.get(again.url + path, headers=headers, timeout=10)
        assert r.status_code == 404
    leftovers = [p.name for p in (tmp_path / "data").rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []


def test_sigterm_when_idle_exits_zero_at_once(tmp_path: Path) -> None:
    env = {"WAS_STORAGE_BACKEND": "memory", "WAS_SHUTDOWN_GRACE": "20"}
    was = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        assert httpx.get(was.url + "/health", timeout=10).status_code == 200
        assert was.proc is not None
        started = time.monotonic()
        was.proc.send_signal(signal.SIGTERM)
        assert _wait_exit(was, 20) == 0
        assert time.monotonic() - started < 5
    finally:
        was.stop()


@pytest.mark.parametrize("grace", [20, 1])
def test_sigterm_during_a_multipart_upload_to_s3(
    request: pytest.FixtureRequest, tmp_path: Path, grace: int
) -> None:
    """Within the grace a 24 MiB upload streaming to moto completes; past it, no part is left behind."""
    env = {**backend_env(request, "s3-moto", tmp_path), "WAS_SHUTDOWN_GRACE": str(grace)}
    s3 = request.getfixturevalue("moto_server")
    bucket = env["WAS_STORAGE_BUCKET"]
    signer = Ed25519Signer()
    space_id = f"shutdown-s3-{grace}"
    path = f"/space/{space_id}/big.bin"
    was = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        _provision(was.url, signer, space_id)
        sock = _start_slow_put(was.url, signer, path, BIG, HELD)
        deadline = time.monotonic() + 20
        while not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads"):
            assert time.monotonic() < deadline, "no multipart upload started"
            time.sleep(0.1)
        assert was.proc is not None
        was.proc.send_signal(signal.SIGTERM)
        if grace > 1:
            time.sleep(0.5)
            sock.sendall(BIG[len(BIG) - HELD :])
        response = _read_response(sock)
        sock.close()
        assert _wait_exit(was, 30) == 0
    finally:
        was.stop()
    assert s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    key = f"e2e/spaces/{space_id}/resources/%2Fbig.bin"
    stored = s3.client().list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0)
    if grace > 1:
        assert response.startswith(b"HTTP/1.1 204"), response[:200]
        assert stored == 1
        assert s3.client().get_object(Bucket=bucket, Key=key)["Body"].read() == BIG
    else:
        assert response == b"", response[:200]
        assert stored == 0
