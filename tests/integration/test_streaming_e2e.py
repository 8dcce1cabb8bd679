"""Large uploads through the real ``twistd -n was``: streamed to storage, nothing kept when they fail.

Each server runs with ``TMPDIR`` pointing at an empty directory of its own,
so "nothing is spooled to /tmp" is checked by that directory staying empty.
On the filesystem, on moto's server and on Ceph RGW (which checks every
SigV4 signature); on S3, "no orphaned parts" is ``ListMultipartUploads``
being empty.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from was_twisted.auth.digest import multihash_digest_header

from .conftest import backend_env, s3_server_for
from .processes import WasProcess

BACKENDS = ["filesystem", "s3-moto", "s3-ceph"]
MIB = 1024 * 1024
BIG = bytes(range(256)) * (40 * 4096)  # 40 MiB: three parts on S3


class Server:
    """``twistd -n was`` on one backend, and what to inspect afterwards."""

    def __init__(self, request: pytest.FixtureRequest, backend: str, tmp_path: Path, **extra: str) -> None:
        self.backend = backend
        self.env = backend_env(request, backend, tmp_path)
        self.tmpdir = tmp_path / "tmp"
        self.tmpdir.mkdir()
        self.data = tmp_path / "data"
        self.s3 = s3_server_for(request, backend) if backend != "filesystem" else None
        self.was = WasProcess({**self.env, "TMPDIR": str(self.tmpdir), **extra}, tmp_path / "twistd.log")
        self.alice = Ed25519Signer()

    def start(self) -> Server:
        self.was.start()
        sid = str(uuid.uuid4())
        body = json.dumps({"id": f"urn:uuid:{sid}", "controller": self.alice.controller})
        r = httpx.put(self.url + f"/space/{sid}", content=body, headers=self.signed("PUT", f"/space/{sid}"))
        assert r.status_code == 201, r.text
        self.sid = sid
        return self

    @property
    def url(self) -> str:
        return self.was.url

    def signed(self, method: str, path: str) -> dict[str, str]:
        return {"authorization": create_authorization_header(signer=self.alice, method=method, url=path)}

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.signed("GET", path), timeout=60)

    def uploads(self) -> list[object]:
        """Multipart uploads in progress (S3), or temp files left in the data directory (filesystem)."""
        if self.s3 is None:
            return [p for p in self.data.rglob("*") if p.name.startswith(".tmp-")]
        client = self.s3.client()
        return list(client.list_multipart_uploads(Bucket=self.env["WAS_STORAGE_BUCKET"]).get("Uploads", []))

    def assert_nothing_left(self, path: str) -> None:
        assert self.get(path).status_code == 404
        assert self.uploads() == []
        assert list(self.tmpdir.iterdir()) == []


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    s = Server(request, request.param, tmp_path, WAS_MAX_UPLOAD_BYTES=str(64 * MIB)).start()
    try:
        yield s
    finally:
        s.was.stop()


def _chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _raw(server: Server, method: str, path: str, headers: dict[str, str]) -> socket.socket:
    """A connection with the request line and headers sent, and nothing of the body."""
    host, port = server.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=20)
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def _read_head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_put_streams_and_reads_back(server: Server, chunked: bool) -> None:
    """40 MiB, with a length or chunked, with its Digest: stored whole, nothing spooled, no part left."""
    path = f"/space/{server.sid}/big.bin"
    headers = {"content-type": "video/mp4", "digest": multihash_digest_header(BIG)}
    headers.update(server.signed("PUT", path))
    content = _chunks(BIG) if chunked else BIG
    r = httpx.put(server.url + path, content=content, headers=headers, timeout=60)
    assert r.status_code == 204, r.text
    got = server.get(path)
    assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
    assert got.content == BIG
    assert server.uploads() == [] and list(server.tmpdir.iterdir()) == []


def test_wrong_digest_keeps_nothing(server: Server) -> None:
    """The mismatch shows at the body's end, after parts went up: 400, and the upload is aborted."""
    path = f"/space/{server.sid}/bad.bin"
    headers = {"digest": multihash_digest_header(b"something else"), **server.signed("PUT", path)}
    r = httpx.put(server.url + path, content=BIG, headers=headers, timeout=60)
    assert r.status_code == 400 and "Digest" in r.json()["detail"], r.text
    server.assert_nothing_left(path)


