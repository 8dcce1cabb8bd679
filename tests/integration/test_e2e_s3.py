"""S3 end to end, over HTTP on moto's server and Ceph RGW: the seed's raw keys, shared buckets, faults.

Every test here starts real ``twistd -n was`` processes against a real S3
server process and looks at the bucket's raw keys with boto3.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .conftest import s3_server_for
from .processes import WasProcess, run_twistd
from .s3servers import S3Server, start_moto

S3_BACKENDS = ["s3-moto", "s3-ceph"]


def signed(signer: Ed25519Signer, method: str, path: str) -> dict[str, str]:
    return {"authorization": create_authorization_header(signer=signer, method=method, url=path)}


def provision(url: str, signer: Ed25519Signer, sid: str | None = None) -> str:
    sid = sid or str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller})
    r = httpx.put(url + path, content=body, headers=signed(signer, "PUT", path))
    assert r.status_code == 201, r.text
    return sid


def raw_keys(s3: S3Server, bucket: str, prefix: str = "") -> list[str]:
    client = s3.client()
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


class Bucket:
    """One fresh bucket on one S3 server, and what ``twistd -n was`` needs to use it."""

    def __init__(self, s3: S3Server, tmp_path: Path) -> None:
        self.s3 = s3
        self.name = s3.create_bucket()
        self.tmp_path = tmp_path
        self.servers: list[WasProcess] = []

    def env(self, prefix: str) -> dict[str, str]:
        return {
            **self.s3.env(),
            "WAS_STORAGE_BACKEND": "s3",
            "WAS_STORAGE_BUCKET": self.name,
            "WAS_STORAGE_PREFIX": prefix,
        }

    def start(self, prefix: str = "", **extra: str) -> WasProcess:
        n = len(self.servers)
        was = WasProcess({**self.env(prefix), **extra}, self.tmp_path / f"twistd-{n}.log").start()
        self.servers.append(was)
        return was

    def stop(self) -> None:
        for was in self.servers:
            was.stop()


@pytest.fixture(params=S3_BACKENDS)
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bucket]:
    b = Bucket(s3_server_for(request, request.param), tmp_path)
    try:
        yield b
    finally:
        b.stop()


def test_api_writes_exactly_the_seed_layout(bucket: Bucket) -> None:
    """The API writes the seed's layout: _meta.json, quoted resource keys, native ContentType."""
    was = bucket.start("prod/")
    alice = Ed25519Signer()
    sid = provision(was.url, alice)
    for path, data, ctype in (("/file.txt", b"hi", "text/plain"), ("/a b/ü.json", b"{}", "application/json")):
        wire = f"/space/{sid}" + quote(path)
        r = httpx.put(
            was.url + wire, content=data, headers={"content-type": ctype, **signed(alice, "PUT", wire)}
        )
        assert r.status_code == 204
    all_keys = raw_keys(bucket.s3, bucket.name, f"prod/spaces/{sid}/")
    records = f"prod/spaces/{sid}/metadata/"
    space_keys = [k for k in all_keys if not k.startswith(records)]
    assert space_keys == [
        f"prod/spaces/{sid}/_meta.json",
        f"prod/spaces/{sid}/resources/%2Fa%20b%2F%C3%BC.json",
        f"prod/spaces/{sid}/resources/%2Ffile.txt",
    ]
    # Beside them (never inside resources/), each resource's metadata record.
    assert [k for k in all_keys if k.startswith(records)] == [
        records + "%2Fa%20b%2F%C3%BC.json.json",
        records + "%2Ffile.txt.json",
    ]
    client = bucket.s3.client()
    meta = json.loads(client.get_object(Bucket=bucket.name, Key=space_keys[0])["Body"].read())
    assert meta["id"] == f"urn:uuid:{sid}" and meta["controller"] == alice.controller
    obj = client.get_object(Bucket=bucket.name, Key=space_keys[2])
    assert obj["ContentType"] == "text/plain" and obj["Body"].read() == b"hi"
    # Nothing but our index beside the seed's keys.
    others = [k for k in raw_keys(bucket.s3, bucket.name) if not k.startswith("prod/spaces/")]
    assert all(k.startswith("prod/controllers/") for k in others)


