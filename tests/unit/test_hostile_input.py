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
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from was_twisted.bodies import MAX_DEPTH, json_object
from was_twisted.config import Settings
from was_twisted.errors import InvalidRequestBody
from was_twisted.operations import Operations
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

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
