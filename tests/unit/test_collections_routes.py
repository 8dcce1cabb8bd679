"""Collections, their metadata and backends, and the reserved segments, over HTTP in-process (StubTreq)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import pytest_twisted
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.unit.test_routes import body_of, provision
from tests.unit.test_sharing_routes import api_with

SPEC = "https://wallet.storage/spec#"
JSON_CT = {"content-type": "application/json"}


async def call(
    api: Api,
    who: Ed25519Signer | None,
    method: str,
    path: str,
    body: object = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    """One request; the status, the headers and the body (JSON when it is JSON)."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    hdrs = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        hdrs.setdefault("content-type", "application/json")
    if who is not None:
        hdrs.update(sign(who, method, path))
    r = await api.http.request(method, BASE + path, data=data, headers=hdrs)
    raw = await body_of(r)
    ct = (r.headers.getRawHeaders("content-type") or [""])[0]
    return r.code, r.headers, json.loads(raw) if "json" in ct and raw else raw


def problem(doc: Any) -> str:
    return str(doc["type"]).removeprefix(SPEC)


def etag_of(headers: Any) -> str | None:
    values = headers.getRawHeaders("etag")
    return values[0] if values else None


async def make_collection(api: Api, who: Ed25519Signer, sid: str, cid: str, **extra: object) -> None:
    code, _, doc = await call(api, who, "POST", f"/space/{sid}/collections/", {"id": cid, **extra})
    assert code == 201, doc


# -- create, describe, list --------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_post_collection_with_generated_id(api: Api, alice: Ed25519Signer) -> None:
    """POST .../collections/ without an id: 201, absolute Location of a fresh id, the description."""
    sid = await provision(api, alice)
    code, headers, doc = await call(
        api, alice, "POST", f"/space/{sid}/collections/", {"name": "VCs", "type": ["Collection"]}
    )
    assert code == 201
    cid = doc["id"]
    uuid.UUID(cid)
    assert headers.getRawHeaders("location") == [f"{BASE}/space/{sid}/{cid}"]
    assert headers.getRawHeaders("cache-control") == ["no-store"]
    assert doc == {
        "id": cid,
        "url": f"/space/{sid}/{cid}",
        "type": ["Collection"],
        "name": "VCs",
        "createdBy": alice.controller,
        "linkset": f"/space/{sid}/{cid}/linkset",
        "backend": {"id": "default"},
    }
    code, headers, described = await call(api, alice, "GET", f"/space/{sid}/{cid}")
    assert code == 200 and described == doc and etag_of(headers)


