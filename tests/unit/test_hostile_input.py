"""Hostile input over the HTTP API, in-process: every answer is a 4xx problem document, never a 500.

Issue 9 item 5: deep or unencodable JSON bodies, duplicate authorization
headers and signature parameters, non-ASCII key ids, invalid UTF-8 and
overlong or surrogate percent-encodings in paths, and the ``Host`` header.
Filesystem storage is used where it matters: it is the backend that encodes
what it stores (memory keeps Python strings as they came).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, make_api, sign
from tests.unit.test_rfc9421_routes import signed as rfc9421_signed
from was_twisted.bodies import MAX_DEPTH, json_object
from was_twisted.config import Settings
from was_twisted.errors import BadRequest, InvalidRequestBody
from was_twisted.operations import Operations
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp
from was_twisted.web.guard import check_host

SPEC = "https://wallet.storage/spec#"
PROBLEM = ["application/problem+json"]


def fs_api(root: Path, **settings: Any) -> Api:
    """The API over the filesystem backend, storage calls run inline (blocking, in-process)."""
    clock = Clock()
    clock.advance(time.time())
    backend = FilesystemBackend(str(root))
    ops = Operations(AsyncStorage(backend, run_inline), Settings(backend="filesystem", **settings), clock)
    return Api(StubTreq(WASApp(ops, "filesystem").resource()), ops, clock, backend)  # type: ignore[arg-type]


async def problem(r: Any, status: int, kind: str) -> dict[str, Any]:
    """The response's problem document, checked for status, media type and ``type``."""
    body = bytes(await r.content())
    assert r.code == status, body
    assert r.headers.getRawHeaders("content-type") == PROBLEM
    doc: dict[str, Any] = json.loads(body)
    assert doc["type"] == SPEC + kind, doc
    return doc


# -- JSON bodies -------------------------------------------------------------------


def test_json_object_depth_limit() -> None:
    """Nesting up to MAX_DEPTH is accepted; one level more is invalid-request-body with a pointer."""
    ok = {"a": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}
    assert json_object(json.dumps(ok).encode(), limit=1 << 20, what="X") == ok
    deep = json.dumps({"a": json.loads("[" * MAX_DEPTH + "]" * MAX_DEPTH)}).encode()
    with pytest.raises(InvalidRequestBody) as info:
        json_object(deep, limit=1 << 20, what="X")
    assert info.value.pointer == "#/a" + "/0" * (MAX_DEPTH - 1)
    with pytest.raises(InvalidRequestBody):
        json_object(b"[" * 100_000 + b"]" * 100_000, limit=1 << 20, what="X")


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        (b'{"name":"\\ud800"}', "#/name"),
        (b'{"a":{"b/c":["x","\\udfff"]}}', "#/a/b~1c/1"),
        (b'{"\\ud800":1}', "#"),
        ('{"name":"\ud800"}'.encode("utf-8", "surrogatepass"), "#/name"),
    ],
)
def test_json_object_refuses_lone_surrogates(body: bytes, pointer: str) -> None:
    """A string no UTF-8 encoder accepts (escaped or raw) is refused, pointing at where it is."""
    with pytest.raises(InvalidRequestBody) as info:
        json_object(body, limit=1 << 20, what="X")
    assert info.value.pointer == pointer


@pytest_twisted.ensureDeferred
async def test_space_body_deep_or_surrogate_is_400(tmp_path: Path) -> None:
    """PUT /space/{id} with a 2,000-deep body or a lone-surrogate name: 400, nothing stored (filesystem)."""
    api = fs_api(tmp_path)
    alice = Ed25519Signer()
    bodies = [
        b'{"controller":"%s","x":' % alice.controller.encode() + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"controller":"%s","name":"\\ud800"}' % alice.controller.encode(),
        b'{"controller":"%s","name":"ok","x":{"\\udc00":1}}' % alice.controller.encode(),
    ]
    for body in bodies:
        path = f"/space/{uuid.uuid4()}"
        r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
        await problem(r, 400, "invalid-request-body")
        r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
        assert r.code == 404


