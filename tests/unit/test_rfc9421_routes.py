"""RFC 9421 signatures over the HTTP API, made by the ``http-message-signatures`` package as a client."""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.invoke import root_id


class _Keys(HTTPSignatureKeyResolver):
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        return self.key


class _Request:
    """The shape the package signs: ``method``, ``url``, ``headers``."""

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers


def signed(
    api: Api,
    key: Ed25519PrivateKey,
    method: str,
    url: str,
    body: bytes | None = None,
    extra: dict[str, str] | None = None,
    covered: tuple[str, ...] = ("@method", "@target-uri"),
) -> dict[str, str]:
    """Headers carrying an RFC 9421 signature by ``key`` (a did:key) over ``covered``."""
    holder = Ed25519Signer(key)
    headers = dict(extra or {})
    if body is not None:
        # The package computes Content-Digest (RFC 9530) itself.
        headers["Content-Type"] = "text/plain"
        covered = (*covered, "content-type", "content-digest")
    now = datetime.datetime.fromtimestamp(int(api.clock.seconds()), datetime.UTC)
    req = _Request(method, url, headers)
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(key)).sign(
        req,
        key_id=holder.id,
        created=now,
        expires=now + datetime.timedelta(seconds=300),
        covered_component_ids=covered,
        label="sig",
        body=body,
    )
    if body is not None:
        assert headers["Content-Digest"].startswith(("sha-256=:", "sha-512=:"))
    return req.headers


async def body_of(r: Any) -> bytes:
    return bytes(await r.content())


@pytest_twisted.ensureDeferred
async def test_rfc9421_controller_requests(api: Api) -> None:
    key = Ed25519PrivateKey.generate()
    alice = Ed25519Signer(key)
    sid = str(uuid.uuid4())
    spath = f"/space/{sid}"
    body = json.dumps({"controller": alice.controller}).encode()
    r = await api.http.put(BASE + spath, data=body, headers=sign(alice, "PUT", spath))
    assert r.code == 201
    url = BASE + spath + "/notes/a.txt"
    r = await api.http.put(url, data=b"hello", headers=signed(api, key, "PUT", url, body=b"hello"))
    assert r.code == 204, await r.text()
    r = await api.http.get(url, headers=signed(api, key, "GET", url))
    assert r.code == 200 and await body_of(r) == b"hello"
    # The body changed after signing: the Content-Digest check refuses it and nothing is written.
    r = await api.http.put(url, data=b"HELLO", headers=signed(api, key, "PUT", url, body=b"hello"))
    assert r.code == 400
    # Signed for another resource.
    r = await api.http.get(url, headers=signed(api, key, "GET", BASE + spath + "/notes/b.txt"))
    assert r.code == 401
    # A body without content-digest coverage is refused.
    headers = signed(api, key, "PUT", url)
    r = await api.http.put(url, data=b"x", headers=headers)
    assert r.code == 401
    # Expired (past the skew).
    api.clock.advance(-1000)
    stale = signed(api, key, "GET", url)
    api.clock.advance(1000)
    r = await api.http.get(url, headers=stale)
    assert r.code == 401
    r = await api.http.get(url, headers=sign(alice, "GET", spath + "/notes/a.txt"))
    assert await body_of(r) == b"hello"


@pytest_twisted.ensureDeferred
async def test_rfc9421_with_capability_invocation(api: Api) -> None:
    key = Ed25519PrivateKey.generate()
    alice = Ed25519Signer(key)
    sid = str(uuid.uuid4())
    spath = f"/space/{sid}"
    body = json.dumps({"controller": alice.controller}).encode()
    await api.http.put(BASE + spath, data=body, headers=sign(alice, "PUT", spath))
    url = BASE + spath + "/a.txt"
    await api.http.put(url, data=b"x", headers=sign(alice, "PUT", spath + "/a.txt"))
    invocation = {"Capability-Invocation": f'zcap id="{root_id(BASE + spath)}",action="GET"'}
    covered = ("@method", "@target-uri", "capability-invocation")
    r = await api.http.get(url, headers=signed(api, key, "GET", url, extra=invocation, covered=covered))
    assert r.code == 200, await r.text()
    # The invocation header must be signed.
    r = await api.http.get(url, headers=signed(api, key, "GET", url, extra=invocation))
    assert r.code == 401
    # A root of another space answers as absent.
    other = {"Capability-Invocation": f'zcap id="{root_id(BASE + "/space/other")}",action="GET"'}
    r = await api.http.get(url, headers=signed(api, key, "GET", url, extra=other, covered=covered))
    assert r.code == 404
