"""kill -9 of the real server in the middle of concurrent writes on the filesystem backend.

Group commit changes when writes are flushed and answered, not what a reader
can see: after a SIGKILL every visible file is whole, and every write that
was answered 2xx is there with its bytes, after a restart too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from tests.integration.processes import WasProcess

WRITERS = 8
BODY_SIZE = 96 * 1024


def _body(path: str) -> bytes:
    """A body only this path has, so a partial or misplaced file shows."""
    seed = hashlib.sha256(path.encode()).digest()
    return (seed * (BODY_SIZE // len(seed) + 1))[:BODY_SIZE]


def _request(
    url: str, signer: Ed25519Signer, method: str, path: str, body: bytes = b"", ctype: str = ""
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    headers = {"Authorization": create_authorization_header(signer=signer, method=method, url=path)}
    if ctype:
        headers["Content-Type"] = ctype
    try:
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_kill_9_mid_writes_leaves_every_file_whole_and_every_acknowledged_write(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(data), "WAS_ACCESS_LOG": "off"}
    signer = Ed25519Signer()
    sid = str(uuid.uuid4())
    server = WasProcess(env, tmp_path / "was.log").start()
    acknowledged: list[str] = []
    stop = threading.Event()
    try:
        doc = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller}).encode()
        status, _ = _request(server.url, signer, "PUT", f"/space/{sid}", doc, "application/json")
        assert status in (201, 204)

        def writer(n: int) -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                path = f"/space/{sid}/k/{n}-{i % 7}"  # overwrites as well as creations
                try:
                    status, _ = _request(server.url, signer, "PUT", path, _body(path), "text/plain")
                except OSError:
                    return  # the server is gone
                if 200 <= status < 300:
                    acknowledged.append(path)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.proc is not None
        server.proc.kill()  # SIGKILL, writes in flight
        server.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(15)
    finally:
        stop.set()
        server.stop()
    assert len(acknowledged) >= 40
    resources = data / "spaces" / sid / "resources"
    for f in resources.iterdir():
        if f.name.startswith("."):
            continue  # a temp file of a write in flight: never served, never listed
        if f.name.endswith(".data"):
            assert f.read_bytes() == _body(f"/space/{sid}{unquote(f.name.removesuffix('.data'))}")
        else:
            assert json.loads(f.read_text()) == {"content_type": "text/plain"}
    for path in set(acknowledged):
        stored = resources / (quote(path[len(f"/space/{sid}") :], safe="") + ".data")
        assert stored.read_bytes() == _body(path)
    # And the restarted server serves them.
    with WasProcess(env, tmp_path / "was2.log") as again:
        for path in sorted(set(acknowledged))[:10]:
            status, body = _request(again.url, signer, "GET", path)
            assert status == 200 and body == _body(path)
