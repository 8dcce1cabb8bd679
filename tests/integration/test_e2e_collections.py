"""Collections end to end: the real ``twistd -n was``, requests signed as the Python client signs them.

On the filesystem and on S3 over HTTP (moto's server, Ceph RGW): create,
list, describe, write into, take metadata of, and delete a collection; and
strict mode switched on over data written without it, after the operator's
``python -m was_twisted.admin adopt-collections``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, StorageClient, create_authorization_header

from .conftest import BACKENDS, backend_env
from .processes import REPO, WasProcess


def signed(signer: Ed25519Signer, method: str, path: str, **extra: str) -> dict[str, str]:
    return {"authorization": create_authorization_header(signer=signer, method=method, url=path), **extra}


def provision(url: str, signer: Ed25519Signer) -> str:
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller})
    r = httpx.put(url + path, content=body, headers=signed(signer, "PUT", path))
    assert r.status_code == 201, r.text
    return sid


@pytest.fixture(params=BACKENDS)
def collections_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WasProcess]:
    was = WasProcess(backend_env(request, request.param, tmp_path), tmp_path / "twistd.log").start()
    try:
        yield was
    finally:
        was.stop()


def test_collection_lifecycle(collections_server: WasProcess) -> None:
    """Create, list, describe, fill, take metadata of, delete a collection; the client's writes work."""
    url = collections_server.url
    alice, mallory = Ed25519Signer(), Ed25519Signer()
    sid = provision(url, alice)
    base = f"/space/{sid}"
    with httpx.Client(base_url=url, timeout=30) as http:
        r = http.post(
            f"{base}/collections/",
            content=json.dumps({"id": "credentials", "name": "VCs"}),
            headers=signed(alice, "POST", f"{base}/collections/", **{"content-type": "application/json"}),
        )
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"{url}{base}/credentials"
        r = http.post(
            f"{base}/collections/",
            content=json.dumps({"id": "credentials"}),
            headers=signed(alice, "POST", f"{base}/collections/", **{"content-type": "application/json"}),
        )
        assert r.status_code == 409 and r.json()["type"].endswith("#id-conflict")

        with StorageClient(url) as client:
            space = client.space(f"urn:uuid:{sid}", signer=alice)
            for name in ("vc1.json", "vc2.json", "nested/vc3.json"):
                r = space.resource(f"/credentials/{name}").put(b'{"vc": 1}', "application/json")
                assert r.status_code == 204, r.text
            assert space.resource("/greeting.txt").put(b"hi", "text/plain").status_code == 204
            assert space.resource("/other/keep.txt").put(b"k", "text/plain").status_code == 204

        r = http.get(f"{base}/collections/", headers=signed(alice, "GET", f"{base}/collections/"))
        assert r.json() == {
            "url": f"{base}/collections/",
            "totalItems": 1,
            "items": [{"id": "credentials", "url": f"{base}/credentials", "name": "VCs"}],
        }
        r = http.get(f"{base}/credentials", headers=signed(alice, "GET", f"{base}/credentials"))
        assert r.status_code == 200 and r.json()["backend"] == {"id": "default"} and r.headers["etag"]
        r = http.get(f"{base}/credentials/", headers=signed(alice, "GET", f"{base}/credentials/"))
        listing = r.json()
        assert listing["name"] == "VCs" and listing["url"] == f"{base}/credentials"
        assert [i["id"] for i in listing["items"]] == ["nested/vc3.json", "vc1.json", "vc2.json"]

        meta = f"{base}/credentials/meta"
        body = json.dumps({"custom": {"name": "Mine", "tags": {"k": "v"}}})
        json_ct = {"content-type": "application/json"}
        r = http.put(
            meta, content=body, headers=signed(alice, "PUT", meta, **json_ct, **{"if-none-match": "*"})
        )
        assert r.status_code == 204 and r.headers["etag"]
        etag = r.headers["etag"]
        r = http.put(
            meta, content=body, headers=signed(alice, "PUT", meta, **json_ct, **{"if-none-match": "*"})
        )
        assert r.status_code == 412
        r = http.put(
            meta, content=body, headers=signed(mallory, "PUT", meta, **json_ct, **{"if-match": '"x"'})
        )
        assert r.status_code == 404
        r = http.get(meta, headers=signed(alice, "GET", meta))
        assert r.headers["etag"] == etag and r.json()["custom"]["name"] == "Mine"

        r = http.get(f"{base}/backends", headers=signed(alice, "GET", f"{base}/backends"))
        assert [b["id"] for b in r.json()] == ["default"] and "conditional-writes" in r.json()[0]["features"]

        r = http.put(
            f"{base}/credentials/linkset",
            content=b"x",
            headers=signed(alice, "PUT", f"{base}/credentials/linkset"),
        )
        assert r.status_code == 409 and r.json()["type"].endswith("#reserved-id")

        assert (
            http.delete(
                f"{base}/credentials", headers=signed(mallory, "DELETE", f"{base}/credentials")
            ).status_code
            == 404
        )
        r = http.delete(f"{base}/credentials", headers=signed(alice, "DELETE", f"{base}/credentials"))
        assert r.status_code == 204
        r = http.delete(f"{base}/credentials", headers=signed(alice, "DELETE", f"{base}/credentials"))
        assert r.status_code == 204
        for path in (f"{base}/credentials", f"{base}/credentials/vc1.json", meta):
            assert http.get(path, headers=signed(alice, "GET", path)).status_code == 404, path
        r = http.get(f"{base}/", headers=signed(alice, "GET", f"{base}/"))
        assert sorted(i["id"] for i in r.json()["items"]) == ["greeting.txt", "other/keep.txt"]
        r = http.get(f"{base}/collections/", headers=signed(alice, "GET", f"{base}/collections/"))
        assert r.json()["items"] == []