@pytest_twisted.ensureDeferred
async def test_post_collection_with_body_id_and_conflict(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """A body id is used; taking it again is 409 id-conflict, but only for an authorized caller."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/collections/"
    code, headers, _ = await call(
        api, alice, "POST", path, {"id": "credentials", "backend": {"id": "default"}}
    )
    assert code == 201 and headers.getRawHeaders("location") == [f"{BASE}/space/{sid}/credentials"]
    code, _, doc = await call(api, alice, "POST", path, {"id": "credentials", "name": "again"})
    assert code == 409 and problem(doc) == "id-conflict"
    # Someone else learns nothing: the same 404 as for an absent space, and nothing changes.
    seen = []
    for target in (path, f"/space/{uuid.uuid4()}/collections/"):
        code, _, raw = await call(api, mallory, "POST", target, {"id": "credentials"})
        seen.append((code, raw))
    assert seen[0] == seen[1] and seen[0][0] == 404
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/credentials")
    assert code == 200 and "name" not in doc


@pytest.mark.parametrize(
    ("body", "status", "kind", "pointer"),
    [
        ({"id": "a b"}, 400, "invalid-id", "#/id"),
        ({"id": ".hidden"}, 400, "invalid-id", "#/id"),
        ({"id": 7}, 400, "invalid-id", "#/id"),
        ({"id": "x" * 129}, 400, "invalid-id", "#/id"),
        ({"id": "linkset"}, 409, "reserved-id", "#/id"),
        ({"id": "quotas"}, 409, "reserved-id", "#/id"),
        ({"backend": {"id": "nope"}}, 409, "unsupported-backend", "#/backend/id"),
        ({"backend": "default"}, 400, "invalid-request-body", "#/backend"),
        ({"type": ["Space"]}, 400, "invalid-request-body", "#/type"),
        ({"name": 5}, 400, "invalid-request-body", "#/name"),
        ({"generator": ""}, 400, "invalid-request-body", "#/generator"),
        (
            {"generator": "did:key:z6Mk", "generatorOrigin": "https://a.b/x"},
            400,
            "invalid-request-body",
            None,
        ),
        ({"encryption": {"scheme": "edv"}}, 400, "unsupported-encryption-scheme", "#/encryption"),
        ([], 400, "invalid-request-body", None),
    ],
)
@pytest_twisted.ensureDeferred
async def test_post_collection_refuses_bad_bodies(
    api: Api, alice: Ed25519Signer, body: object, status: int, kind: str, pointer: str | None
) -> None:
    """Bad ids: 400 invalid-id with the pointer; reserved ids and unknown backends 409; nothing stored."""
    sid = await provision(api, alice)
    code, _, doc = await call(api, alice, "POST", f"/space/{sid}/collections/", body)
    assert code == status and problem(doc) == kind, doc
    if pointer is not None:
        assert doc["errors"][0]["pointer"] == pointer
    assert api.backend.list_records(sid, "collections", lambda s: None) == []


@pytest_twisted.ensureDeferred
async def test_generator_members_are_kept(api: Api, alice: Ed25519Signer) -> None:
    """generator and generatorOrigin are stored as given and shown."""
    sid = await provision(api, alice)
    await make_collection(
        api, alice, sid, "app", generator="did:key:z6MkApp", generatorOrigin="https://app.example.com"
    )
    _, _, doc = await call(api, alice, "GET", f"/space/{sid}/app")
    assert doc["generator"] == "did:key:z6MkApp" and doc["generatorOrigin"] == "https://app.example.com"


@pytest_twisted.ensureDeferred
async def test_list_collections(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """GET .../collections/: the envelope {url, totalItems, items: [{id, url, name}]}; name defaults to id."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/collections/"
    code, _, doc = await call(api, alice, "GET", path)
    assert code == 200 and doc == {"url": path, "totalItems": 0, "items": []}
    await make_collection(api, alice, sid, "b", name="Bee")
    await make_collection(api, alice, sid, "a")
    # An implicit container is not a collection.
    code, _, _ = await call(
        api, alice, "PUT", f"/space/{sid}/implicit/x.txt", b"x", {"content-type": "text/plain"}
    )
    assert code == 204
    code, _, doc = await call(api, alice, "GET", path)
    assert doc == {
        "url": path,
        "totalItems": 2,
        "items": [
            {"id": "a", "url": f"/space/{sid}/a", "name": "a"},
            {"id": "b", "url": f"/space/{sid}/b", "name": "Bee"},
        ],
    }
    code, _, _ = await call(api, alice, "GET", f"/space/{sid}/collections")
    assert code == 404  # the endpoint has its slash; nothing may be stored without it
    for who in (mallory, None):
        code, _, _ = await call(api, who, "GET", path)
        assert code == 404


# -- PUT /space/S/c --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_put_collection_creates_then_updates(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """A JSON collection description PUT creates (201 + Location + ETag), then fully updates (204 + ETag)."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/notes"
    code, headers, doc = await call(api, alice, "PUT", path, {"type": ["Collection"], "name": "Notes"})
    assert code == 201 and headers.getRawHeaders("location") == [BASE + path]
    first = etag_of(headers)
    assert doc["name"] == "Notes" and doc["createdBy"] == alice.controller
    code, headers, _ = await call(api, alice, "PUT", path, {"id": "notes", "type": "Collection"})
    assert code == 204 and etag_of(headers) not in (None, first)
    _, headers, doc = await call(api, alice, "GET", path)
    assert "name" not in doc and doc["createdBy"] == alice.controller
    assert etag_of(headers) != first
    code, _, doc = await call(api, alice, "PUT", path, {"id": "other", "type": ["Collection"]})
    assert code == 400 and doc["errors"][0]["pointer"] == "#/id"
    code, _, _ = await call(api, mallory, "PUT", path, {"type": ["Collection"], "name": "Mine"})
    assert code == 404
    code, _, doc = await call(api, alice, "PUT", path, {"type": ["Collection"], "backend": {"id": "x"}})
    assert code == 409 and problem(doc) == "unsupported-backend"


@pytest_twisted.ensureDeferred
async def test_put_collection_preconditions(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """If-Match / If-None-Match: * on a collection PUT: 412 with nothing written, after authorization."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/c"
    desc = {"type": ["Collection"], "name": "one"}
    code, headers, _ = await call(api, alice, "PUT", path, desc, {"if-none-match": "*"})
    assert code == 201
    current = etag_of(headers)
    assert current is not None
    code, _, doc = await call(api, alice, "PUT", path, {**desc, "name": "two"}, {"if-none-match": "*"})
    assert code == 412 and problem(doc) == "precondition-failed"
    code, _, _ = await call(api, alice, "PUT", path, {**desc, "name": "two"}, {"if-match": '"stale"'})
    assert code == 412
    code, _, _ = await call(api, mallory, "PUT", path, {**desc, "name": "two"}, {"if-match": '"stale"'})
    assert code == 404
    _, _, doc = await call(api, alice, "GET", path)
    assert doc["name"] == "one"
    code, headers, _ = await call(api, alice, "PUT", path, {**desc, "name": "two"}, {"if-match": current})
    assert code == 204 and etag_of(headers) != current


@pytest_twisted.ensureDeferred
async def test_single_segment_resources_are_not_collections(api: Api, alice: Ed25519Signer) -> None:
    """What the Python client writes (/space/S/greeting.txt, JSON documents) stays a resource."""
    sid = await provision(api, alice)
    for name, data, ct in (
        ("greeting.txt", b"hello", "text/plain"),
        ("doc", b'{"type": "Note"}', "application/json"),
        ("typed", b'{"type": ["Collection"]}', "text/plain"),
    ):
        path = f"/space/{sid}/{name}"
        code, _, _ = await call(api, alice, "PUT", path, data, {"content-type": ct})
        assert code == 204
        code, headers, raw = await call(api, alice, "GET", path)
        assert code == 200 and headers.getRawHeaders("content-type") == [ct]
        assert raw == data or raw == json.loads(data)
        code, _, _ = await call(api, alice, "DELETE", path)
        assert code == 204
        code, _, _ = await call(api, alice, "GET", path)
        assert code == 404
    assert api.backend.list_records(sid, "collections", lambda s: None) == []


@pytest_twisted.ensureDeferred
async def test_stored_resource_wins_over_collection_of_same_name(api: Api, alice: Ed25519Signer) -> None:
    """A stored resource and a collection sharing a depth-1 name: GET serves the resource (checklist C1)."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "shared", name="Shared")
    path = f"/space/{sid}/shared"
    code, _, doc = await call(api, alice, "GET", path)
    assert code == 200 and doc["name"] == "Shared"
    code, _, _ = await call(api, alice, "PUT", path, b"bytes", {"content-type": "text/plain"})
    assert code == 204
    code, _, raw = await call(api, alice, "GET", path)
    assert code == 200 and raw == b"bytes"


# -- listing and delete ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_listing_of_created_and_implicit_containers(api: Api, alice: Ed25519Signer) -> None:
    """A created collection's listing names it (id, name, url without the slash); implicit ones still list."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "c", name="Cee")
    for path in (f"/space/{sid}/c/r1", f"/space/{sid}/implicit/r2", f"/space/{sid}/implicit/deep/r3"):
        code, _, _ = await call(api, alice, "PUT", path, b"x", {"content-type": "text/plain"})
        assert code == 204
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/c/")
    assert code == 200
    assert doc["id"] == "c" and doc["name"] == "Cee" and doc["url"] == f"/space/{sid}/c"
    assert [i["id"] for i in doc["items"]] == ["r1"] and doc["totalItems"] == 1
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/implicit/")
    assert code == 200 and doc["url"] == f"/space/{sid}/implicit/" and "id" not in doc
    assert [i["id"] for i in doc["items"]] == ["deep/r3", "r2"]
    # An empty created collection lists empty.
    await make_collection(api, alice, sid, "empty")
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/empty/")
    assert code == 200 and doc["items"] == [] and doc["name"] == "empty"


@pytest_twisted.ensureDeferred
async def test_delete_collection_removes_everything_under_it(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """DELETE /space/S/c: its resources (any depth), policies and metadata, then the record; idempotent."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "c")
    for name in ("r1", "r2", "deep/r3"):
        code, _, _ = await call(
            api, alice, "PUT", f"/space/{sid}/c/{name}", b"x", {"content-type": "text/plain"}
        )
        assert code == 204
    for path in (f"/space/{sid}/cc/keep", f"/space/{sid}/c.txt"):
        code, _, _ = await call(api, alice, "PUT", path, b"k", {"content-type": "text/plain"})
        assert code == 204
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/c/policy", {"type": "PublicCanRead"})
    assert code == 204
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/c/meta", {"custom": {"name": "m"}})
    assert code == 204
    # Someone else cannot, and learns nothing.
    code, _, _ = await call(api, mallory, "DELETE", f"/space/{sid}/c")
    assert code == 404
    assert len(api.backend.list_resources(sid, "/c/", lambda s: None)) == 3
    code, _, _ = await call(api, alice, "DELETE", f"/space/{sid}/c")
    assert code == 204
    assert api.backend.list_resources(sid, "/c/", lambda s: None) == []
    assert [p for p, _ in api.backend.list_resources(sid, "/", lambda s: None)] == ["/c.txt", "/cc/keep"]
    for kind in ("collections", "collection-meta", "policies"):
        assert api.backend.list_records(sid, kind, lambda s: None) == []
    code, _, _ = await call(api, alice, "GET", f"/space/{sid}/c")
    assert code == 404
    code, _, _ = await call(api, alice, "DELETE", f"/space/{sid}/c")
    assert code == 204
    # Re-created, it starts over: no old metadata, no old policy.
    await make_collection(api, alice, sid, "c")
    _, headers, doc = await call(api, alice, "GET", f"/space/{sid}/c/meta")
    assert etag_of(headers) is None and "custom" not in doc
    code, _, _ = await call(api, None, "GET", f"/space/{sid}/c/")
    assert code == 404


# -- collection metadata ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_collection_meta_lifecycle(api: Api, alice: Ed25519Signer) -> None:
    """GET before a write: only createdBy, no ETag; PUT replaces custom (204 + ETag); timestamps kept."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "c")
    path = f"/space/{sid}/c/meta"
    code, headers, doc = await call(api, alice, "GET", path)
    assert code == 200 and doc == {"createdBy": alice.controller} and etag_of(headers) is None
    custom = {"name": "VCs", "tags": {"project": "demo"}}
    code, headers, _ = await call(api, alice, "PUT", path, {"custom": custom, "createdBy": "ignored", "x": 1})
    assert code == 204
    first = etag_of(headers)
    assert first is not None and first.startswith('"')
    code, headers, doc = await call(api, alice, "GET", path)
    assert etag_of(headers) == first
    assert doc["custom"] == custom and doc["createdBy"] == alice.controller
    assert doc["createdAt"] == doc["updatedAt"] and doc["createdAt"].endswith("Z")
    created = doc["createdAt"]
    api.clock.advance(10)
    # Clearing is a write: a new ETag, custom gone, createdAt kept.
    code, headers, _ = await call(api, alice, "PUT", path, {})
    assert code == 204 and etag_of(headers) not in (None, first)
    _, _, doc = await call(api, alice, "GET", path)
    assert "custom" not in doc and doc["createdAt"] == created and doc["updatedAt"] != created
    code, headers, _ = await call(api, alice, "PUT", path, {"epoch": "e1"})
    _, _, doc = await call(api, alice, "GET", path)
    assert doc["epoch"] == "e1"
    # The collection description is untouched by metadata writes.
    _, _, desc = await call(api, alice, "GET", f"/space/{sid}/c")
    assert "custom" not in desc


@pytest_twisted.ensureDeferred
async def test_collection_meta_preconditions(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """If-None-Match: * succeeds exactly once; a stale If-Match is 412; an outsider sees 404, never 412."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "c")
    path = f"/space/{sid}/c/meta"
    code, headers, _ = await call(api, alice, "PUT", path, {"custom": {"name": "a"}}, {"if-none-match": "*"})
    assert code == 204
    current = etag_of(headers)
    assert current is not None
    code, _, doc = await call(api, alice, "PUT", path, {"custom": {"name": "b"}}, {"if-none-match": "*"})
    assert code == 412 and problem(doc) == "precondition-failed"
    code, _, _ = await call(api, alice, "PUT", path, {"custom": {"name": "b"}}, {"if-match": '"stale"'})
    assert code == 412
    code, _, _ = await call(api, alice, "PUT", path, {"custom": {"name": "b"}}, {"if-match": f"W/{current}"})
    assert code == 412
    code, _, _ = await call(api, mallory, "PUT", path, {"custom": {"name": "b"}}, {"if-match": '"stale"'})
    assert code == 404
    _, _, doc = await call(api, alice, "GET", path)
    assert doc["custom"] == {"name": "a"}
    code, headers, _ = await call(api, alice, "PUT", path, {"custom": {"name": "b"}}, {"if-match": current})
    assert code == 204 and etag_of(headers) != current
    r = await api.http.get(
        BASE + path, headers={"if-none-match": etag_of(headers), **sign(alice, "GET", path)}
    )
    assert r.code == 304


@pytest_twisted.ensureDeferred
async def test_collection_meta_refusals(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """Bad bodies 400; an absent collection 404 (PUT creates nothing); DELETE/POST 409, never a resource."""
    sid = await provision(api, alice)
    await make_collection(api, alice, sid, "c")
    path = f"/space/{sid}/c/meta"
    for body, pointer in (
        ({"custom": "x"}, "#/custom"),
        ({"custom": {"name": 1}}, "#/custom/name"),
        ({"custom": {"tags": {"a": 1}}}, "#/custom/tags"),
        ({"epoch": ""}, "#/epoch"),
        ([1], None),
    ):
        code, _, doc = await call(api, alice, "PUT", path, body)
        assert code == 400 and problem(doc) == "invalid-request-body", body
        if pointer:
            assert doc["errors"][0]["pointer"] == pointer
    for method in ("DELETE", "POST"):
        code, _, doc = await call(api, alice, method, path, {"custom": {}})
        assert code == 409 and problem(doc) == "reserved-id"
    assert api.backend.list_records(sid, "collection-meta", lambda s: None) == []
    # An implicit container has no metadata; nothing is created by a PUT.
    code, _, _ = await call(
        api, alice, "PUT", f"/space/{sid}/implicit/x", b"x", {"content-type": "text/plain"}
    )
    for target in (f"/space/{sid}/implicit/meta", f"/space/{sid}/nothing/meta"):
        code, _, _ = await call(api, alice, "GET", target)
        assert code == 404
        code, _, _ = await call(api, alice, "PUT", target, {"custom": {}})
        assert code == 404
    assert api.backend.list_records(sid, "collection-meta", lambda s: None) == []
    for who in (mallory, None):
        code, _, _ = await call(api, who, "GET", path)
        assert code == 404


# -- backends --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_backends(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """GET .../backends is a bare array with `default`; .../c/backend names a created collection's."""
    sid = await provision(api, alice)
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/backends")
    assert code == 200 and isinstance(doc, list) and [b["id"] for b in doc] == ["default"]
    assert doc[0]["features"] == ["conditional-writes"] and doc[0]["managedBy"] == "server"
    assert doc[0]["persistence"] == "volatile"  # the memory backend
    await make_collection(api, alice, sid, "c")
    code, _, one = await call(api, alice, "GET", f"/space/{sid}/c/backend")
    assert code == 200 and one == doc[0]
    code, _, _ = await call(api, alice, "GET", f"/space/{sid}/nope/backend")
    assert code == 404
    for who in (mallory, None):
        for path in (f"/space/{sid}/backends", f"/space/{sid}/c/backend"):
            code, _, _ = await call(api, who, "GET", path)
            assert code == 404
    code, _, doc = await call(api, alice, "PUT", f"/space/{sid}/c/backend", {"id": "x"})
    assert code == 409 and problem(doc) == "reserved-id"
    code, _, doc = await call(
        api, alice, "PUT", f"/space/{sid}/backends", b"x", {"content-type": "text/plain"}
    )
    assert code == 409


# -- reserved segments -----------------------------------------------------------------------

RESERVED_WRITES = [
    "/linkset",
    "/collections",
    "/backends",
    "/quotas",
    "/export",
    "/import",
    "/query",
    "/zcaps",
    "/collections/x",
    "/export/x",
    "/docs/linkset",
    "/docs/query",
    "/docs/quota",
    "/docs/backend",
]


@pytest.mark.parametrize("path", RESERVED_WRITES)
@pytest_twisted.ensureDeferred
async def test_spec_refuses_resource_writes_at_reserved_segments(
    api: Api, alice: Ed25519Signer, path: str
) -> None:
    """Spec profile: a resource write at a reserved segment (its depth) is 409 reserved-id, never stored."""
    sid = await provision(api, alice)
    for method in ("PUT", "DELETE"):
        code, _, doc = await call(
            api, alice, method, f"/space/{sid}{path}", b"x", {"content-type": "text/plain"}
        )
        assert code == 409 and problem(doc) == "reserved-id", (method, path)
    assert api.backend.list_resources(sid, "/", lambda s: None) == []


@pytest_twisted.ensureDeferred
async def test_reserved_names_deeper_down_stay_resources(api: Api, alice: Ed25519Signer) -> None:
    """Below their spec depth the same names are ordinary resource names."""
    sid = await provision(api, alice)
    for path in (
        "/docs/a/linkset",
        "/docs/a/query",
        "/docs/a/backend",
        "/a/b/c/meta",
        "/docs/export",
        "/x/quotas",
    ):
        code, _, _ = await call(
            api, alice, "PUT", f"/space/{sid}{path}", b"x", {"content-type": "text/plain"}
        )
        assert code == 204, path
        code, _, raw = await call(api, alice, "GET", f"/space/{sid}{path}")
        assert code == 200 and raw == b"x"


@pytest_twisted.ensureDeferred
async def test_unimplemented_reserved_endpoints_are_501(api: Api, alice: Ed25519Signer) -> None:
    """The spec's endpoints this server does not serve answer 501 unsupported-operation."""
    sid = await provision(api, alice)
    for method, path in (
        ("GET", "/quotas"),
        ("POST", "/export"),
        ("POST", "/query"),
        ("POST", "/docs/query"),
        ("GET", "/docs/quota"),
    ):
        code, _, doc = await call(api, alice, method, f"/space/{sid}{path}", {"profile": "changes"})
        assert code == 501 and problem(doc) == "unsupported-operation", (method, path)
    assert api.backend.list_resources(sid, "/", lambda s: None) == []


@pytest_twisted.ensureDeferred
async def test_legacy_keeps_reserved_names_as_resources(legacy_api: Api, alice: Ed25519Signer) -> None:
    """Legacy: reserved names we serve nothing at are stored as before; the served endpoints answer."""
    api = legacy_api
    sid = await provision(api, alice)
    for path in ("/export", "/collections", "/zcaps", "/docs/query", "/quotas"):
        code, _, _ = await call(
            api, alice, "PUT", f"/space/{sid}{path}", b"old", {"content-type": "text/plain"}
        )
        assert code == 204, path
        code, _, raw = await call(api, None, "GET", f"/space/{sid}{path}")
        assert code == 200 and raw == b"old", path
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/collections/")
    assert code == 200 and doc["items"] == []
    code, _, doc = await call(api, alice, "POST", f"/space/{sid}/collections/", {"id": "c"})
    assert code == 201
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/backends")
    assert code == 200 and doc[0]["id"] == "default"
    # An unsigned (or badly signed) read of an absent single-segment name is still 404, as before.
    code, _, _ = await call(api, None, "GET", f"/space/{sid}/absent.txt")
    assert code == 404
    bad = sign(alice, "GET", "/elsewhere")
    code, _, _ = await call(api, None, "GET", f"/space/{sid}/absent.txt", headers=bad)
    assert code == 404
    code, _, _ = await call(api, None, "GET", f"/space/{sid}/c")
    assert code == 401


# -- strict mode -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_strict_collections(alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """WAS_STRICT_COLLECTIONS=on: resource writes under /c/ need collection c; depth-1 names never do."""
    api = api_with(strict_collections=True)
    sid = await provision(api, alice)
    text = {"content-type": "text/plain"}
    code, _, doc = await call(api, alice, "PUT", f"/space/{sid}/c/r", b"x", text)
    assert code == 404 and problem(doc) == "not-found"
    code, _, _ = await call(api, alice, "POST", f"/space/{sid}/c/", b"x", text)
    assert code == 404
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/greeting.txt", b"hi", text)
    assert code == 204
    assert [p for p, _ in api.backend.list_resources(sid, "/", lambda s: None)] == ["/greeting.txt"]
    await make_collection(api, alice, sid, "c")
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/c/r", b"x", text)
    assert code == 204
    code, headers, _ = await call(api, alice, "POST", f"/space/{sid}/c/", b"x", text)
    assert code == 201 and headers.getRawHeaders("location")[0].startswith(f"{BASE}/space/{sid}/c/")
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/c/deep/r", b"x", text)
    assert code == 204
    # An outsider gets the same 404 whether or not the collection exists.
    for target in (f"/space/{sid}/c/r", f"/space/{sid}/none/r"):
        code, _, _ = await call(api, mallory, "PUT", target, b"x", text)
        assert code == 404
    # Reads and deletes of old data are not refused.
    code, _, _ = await call(api, alice, "GET", f"/space/{sid}/none/")
    assert code == 200
    # Policies and collection metadata are not resource writes.
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/none/policy", {"type": "PublicCanRead"})
    assert code == 204
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/c/meta", {"custom": {}})
    assert code == 204


@pytest_twisted.ensureDeferred
async def test_strict_legacy_names_kept_as_resources_still_need_a_collection(alice: Ed25519Signer) -> None:
    """Legacy + strict: a reserved name kept as a resource is still a write under /c/ (404 without c)."""
    api = api_with(strict_collections=True, profile="legacy")
    sid = await provision(api, alice)
    text = {"content-type": "text/plain"}
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/docs/query", b"x", text)
    assert code == 404
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/export", b"x", text)
    assert code == 204
    await make_collection(api, alice, sid, "docs")
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/docs/query", b"x", text)
    assert code == 204


@pytest_twisted.ensureDeferred
async def test_default_mode_writes_into_never_created_containers(api: Api, alice: Ed25519Signer) -> None:
    """Without strict mode nested paths are written freely (what the real clients do)."""
    sid = await provision(api, alice)
    code, _, _ = await call(api, alice, "PUT", f"/space/{sid}/dir/data.json", {"a": 1})
    assert code == 204
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/dir/")
    assert code == 200 and [i["id"] for i in doc["items"]] == ["data.json"]


@pytest_twisted.ensureDeferred
async def test_the_collections_list_pages(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """limit=1 pages through the collections in id order; a bad cursor is 400 only for the authorized."""
    sid = await provision(api, alice)
    for cid in ("b", "a", "c"):
        assert (await call(api, alice, "POST", f"/space/{sid}/collections/", {"id": cid}))[0] == 201
    seen: list[str] = []
    path: str | None = f"/space/{sid}/collections/?limit=1"
    while path is not None:
        code, _, doc = await call(api, alice, "GET", path)
        assert code == 200 and len(doc["items"]) == 1
        seen.append(doc["items"][0]["id"])
        path = doc["next"].removeprefix(BASE) if "next" in doc else None
    assert seen == ["a", "b", "c"]
    code, _, doc = await call(api, alice, "GET", f"/space/{sid}/collections/")
    assert doc["totalItems"] == 3 and "next" not in doc
    bad = f"/space/{sid}/collections/?cursor=!!"
    code, _, doc = await call(api, alice, "GET", bad)
    assert code == 400 and problem(doc) == "invalid-cursor"
    assert (await call(api, mallory, "GET", bad))[0] == 404
