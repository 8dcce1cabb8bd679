"""The HTTP API over memory storage, in-process (StubTreq): statuses, bodies, profiles."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import pytest_twisted
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign

SPEC = "https://wallet.storage/spec#"


async def provision(api: Api, signer: Ed25519Signer, space_id: str | None = None) -> str:
    space_id = space_id or str(uuid.uuid4())
    path = f"/space/{space_id}"
    body = json.dumps({"id": f"urn:uuid:{space_id}", "controller": signer.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(signer, "PUT", path))
    assert r.code in (201, 204), await r.text()
    return space_id


async def body_of(r: Any) -> bytes:
    return bytes(await r.content())


@pytest_twisted.ensureDeferred
async def test_health_and_index(api: Api) -> None:
    """/health answers ok and / describes the server, both as JSON."""
    r = await api.http.get(BASE + "/health")
    assert r.code == 200 and json.loads(await body_of(r)) == {"status": "ok"}
    r = await api.http.get(BASE + "/")
    assert r.code == 200 and json.loads(await body_of(r))["name"] == "was-twisted"


@pytest_twisted.ensureDeferred
async def test_create_space_spec_answers_201_with_location(api: Api, alice: Ed25519Signer) -> None:
    """In the spec profile a space created by PUT answers 201, Location and the description."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller, "name": "n"}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 201
    assert r.headers.getRawHeaders("location") == [f"{BASE}{path}"]
    doc = json.loads(await body_of(r))
    assert doc["controller"] == alice.controller and doc["type"] == ["Space"] and doc["name"] == "n"
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert json.loads(await body_of(r)) == {
        "id": f"urn:uuid:{sid}",
        "url": path,
        "type": ["Space"],
        "controller": alice.controller,
        "name": "n",
        "createdBy": alice.controller,
        "linkset": f"{path}/linkset",
    }
    # An update answers 204.
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 204


@pytest_twisted.ensureDeferred
async def test_create_space_legacy_answers_204(legacy_api: Api, alice: Ed25519Signer) -> None:
    """In the legacy profile a created space answers 204, as the existing server's clients expect."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller}).encode()
    r = await legacy_api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 204


@pytest_twisted.ensureDeferred
async def test_space_body_id_must_name_the_path(api: Api, alice: Ed25519Signer) -> None:
    """A body id that is neither the path id nor urn:uuid: + it is 400 invalid-request-body."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{uuid.uuid4()}", "controller": alice.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 400
    assert r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    doc = json.loads(await body_of(r))
    assert doc["type"] == SPEC + "invalid-request-body" and doc["errors"][0]["pointer"] == "#/id"
    r = await api.http.put(BASE + path, data=b"not json", headers=sign(alice, "PUT", path))
    assert r.code == 400