def test_existing_servers_bucket_is_served_unchanged(bucket: Bucket) -> None:
    """Objects written as the existing server lays them out are served with their types, and listed."""
    alice = Ed25519Signer()
    client = bucket.s3.client()
    sids = sorted(str(uuid.uuid4()) for _ in range(3))
    for sid in sids:
        meta = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller}).encode()
        client.put_object(Bucket=bucket.name, Key=f"spaces/{sid}/_meta.json", Body=meta)
        client.put_object(
            Bucket=bucket.name,
            Key=f"spaces/{sid}/resources/%2Fnotes%2Fa.csv",
            Body=b"a,b",
            ContentType="text/csv",
        )
    was = bucket.start("")
    path = f"/space/{sids[0]}/notes/a.csv"
    r = httpx.get(was.url + path, headers=signed(alice, "GET", path))
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"a,b", "text/csv")
    r = httpx.get(was.url + f"/space/{sids[0]}", headers=signed(alice, "GET", f"/space/{sids[0]}"))
    assert r.json()["id"] == f"urn:uuid:{sids[0]}"
    # Listed at once (scanned while the index is built), and still after the background reindex.
    for _ in range(2):
        r = httpx.get(was.url + "/spaces/", headers=signed(alice, "GET", "/spaces/"))
        assert [item["id"] for item in r.json()["items"]] == sids
        deadline = time.monotonic() + 20
        while "controllers/.indexed" not in raw_keys(bucket.s3, bucket.name, "controllers/"):
            assert time.monotonic() < deadline, "the background reindex did not finish"
            time.sleep(0.1)


def test_two_servers_on_one_bucket_behave_as_one(bucket: Bucket) -> None:
    """A write through one server is read through the other at once; transfers and deletes too."""
    one, two = bucket.start("shared/"), bucket.start("shared/")
    alice, bob = Ed25519Signer(), Ed25519Signer()
    sid = provision(one.url, alice)
    path = f"/space/{sid}/doc.txt"
    for n in range(5):
        data = f"version {n}".encode()
        r = httpx.put(one.url + path, content=data, headers=signed(alice, "PUT", path))
        assert r.status_code == 204
        r = httpx.get(two.url + path, headers=signed(alice, "GET", path))
        assert r.content == data
    # Transfer through one: the other honours it at once.
    body = json.dumps({"id": sid, "controller": bob.controller})
    r = httpx.put(one.url + f"/space/{sid}", content=body, headers=signed(alice, "PUT", f"/space/{sid}"))
    assert r.status_code == 204
    assert httpx.get(two.url + path, headers=signed(alice, "GET", path)).status_code == 404
    assert httpx.get(two.url + path, headers=signed(bob, "GET", path)).status_code == 200
    r = httpx.get(two.url + "/spaces/", headers=signed(bob, "GET", "/spaces/"))
    assert [i["id"] for i in r.json()["items"]] == [sid]
    r = httpx.get(two.url + "/spaces/", headers=signed(alice, "GET", "/spaces/"))
    assert r.json()["items"] == []
    # Delete through two: one honours it at once.
    r = httpx.delete(two.url + f"/space/{sid}", headers=signed(bob, "DELETE", f"/space/{sid}"))
    assert r.status_code == 204
    assert httpx.get(one.url + path, headers=signed(bob, "GET", path)).status_code == 404
    r = httpx.put(one.url + path, content=b"x", headers=signed(bob, "PUT", path))
    assert r.status_code == 404
    assert raw_keys(bucket.s3, bucket.name, f"shared/spaces/{sid}/") == []


