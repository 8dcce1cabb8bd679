"""Conditional writes and Range end to end: real ``twistd -n was`` processes, racing over real HTTP.

On the filesystem and on S3 (moto's server and Ceph RGW 16): 20 concurrent
``If-None-Match: *`` PUTs and 20 ``If-Match`` updates from one ETag give
exactly one success, also when the writers go through two server processes
sharing one data directory or one bucket.  Ranges of a body larger than
the in-memory threshold stream from a seek (filesystem) or a ranged
GetObject (S3).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .conftest import BACKENDS, backend_env
from .processes import WasProcess

WRITERS = 20


def signed(signer: Ed25519Signer, method: str, path: str, **headers: str) -> dict[str, str]:
    return {"authorization": create_authorization_header(signer=signer, method=method, url=path), **headers}


def provision(url: str, signer: Ed25519Signer) -> str:
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller})
    r = httpx.put(url + path, content=body, headers=signed(signer, "PUT", path), timeout=30)
    assert r.status_code == 201, r.text
    return sid


@pytest.fixture(params=BACKENDS)
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[WasProcess]]:
    """Two ``twistd -n was`` processes on one data directory, or one bucket and prefix."""
    env = backend_env(request, request.param, tmp_path)
    servers = [WasProcess(env, tmp_path / f"twistd-{n}.log") for n in range(2)]
    try:
        for was in servers:
            was.start()
        yield servers
    finally:
        for was in servers:
            was.stop()


def race(urls: list[str], attempt: Callable[[str, int], httpx.Response]) -> list[int]:
    """``WRITERS`` attempts at once, spread over ``urls``; their statuses."""
    with ThreadPoolExecutor(WRITERS) as pool:
        return list(pool.map(lambda n: attempt(urls[n % len(urls)], n).status_code, range(WRITERS)))


def test_races_through_two_processes_give_one_success(pair: list[WasProcess]) -> None:
    """If-None-Match: * creates and If-Match updates from one ETag, through two processes: one 2xx each."""
    urls = [was.url for was in pair]
    alice = Ed25519Signer()
    sid = provision(urls[0], alice)
    path = f"/space/{sid}/race.txt"

    def create(url: str, n: int) -> httpx.Response:
        return httpx.put(
            url + path,
            content=b"creator %d" % n,
            headers=signed(alice, "PUT", path, **{"if-none-match": "*"}),
            timeout=60,
        )

    codes = race(urls, create)
    assert sorted(codes) == [204] + [412] * (WRITERS - 1), codes
    r = httpx.get(urls[1] + path, headers=signed(alice, "GET", path))
    assert r.content == b"creator %d" % codes.index(204)
    etag = r.headers["etag"]

    def update(url: str, n: int) -> httpx.Response:
        return httpx.put(
            url + path,
            content=b"updater %d" % n,
            headers=signed(alice, "PUT", path, **{"if-match": etag}),
            timeout=60,
        )

    codes = race(urls, update)
    assert sorted(codes) == [204] + [412] * (WRITERS - 1), codes
    r = httpx.get(urls[0] + path, headers=signed(alice, "GET", path))
    assert r.content == b"updater %d" % codes.index(204) and r.headers["etag"] != etag


def test_conditional_requests_and_ranges(server: WasProcess) -> None:
    """ETags on writes, 412 with nothing written, a space compare-and-swap, and ranges of a large body."""
    url = server.url
    alice, mallory = Ed25519Signer(), Ed25519Signer()
    sid = provision(url, alice)
    path = f"/space/{sid}/big.bin"
    data = bytes(range(256)) * 4096  # 1 MiB: past the in-memory threshold, so it streams
    r = httpx.put(url + path, content=data, headers=signed(alice, "PUT", path), timeout=60)
    assert r.status_code == 204
    etag = r.headers["etag"]
    r = httpx.put(
        url + path, content=b"x", headers=signed(alice, "PUT", path, **{"if-match": '"stale"'}), timeout=60
    )
    assert r.status_code == 412 and r.json()["type"].endswith("#precondition-failed")
    r = httpx.put(url + path, content=b"x", headers=signed(mallory, "PUT", path, **{"if-match": etag}))
    assert r.status_code == 404
    r = httpx.delete(url + path, headers=signed(alice, "DELETE", path, **{"if-match": '"stale"'}))
    assert r.status_code == 412

    r = httpx.get(url + path, headers=signed(alice, "GET", path, range="bytes=1000-600000"), timeout=60)
    assert r.status_code == 206 and r.content == data[1000:600001]
    assert r.headers["content-range"] == f"bytes 1000-600000/{len(data)}"
    assert r.headers["content-length"] == str(600001 - 1000)
    assert r.headers["etag"] == etag and r.headers["accept-ranges"] == "bytes"
    assert r.headers["last-modified"].endswith(" GMT")
    r = httpx.get(url + path, headers=signed(alice, "GET", path, range="bytes=-5"))
    assert r.status_code == 206 and r.content == data[-5:]
    r = httpx.get(url + path, headers=signed(alice, "GET", path, range=f"bytes={len(data)}-"))
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"
    r = httpx.get(url + path, headers=signed(mallory, "GET", path, range=f"bytes={len(data)}-"))
    assert r.status_code == 404
    r = httpx.get(
        url + path, headers=signed(alice, "GET", path, range="bytes=0-9", **{"if-range": '"old"'}), timeout=60
    )
    assert r.status_code == 200 and r.content == data
    r = httpx.head(url + path, headers=signed(alice, "HEAD", path))
    assert r.headers["content-length"] == str(len(data)) and r.headers["etag"] == etag

    r = httpx.delete(url + path, headers=signed(alice, "DELETE", path, **{"if-match": etag}))
    assert r.status_code == 204
    assert httpx.get(url + path, headers=signed(alice, "GET", path)).status_code == 404

    space = f"/space/{sid}"
    r = httpx.get(url + space, headers=signed(alice, "GET", space))
    v1 = r.headers["etag"]
    body = json.dumps({"id": sid, "controller": alice.controller, "name": "n"})
    r = httpx.put(url + space, content=body, headers=signed(alice, "PUT", space, **{"if-match": v1}))
    assert r.status_code == 204 and r.headers["etag"] != v1
    r = httpx.put(url + space, content=body, headers=signed(alice, "PUT", space, **{"if-match": v1}))
    assert r.status_code == 412
