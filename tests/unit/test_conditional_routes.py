"""Conditional requests and Range over HTTP, in-process (StubTreq over memory storage)."""

from __future__ import annotations

import json
from email.utils import formatdate
from typing import Any

import pytest
import pytest_twisted
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.unit.test_routes import body_of, provision

SPEC = "https://wallet.storage/spec#"
DATA = b"0123456789"


def header(r: Any, name: str) -> str | None:
    values = r.headers.getRawHeaders(name)
    return values[0] if values else None


async def put(api: Api, signer: Ed25519Signer, path: str, data: bytes, **headers: str) -> Any:
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    r = await api.http.put(BASE + path, data=data, headers={**h, **sign(signer, "PUT", path)})
    await body_of(r)
    return r


async def get(api: Api, signer: Ed25519Signer, path: str, method: str = "GET", **headers: str) -> Any:
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    return await api.http.request(method, BASE + path, headers={**h, **sign(signer, method, path)})


async def problem_type(r: Any) -> str:
    assert header(r, "content-type") == "application/problem+json"
    return str(json.loads(await body_of(r))["type"])


async def stored(api: Api, signer: Ed25519Signer, path: str) -> bytes:
    r = await get(api, signer, path)
    assert r.code == 200
    return await body_of(r)


# -- conditional writes ---------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_writes_answer_the_new_etag(api: Api, alice: Ed25519Signer) -> None:
    """PUT and POST answer with the ETag a following GET shows."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/e.txt"
    r = await put(api, alice, path, b"v1")
    assert r.code == 204 and header(r, "etag")
    g = await get(api, alice, path)
    assert header(g, "etag") == header(r, "etag")
    await body_of(g)
    r = await api.http.post(BASE + path, data=b"v2", headers=sign(alice, "POST", path))
    assert r.code == 201 and header(r, "etag") not in (None, header(g, "etag"))
    await body_of(r)


@pytest_twisted.ensureDeferred
async def test_if_match_and_if_none_match_on_put(api: Api, alice: Ed25519Signer) -> None:
    """A false If-Match / If-None-Match: * is 412 precondition-failed and nothing is written."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/doc.json"
    r = await put(api, alice, path, b"v1", if_none_match="*")
    assert r.code == 204
    v1 = header(r, "etag")
    assert v1
    r = await api.http.put(
        BASE + path, data=b"v2", headers={"if-none-match": "*", **sign(alice, "PUT", path)}
    )
    assert r.code == 412 and await problem_type(r) == SPEC + "precondition-failed"
    r = await api.http.put(
        BASE + path, data=b"v2", headers={"if-match": '"stale"', **sign(alice, "PUT", path)}
    )
    assert r.code == 412 and await problem_type(r) == SPEC + "precondition-failed"
    assert await stored(api, alice, path) == b"v1"
    r = await put(api, alice, path, b"v2", if_match=f'"other", {v1}')
    assert r.code == 204 and header(r, "etag") != v1
    assert await stored(api, alice, path) == b"v2"
    r = await put(api, alice, f"/space/{sid}/absent", b"x", if_match="*")
    assert r.code == 412


@pytest_twisted.ensureDeferred
async def test_post_to_an_exact_path_is_conditional(api: Api, alice: Ed25519Signer) -> None:
    """POST at an exact path honours If-None-Match: * like PUT."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/once"
    hdrs = {"if-none-match": "*"}
    r = await api.http.post(BASE + path, data=b"a", headers={**hdrs, **sign(alice, "POST", path)})
    assert r.code == 201
    await body_of(r)
    r = await api.http.post(BASE + path, data=b"b", headers={**hdrs, **sign(alice, "POST", path)})
    assert r.code == 412
    await body_of(r)
    assert await stored(api, alice, path) == b"a"


@pytest_twisted.ensureDeferred
async def test_conditional_delete(api: Api, alice: Ed25519Signer) -> None:
    """DELETE with a stale If-Match is 412 and deletes nothing; with the current ETag it deletes."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/d"
    etag = header(await put(api, alice, path, b"x"), "etag")
    assert etag
    r = await api.http.delete(BASE + path, headers={"if-match": '"stale"', **sign(alice, "DELETE", path)})
    assert r.code == 412
    await body_of(r)
    assert await stored(api, alice, path) == b"x"
    r = await api.http.delete(BASE + path, headers={"if-match": etag, **sign(alice, "DELETE", path)})
    assert r.code == 204
    r = await get(api, alice, path)
    assert r.code == 404
    await body_of(r)