def test_writes_with_the_space_cache_create_first_and_keep_the_layout(bucket: Bucket) -> None:
    """``WAS_SPACE_CACHE_SECONDS``: a cached write is a PutObject ``If-None-Match: *`` first (the store's 412
    says it existed), with the same keys, bytes and metadata records as without the cache; racing creators of
    one path leave one record and one whole body."""
    was = bucket.start("cache/", WAS_SPACE_CACHE_SECONDS="30")
    alice = Ed25519Signer()
    sid = provision(was.url, alice)

    def put(path: str, data: bytes) -> int:
        wire = f"/space/{sid}{path}"
        headers = {"content-type": "text/plain", **signed(alice, "PUT", wire)}
        return httpx.put(was.url + wire, content=data, headers=headers, timeout=30).status_code

    def record(path: str) -> dict[str, object]:
        key = f"cache/spaces/{sid}/metadata/{quote(path, safe='')}.json"
        return dict(json.loads(bucket.s3.client().get_object(Bucket=bucket.name, Key=key)["Body"].read()))

    assert put("/first", b"1") == 204  # loads the space record, and caches it
    assert put("/r", b"one") == 204  # created by the conditional PutObject
    assert put("/r", b"three") == 204  # refused by it (412), then overwritten
    created = record("/r")
    assert created["createdBy"] == alice.controller
    wire = f"/space/{sid}/r"
    assert httpx.get(was.url + wire, headers=signed(alice, "GET", wire)).content == b"three"
    assert record("/r") == created  # the overwrite kept the creation record
    bodies = [bytes([65 + n]) * (n + 1) for n in range(6)]
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(lambda b: put("/race", b), bodies)) == [204] * 6
    wire = f"/space/{sid}/race"
    assert httpx.get(was.url + wire, headers=signed(alice, "GET", wire)).content in bodies
    assert record("/race")["createdBy"] == alice.controller
    root = f"cache/spaces/{sid}/"
    assert raw_keys(bucket.s3, bucket.name, root) == [
        root + "_meta.json",
        root + "metadata/%2Ffirst.json",
        root + "metadata/%2Fr.json",
        root + "metadata/%2Frace.json",
        root + "resources/%2Ffirst",
        root + "resources/%2Fr",
        root + "resources/%2Frace",
    ]


def test_concurrent_creates_give_one_success(bucket: Bucket) -> None:
    """Eight creates of one id by eight DIDs through two servers: exactly one 201, never an overwrite."""
    servers = [bucket.start("race/"), bucket.start("race/")]
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    signers = [Ed25519Signer() for _ in range(8)]

    def create(n: int) -> int:
        body = json.dumps({"id": sid, "controller": signers[n].controller})
        url = servers[n % 2].url
        return httpx.put(
            url + path, content=body, headers=signed(signers[n], "PUT", path), timeout=30
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(create, range(8)))
    assert codes.count(201) == 1, codes
    assert set(codes) <= {201, 404}
    winner = signers[codes.index(201)]
    r = httpx.get(servers[0].url + path, headers=signed(winner, "GET", path))
    assert r.json()["controller"] == winner.controller
    index = [k for k in raw_keys(bucket.s3, bucket.name, "race/controllers/") if k.endswith(sid)]
    assert index == [f"race/controllers/{quote(winner.controller, safe='')}/{sid}"]


def test_prefixes_isolate_servers(bucket: Bucket) -> None:
    """Two servers with different prefixes on one bucket never see each other's spaces."""
    one, two = bucket.start("one/"), bucket.start("two/")
    alice = Ed25519Signer()
    sid = provision(one.url, alice)
    assert (
        httpx.get(two.url + f"/space/{sid}", headers=signed(alice, "GET", f"/space/{sid}")).status_code == 404
    )
    r = httpx.get(two.url + "/spaces/", headers=signed(alice, "GET", "/spaces/"))
    assert r.json()["totalItems"] == 0
    provision(two.url, alice, sid)  # the same id is free under the other prefix