async def provision(api: Api, signer: Ed25519Signer) -> str:
    space_id = str(uuid.uuid4())
    path = f"/space/{space_id}"
    body = json.dumps({"controller": signer.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(signer, "PUT", path))
    assert r.code in (201, 204), await r.text()
    return space_id


# -- authorization headers -------------------------------------------------------------


@pytest.mark.parametrize("profile", ["spec", "legacy"])
@pytest_twisted.ensureDeferred
async def test_two_authorization_headers_are_400(profile: str) -> None:
    """A valid signature and garbage, in either order: 400 invalid-authorization-header, nothing written."""
    api = make_api(profile)
    alice = Ed25519Signer()
    sid = await provision(api, alice)
    path = f"/space/{sid}/doc"
    valid = sign(alice, "PUT", path)["authorization"]
    for pair in ([valid, "Signature garbage"], ["Signature garbage", valid], [valid, valid]):
        r = await api.http.put(BASE + path, data=b"x", headers={"authorization": pair})
        await problem(r, 400, "invalid-authorization-header")
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_repeated_signature_headers_and_parameters_are_400() -> None:
    """Two Signature-Input lines, or a parameter repeated inside one header (Cavage or RFC 9421): 400."""
    api = make_api()
    alice = Ed25519Signer()
    sid = await provision(api, alice)
    path = f"/space/{sid}"
    header = sign(alice, "GET", path)["authorization"]
    created = header.split('created="', 1)[1].split('"', 1)[0]
    r = await api.http.get(BASE + path, headers={"authorization": header + f',created="{created}"'})
    doc = await problem(r, 400, "invalid-authorization-header")
    assert "more than once" in doc["detail"]
    key = Ed25519PrivateKey.generate()
    bob = Ed25519Signer(key)
    headers = rfc9421_signed(api, key, "GET", BASE + path)
    r = await api.http.get(BASE + path, headers=headers)
    assert r.code == 404  # well-formed: bob is simply not the controller
    repeated = dict(headers)
    repeated["Signature-Input"] += ";created=1"
    r = await api.http.get(BASE + path, headers=repeated)
    await problem(r, 400, "invalid-authorization-header")
    r = await api.http.get(
        BASE + path,
        headers={**headers, "Signature-Input": [headers["Signature-Input"], headers["Signature-Input"]]},
    )
    await problem(r, 400, "invalid-authorization-header")
    assert bob.controller != alice.controller


@pytest.mark.parametrize("profile", ["spec", "legacy"])
@pytest_twisted.ensureDeferred
async def test_key_ids_and_header_bytes_never_500(profile: str) -> None:
    """keyIds with non-ASCII characters (UTF-8 or Latin-1 bytes) are refused as bad signatures."""
    api = make_api(profile)
    now = int(api.clock.seconds())
    for key_id in (
        "did:key:z\u00e9",
        "did:key:z6Mk\u00e9\u00e9#z6Mk\u00e9\u00e9",
        "\u00ff\u00fe",
        "did:key:z\x7f",
    ):
        for raw in (key_id.encode("utf-8"), key_id.encode("latin-1")):
            header = (
                b'Signature keyId="%s",headers="(request-target) (created) (expires)",'
                b'signature="%s",created="%d",expires="%d"' % (raw, b"A" * 86, now, now + 60)
            )
            for path in ("/space/abc", "/space/abc/r", "/spaces/"):
                r = await api.http.get(BASE + path, headers={b"authorization": [header]})
                body = bytes(await r.content())
                assert 400 <= r.code < 500 or (path == "/spaces/" and r.code == 200), (key_id, r.code, body)
                assert r.code == 200 or r.headers.getRawHeaders("content-type") == PROBLEM
    odd = {b"digest": [b"mh=\xff\xfe"], b"capability-invocation": [b'zcap id="\xe9"'], b"x-any": [b"\x80"]}
    for name, value in odd.items():
        r = await api.http.get(BASE + "/space/abc", headers={name: value})
        assert 400 <= r.code < 500, (name, r.code)


# -- paths -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_invalid_utf8_in_paths_is_invalid_id() -> None:
    """Invalid UTF-8, overlong forms and encoded surrogates: 400 invalid-id problem, not Klein's HTML."""
    api = make_api()
    alice = Ed25519Signer()
    sid = await provision(api, alice)
    for path in (
        f"/space/{sid}/x/%ff%fe",
        f"/space/{sid}/%c0%af",
        f"/space/{sid}/%ed%a0%80",
        "/space/%ff",
        "/spaces/%e0%80%80",
        "/nowhere/%c3",
    ):
        for method in ("GET", "PUT"):
            r = await api.http.request(method, BASE + path, data=b"x", headers=sign(alice, method, path))
            await problem(r, 400, "invalid-id")


# -- Host, Location and other single headers -------------------------------------------


@pytest.mark.parametrize(
    ("values", "version", "ok"),
    [
        ([b"example.com"], b"HTTP/1.1", True),
        ([b"127.0.0.1:8080"], b"HTTP/1.1", True),
        ([b"[::1]:443"], b"HTTP/1.1", True),
        ([b"was_1.internal."], b"HTTP/1.1", True),
        (None, b"HTTP/1.0", True),
        (None, b"HTTP/1.1", False),
        ([b"a", b"a"], b"HTTP/1.1", False),
        ([b"a", b"b"], b"HTTP/1.0", False),
        ([b""], b"HTTP/1.1", False),
        ([b"a b c"], b"HTTP/1.1", False),
        ([b"a\tb"], b"HTTP/1.1", False),
        ([b"host:99999"], b"HTTP/1.1", False),
        ([b"host:"], b"HTTP/1.1", False),
        ([b"host:80:80"], b"HTTP/1.1", False),
        ([b"[::g]"], b"HTTP/1.1", False),
        ([b"h\xc3\xa9st"], b"HTTP/1.1", False),
        ([b"user@host"], b"HTTP/1.1", False),
        ([b"host/path"], b"HTTP/1.1", False),
        ([b"a..b"], b"HTTP/1.1", False),
    ],
)
def test_check_host(values: list[bytes] | None, version: bytes, ok: bool) -> None:
    if ok:
        check_host(values, version)
    else:
        with pytest.raises(BadRequest):
            check_host(values, version)


@pytest_twisted.ensureDeferred
async def test_malformed_host_never_reaches_location() -> None:
    """POST /spaces/ with ``Host: a b c`` (or any malformed one) is 400 bad-request: no space, no Location."""
    api = make_api()
    alice = Ed25519Signer()
    body = json.dumps({"controller": alice.controller}).encode()
    for host in ("a b c", "was.test\x01", "was.test:x", "evil.example/x?"):
        headers = {**sign(alice, "POST", "/spaces/"), "host": host}
        r = await api.http.post(BASE + "/spaces/", data=body, headers=headers)
        await problem(r, 400, "bad-request")
        assert r.headers.getRawHeaders("location") is None
    r = await api.http.get(BASE + "/spaces/", headers=sign(alice, "GET", "/spaces/"))
    assert json.loads(await r.text())["items"] == []


@pytest_twisted.ensureDeferred
async def test_location_uses_public_url() -> None:
    """With WAS_PUBLIC_URL set, Location names it whatever Host the request had."""
    clock = Clock()
    clock.advance(time.time())
    from was_twisted.storage.memory import MemoryBackend

    settings = Settings(backend="memory", public_url="https://storage.example.com")
    ops = Operations(AsyncStorage(MemoryBackend(), run_inline), settings, clock)
    http = StubTreq(WASApp(ops, "memory").resource())
    alice = Ed25519Signer()
    body = json.dumps({"controller": alice.controller}).encode()
    headers = {**sign(alice, "POST", "/spaces/"), "host": "elsewhere.example:8443"}
    r = await http.post(BASE + "/spaces/", data=body, headers=headers)
    assert r.code == 201, await r.text()
    (location,) = r.headers.getRawHeaders("location")
    assert location.startswith("https://storage.example.com/space/")


@pytest_twisted.ensureDeferred
async def test_repeated_or_odd_single_headers_are_400() -> None:
    """Two Content-Types (the signature would read one, storage another), or one with odd bytes: 400."""
    api = make_api()
    alice = Ed25519Signer()
    sid = await provision(api, alice)
    path = f"/space/{sid}/doc"
    for value in ([b"text/plain", b"text/html"], [b"text/pl\xe9in"], [b"text/plain\x7f"]):
        headers = {
            b"authorization": [sign(alice, "PUT", path)["authorization"].encode()],
            b"content-type": value,
        }
        r = await api.http.put(BASE + path, data=b"x", headers=headers)
        await problem(r, 400, "bad-request")
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.code == 404
    r = await api.http.get(
        BASE + path, headers={**sign(alice, "GET", path), "range": ["bytes=0-1", "bytes=2-3"]}
    )
    await problem(r, 400, "bad-request")


@pytest.mark.parametrize("body", [b'{"a":NaN}', b'{"a":-Infinity}', b'{"a":1,"a":2}', b'{"x":{"b":1,"b":1}}'])
def test_json_object_is_strict_json(body: bytes) -> None:
    """NaN/Infinity (not JSON) and a member named twice (ambiguous) are refused."""
    with pytest.raises(InvalidRequestBody):
        json_object(body, limit=1 << 20, what="X")