@pytest_twisted.ensureDeferred
async def test_unauthorized_sees_404_never_412(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """Authorization is decided before the precondition: a stranger gets the not-found 404."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/secret"
    await put(api, alice, path, b"x")
    for method, hdrs in (
        ("PUT", {"if-none-match": "*"}),
        ("PUT", {"if-match": '"stale"'}),
        ("DELETE", {"if-match": '"stale"'}),
        ("POST", {"if-none-match": "*"}),
    ):
        r = await api.http.request(
            method, BASE + path, data=b"y", headers={**hdrs, **sign(mallory, method, path)}
        )
        assert r.code == 404, method
        assert await problem_type(r) == SPEC + "not-found"
    r = await api.http.put(
        BASE + f"/space/{sid}",
        data=b"{}",
        headers={"if-match": '"x"', **sign(mallory, "PUT", f"/space/{sid}")},
    )
    assert r.code in (400, 404)
    await body_of(r)
    assert await stored(api, alice, path) == b"x"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("if-match", "stale"),
        ("if-match", '"a", *'),
        ("if-match", ""),
        ("if-none-match", '"a"'),
        ("if-none-match", "nope"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_preconditions_are_400(api: Api, alice: Ed25519Signer, name: str, value: str) -> None:
    """A precondition that is not *, or not quoted entity tags (or a tag list in If-None-Match) is 400."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/m"
    r = await api.http.put(BASE + path, data=b"x", headers={name: value, **sign(alice, "PUT", path)})
    assert r.code == 400
    assert await problem_type(r) == SPEC + "invalid-request-body"
    r = await get(api, alice, path)
    assert r.code == 404
    await body_of(r)


# -- the space's ETag -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_space_etag_compare_and_swap(api: Api, alice: Ed25519Signer) -> None:
    """GET /space/{id} has an ETag; PUT with If-Match needs it current and answers the new one."""
    sid = await provision(api, alice)
    path = f"/space/{sid}"
    r = await get(api, alice, path)
    v1 = header(r, "etag")
    assert r.code == 200 and v1
    await body_of(r)
    body = json.dumps({"id": sid, "controller": alice.controller, "name": "renamed"}).encode()
    r = await api.http.put(BASE + path, data=body, headers={"if-match": v1, **sign(alice, "PUT", path)})
    assert r.code == 204
    v2 = header(r, "etag")
    assert v2 and v2 != v1
    r = await get(api, alice, path)
    assert header(r, "etag") == v2
    await body_of(r)
    stale = json.dumps({"id": sid, "controller": alice.controller, "name": "lost"}).encode()
    r = await api.http.put(BASE + path, data=stale, headers={"if-match": v1, **sign(alice, "PUT", path)})
    assert r.code == 412 and await problem_type(r) == SPEC + "precondition-failed"
    r = await api.http.put(
        BASE + path, data=stale, headers={"if-none-match": "*", **sign(alice, "PUT", path)}
    )
    assert r.code == 412
    await body_of(r)
    r = await get(api, alice, path)
    assert json.loads(await body_of(r))["name"] == "renamed"


@pytest_twisted.ensureDeferred
async def test_space_create_only_if_absent(api: Api, alice: Ed25519Signer) -> None:
    """PUT /space/{id} with If-None-Match: * creates (201 + ETag); If-Match on an absent space is 412."""
    sid = "fresh-space"
    path = f"/space/{sid}"
    body = json.dumps({"id": sid, "controller": alice.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers={"if-match": '"x"', **sign(alice, "PUT", path)})
    assert r.code == 412
    await body_of(r)
    r = await api.http.put(BASE + path, data=body, headers={"if-none-match": "*", **sign(alice, "PUT", path)})
    assert r.code == 201 and header(r, "etag")
    await body_of(r)


# -- Range ----------------------------------------------------------------------------------------------


async def ranged(api: Api, signer: Ed25519Signer, path: str, method: str = "GET", **headers: str) -> Any:
    r = await get(api, signer, path, method, **headers)
    return r, await body_of(r)


@pytest.mark.parametrize(
    ("spec", "content", "content_range"),
    [
        ("bytes=0-3", b"0123", "bytes 0-3/10"),
        ("bytes=6-", b"6789", "bytes 6-9/10"),
        ("bytes=-3", b"789", "bytes 7-9/10"),
        ("bytes=8-100", b"89", "bytes 8-9/10"),
        ("BYTES = 2-2", b"2", "bytes 2-2/10"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_single_range_is_206(
    api: Api, alice: Ed25519Signer, spec: str, content: bytes, content_range: str
) -> None:
    """One bytes= range answers 206 with the slice, Content-Range and the slice's Content-Length."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/digits"
    await put(api, alice, path, DATA, content_type="text/plain")
    r, got = await ranged(api, alice, path, range=spec)
    assert (r.code, got) == (206, content)
    assert header(r, "content-range") == content_range
    assert r.length == len(content)  # the client keeps Content-Length as .length
    assert header(r, "content-type") == "text/plain" and header(r, "accept-ranges") == "bytes"


@pytest_twisted.ensureDeferred
async def test_unsatisfiable_range_is_416(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """A range past the end is 416 with Content-Range: bytes */size; a stranger still gets 404."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/digits"
    await put(api, alice, path, DATA)
    r, got = await ranged(api, alice, path, range="bytes=10-")
    assert r.code == 416 and header(r, "content-range") == "bytes */10"
    assert json.loads(got)["type"] == SPEC + "range-not-satisfiable"
    r, _ = await ranged(api, mallory, path, range="bytes=10-")
    assert r.code == 404
    r, _ = await ranged(api, mallory, path, range="bytes=0-1")
    assert r.code == 404


@pytest.mark.parametrize("spec", ["bytes=0-1,4-5", "bytes=5-2", "items=0-1", "bytes=x-", "bytes=-0"])
@pytest_twisted.ensureDeferred
async def test_ignored_ranges_give_the_whole_body(api: Api, alice: Ed25519Signer, spec: str) -> None:
    """Several ranges, an invalid or foreign one: 200 with the whole body (bytes=-0: unsatisfiable)."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/digits"
    await put(api, alice, path, DATA)
    r, got = await ranged(api, alice, path, range=spec)
    if spec == "bytes=-0":
        assert r.code == 416
        return
    assert (r.code, got) == (200, DATA) and header(r, "content-range") is None


@pytest_twisted.ensureDeferred
async def test_if_range(api: Api, alice: Ed25519Signer) -> None:
    """If-Range with the current ETag or Last-Modified gives the range; anything else the whole body."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/digits"
    await put(api, alice, path, DATA)
    r, _ = await ranged(api, alice, path)
    etag, modified = header(r, "etag"), header(r, "last-modified")
    assert etag and modified
    r, got = await ranged(api, alice, path, range="bytes=0-1", if_range=etag)
    assert (r.code, got) == (206, b"01")
    r, got = await ranged(api, alice, path, range="bytes=0-1", if_range=modified)
    assert (r.code, got) == (206, b"01")
    for stale in ('"stale"', "W/" + etag, formatdate(0, usegmt=True), "garbage"):
        r, got = await ranged(api, alice, path, range="bytes=0-1", if_range=stale)
        assert (r.code, got) == (200, DATA), stale
    r, got = await ranged(api, alice, path, range="bytes=50-", if_range='"stale"')
    assert (r.code, got) == (200, DATA)


@pytest_twisted.ensureDeferred
async def test_head_and_reads_carry_validators(api: Api, alice: Ed25519Signer) -> None:
    """GET and HEAD carry ETag, Last-Modified and Accept-Ranges; HEAD ignores Range (RFC 9110 14.2)."""
    sid = await provision(api, alice)
    path = f"/space/{sid}/digits"
    await put(api, alice, path, DATA)
    r, got = await ranged(api, alice, path, "HEAD", range="bytes=0-1")
    assert (r.code, got) == (200, b"")
    assert header(r, "accept-ranges") == "bytes"
    assert (
        header(r, "etag")
        and header(
            r,
            "last-modified",
        )
        and header(r, "content-range") is None
    )
    r, _ = await ranged(api, alice, path, if_none_match=header(r, "etag") or "", range="bytes=0-1")
    assert r.code == 304


@pytest_twisted.ensureDeferred
async def test_range_on_listings_and_documents_is_ignored(api: Api, alice: Ed25519Signer) -> None:
    """A Range on a container listing or a space description is ignored: 200, the whole JSON."""
    sid = await provision(api, alice)
    await put(api, alice, f"/space/{sid}/dir/a", DATA)
    for path in (f"/space/{sid}/dir/", f"/space/{sid}"):
        r, got = await ranged(api, alice, path, range="bytes=0-1")
        assert r.code == 200 and json.loads(got) and header(r, "content-range") is None