def test_large_body_multipart_round_trip(bucket: Bucket) -> None:
    """A 20 MiB body goes up in parts and comes back whole, with its type."""
    was = bucket.start("big/")
    alice = Ed25519Signer()
    sid = provision(was.url, alice)
    path = f"/space/{sid}/video.bin"
    data = bytes(range(256)) * (20 * 4096)
    r = httpx.put(
        was.url + path,
        content=data,
        headers={"content-type": "video/mp4", **signed(alice, "PUT", path)},
        timeout=60,
    )
    assert r.status_code == 204
    r = httpx.get(was.url + path, headers=signed(alice, "GET", path), timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.headers["content-length"] == str(len(data)) and r.content == data


def test_startup_errors_are_one_sentence(bucket: Bucket) -> None:
    """No bucket variable, a missing bucket, no or refused credentials: one sentence and a non-zero exit."""
    cases = [
        ({"WAS_STORAGE_BACKEND": "s3"}, "WAS_STORAGE_BUCKET"),
        ({**bucket.env(""), "WAS_STORAGE_BUCKET": "no-such-bucket-here"}, "does not exist"),
    ]
    no_credentials = {
        k: v for k, v in bucket.env("").items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    no_credentials.update(
        AWS_SHARED_CREDENTIALS_FILE="/nonexistent/credentials",
        AWS_CONFIG_FILE="/nonexistent/config",
        AWS_EC2_METADATA_DISABLED="true",
    )
    cases.append((no_credentials, "No AWS credentials found"))
    if bucket.s3.name == "ceph":  # moto accepts any key; Ceph checks signatures
        cases.append(({**bucket.env(""), "AWS_SECRET_ACCESS_KEY": "wrong"}, "refused the AWS credentials"))
    for env, expected in cases:
        result = run_twistd(env, timeout=120)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode != 0
        assert len(lines) == 1 and expected in lines[0], result.stderr


def test_s3_outage_is_503_and_health_stays_fast(tmp_path: Path) -> None:
    """S3 going away answers 503 problem+json with Retry-After; /health answers in milliseconds meanwhile."""
    s3 = start_moto(tmp_path / "moto")
    b = Bucket(s3, tmp_path)
    try:
        was = b.start("")
        alice = Ed25519Signer()
        sid = provision(was.url, alice)
        s3.stop()
        path = f"/space/{sid}/x"
        r = httpx.get(was.url + path, headers=signed(alice, "GET", path), timeout=60)
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json" and int(r.headers["retry-after"]) >= 1
        assert r.json()["type"] == "https://wallet.storage/spec#storage-error"
        started = time.monotonic()
        assert httpx.get(was.url + "/health").status_code == 200
        assert time.monotonic() - started < 0.5
    finally:
        b.stop()
        s3.stop()


def test_racing_overwrites_never_mix(bucket: Bucket) -> None:
    """Readers racing writers through the API always see one whole version with its own type."""
    was = bucket.start("hot/")
    alice = Ed25519Signer()
    sid = provision(was.url, alice)
    path = f"/space/{sid}/hot"
    versions = {bytes([n]) * 50_000: f"application/x-v{n}" for n in range(4)}

    def write_all(_: int) -> None:
        with httpx.Client(base_url=was.url, timeout=30) as client:
            for data, ctype in versions.items():
                r = client.put(
                    path, content=data, headers={"content-type": ctype, **signed(alice, "PUT", path)}
                )
                assert r.status_code == 204

    write_all(0)

    def read_many(_: int) -> list[str]:
        bad = []
        with httpx.Client(base_url=was.url, timeout=30) as client:
            for _ in range(25):
                r = client.get(path, headers=signed(alice, "GET", path))
                if r.status_code != 200 or versions.get(r.content) != r.headers["content-type"]:
                    bad.append(
                        f"{r.status_code} {r.content[:1]!r} {len(r.content)} {r.headers.get('content-type')}"
                    )
        return bad

    with ThreadPoolExecutor(6) as pool:
        writers = [pool.submit(write_all, n) for n in range(3)]
        readers = [pool.submit(read_many, n) for n in range(3)]
        for w in writers:
            w.result()
        assert [bad for r in readers for bad in r.result()] == []


def test_processes_share_one_port_with_reuseport(bucket: Bucket) -> None:
    """Two processes on one reuseport: port both take connections and act as one server."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listen = f"reuseport:{port}:interface=127.0.0.1"
    servers = [
        WasProcess(bucket.env("multi/"), bucket.tmp_path / f"reuseport-{n}.log", listen=listen).start()
        for n in range(2)
    ]
    bucket.servers.extend(servers)
    alice = Ed25519Signer()
    url = f"http://127.0.0.1:{port}"
    sid = provision(url, alice)
    path = f"/space/{sid}/shared.txt"
    for n in range(40):  # a new connection each time: the kernel picks a process
        r = httpx.put(url + path, content=f"v{n}".encode(), headers=signed(alice, "PUT", path))
        assert r.status_code == 204
        assert httpx.get(url + path, headers=signed(alice, "GET", path)).content == f"v{n}".encode()
    served = [s.log_path.read_text().count(f'"PUT /space/{sid}/shared.txt') for s in servers]
    assert sum(served) == 40 and min(served) > 0, served