def test_over_the_limit_is_413_and_keeps_nothing(server: Server) -> None:
    """A chunked body that grows past WAS_MAX_UPLOAD_BYTES (64 MiB here), and a declared one."""
    path = f"/space/{server.sid}/huge.bin"
    big = BIG + BIG  # 80 MiB
    with pytest.raises(httpx.TransportError):
        # The server answers 413 and closes once the limit is passed; the client may see either.
        r = httpx.put(server.url + path, content=_chunks(big), headers=server.signed("PUT", path), timeout=60)
        assert r.status_code == 413
        raise httpx.TransportError("answered 413")
    sock = _raw(server, "PUT", path, {"content-length": str(len(big)), **server.signed("PUT", path)})
    with sock:
        head = _read_head(sock)
    assert head.startswith(b"HTTP/1.1 413 "), head[:200]
    server.assert_nothing_left(path)


def test_client_gone_mid_body_keeps_nothing(server: Server) -> None:
    """Half a body, then the client goes away: no object, no parts, no temp file."""
    path = f"/space/{server.sid}/gone.bin"
    sock = _raw(server, "PUT", path, {"content-length": str(len(BIG)), **server.signed("PUT", path)})
    sock.sendall(BIG[: 20 * MIB])
    deadline = time.monotonic() + 20
    while not server.uploads() and time.monotonic() < deadline:
        time.sleep(0.05)  # until storage is writing it (a multipart upload, a temp file)
    assert server.uploads(), "the upload never started"
    sock.close()
    deadline = time.monotonic() + 20
    while server.uploads() and time.monotonic() < deadline:
        time.sleep(0.05)
    server.assert_nothing_left(path)


def test_expect_continue_refused_before_the_body(server: Server) -> None:
    """A bad signature with ``Expect: 100-continue``: the error comes without a 100, nothing is sent."""
    path = f"/space/{server.sid}/refused.bin"
    stranger = Ed25519Signer()
    auth = create_authorization_header(signer=stranger, method="PUT", url=path)
    headers = {"content-length": str(len(BIG)), "expect": "100-continue", "authorization": auth}
    with _raw(server, "PUT", path, headers) as sock:
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 404 "), head[:200]
        assert b"100 Continue" not in head
    server.assert_nothing_left(path)


def test_expect_continue_accepted_then_sent(server: Server) -> None:
    """A good signature: 100 Continue once storage is ready, then the body, then 204; the connection stays."""
    path = f"/space/{server.sid}/accepted.bin"
    data = BIG[: 2 * MIB]
    headers = {"content-length": str(len(data)), "expect": "100-continue", **server.signed("PUT", path)}
    with _raw(server, "PUT", path, headers) as sock:
        assert _read_head(sock) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(data)
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 204 "), head[:200]
    assert server.get(path).content == data


def test_refused_without_expect_drains_and_keeps_the_connection(server: Server) -> None:
    """No ``Expect``: a refused body is read and dropped, and the connection serves the next request."""
    path = f"/space/{server.sid}/refused.bin"
    stranger = Ed25519Signer()
    with httpx.Client(timeout=30) as client:
        auth = create_authorization_header(signer=stranger, method="PUT", url=path)
        r = client.put(server.url + path, content=BIG[: 4 * MIB], headers={"authorization": auth})
        assert r.status_code == 404
        r = client.get(server.url + "/health")
        assert r.status_code == 200
    server.assert_nothing_left(path)


def test_no_temp_file_in_tmpdir_for_small_bodies_either(server: Server) -> None:
    """A 200 kB body (under the streaming threshold) is read in memory by Twisted, as before."""
    path = f"/space/{server.sid}/small.bin"
    data = os.urandom(200 * 1024)
    r = httpx.put(server.url + path, content=data, headers=server.signed("PUT", path), timeout=30)
    assert r.status_code == 204
    assert server.get(path).content == data


def test_chunked_json_bodies_still_reach_their_routes(server: Server) -> None:
    """A chunked body streams; routes that read JSON read it whole (bounded) on the reactor."""
    sid = str(uuid.uuid4())
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": server.alice.controller}).encode()
    r = httpx.put(
        server.url + f"/space/{sid}", content=_chunks(body, 7), headers=server.signed("PUT", f"/space/{sid}")
    )
    assert r.status_code == 201, r.text
    policy = f"/space/{sid}/policy"
    public = b'{"type": "PublicCanRead"}'
    r = httpx.put(server.url + policy, content=_chunks(public, 5), headers=server.signed("PUT", policy))
    assert r.status_code == 204, r.text
    big = _chunks(b"x" * (2 * MIB))
    r = httpx.put(server.url + policy, content=big, headers=server.signed("PUT", policy), timeout=30)
    assert r.status_code in (400, 413), r.text