@pytest.fixture(params=BACKENDS)
def two_servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[WasProcess]]:
    """One server on the filesystem (one process per data directory); two on one S3 bucket."""
    env = backend_env(request, request.param, tmp_path)
    count = 1 if request.param == "filesystem" else 2
    servers = [WasProcess(env, tmp_path / f"twistd-{n}.log").start() for n in range(count)]
    try:
        yield servers
    finally:
        for was in servers:
            was.stop()


def test_racing_creates_and_metadata_writes_give_one_success(two_servers: list[WasProcess]) -> None:
    """20 concurrent creates of one collection id, 20 If-None-Match: * and 20 If-Match metadata
    writes from one ETag (spread over two processes on S3): exactly one success each."""
    alice = Ed25519Signer()
    urls = [was.url for was in two_servers]
    sid = provision(urls[0], alice)
    base = f"/space/{sid}"
    json_ct = {"content-type": "application/json"}

    def send(n: int, method: str, path: str, body: object, **extra: str) -> int:
        headers = signed(alice, method, path, **json_ct, **extra)
        url = urls[n % len(urls)]
        return httpx.request(
            method, url + path, content=json.dumps(body), headers=headers, timeout=60
        ).status_code

    def race(method: str, path: str, body: object, **extra: str) -> list[int]:
        with ThreadPoolExecutor(20) as pool:
            return sorted(pool.map(lambda n: send(n, method, path, body, **extra), range(20)))

    assert race("POST", f"{base}/collections/", {"id": "race"}) == [201] + [409] * 19
    meta = f"{base}/race/meta"
    assert race("PUT", meta, {"custom": {"name": "x"}}, **{"if-none-match": "*"}) == [204] + [412] * 19
    r = httpx.get(urls[0] + meta, headers=signed(alice, "GET", meta))
    etag = r.headers["etag"]
    assert race("PUT", meta, {"custom": {"name": "y"}}, **{"if-match": etag}) == [204] + [412] * 19
    r = httpx.get(urls[-1] + meta, headers=signed(alice, "GET", meta))
    assert r.headers["etag"] != etag and r.json()["custom"] == {"name": "y"}


def test_strict_mode_after_adopting_existing_data(tmp_path: Path) -> None:
    """Data written without strict mode takes writes under strict mode once adopt-collections has run."""
    env = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")}
    alice = Ed25519Signer()
    with WasProcess(env, tmp_path / "free.log") as free:
        sid = provision(free.url, alice)
        with StorageClient(free.url) as client:
            space = client.space(f"urn:uuid:{sid}", signer=alice)
            assert space.resource("/dir/data.json").put(b"{}", "application/json").status_code == 204
    strict_env = {**env, "WAS_STRICT_COLLECTIONS": "on"}
    with WasProcess(strict_env, tmp_path / "strict.log") as strict, StorageClient(strict.url) as client:
        space = client.space(f"urn:uuid:{sid}", signer=alice)
        assert space.resource("/dir/more.json").put(b"{}", "application/json").status_code == 404
        assert space.resource("/top.txt").put(b"t", "text/plain").status_code == 204
        assert space.resource("/dir/data.json").get().content == b"{}"
        done = subprocess.run(
            [sys.executable, "-m", "was_twisted.admin", "adopt-collections", "--all"],
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **strict_env},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=str(tmp_path),
        )
        assert done.returncode == 0, done.stderr
        assert f"space {sid}: 1 collections created (dir)" in done.stdout
        assert space.resource("/dir/more.json").put(b"{}", "application/json").status_code == 204


def test_bad_strict_flag_stops_startup(tmp_path: Path) -> None:
    from .processes import run_twistd

    result = run_twistd({"WAS_STORAGE_ROOT_DIR": str(tmp_path / "d"), "WAS_STRICT_COLLECTIONS": "sometimes"})
    assert result.returncode != 0 and "WAS_STRICT_COLLECTIONS" in result.stderr
