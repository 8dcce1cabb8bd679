"""Resource metadata: ``GET|PUT /space/{s}/{c}/{r}/meta`` on every backend, and what it costs on S3."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.invoke import invoke
from tests.unit.test_delegation_routes import (  # noqa: F401
    CASES,
    ITEM,
    ORIGIN,
    at,
    holder,
    setup_space,
    shared,
    signer,
)
from tests.unit.test_routes import body_of, provision
from tests.unit.test_storage_contract import allow, backend, put, space, with_space  # noqa: F401
from was_twisted.config import Settings
from was_twisted.operations import Operations, classify
from was_twisted.storage.base import Backend, StorageError
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

SPEC = "https://wallet.storage/spec#"


# -- storage ----------------------------------------------------------------------------------------


def test_read_resource_meta_contract(with_space: Backend) -> None:  # noqa: F811
    b = with_space
    assert b.read_resource_meta("s1", "/c/r") == (space(), None)
    assert b.read_resource_meta("ghost", "/c/r") == (None, None)
    b.write_resource("s1", "/c/r", io.BytesIO(b"12345"), "text/plain", allow)
    got, meta = b.read_resource_meta("s1", "/c/r")
    assert got == space() and meta is not None
    assert (meta.info.content_type, meta.info.size, meta.record) == ("text/plain", 5, None)
    assert meta.modified is not None and abs(meta.modified - time.time()) < 60
    b.put_resource_meta("s1", "/c/r", b'{"custom":{}}')
    assert b.read_resource_meta("s1", "/c/r")[1].record == b'{"custom":{}}'  # type: ignore[union-attr]
    # The record is beside resources/, never one of them.
    assert [p for p, _ in b.list_resources("s1", "/", allow)] == ["/c/r"]
    assert not b.create_resource_meta("s1", "/c/r", b"{}")  # one exists: kept as it is
    assert b.read_resource_meta("s1", "/c/r")[1].record == b'{"custom":{}}'  # type: ignore[union-attr]
    b.delete_resource_meta("s1", "/c/r")
    b.delete_resource_meta("s1", "/c/r")  # idempotent
    assert b.read_resource_meta("s1", "/c/r")[1].record is None  # type: ignore[union-attr]
    assert b.create_resource_meta("s1", "/c/r", b'{"a":1}')  # none: created
    assert b.read_resource_meta("s1", "/c/r")[1].record == b'{"a":1}'  # type: ignore[union-attr]
    assert not b.create_resource_meta("s1", "/c/r", b'{"a":2}')
    assert b.read_resource_meta("s1", "/c/r")[1].record == b'{"a":1}'  # type: ignore[union-attr]
    b.delete_resource_meta("s1", "/c/r")
    # A record of a deleted space goes with it.
    b.put_resource_meta("s1", "/c/r", b"{}")
    assert b.delete_space("s1", allow)
    put(b, space())
    b.write_resource("s1", "/c/r", io.BytesIO(b"x"), "text/plain", allow)
    assert b.read_resource_meta("s1", "/c/r")[1].record is None  # type: ignore[union-attr]
    # Nothing is written into a space that does not exist.
    b.put_resource_meta("ghost", "/c/r", b"{}")
    assert b.get_space("ghost") is None
    assert not b.create_resource_meta("ghost", "/c/r", b"{}") or isinstance(b, S3Backend)
    assert b.get_space("ghost") is None


def test_concurrent_creates_of_a_record_make_one(with_space: Backend) -> None:  # noqa: F811
    """``create_resource_meta`` is atomic: of 8 racing creates exactly one writes, and its bytes stay."""
    b = with_space
    b.write_resource("s1", "/c/r", io.BytesIO(b"x"), "text/plain", allow)
    start = threading.Barrier(8)

    def create(n: int) -> bool:
        start.wait(timeout=10)
        return b.create_resource_meta("s1", "/c/r", b'{"n":%d}' % n)

    with ThreadPoolExecutor(max_workers=8) as pool:
        won = [n for n, ok in enumerate(pool.map(create, range(8))) if ok]
    assert len(won) == 1
    assert b.read_resource_meta("s1", "/c/r")[1].record == b'{"n":%d}' % won[0]  # type: ignore[union-attr]


# -- over the API, on every backend -----------------------------------------------------------------


@pytest.fixture(params=["memory", "filesystem", "s3"])
def any_api(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Api]:
    b: Any
    if request.param == "s3":
        request.getfixturevalue("mocked_aws")
        b = S3Backend("meta", "", threads=4)
        b.client.create_bucket(Bucket="meta")
        b.check()
        b.reindex()
    else:
        b = MemoryBackend() if request.param == "memory" else FilesystemBackend(tmp_path / "data")
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(b, run_inline), Settings(backend="memory"), clock)
    yield Api(StubTreq(WASApp(ops, "memory").resource()), ops, clock, b)
    b.close()


async def call(api: Api, who: Ed25519Signer | None, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    headers = dict(kw.pop("headers", {}))
    if who is not None:
        headers.update(sign(who, method, path))
    r = await api.http.request(method, BASE + path, headers=headers, **kw)
    raw = await body_of(r)
    return r.code, (
        json.loads(raw) if raw and r.headers.getRawHeaders("content-type", [""])[0].endswith("json") else raw
    )


@pytest_twisted.ensureDeferred
async def test_metadata_lifecycle(any_api: Api, alice: Ed25519Signer) -> None:
    api = any_api
    sid = await provision(api, alice)
    res, meta = f"/space/{sid}/c/r", f"/space/{sid}/c/r/meta"
    assert (await call(api, alice, "GET", meta))[0] == 404  # no resource, no metadata
    assert (await call(api, alice, "PUT", meta, data=b"{}"))[0] == 404  # and PUT never creates
    created = api.clock.seconds()
    code, _ = await call(api, alice, "PUT", res, data=b"hello", headers={"content-type": "text/plain"})
    assert code == 204
    code, doc = await call(api, alice, "GET", meta)
    assert code == 200
    assert doc["contentType"] == "text/plain" and doc["size"] == 5
    assert doc["createdBy"] == alice.controller and doc["custom"] == {}
    assert doc["createdAt"] <= doc["updatedAt"]
    first_created = doc["createdAt"]
    assert first_created == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(created)))
    # PUT replaces custom; server fields and unknown members are ignored.
    body = {
        "custom": {"name": "Greeting", "tags": {"a": "b"}},
        "contentType": "x/y",
        "size": 1,
        "createdBy": "z",
    }
    api.clock.advance(5)
    code, _ = await call(api, alice, "PUT", meta, data=json.dumps(body).encode())
    assert code == 204
    code, doc = await call(api, alice, "GET", meta)
    assert doc["custom"] == body["custom"]
    assert (doc["contentType"], doc["size"], doc["createdBy"]) == ("text/plain", 5, alice.controller)
    # A content overwrite keeps createdAt, createdBy and custom; contentType and size follow the content.
    api.clock.advance(5)
    code, _ = await call(
        api, alice, "PUT", res, data=b'{"a":1}', headers={"content-type": "application/json"}
    )
    code, doc = await call(api, alice, "GET", meta)
    assert (doc["contentType"], doc["size"]) == ("application/json", 7)
    assert doc["createdAt"] == first_created and doc["createdBy"] == alice.controller
    assert doc["custom"] == body["custom"]
    # HEAD answers as GET, without a body.
    r = await api.http.head(BASE + meta, headers=sign(alice, "HEAD", meta))
    assert r.code == 200 and await body_of(r) == b""
    # {} clears custom.
    code, _ = await call(api, alice, "PUT", meta, data=b"{}")
    assert code == 204 and (await call(api, alice, "GET", meta))[1]["custom"] == {}
    # No DELETE of metadata; the resource is untouched.
    code, doc = await call(api, alice, "DELETE", meta)
    assert code == 405
    assert (await call(api, alice, "GET", res))[0] == 200
    # Deleting the resource deletes its metadata: a new resource at the path starts afresh.
    await call(api, alice, "PUT", meta, data=b'{"custom":{"name":"old"}}')
    assert (await call(api, alice, "DELETE", res))[0] == 204
    assert (await call(api, alice, "GET", meta))[0] == 404
    api.clock.advance(60)
    await call(api, alice, "PUT", res, data=b"new", headers={"content-type": "text/plain"})
    code, doc = await call(api, alice, "GET", meta)
    assert doc["custom"] == {} and doc["createdAt"] > first_created


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (b"[]", None),
        (b"not json", None),
        (b'{"custom": 3}', "#/custom"),
        (b'{"custom": []}', "#/custom"),
        (b'{"custom": {"name": 1}}', "#/custom/name"),
        (b'{"custom": {"tags": "x"}}', "#/custom/tags"),
        (b'{"epoch": ""}', "#/epoch"),
        (b'{"epoch": null}', "#/epoch"),
        (b'{"writerId": 7}', "#/writerId"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_metadata_bodies(api: Api, alice: Ed25519Signer, body: bytes, pointer: str | None) -> None:
    sid = await provision(api, alice)
    await call(api, alice, "PUT", f"/space/{sid}/c/r", data=b"x")
    code, doc = await call(api, alice, "PUT", f"/space/{sid}/c/r/meta", data=body)
    assert (code, doc["type"]) == (400, SPEC + "invalid-request-body")
    if pointer:
        assert doc["errors"][0]["pointer"] == pointer


@pytest_twisted.ensureDeferred
async def test_metadata_is_authorized_as_the_resource(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    sid = await provision(api, alice)
    meta = f"/space/{sid}/c/r/meta"
    await call(api, alice, "PUT", f"/space/{sid}/c/r", data=b"x")
    for who in (mallory, None):
        code, doc = await call(api, who, "GET", meta)
        assert (code, doc["type"]) == (404, SPEC + "not-found")
        code, doc = await call(api, who, "PUT", meta, data=b'{"custom":{"name":"evil"}}')
        assert code in (401, 404)  # unsigned writes are refused before anything is looked up
    assert (await call(api, alice, "GET", meta))[1]["custom"] == {}
    # A PublicCanRead policy opens the metadata read as it opens the resource read, never the write.
    path = f"/space/{sid}/policy"
    code, _ = await call(api, alice, "PUT", path, data=b'{"type":"PublicCanRead"}')
    assert code == 204
    code, doc = await call(api, None, "GET", meta)
    assert code == 200 and doc["size"] == 1
    code, _ = await call(api, mallory, "PUT", meta, data=b"{}")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_created_by_survives_a_delegate_overwriting(shared: Api) -> None:  # noqa: F811
    """item1 is created by the controller; a delegate (chain1_resource) overwrites it: createdBy stays."""
    await setup_space(shared)
    root = signer("root")
    case = "chain1_resource"
    url = ORIGIN + ITEM
    headers = invoke(
        signer(holder(case)),
        "PUT",
        url,
        capability=CASES[case]["capability"],
        body=b"by the delegate",
        content_type="text/plain",
        now=shared.clock.seconds(),
    )
    r = await shared.http.put(url, data=b"by the delegate", headers=headers)
    assert r.code == 204, await r.text()
    meta = ITEM + "/meta"
    r = await shared.http.get(ORIGIN + meta, headers=at(shared, root, "GET", meta))
    doc = json.loads(await body_of(r))
    assert doc["createdBy"] == root.controller and doc["size"] == len(b"by the delegate")
    # The delegate's capability for item1 also reads item1's metadata (it is below its target).
    headers = invoke(
        signer(holder(case)),
        "GET",
        ORIGIN + meta,
        capability=CASES[case]["capability"],
        now=shared.clock.seconds(),
    )
    r = await shared.http.get(ORIGIN + meta, headers=headers)
    assert r.code == 200 and json.loads(await body_of(r))["createdBy"] == root.controller


@pytest_twisted.ensureDeferred
async def test_existing_servers_resources_serve_what_is_known(any_api: Api, alice: Ed25519Signer) -> None:
    """A resource written without us (no record): contentType, size, updatedAt; no guessed creator."""
    api = any_api
    sid = await provision(api, alice)
    api.backend.write_resource(sid, "/old/data.json", io.BytesIO(b"[1]"), "application/json", allow)
    code, doc = await call(api, alice, "GET", f"/space/{sid}/old/data.json/meta")
    assert code == 200
    assert set(doc) == {"contentType", "size", "updatedAt", "custom"}
    assert (doc["contentType"], doc["size"]) == ("application/json", 3)
    # Overwriting it through us does not make us its creator either.
    await call(api, alice, "PUT", f"/space/{sid}/old/data.json", data=b"[2]")
    code, doc = await call(api, alice, "GET", f"/space/{sid}/old/data.json/meta")
    assert "createdBy" not in doc and "createdAt" not in doc
    # Nor does one declaring Key-Epoch (it reads the record first): it records the epoch only.
    headers = {"key-epoch": "e1"}
    await call(api, alice, "PUT", f"/space/{sid}/old/data.json", data=b"[3]", headers=headers)
    code, doc = await call(api, alice, "GET", f"/space/{sid}/old/data.json/meta")
    assert "createdBy" not in doc and "createdAt" not in doc and doc["epoch"] == "e1"
    # A conditional overwrite neither.
    api.backend.write_resource(sid, "/old/other.json", io.BytesIO(b"[1]"), "application/json", allow)
    code, _ = await call(
        api, alice, "PUT", f"/space/{sid}/old/other.json", data=b"[2]", headers={"if-match": "*"}
    )
    assert code in (200, 204)
    code, doc = await call(api, alice, "GET", f"/space/{sid}/old/other.json/meta")
    assert code == 200 and "createdBy" not in doc and "createdAt" not in doc


@pytest_twisted.ensureDeferred
async def test_epoch_and_writer_id(any_api: Api, alice: Ed25519Signer) -> None:
    api = any_api
    sid = await provision(api, alice)
    res, meta = f"/space/{sid}/c/r", f"/space/{sid}/c/r/meta"
    await call(api, alice, "PUT", res, data=b"x", headers={"key-epoch": "e1", "writer-id": "w1"})
    doc = (await call(api, alice, "GET", meta))[1]
    assert (doc["epoch"], doc["writerId"]) == ("e1", "w1")
    # A content write that declares neither clears both.
    await call(api, alice, "PUT", res, data=b"y")
    doc = (await call(api, alice, "GET", meta))[1]
    assert "epoch" not in doc and "writerId" not in doc and doc["createdBy"] == alice.controller
    # A metadata write sets them; one that omits epoch keeps it, and clears writerId.
    await call(api, alice, "PUT", meta, data=b'{"epoch":"e2","writerId":"w2"}')
    await call(api, alice, "PUT", meta, data=b'{"custom":{"name":"n"}}')
    doc = (await call(api, alice, "GET", meta))[1]
    assert doc["epoch"] == "e2" and "writerId" not in doc and doc["custom"] == {"name": "n"}
    code, doc = await call(api, alice, "PUT", res, data=b"z", headers={"writer-id": ""})
    assert (code, doc["type"]) == (400, SPEC + "invalid-request-body")


def test_only_depth_three_meta_is_metadata() -> None:
    assert (classify("/c/r/meta").kind, classify("/c/r/meta").name) == ("resource-meta", "/c/r")
    for path in ("/a/b/c/meta", "/c/r/meta/", "/c/r/meta/x", "/c/rmeta", "/c/r/metadata"):
        assert classify(path).kind == "resource", path


@pytest_twisted.ensureDeferred
async def test_deeper_meta_segments_stay_resources(api: Api, alice: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    path = f"/space/{sid}/a/b/c/meta"
    assert (await call(api, alice, "PUT", path, data=b"deep"))[0] == 204
    assert (await call(api, alice, "GET", path))[1] == b"deep"


def test_s3_costs(mocked_aws: None) -> None:
    """The requests each operation makes on S3 (README: 'Pagination and resource metadata')."""
    b = S3Backend("cost", "", threads=4)
    b.client.create_bucket(Bucket="cost")
    b.check()
    b.reindex()
    put(b, space())
    b.calls.clear()
    b.read_resource_meta("s1", "/c/r")
    assert b.calls == {"GetObject": 2, "HeadObject": 1}  # space record, record; HEAD: side by side
    b.calls.clear()
    b.put_resource_meta("s1", "/c/r", b"{}")
    assert b.calls == {"PutObject": 1}
    b.calls.clear()
    assert not b.create_resource_meta("s1", "/c/r", b"{}")  # S3 answers 412: one exists
    assert b.calls == {"PutObject": 1}
    b.calls.clear()
    b.delete_resource_meta("s1", "/c/r")
    assert b.calls == {"DeleteObject": 1}
    b.calls.clear()
    assert b.create_resource_meta("s1", "/c/r", b"{}")
    assert b.calls == {"PutObject": 1}
    b.close()


@pytest_twisted.ensureDeferred
async def test_s3_requests_per_operation(mocked_aws: None, alice: Ed25519Signer) -> None:
    """What keeping metadata costs on S3, per request, as the README states it."""
    b = S3Backend("ops", "", threads=4)
    b.client.create_bucket(Bucket="ops")
    b.check()
    b.reindex()
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(b, run_inline), Settings(backend="s3"), clock)
    api = Api(StubTreq(WASApp(ops, "s3").resource()), ops, clock, b)  # type: ignore[arg-type]
    sid = await provision(api, alice)
    res, meta = f"/space/{sid}/c/r", f"/space/{sid}/c/r/meta"

    async def costs(
        method: str, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, int]:
        b.calls.clear()
        code, _ = await call(api, alice, method, path, data=data, headers=headers or {})
        assert code < 300
        return dict(b.calls)

    # Create: the space record and a HEAD of the resource side by side (it is absent), the
    # write, then the record (created only if absent: IfNoneMatch).  4 requests, 3 round trips.
    create = {"GetObject": 1, "HeadObject": 1, "PutObject": 2}
    assert await costs("PUT", res, b"x") == create
    # Overwrite: the same look (the HEAD finds it), the write; no record is written.  3 in 2.
    overwrite = {"GetObject": 1, "HeadObject": 1, "PutObject": 1}
    assert await costs("PUT", res, b"y") == overwrite
    assert (await call(api, alice, "GET", meta))[1]["createdBy"] == alice.controller
    # Declaring Key-Epoch / Writer-Id: the record is read first (space, HEAD, record: side by
    # side), then the write as above, then the record rewritten.
    declared = {"key-epoch": "e1"}
    assert await costs("PUT", res, b"z", declared) == {"GetObject": 3, "HeadObject": 2, "PutObject": 2}
    assert (await call(api, alice, "GET", meta))[1]["epoch"] == "e1"
    assert await costs("PUT", res, b"w") == overwrite
    doc = (await call(api, alice, "GET", meta))[1]
    assert "epoch" not in doc and doc["createdBy"] == alice.controller  # epoch: for replaced content
    # Metadata read: one round trip of three requests; update: that, and one PUT.
    assert await costs("GET", meta) == {"GetObject": 2, "HeadObject": 1}
    assert await costs("PUT", meta, b"{}") == {"GetObject": 2, "HeadObject": 1, "PutObject": 1}
    # Delete: the resource, then its record.
    assert await costs("DELETE", res) == {"GetObject": 1, "DeleteObject": 2}
    # A read does not touch records: the space record and the object, side by side.
    assert await costs("PUT", res, b"v") == create
    assert await costs("GET", res) == {"GetObject": 2}
    b.close()


class FailingMeta(MemoryBackend):
    """Memory storage whose metadata records cannot be written."""

    def put_resource_meta(self, space_id: str, path: str, data: bytes) -> None:
        raise StorageError("metadata store down")

    def create_resource_meta(self, space_id: str, path: str, data: bytes) -> bool:
        raise StorageError("metadata store down")


@pytest_twisted.ensureDeferred
async def test_a_record_that_cannot_be_written_does_not_fail_the_write(alice: Ed25519Signer) -> None:
    b = FailingMeta()
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(b, run_inline), Settings(backend="memory"), clock)
    api = Api(StubTreq(WASApp(ops, "memory").resource()), ops, clock, b)
    sid = await provision(api, alice)
    code, _ = await call(api, alice, "PUT", f"/space/{sid}/c/r", data=b"kept")
    assert code == 204
    assert (await call(api, alice, "GET", f"/space/{sid}/c/r"))[1] == b"kept"
    code, doc = await call(api, alice, "GET", f"/space/{sid}/c/r/meta")
    assert code == 200 and "createdBy" not in doc


@pytest_twisted.ensureDeferred
async def test_deleting_a_collection_deletes_its_resources_metadata(
    any_api: Api, alice: Ed25519Signer
) -> None:
    """A resource made again at the same path after its collection was deleted is a new one."""
    api = any_api
    sid = await provision(api, alice)
    body = json.dumps({"id": "c", "type": ["Collection"]}).encode()
    code, _ = await call(
        api,
        alice,
        "POST",
        f"/space/{sid}/collections/",
        data=body,
        headers={"content-type": "application/json"},
    )
    assert code == 201
    res, meta = f"/space/{sid}/c/r", f"/space/{sid}/c/r/meta"
    assert (await call(api, alice, "PUT", res, data=b"1", headers={"content-type": "text/plain"}))[0] == 204
    custom = json.dumps({"custom": {"name": "old"}}).encode()
    assert (await call(api, alice, "PUT", meta, data=custom))[0] == 204
    assert (await call(api, alice, "DELETE", f"/space/{sid}/c"))[0] == 204
    assert api.backend.list_records(sid, "metadata", lambda space: None) == []
    assert (await call(api, alice, "PUT", res, data=b"2", headers={"content-type": "text/plain"}))[0] == 204
    code, doc = await call(api, alice, "GET", meta)
    assert code == 200 and doc["custom"] == {}
