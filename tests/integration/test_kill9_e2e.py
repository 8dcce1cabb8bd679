"""``kill -9`` of the real ``twistd -n was`` mid-upload, mid-delete and mid-create; then a restart, a sweep.

After each: no partial object is visible, the space reads 404 or whole, and
nothing is left behind (filesystem: no tombstone directory, no temp file, no
empty space directory; S3 on moto's server: no multipart upload, no pending
delete marker, no index entry of a space that is not there, no key of a
deleted space).  The sweep is the server's own start-up sweep (filesystem)
or ``was-admin sweep`` (S3), so both paths run.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .processes import REPO, WasProcess, _base_env
from .s3servers import S3Server

MIB = 1 << 20
PREFIX = "e2e/"


def signed(signer: Ed25519Signer, method: str, path: str) -> dict[str, str]:
    return {"authorization": create_authorization_header(signer=signer, method=method, url=path)}


def wait_for(what: Callable[[], Any], timeout: float = 15.0, step: float = 0.002) -> Any:
    """Poll ``what`` until it returns something true; its last value (fails the test on timeout)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Node:
    """One data directory or bucket, and the server processes started on it one after another."""

    def __init__(self, backend: str, tmp_path: Path, s3: S3Server | None = None) -> None:
        self.backend = backend
        self.tmp_path = tmp_path
        self.s3 = s3
        self.data = tmp_path / "data"
        self.signer = Ed25519Signer()
        if s3 is None:
            self.env = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(self.data)}
        else:
            self.bucket = s3.create_bucket()
            self.client = s3.client()
            self.env = {
                **s3.env(),
                "WAS_STORAGE_BACKEND": "s3",
                "WAS_STORAGE_BUCKET": self.bucket,
                "WAS_STORAGE_PREFIX": PREFIX,
                # No start-up sweep: here ``was-admin sweep`` does it, and the state before it is seen.
                "WAS_SWEEP_INTERVAL": "0",
            }
        # Temp files younger than a second are kept by the sweep (an upload may still be arriving).
        self.env["WAS_SWEEP_AGE"] = "1"
        self.was: WasProcess | None = None
        self.starts = 0

    def start(self) -> WasProcess:
        self.starts += 1
        self.was = WasProcess(self.env, self.tmp_path / f"twistd-{self.starts}.log").start()
        return self.was

    @property
    def url(self) -> str:
        assert self.was is not None
        return self.was.url

    def kill9(self) -> None:
        assert self.was is not None and self.was.proc is not None
        self.was.proc.send_signal(signal.SIGKILL)
        self.was.proc.wait(10)
        self.was.proc = None

    def stop(self) -> None:
        if self.was is not None:
            self.was.stop()

    def provision(self, space_id: str) -> None:
        path = f"/space/{space_id}"
        body = json.dumps({"id": space_id, "controller": self.signer.controller})
        r = httpx.put(self.url + path, content=body, headers=self.signed("PUT", path), timeout=10)
        assert r.status_code == 201, r.text

    def signed(self, method: str, path: str) -> dict[str, str]:
        return signed(self.signer, method, path)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.signed("GET", path), timeout=10)

    def admin_sweep(self) -> str:
        """``python -m was_twisted.admin sweep --age 0`` on this node's settings; its output."""
        done = subprocess.run(
            [sys.executable, "-m", "was_twisted.admin", "sweep", "--age", "0"],
            env={**_base_env(), **self.env, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    # -- what is left ----------------------------------------------------------------------

    def keys(self, prefix: str = PREFIX) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return sorted(out)

    def uploads(self) -> list[str]:
        return [u["Key"] for u in self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])]

    def leftovers(self) -> list[str]:
        """Whatever a crash may leave that nothing should: empty when clean."""
        if self.s3 is None:
            spaces = self.data / "spaces"
            found = [p for p in spaces.rglob("*") if p.name.startswith((".tmp-", ".deleting-"))]
            found += [p for p in spaces.iterdir() if p.is_dir() and not (p / "_meta.json").exists()]
            return sorted(str(p.relative_to(self.data)) for p in found)
        keys = self.keys()
        live = {k.split("/")[2] for k in keys if k.endswith("/_meta.json")}
        bad = [k for k in keys if k.startswith(f"{PREFIX}deleting/")]
        bad += [k for k in keys if k.startswith(f"{PREFIX}spaces/") and k.split("/")[2] not in live]
        bad += [
            k
            for k in keys
            if k.startswith(f"{PREFIX}controllers/") and k.count("/") == 3 and k.split("/")[3] not in live
        ]
        return sorted(bad + [f"upload:{k}" for k in self.uploads()])


@pytest.fixture(params=["filesystem", "s3-moto"])
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    s3 = request.getfixturevalue("moto_server") if request.param == "s3-moto" else None
    n = Node(request.param, tmp_path, s3)
    n.start()
    try:
        yield n
    finally:
        n.stop()


