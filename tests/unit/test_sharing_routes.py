"""Sharing over the HTTP API in-process: root invocations, Digest, policies, linksets.

Delegated chains are pinned in test_zcap.py (fixtures made by the JavaScript
libraries) and driven end to end in tests/integration/test_e2e_zcap.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.invoke import digest_header, invoke, root_id
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

SPEC = "https://wallet.storage/spec#"


async def body_of(r: Any) -> bytes:
    return bytes(await r.content())


async def provision(api: Api, signer: Ed25519Signer) -> str:
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"controller": signer.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(signer, "PUT", path))
    assert r.code in (201, 204), await r.text()
    return sid


async def put(api: Api, signer: Ed25519Signer, path: str, data: bytes, ct: str = "text/plain") -> None:
    r = await api.http.put(BASE + path, data=data, headers={"content-type": ct, **sign(signer, "PUT", path)})
    assert r.code == 204, await r.text()


def api_with(**settings: Any) -> Api:
    clock = Clock()
    clock.advance(time.time())
    backend = MemoryBackend()
    ops = Operations(AsyncStorage(backend, run_inline), Settings(backend="memory", **settings), clock)
    return Api(StubTreq(WASApp(ops, "memory").resource()), ops, clock, backend)


# -- root invocations ----------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_root_invocation_by_the_controller(api: Api, alice: Ed25519Signer) -> None:
    """The controller invokes the root zCap of the target or of an ancestor on a '/' boundary."""
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/notes/a.txt"
    await put(api, alice, rpath, b"hello")
    url = BASE + rpath
    for root in (url, BASE + f"/space/{sid}", BASE + f"/space/{sid}/notes", BASE + f"/space/{sid}/notes/"):
        r = await api.http.get(url, headers=invoke(alice, "GET", url, capability=root_id(root)))
        assert r.code == 200, (root, await r.text())
        assert await body_of(r) == b"hello"
    # HEAD is authorized as GET.
    r = await api.http.head(url, headers=invoke(alice, "HEAD", url, capability=root_id(url), action="GET"))
    assert r.code == 200


@pytest_twisted.ensureDeferred
async def test_root_invocation_mismatches_answer_as_absent(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """Another URL's root, a sibling's, a plain-prefix one, the wrong action, a stranger: all 404."""
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/notes/a.txt"
    await put(api, alice, rpath, b"hello")
    url = BASE + rpath
    other = str(uuid.uuid4())
    absent_url = BASE + f"/space/{other}/notes/a.txt"
    r = await api.http.get(absent_url, headers=invoke(alice, "GET", absent_url))
    absent = (r.code, await body_of(r))
    assert absent[0] == 404
    cases = [
        invoke(alice, "GET", url, capability=root_id(BASE + f"/space/{other}")),
        invoke(alice, "GET", url, capability=root_id(BASE + f"/space/{sid}/notes/b.txt")),
        invoke(alice, "GET", url, capability=root_id(BASE + f"/space/{sid}/not")),
        invoke(alice, "GET", url, capability=root_id("https://elsewhere.example" + rpath)),
        invoke(alice, "GET", url, action="PUT"),
        invoke(alice, "GET", url, action="HEAD"),  # HEAD counts as GET, never the other way round
        invoke(alice, "GET", url, action="get"),
        invoke(mallory, "GET", url),
        invoke(alice, "GET", url, capability=root_id(BASE + "/space")),
    ]
    for headers in cases:
        r = await api.http.get(url, headers=headers)
        assert (r.code, await body_of(r)) == absent, headers["capability-invocation"]


@pytest_twisted.ensureDeferred
async def test_invocation_must_sign_host_and_invocation(api: Api, alice: Ed25519Signer) -> None:
    """A Capability-Invocation not covered by the signature, or aimed at another host, is refused."""
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/a.txt"
    await put(api, alice, rpath, b"x")
    url = BASE + rpath
    bare = ["(key-id)", "(created)", "(expires)", "(request-target)"]
    # Without WAS_PUBLIC_URL the origin is the request's own Host: another host is another target.
    r = await api.http.get(url, headers=invoke(alice, "GET", url, host="evil.example"))
    assert r.code == 404
    for headers in (
        invoke(alice, "GET", url, covered=bare),
        invoke(alice, "GET", url, covered=[*bare, "host"]),
    ):
        r = await api.http.get(url, headers=headers)
        assert r.code == 401
        assert json.loads(await body_of(r))["type"] == SPEC + "invalid-authorization-header"
    r = await api.http.get(
        url, headers={**sign(alice, "GET", rpath), "capability-invocation": "zcap nonsense"}
    )
    assert r.code == 401


@pytest_twisted.ensureDeferred
async def test_public_url_names_the_origin(alice: Ed25519Signer) -> None:
    """With WAS_PUBLIC_URL, targets are checked against it, not the Host the request came in on."""
    api = api_with(public_url="https://storage.example.com")
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/a.txt"
    await put(api, alice, rpath, b"x")
    public = "https://storage.example.com" + rpath
    r = await api.http.get(BASE + rpath, headers=invoke(alice, "GET", public))
    assert r.code == 200
    r = await api.http.get(BASE + rpath, headers=invoke(alice, "GET", BASE + rpath))
    assert r.code == 401  # signed host is not the public one
    # Locations use the public origin.
    spath = f"/space/{uuid.uuid4()}"
    body = json.dumps({"controller": alice.controller}).encode()
    r = await api.http.put(BASE + spath, data=body, headers=sign(alice, "PUT", spath))
    assert r.headers.getRawHeaders("location") == ["https://storage.example.com" + spath]


# -- Digest ------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_digest_is_checked_and_nothing_is_written_on_refusal(api: Api, alice: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    rpath = f"/space/{sid}/doc.json"
    url = BASE + rpath
    original = b'{"v":1}'
    r = await api.http.put(url, data=original, headers=invoke(alice, "PUT", url, body=original))
    assert r.code == 204, await r.text()

    async def stored() -> bytes:
        r = await api.http.get(url, headers=sign(alice, "GET", rpath))
        return await body_of(r)

    signed_for = b'{"v":2}'
    altered = invoke(alice, "PUT", url, body=signed_for)
    malformed = invoke(alice, "PUT", url, body=signed_for, digest="mh=zzz")
    missing = invoke(alice, "PUT", url, body=signed_for)
    del missing["digest"]
    missing["authorization"] = invoke(
        alice,
        "PUT",
        url,
        body=signed_for,
        covered=[
            "(key-id)",
            "(created)",
            "(expires)",
            "(request-target)",
            "host",
            "capability-invocation",
            "content-type",
        ],
    )["authorization"]
    for headers, body in ((altered, b'{"v":3}'), (malformed, signed_for), (missing, signed_for)):
        r = await api.http.put(url, data=body, headers=headers)
        assert r.code in (400, 401), await r.text()
        assert json.loads(await body_of(r))["type"] == SPEC + "invalid-authorization-header"
        assert await stored() == original
    # A plain controller signature with a wrong Digest is refused too (the header is always checked).
    r = await api.http.put(
        url, data=b"other", headers={**sign(alice, "PUT", rpath), "digest": digest_header(b"something else")}
    )
    assert r.code == 400 and await stored() == original
    # And a correct one is stored.
    r = await api.http.put(url, data=signed_for, headers=invoke(alice, "PUT", url, body=signed_for))
    assert r.code == 204 and await stored() == signed_for


@pytest_twisted.ensureDeferred
async def test_require_digest(alice: Ed25519Signer) -> None:
    api = api_with(require_digest=True)
    sid = await provision_with_digest(api, alice)
    rpath = f"/space/{sid}/a.txt"
    r = await api.http.put(BASE + rpath, data=b"x", headers=sign(alice, "PUT", rpath))
    assert r.code == 400
    r = await api.http.put(
        BASE + rpath, data=b"x", headers={**sign(alice, "PUT", rpath), "digest": digest_header(b"x")}
    )
    assert r.code == 204


async def provision_with_digest(api: Api, signer: Ed25519Signer) -> str:
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"controller": signer.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(signer, "PUT", path))
    assert r.code == 400  # no Digest
    r = await api.http.put(
        BASE + path, data=body, headers={**sign(signer, "PUT", path), "digest": digest_header(body)}
    )
    assert r.code == 201, await r.text()
    return sid


# -- policies --------------------------------------------------------------------------


async def set_policy(api: Api, signer: Ed25519Signer, path: str, doc: object) -> int:
    body = json.dumps(doc).encode()
    r = await api.http.put(
        BASE + path, data=body, headers={"content-type": "application/json", **sign(signer, "PUT", path)}
    )
    return r.code


async def reads(api: Api, path: str, who: Ed25519Signer | None) -> tuple[int, int]:
    """(GET status, HEAD status) for ``who`` (``None``: unsigned)."""
    codes = []
    for method in ("GET", "HEAD"):
        headers = sign(who, method, path) if who else {}
        r = await api.http.request(method, BASE + path, headers=headers)
        await body_of(r)
        codes.append(r.code)
    return codes[0], codes[1]


@pytest_twisted.ensureDeferred
async def test_public_can_read_at_each_level(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """PublicCanRead on a space, a container and a resource; unsigned and a stranger; never writes."""
    for level in ("space", "container", "resource"):
        sid = await provision(api, alice)
        res = f"/space/{sid}/public/x.txt"
        sibling = f"/space/{sid}/private/y.txt"
        await put(api, alice, res, b"shared")
        await put(api, alice, sibling, b"secret")
        policy_path = {
            "space": f"/space/{sid}/policy",
            "container": f"/space/{sid}/public/policy",
            "resource": f"/space/{sid}/public/x.txt/policy",
        }[level]
        for who in (None, mallory):
            assert await reads(api, res, who) == (404, 404)
        assert await set_policy(api, alice, policy_path, {"type": "PublicCanRead"}) == 204
        for who in (None, mallory):
            assert await reads(api, res, who) == (200, 200), level
            r = await api.http.get(BASE + res)
            assert await body_of(r) == b"shared"
            expected_sibling = (200, 200) if level == "space" else (404, 404)
            assert await reads(api, sibling, who) == expected_sibling, level
            r = await api.http.put(BASE + res, data=b"vandal", headers=sign(who, "PUT", res) if who else {})
            assert r.code == 404
        r = await api.http.get(BASE + policy_path, headers=sign(alice, "GET", policy_path))
        assert json.loads(await body_of(r)) == {"type": "PublicCanRead"}
        # Removal makes it private again.
        r = await api.http.delete(BASE + policy_path, headers=sign(alice, "DELETE", policy_path))
        assert r.code == 204
        assert await reads(api, res, None) == (404, 404)


@pytest_twisted.ensureDeferred
async def test_most_specific_policy_decides(api: Api, alice: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    a, b = f"/space/{sid}/c/a.txt", f"/space/{sid}/c/b.txt"
    await put(api, alice, a, b"a")
    await put(api, alice, b, b"b")
    assert await set_policy(api, alice, f"/space/{sid}/policy", {"type": "PublicCanRead"}) == 204
    assert await set_policy(api, alice, f"/space/{sid}/c/a.txt/policy", {"type": "SomethingElse"}) == 204
    assert await reads(api, a, None) == (404, 404)  # unknown type grants nothing, and it is the most specific
    assert await reads(api, b, None) == (200, 200)
    assert await set_policy(api, alice, f"/space/{sid}/c/policy", {"type": "Private"}) == 204
    assert await reads(api, b, None) == (404, 404)
    # A policy never denies a capability: the controller still reads.
    assert await reads(api, a, alice) == (200, 200)


@pytest_twisted.ensureDeferred
async def test_policy_endpoints_are_the_controllers(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    sid = await provision(api, alice)
    ppath = f"/space/{sid}/policy"
    assert await set_policy(api, mallory, ppath, {"type": "PublicCanRead"}) == 404
    assert await set_policy(api, alice, ppath, {"type": "PublicCanRead"}) == 204
    for who in (None, mallory):
        r = await api.http.get(BASE + ppath, headers=sign(who, "GET", ppath) if who else {})
        assert r.code == 404
        r = await api.http.delete(BASE + ppath, headers=sign(who, "DELETE", ppath) if who else {})
        assert r.code == 404
    for bad in (b"[]", b"{}", b'{"type": 3}', b"not json"):
        r = await api.http.put(BASE + ppath, data=bad, headers=sign(alice, "PUT", ppath))
        assert r.code == 400 and json.loads(await body_of(r))["type"] == SPEC + "invalid-request-body"
    # A resource named policy deeper than the spec's levels stays a resource.
    deep = f"/space/{sid}/a/b/c/policy"
    await put(api, alice, deep, b"just a file")
    r = await api.http.get(BASE + deep, headers=sign(alice, "GET", deep))
    assert await body_of(r) == b"just a file"
    assert await reads(api, deep, None) == (200, 200)  # the space policy covers it


@pytest_twisted.ensureDeferred
async def test_linksets(api: Api, alice: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    spath = f"/space/{sid}"
    r = await api.http.get(BASE + spath, headers=sign(alice, "GET", spath))
    assert json.loads(await body_of(r))["linkset"] == f"{spath}/linkset"
    for lpath, anchor in ((f"{spath}/linkset", spath), (f"{spath}/notes/linkset", f"{spath}/notes")):
        r = await api.http.get(BASE + lpath, headers=sign(alice, "GET", lpath))
        assert r.code == 200
        assert r.headers.getRawHeaders("content-type") == ["application/linkset+json"]
        assert json.loads(await body_of(r)) == {
            "linkset": [
                {
                    "anchor": anchor,
                    "https://wallet.storage/spec#policy": [
                        {"href": f"{anchor}/policy", "type": "application/json"}
                    ],
                }
            ]
        }
        r = await api.http.get(BASE + lpath)
        assert r.code == 404
        r = await api.http.put(BASE + lpath, data=b"{}", headers=sign(alice, "PUT", lpath))
        assert r.code == 409 and json.loads(await body_of(r))["type"] == SPEC + "reserved-id"
    # A container whose name needs escaping is anchored by its URL, escaped once.
    lpath = f"{spath}/my%20notes/linkset"
    r = await api.http.get(BASE + lpath, headers=sign(alice, "GET", lpath))
    assert json.loads(await body_of(r))["linkset"][0]["anchor"] == f"{spath}/my%20notes"
    # Deeper, 'linkset' is a resource name like any other.
    deep = f"{spath}/a/b/linkset"
    r = await api.http.put(BASE + deep, data=b"mine", headers=sign(alice, "PUT", deep))
    assert r.code == 204


@pytest_twisted.ensureDeferred
async def test_legacy_reads_public_unless_a_policy_says_otherwise(
    legacy_api: Api, alice: Ed25519Signer
) -> None:
    api = legacy_api
    sid = await provision(api, alice)
    res = f"/space/{sid}/x.txt"
    await put(api, alice, res, b"x")
    assert await reads(api, res, None) == (200, 200)
    assert await set_policy(api, alice, f"/space/{sid}/policy", {"type": "Private"}) == 204
    assert await reads(api, res, None) == (401, 401)
    assert await reads(api, res, alice) == (200, 200)


@pytest.mark.parametrize("path", ["/zcaps/revocations/", "/zcaps/revocations/x"])
@pytest_twisted.ensureDeferred
async def test_revocation_endpoints_refuse_other_methods(api: Api, alice: Ed25519Signer, path: str) -> None:
    sid = await provision(api, alice)
    full = f"/space/{sid}{path}"
    r = await api.http.put(BASE + full, data=b"{}", headers=sign(alice, "PUT", full))
    assert r.code == 405