@pytest_twisted.ensureDeferred
async def test_create_by_someone_else_is_controller_mismatch(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """Creating a space for a controller who did not sign is 400 controller-mismatch."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": sid, "controller": alice.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(mallory, "PUT", path))
    assert r.code == 400
    assert json.loads(await body_of(r))["type"] == SPEC + "controller-mismatch"


async def _takeover(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> tuple[int, str]:
    sid = await provision(api, alice)
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": mallory.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(mallory, "PUT", path))
    return r.code, sid


@pytest_twisted.ensureDeferred
async def test_space_cannot_be_taken_over_spec(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """A PUT naming the signer as new controller of someone else's space fails; the controller stays."""
    code, sid = await _takeover(api, alice, mallory)
    assert code == 404
    record = api.backend.get_space(sid)
    assert record is not None and record.controller == alice.controller


@pytest_twisted.ensureDeferred
async def test_space_cannot_be_taken_over_legacy(
    legacy_api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """The legacy profile refuses a takeover with 403 (the existing server allowed it)."""
    code, sid = await _takeover(legacy_api, alice, mallory)
    assert code == 403
    record = legacy_api.backend.get_space(sid)
    assert record is not None and record.controller == alice.controller


@pytest_twisted.ensureDeferred
async def test_controller_can_transfer_space(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """The stored controller may hand the space to another DID, who then controls it."""
    sid = await provision(api, alice)
    path = f"/space/{sid}"
    body = json.dumps({"id": sid, "controller": mallory.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 204
    r = await api.http.get(BASE + path, headers=sign(mallory, "GET", path))
    assert r.code == 200
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_spec_masks_forbidden_as_absent(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """Spec profile: forbidden and absent targets get byte-identical 404 responses, for every method."""
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/secret.txt"
    r = await api.http.put(BASE + rpath, data=b"s", headers=sign(alice, "PUT", rpath))
    assert r.code == 204
    absent_sid = str(uuid.uuid4())
    cases = [
        ("GET", f"/space/{sid}", f"/space/{absent_sid}"),
        ("DELETE", f"/space/{sid}", f"/space/{absent_sid}"),
        ("GET", rpath, f"/space/{sid}/absent.txt"),
        ("GET", rpath, f"/space/{absent_sid}/secret.txt"),
        ("HEAD", rpath, f"/space/{absent_sid}/secret.txt"),
        ("PUT", rpath, f"/space/{absent_sid}/secret.txt"),
        ("POST", rpath, f"/space/{absent_sid}/secret.txt"),
        ("DELETE", rpath, f"/space/{absent_sid}/secret.txt"),
        ("GET", f"/space/{sid}/", f"/space/{absent_sid}/"),
    ]
    for method, existing, absent in cases:
        for who in (mallory, None):
            seen = []
            for target in (existing, absent):
                headers = sign(who, method, target) if who else {}
                r = await api.http.request(method, BASE + target, data=b"x", headers=headers)
                seen.append((r.code, r.headers.getRawHeaders("content-type"), await body_of(r)))
            assert seen[0] == seen[1], (method, existing, who)
            assert seen[0][0] == 404
    # The secret is intact.
    r = await api.http.get(BASE + rpath, headers=sign(alice, "GET", rpath))
    assert await body_of(r) == b"s"


@pytest_twisted.ensureDeferred
async def test_legacy_statuses(legacy_api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """Legacy: unsigned reads public; unsigned writes 401; wrong DID 403; bad signature 401."""
    api = legacy_api
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/hello.txt"
    r = await api.http.put(
        BASE + rpath, data=b"hi", headers={"content-type": "text/plain", **sign(alice, "PUT", rpath)}
    )
    assert r.code == 204
    r = await api.http.get(BASE + rpath)
    assert r.code == 200 and await body_of(r) == b"hi"
    r = await api.http.put(BASE + rpath, data=b"x")
    assert r.code == 401 and json.loads(await body_of(r))["type"] == SPEC + "missing-authorization"
    r = await api.http.put(BASE + rpath, data=b"x", headers=sign(mallory, "PUT", rpath))
    assert r.code == 403
    r = await api.http.put(BASE + rpath, data=b"x", headers=sign(alice, "PUT", "/elsewhere"))
    assert r.code == 401 and json.loads(await body_of(r))["type"] == SPEC + "invalid-authorization-header"
    r = await api.http.get(BASE + f"/space/{sid}")
    assert r.code == 401
    r = await api.http.get(BASE + f"/space/{sid}", headers=sign(mallory, "GET", f"/space/{sid}"))
    assert r.code == 403
    absent = f"/space/{uuid.uuid4()}"
    r = await api.http.delete(BASE + absent, headers=sign(alice, "DELETE", absent))
    assert r.code == 204
    r = await api.http.get(BASE + f"/space/{uuid.uuid4()}/x")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_resource_round_trip_verbatim(api: Api, alice: Ed25519Signer) -> None:
    """Bytes and Content-Type come back verbatim; no type stores application/octet-stream."""
    sid = await provision(api, alice)
    data = bytes(range(256))
    for ctype in ("text/plain", 'application/ld+json; profile="https://example/x"', None):
        path = f"/space/{sid}/r"
        headers = sign(alice, "PUT", path)
        if ctype:
            headers["content-type"] = ctype
        r = await api.http.put(BASE + path, data=data, headers=headers)
        assert r.code == 204
        r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
        assert r.code == 200 and await body_of(r) == data
        assert r.headers.getRawHeaders("content-type") == [ctype or "application/octet-stream"]
        assert r.headers.getRawHeaders("etag")


@pytest_twisted.ensureDeferred
async def test_post_and_delete(api: Api, alice: Ed25519Signer) -> None:
    """POST to a path writes there (201); to a path ending in / makes a new name (201 + Location)."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/created.txt"
    r = await api.http.post(BASE + path, data=b"c", headers=sign(alice, "POST", path))
    assert r.code == 201
    coll = f"/space/{sid}/notes/"
    r = await api.http.post(BASE + coll, data=b"n", headers=sign(alice, "POST", coll))
    assert r.code == 201
    location = r.headers.getRawHeaders("location")[0]
    assert location.startswith(BASE + coll)
    new_path = location[len(BASE) :]
    r = await api.http.get(BASE + new_path, headers=sign(alice, "GET", new_path))
    assert await body_of(r) == b"n"
    r = await api.http.get(BASE + coll, headers=sign(alice, "GET", coll))
    listing = json.loads(await body_of(r))
    assert listing["totalItems"] == 1 and listing["items"][0]["url"] == new_path
    for _ in range(2):
        r = await api.http.delete(BASE + new_path, headers=sign(alice, "DELETE", new_path))
        assert r.code == 204
    r = await api.http.get(BASE + new_path, headers=sign(alice, "GET", new_path))
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_percent_encoding_decoded_once(api: Api, alice: Ed25519Signer) -> None:
    """x%41 on the wire is xA; x%2541 is the distinct resource 'x%41'; both clients' signatures verify."""
    sid = await provision(api, alice)
    base = f"/space/{sid}"
    # JS client: signs the encoded path as sent.
    r = await api.http.put(
        BASE + base + "/x%2541", data=b"literal", headers=sign(alice, "PUT", base + "/x%2541")
    )
    assert r.code == 204
    # Python client: signs the decoded path.
    r = await api.http.put(BASE + base + "/x%41", data=b"A", headers=sign(alice, "PUT", base + "/xA"))
    assert r.code == 204
    r = await api.http.get(BASE + base + "/xA", headers=sign(alice, "GET", base + "/xA"))
    assert await body_of(r) == b"A"
    space = api.backend.read_resource(sid, "/x%41")[1]
    assert space is not None and space.body.read() == b"literal"


@pytest_twisted.ensureDeferred
async def test_bad_ids(api: Api, alice: Ed25519Signer) -> None:
    """Ids that are not URL-safe, too long or path tricks are 400 invalid-id."""
    for path in ("/space/a%20b", "/space/" + "a" * 129, "/space/.hidden", "/space/a%2Fb"):
        r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
        assert r.code == 400, path
        assert json.loads(await body_of(r))["type"] == SPEC + "invalid-id"
    sid = await provision(api, alice)
    for rest in ("/a%00b", "/a//b", "/" + "x" * 1100, "/%FF"):
        path = f"/space/{sid}{rest}"
        r = await api.http.put(BASE + path, data=b"", headers=sign(alice, "PUT", path))
        assert r.code == 400, rest


@pytest_twisted.ensureDeferred
async def test_spaces_repository(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """POST /spaces/ creates (201, absolute Location); GET lists only the signer's; unsigned sees none."""
    body = json.dumps({"controller": alice.controller}).encode()
    r = await api.http.post(BASE + "/spaces/", data=body, headers=sign(alice, "POST", "/spaces/"))
    assert r.code == 201
    doc = json.loads(await body_of(r))
    assert r.headers.getRawHeaders("location") == [BASE + doc["url"]]
    await provision(api, mallory)
    r = await api.http.get(BASE + "/spaces/", headers=sign(alice, "GET", "/spaces/"))
    listing = json.loads(await body_of(r))
    assert listing["totalItems"] == 1 and listing["items"][0]["url"] == doc["url"]
    r = await api.http.get(BASE + "/spaces/")
    assert r.code == 200 and json.loads(await body_of(r)) == {"url": "/spaces/", "totalItems": 0, "items": []}
    r = await api.http.post(BASE + "/spaces/", data=b"{}", headers=sign(alice, "POST", "/spaces/"))
    assert r.code == 400
    r = await api.http.post(BASE + "/spaces/", data=body, headers=sign(mallory, "POST", "/spaces/"))
    assert r.code == 400 and json.loads(await body_of(r))["type"] == SPEC + "controller-mismatch"


@pytest_twisted.ensureDeferred
async def test_delete_space_removes_resources(api: Api, alice: Ed25519Signer) -> None:
    """Deleting a space removes it and its resources; a re-created space is empty."""
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/a"
    await api.http.put(BASE + rpath, data=b"a", headers=sign(alice, "PUT", rpath))
    r = await api.http.delete(BASE + f"/space/{sid}", headers=sign(alice, "DELETE", f"/space/{sid}"))
    assert r.code == 204
    await provision(api, alice, sid)
    r = await api.http.get(BASE + rpath, headers=sign(alice, "GET", rpath))
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_unknown_route_and_method(api: Api) -> None:
    """Unknown paths are problem+json 404; a wrong method is 405 with Allow."""
    r = await api.http.get(BASE + "/nope")
    assert r.code == 404 and r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    r = await api.http.delete(BASE + "/health")
    assert r.code == 405 and r.headers.getRawHeaders("allow") == ["GET, HEAD"]


def _tamper_signature(header: str) -> str:
    start = header.index('signature="') + len('signature="')
    first = header[start]
    return header[:start] + ("A" if first != "A" else "B") + header[start + 1 :]


def _non_ed25519(header: str, signer: Ed25519Signer) -> str:
    import base58

    secp = "did:key:z" + base58.b58encode(b"\xe7\x01" + b"\x02" * 33).decode()
    fingerprint = secp.split(":")[-1]
    return header.replace(signer.id, f"{secp}#{fingerprint}")


SIGNATURE_ATTACKS = {
    "expired": lambda s, now, path: sign(s, "PUT", path, created=now - 3600, expires=now - 1000),
    "future-dated": lambda s, now, path: sign(s, "PUT", path, created=now + 1000, expires=now + 1030),
    "over-long": lambda s, now, path: sign(s, "PUT", path, created=now, expires=now + 2 * 24 * 3600),
    "path-swapped": lambda s, now, path: sign(s, "PUT", path.replace("target", "other")),
    "method-swapped": lambda s, now, path: sign(s, "DELETE", path),
    "tampered": lambda s, now, path: {
        "authorization": _tamper_signature(sign(s, "PUT", path)["authorization"])
    },
    "non-ed25519": lambda s, now, path: {
        "authorization": _non_ed25519(sign(s, "PUT", path)["authorization"], s)
    },
}


@pytest.mark.parametrize("attack", sorted(SIGNATURE_ATTACKS))
@pytest_twisted.ensureDeferred
async def test_bad_signatures_are_refused(api: Api, alice: Ed25519Signer, attack: str) -> None:
    """Expired, future-dated, over-long, swapped, tampered and non-Ed25519 signatures write nothing (401)."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/target.txt"
    headers = SIGNATURE_ATTACKS[attack](alice, api.clock.seconds(), path)
    r = await api.http.put(BASE + path, data=b"evil", headers=headers)
    assert r.code == 401, attack
    assert json.loads(await body_of(r))["type"] == SPEC + "invalid-authorization-header"
    assert api.backend.read_resource(sid, "/target.txt")[1] is None


@pytest_twisted.ensureDeferred
async def test_container_path_serves_a_resource_stored_there(api: Api, alice: Ed25519Signer) -> None:
    """GET of a path ending in / lists, unless a resource is stored at exactly that path."""
    sid = await provision(api, alice)
    coll = f"/space/{sid}/notes/"
    r = await api.http.put(BASE + coll + "a", data=b"a", headers=sign(alice, "PUT", coll + "a"))
    r = await api.http.get(BASE + coll, headers=sign(alice, "GET", coll))
    assert json.loads(await body_of(r))["totalItems"] == 1
    r = await api.http.put(BASE + coll, data=b"index", headers=sign(alice, "PUT", coll))
    assert r.code == 204
    r = await api.http.get(BASE + coll, headers=sign(alice, "GET", coll))
    assert await body_of(r) == b"index"


@pytest_twisted.ensureDeferred
async def test_signature_for_a_query_does_not_open_an_escaped_question_mark(
    api: Api, alice: Ed25519Signer
) -> None:
    """A signature over /a?b (resource a) is refused on /a%3Fb (the resource named 'a?b')."""
    sid = await provision(api, alice)
    signed_for_query = sign(alice, "PUT", f"/space/{sid}/a?b")
    r = await api.http.put(BASE + f"/space/{sid}/a%3Fb", data=b"x", headers=signed_for_query)
    assert r.code == 401
    assert api.backend.read_resource(sid, "/a?b")[1] is None
    # The resource named 'a?b' is reachable with a signature over its encoded path.
    r = await api.http.put(
        BASE + f"/space/{sid}/a%3Fb", data=b"x", headers=sign(alice, "PUT", f"/space/{sid}/a%3Fb")
    )
    assert r.code == 204


@pytest_twisted.ensureDeferred
async def test_if_none_match_answers_304(api: Api, alice: Ed25519Signer) -> None:
    """GET with If-None-Match naming the current ETag is 304 without a body; a stale one gets the bytes."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/cached.txt"
    await api.http.put(BASE + path, data=b"v1", headers=sign(alice, "PUT", path))
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    etag = r.headers.getRawHeaders("etag")[0]
    await body_of(r)
    r = await api.http.get(BASE + path, headers={"if-none-match": etag, **sign(alice, "GET", path)})
    assert r.code == 304 and await body_of(r) == b""
    await api.http.put(BASE + path, data=b"v2", headers=sign(alice, "PUT", path))
    r = await api.http.get(BASE + path, headers={"if-none-match": etag, **sign(alice, "GET", path)})
    assert r.code == 200 and await body_of(r) == b"v2"
    # Privacy first: a stranger with the right ETag still gets the 404.
    r = await api.http.get(BASE + path, headers={"if-none-match": "*", **sign(Ed25519Signer(), "GET", path)})
    assert r.code == 404