def restart_and_sweep(node: Node) -> None:
    """Start again; filesystem: wait for the start-up sweep to leave nothing; S3: ``was-admin sweep``."""
    if node.s3 is None:
        time.sleep(1.1)  # past WAS_SWEEP_AGE, so the temp files the kill left count as stale
    node.start()
    if node.s3 is None:
        wait_for(lambda: node.leftovers() == [], timeout=15, step=0.05)
    else:
        print(node.admin_sweep())
    assert node.leftovers() == []


def _slow_put(node: Node, path: str, total: int, send: int) -> socket.socket:
    """A signed PUT declaring ``total`` bytes, of which ``send`` are sent; the rest never comes."""
    parts = urlsplit(node.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=20)
    auth = node.signed("PUT", path)["authorization"]
    sock.sendall(
        (
            f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {total}\r\n\r\n"
        ).encode()
    )
    chunk = bytes(range(256)) * 4096
    for _ in range(send // MIB):
        sock.sendall(chunk)
    return sock


def test_kill9_during_a_large_upload(node: Node) -> None:
    """Killed with 20 MiB of 64 MiB sent (an S3 multipart upload under way): no object, no leftover."""
    sid = str(uuid.uuid4())
    node.provision(sid)
    path = f"/space/{sid}/big.bin"
    sock = _slow_put(node, path, 64 * MIB, 20 * MIB)
    try:
        if node.s3 is None:
            wait_for(lambda: list((node.data / "spaces" / sid / "resources").glob(".tmp-*")))
        else:
            wait_for(lambda: node.uploads(), step=0.05)
        node.kill9()
    finally:
        sock.close()
    assert node.leftovers() != []  # the kill did leave something for the sweep
    restart_and_sweep(node)
    assert node.get(path).status_code == 404
    assert node.get(f"/space/{sid}").status_code == 200  # the space itself is untouched


def _fill(node: Node, sid: str, count: int) -> None:
    """``count`` resources written straight into the layout (the API would take too long)."""
    if node.s3 is None:
        res = node.data / "spaces" / sid / "resources"
        res.mkdir(exist_ok=True)
        for n in range(count):
            (res / f"%2Fr{n}.data").write_bytes(b"x")
            (res / f"%2Fr{n}.meta").write_text('{"content_type": "text/plain"}')
        return
    root = f"{PREFIX}spaces/{sid}/resources/"
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda n: node.client.put_object(Bucket=node.bucket, Key=f"{root}%2Fr{n}", Body=b"x"),
                range(count),
            )
        )


def test_kill9_during_the_delete_of_a_large_space(node: Node) -> None:
    """Killed once the space is marked deleted, with most resources still stored: 404, then nothing left."""
    sid = str(uuid.uuid4())
    node.provision(sid)
    _fill(node, sid, 3000 if node.s3 is None else 600)
    assert node.get(f"/space/{sid}/r5").status_code == 200
    path = f"/space/{sid}"
    answered: list[int] = []

    def delete() -> None:
        try:
            answered.append(
                httpx.delete(node.url + path, headers=node.signed("DELETE", path), timeout=30).status_code
            )
        except httpx.HTTPError:
            answered.append(0)

    thread = threading.Thread(target=delete)
    thread.start()
    if node.s3 is None:
        wait_for(lambda: list((node.data / "spaces").glob(".deleting-*")), step=0.0005)
    else:
        meta = f"{PREFIX}spaces/{sid}/_meta.json"
        wait_for(lambda: meta not in node.keys(f"{PREFIX}spaces/{sid}/_"), step=0.002)
    node.kill9()
    thread.join(30)
    assert answered == [0]  # the kill came before the answer: mid-delete
    assert node.leftovers() != []  # resources of the deleted space are still stored
    # Before any sweep, a restarted server already answers 404: the delete is atomic to readers.
    node.start()
    assert node.get(path).status_code == 404
    assert node.get(f"/space/{sid}/r5").status_code == 404
    node.stop()
    restart_and_sweep(node)
    assert node.get(path).status_code == 404
    # Re-created, the space starts empty: nothing old comes back.
    node.provision(sid)
    assert node.get(f"/space/{sid}/r5").status_code == 404


def test_kill9_during_a_space_create(node: Node) -> None:
    """Killed right after a create is sent: the space is whole (201 stored) or absent, and nothing dangles."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": sid, "controller": node.signer.controller}).encode()
    parts = urlsplit(node.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    auth = node.signed("PUT", path)["authorization"]
    sock.sendall(
        (
            f"PUT {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    time.sleep(0.003)  # about when the request reaches storage
    node.kill9()
    sock.close()
    restart_and_sweep(node)
    r = node.get(path)
    assert r.status_code in (200, 404), r.text
    if r.status_code == 200:
        assert r.json()["controller"] == node.signer.controller
    # Either way the id is usable: a create (or an update of the whole space) succeeds.
    r = httpx.put(node.url + path, content=body, headers=node.signed("PUT", path), timeout=10)
    assert r.status_code in (201, 204)
    assert node.get(path).status_code == 200
