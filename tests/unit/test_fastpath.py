"""``/space/...`` skips Klein's dispatch (web/fastpath.py) and answers exactly as through Klein."""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import pytest
import pytest_twisted
from klein.resource import KleinResource
from twisted.internet import defer
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage
from was_twisted.web.app import WASApp


@pytest.fixture
def klein_renders(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The paths Klein's resource rendered."""
    seen: list[bytes] = []
    original = KleinResource.render

    def render(self: KleinResource, request: Any) -> Any:
        seen.append(request.path)
        return original(self, request)

    monkeypatch.setattr(KleinResource, "render", render)
    return seen


@pytest_twisted.ensureDeferred
async def test_space_requests_skip_klein_and_others_do_not(
    api: Api, alice: Ed25519Signer, klein_renders: list[bytes]
) -> None:
    """A space's PUT, a resource's PUT and GET, and their errors never reach Klein; /health does."""
    space = str(uuid.uuid4())
    path = f"/space/{space}"
    body = json.dumps({"id": f"urn:uuid:{space}", "controller": alice.controller}).encode()
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 201
    item = path + "/c/r"
    r = await api.http.put(
        BASE + item, data=b"hello", headers={**sign(alice, "PUT", item), "content-type": "text/plain"}
    )
    assert r.code == 204 and r.headers.getRawHeaders("etag")
    r = await api.http.get(BASE + item, headers=sign(alice, "GET", item))
    assert r.code == 200 and await r.content() == b"hello"
    r = await api.http.get(BASE + path + "/c/absent", headers=sign(alice, "GET", path + "/c/absent"))
    assert r.code == 404
    assert r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    assert json.loads(await r.content())["type"].endswith("#not-found")
    assert klein_renders == []
    r = await api.http.get(BASE + "/health")
    assert r.code == 200 and klein_renders == [b"/health"]


@pytest_twisted.ensureDeferred
async def test_odd_paths_get_the_handlers_problem_documents(api: Api, klein_renders: list[bytes]) -> None:
    """An empty segment is the handler's 400 (as through Klein); a non-UTF-8 path is a problem too."""
    for path in ("/space/s//x", "/space/%FF/x"):
        r = await api.http.get(BASE + path)
        assert r.code == 400, path
        assert r.headers.getRawHeaders("content-type") == ["application/problem+json"]
        assert json.loads(await r.content())["type"].endswith("#invalid-id")
    assert klein_renders == []


def _waiting_app() -> tuple[WASApp, list[defer.Deferred[Any]], list[bool]]:
    """An app whose every storage call waits on a Deferred the test holds (and sees cancelled)."""
    pending: list[defer.Deferred[Any]] = []
    cancelled: list[bool] = []

    def runner(f: Any, *args: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred(lambda _: cancelled.append(True))
        d.work = lambda: f(*args)  # type: ignore[attr-defined]
        pending.append(d)
        return d

    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(MemoryBackend(), runner), Settings(backend="memory"), clock)
    return WASApp(ops, "memory"), pending, cancelled


def _request(path: str, signer: Ed25519Signer) -> DummyRequest:
    request = DummyRequest([])
    request.isSecure = lambda: False  # type: ignore[method-assign]
    request.content = io.BytesIO()
    request.method = b"GET"
    request.uri = request.path = path.encode()
    request.requestHeaders.setRawHeaders(b"host", [b"was.test"])
    request.requestHeaders.setRawHeaders(b"authorization", [sign(signer, "GET", path)["authorization"]])
    return request


def test_a_waiting_request_is_cancelled_when_the_client_goes() -> None:
    """Like Klein: a lost connection cancels the handler's wait, and nothing is written after it."""
    app, pending, cancelled = _waiting_app()
    alice = Ed25519Signer()
    request = _request(f"/space/{uuid.uuid4()}/r", alice)
    assert app.resource().render(request) == NOT_DONE_YET
    assert len(pending) == 1 and not request.finished and not cancelled
    request._disconnected = True  # what Request.connectionLost sets before notifying
    request.processingFailed(Failure(ConnectionDone()))
    assert cancelled == [True]
    assert request.written == [] and request.finished == 0


def test_a_late_domain_error_is_a_problem_document() -> None:
    """An error raised after a wait goes through the same handlers as one raised at once."""
    app, pending, _ = _waiting_app()
    alice = Ed25519Signer()
    request = _request(f"/space/{uuid.uuid4()}/r", alice)
    app.resource().render(request)
    for d in pending:  # each storage call answers for itself in turn: there is no such space
        try:
            d.callback(d.work())  # type: ignore[attr-defined]
        except Exception:
            d.errback()
    assert request.responseCode == 404 and request.finished == 1
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/problem+json"]
    assert json.loads(b"".join(request.written))["type"].endswith("#not-found")


def test_the_error_table_is_kleins() -> None:
    """A handler added to ``WASApp`` with ``handle_errors`` must be added to the fast path too."""
    from was_twisted.web.fastpath import error_table

    kleins = [(tuple(types), handler) for types, handler in WASApp.app._error_handlers]
    ours = [((types,), handler) for types, handler in error_table(WASApp)]
    assert ours == kleins


@pytest_twisted.ensureDeferred
async def test_a_request_that_never_waits_is_answered_on_the_stack(
    api: Api, alice: Ed25519Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory storage never waits: no ``Deferred.fromCoroutine`` driver, no ``notifyFinish`` per request."""
    space = str(uuid.uuid4())
    path = f"/space/{space}"
    body = json.dumps({"id": f"urn:uuid:{space}", "controller": alice.controller}).encode()
    driven: list[object] = []
    original = defer.Deferred.fromCoroutine

    def counting(coro: Any) -> Any:
        driven.append(coro)
        return original(coro)

    monkeypatch.setattr(defer.Deferred, "fromCoroutine", staticmethod(counting))
    r = await api.http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 201
    r = await api.http.get(BASE + path + "/absent", headers=sign(alice, "GET", path + "/absent"))
    assert r.code == 404
    assert json.loads(await r.content())["type"].endswith("#not-found")
    assert driven == []
