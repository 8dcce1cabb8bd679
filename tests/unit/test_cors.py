"""CORS at the HTTP edge (in-process, StubTreq): preflights, headers on every status, origin lists, off."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, sign
from was_twisted.config import ConfigError, Settings, settings_from_env
from was_twisted.errors import Unavailable
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp
from was_twisted.web.cors import CORSResource
from was_twisted.web.limits import bounded_request_factory

SPEC = "https://wallet.storage/spec#"
METHODS = "GET, HEAD, PUT, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = (
    "Authorization, Capability-Invocation, Digest, Content-Digest, Content-Type, If-Match, "
    "If-None-Match, Range, Signature, Signature-Input, Key-Epoch, Writer-Id, Accept"
)
EXPOSED = "Location, ETag, Link, Content-Range, Content-Length, Retry-After"
WALLET = "https://wallet.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization, content-type",
}


def http_over(
    origins: tuple[str, ...] = ("*",), backend: Any = None, run: Any = run_inline, **settings: Any
) -> StubTreq:
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(
        AsyncStorage(backend or MemoryBackend(), run),
        Settings(backend="memory", cors_origins=origins, **settings),
        clock,
    )
    return StubTreq(WASApp(ops, "memory").resource())


def cors_headers(r: Any) -> dict[str, list[str]]:
    """Every ``Access-Control-*`` header of a response, by lower-case name."""
    return {
        name.decode().lower(): [v.decode() for v in values]
        for name, values in r.headers.getAllRawHeaders()
        if name.lower().startswith(b"access-control-")
    }


def assert_simple_cors(r: Any, origin: str = "*") -> None:
    """What every non-preflight response carries for an allowed origin."""
    assert cors_headers(r) == {
        "access-control-allow-origin": [origin],
        "access-control-expose-headers": [EXPOSED],
    }


async def provision(http: StubTreq, signer: Ed25519Signer) -> str:
    space_id = str(uuid.uuid4())
    path = f"/space/{space_id}"
    body = json.dumps({"controller": signer.controller}).encode()
    r = await http.put(BASE + path, data=body, headers=sign(signer, "PUT", path))
    assert r.code == 201, await r.text()
    assert_simple_cors(r)
    return space_id


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/health",
        "/spaces/",
        "/space/abc",
        "/space/abc/notes/",
        "/space/abc/a/b.json",
        "/space/abc/policy",
    ]
    + ["/space/abc/zcaps/revocations/x", "/no/such/route", "/space/%ZZ"],
)
@pytest_twisted.ensureDeferred
async def test_preflight_on_any_path_is_204_unsigned(path: str) -> None:
    """An unsigned OPTIONS anywhere (even a path the API would refuse) is 204 with the preflight headers."""
    r = await http_over().request("OPTIONS", BASE + path, headers={"Origin": WALLET, **PREFLIGHT})
    assert r.code == 204
    assert cors_headers(r) == {
        "access-control-allow-origin": ["*"],
        "access-control-allow-methods": [METHODS],
        "access-control-allow-headers": [ALLOWED_HEADERS],
        "access-control-max-age": ["7200"],
    }
    assert not r.headers.hasHeader("vary") and not r.headers.hasHeader("content-type")
    assert await r.content() == b""


class MustNotRender(Resource):
    """Stands in for the API: a preflight that reached it fails the test."""

    isLeaf = True
    rendered = 0

    def render(self, request: IRequest) -> bytes:
        MustNotRender.rendered += 1
        return b"the API answered"


@pytest_twisted.ensureDeferred
async def test_preflight_never_reaches_the_api_and_other_methods_do() -> None:
    """OPTIONS is answered by the CORS layer alone; every other method is delegated."""
    MustNotRender.rendered = 0
    http = StubTreq(CORSResource(MustNotRender(), ("*",)))
    r = await http.request("OPTIONS", BASE + "/space/s/r", headers=PREFLIGHT)
    assert r.code == 204 and MustNotRender.rendered == 0
    r = await http.get(BASE + "/space/s/r")
    assert await r.content() == b"the API answered" and MustNotRender.rendered == 1
    assert_simple_cors(r)


@pytest_twisted.ensureDeferred
async def test_every_status_carries_the_cors_headers() -> None:
    """200, 201, 204, 304, 404, 401 and 405 each keep their status and body and gain the CORS headers."""
    http = http_over()
    alice = Ed25519Signer()
    origin = {"Origin": WALLET}

    r = await http.get(BASE + "/health", headers=origin)
    assert r.code == 200 and json.loads(await r.content()) == {"status": "ok"}
    assert_simple_cors(r)

    sid = await provision(http, alice)  # 201, checked inside
    path = f"/space/{sid}/notes/a.txt"
    r = await http.put(
        BASE + path, data=b"hi", headers={**origin, "Content-Type": "text/plain", **sign(alice, "PUT", path)}
    )
    assert r.code == 204
    assert_simple_cors(r)

    r = await http.get(BASE + path, headers={**origin, **sign(alice, "GET", path)})
    assert r.code == 200 and await r.content() == b"hi"
    assert_simple_cors(r)
    etag = r.headers.getRawHeaders("etag")[0]

    r = await http.get(BASE + path, headers={**origin, "If-None-Match": etag, **sign(alice, "GET", path)})
    assert r.code == 304
    assert_simple_cors(r)

    r = await http.get(BASE + path, headers=origin)
    assert r.code == 404 and r.headers.getRawHeaders("content-type") == ["application/problem+json"]
    assert json.loads(await r.content())["type"] == SPEC + "not-found"
    assert_simple_cors(r)

    new = f"/space/{uuid.uuid4()}"
    r = await http.put(BASE + new, data=json.dumps({"controller": alice.controller}).encode(), headers=origin)
    assert r.code == 401 and json.loads(await r.content())["type"] == SPEC + "missing-authorization"
    assert_simple_cors(r)

    r = await http.post(BASE + "/health", headers=origin)
    assert r.code == 405 and r.headers.getRawHeaders("allow") == ["GET, HEAD"]
    assert_simple_cors(r)


@pytest_twisted.ensureDeferred
async def test_payload_too_large_carries_the_cors_headers() -> None:
    """413 (the body was over WAS_MAX_UPLOAD_BYTES) keeps the headers."""
    http = http_over(max_upload=8)
    # StubTreq builds its own Site; give it the bounded request class twistd's site uses.
    http._agent._serverFactory.requestFactory = bounded_request_factory(8)
    r = await http.put(BASE + "/space/s/big", data=b"x" * 100, headers={"Origin": WALLET})
    assert r.code == 413 and json.loads(await r.content())["type"] == SPEC + "payload-too-large"
    assert_simple_cors(r)


@pytest_twisted.ensureDeferred
async def test_unavailable_carries_the_cors_headers_and_exposes_retry_after() -> None:
    """503 keeps the headers, and Retry-After is among those a page may read."""

    def busy(f: Any, *args: Any) -> Any:
        return defer.fail(Unavailable("The server is busy; retry shortly.", retry_after=2))

    http = http_over(run=busy)
    path = "/space/s1/r"
    r = await http.get(BASE + path, headers={"Origin": WALLET, **sign(Ed25519Signer(), "GET", path)})
    assert r.code == 503 and r.headers.getRawHeaders("retry-after") == ["2"]
    assert_simple_cors(r)
    assert "Retry-After" in r.headers.getRawHeaders("access-control-expose-headers")[0].split(", ")


class Exploding(MemoryBackend):
    """A backend with a bug."""

    def read_resource(self, space_id: str, path: str, with_body: bool = True) -> Any:
        raise RuntimeError("bug")


@pytest_twisted.ensureDeferred
async def test_internal_error_carries_the_cors_headers() -> None:
    """500 (an unexpected failure) keeps the headers, so a page can read the request id."""
    http = http_over(backend=Exploding(), run=lambda f, *a: defer.maybeDeferred(f, *a))
    path = "/space/s1/r"
    r = await http.get(BASE + path, headers={"Origin": WALLET, **sign(Ed25519Signer(), "GET", path)})
    assert r.code == 500 and json.loads(await r.content())["type"] == SPEC + "internal-error"
    assert_simple_cors(r)


@pytest_twisted.ensureDeferred
async def test_origin_list_reflects_allowed_origins_only() -> None:
    """With a list, a listed Origin is reflected (with Vary: Origin); any other gets no CORS header."""
    origins = settings_from_env({"WAS_CORS_ORIGINS": "https://Wallet.example:443, http://localhost:3000"})
    http = http_over(origins.cors_origins)
    for allowed in (WALLET, "http://localhost:3000"):
        r = await http.request("OPTIONS", BASE + "/space/s", headers={"Origin": allowed, **PREFLIGHT})
        assert r.code == 204 and r.headers.getRawHeaders("vary") == ["Origin"]
        assert cors_headers(r) == {
            "access-control-allow-origin": [allowed],
            "access-control-allow-methods": [METHODS],
            "access-control-allow-headers": [ALLOWED_HEADERS],
            "access-control-max-age": ["7200"],
        }
        r = await http.get(BASE + "/health", headers={"Origin": allowed})
        assert r.code == 200 and r.headers.getRawHeaders("vary") == ["Origin"]
        assert_simple_cors(r, allowed)

    for other in ("https://evil.example", "http://localhost:3001", "https://wallet.example.evil", "null"):
        r = await http.request("OPTIONS", BASE + "/space/s", headers={"Origin": other, **PREFLIGHT})
        assert r.code == 204 and cors_headers(r) == {} and r.headers.getRawHeaders("vary") == ["Origin"]
        r = await http.get(BASE + "/health", headers={"Origin": other})
        assert r.code == 200 and cors_headers(r) == {} and r.headers.getRawHeaders("vary") == ["Origin"]

    r = await http.get(BASE + "/space/s/r")  # no Origin at all: same-origin or not a browser
    assert r.code == 404 and cors_headers(r) == {} and r.headers.getRawHeaders("vary") == ["Origin"]


@pytest_twisted.ensureDeferred
async def test_off_sends_no_cors_headers_and_options_reaches_the_api() -> None:
    """WAS_CORS_ORIGINS=off: Klein's resource as it was; OPTIONS is the API's to refuse."""
    off = settings_from_env({"WAS_CORS_ORIGINS": "off"}).cors_origins
    assert off == ()
    http = http_over(off)
    r = await http.get(BASE + "/health", headers={"Origin": WALLET})
    assert r.code == 200 and cors_headers(r) == {} and not r.headers.hasHeader("vary")
    r = await http.request("OPTIONS", BASE + "/health", headers={"Origin": WALLET, **PREFLIGHT})
    assert r.code == 405 and cors_headers(r) == {}
    r = await http.request("OPTIONS", BASE + "/space/s/r", headers={"Origin": WALLET, **PREFLIGHT})
    assert r.code == 405 and cors_headers(r) == {}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ("*",)),
        ("", ("*",)),
        ("  *  ", ("*",)),
        ("off", ()),
        (" OFF ", ()),
        ("https://wallet.example", ("https://wallet.example",)),
        (
            "https://wallet.example, http://localhost:3000",
            ("https://wallet.example", "http://localhost:3000"),
        ),
        ("https://a.example  http://b.example:8080,,", ("https://a.example", "http://b.example:8080")),
        ("HTTPS://Wallet.EXAMPLE:443/", ("https://wallet.example",)),
        ("http://x.example:80 http://x.example", ("http://x.example",)),
        ("http://[::1]:3000", ("http://[::1]:3000",)),
    ],
)
def test_cors_origins_parsing(raw: str | None, expected: tuple[str, ...]) -> None:
    """Default any; off; a comma- or space-separated list, kept as browsers serialize Origin."""
    env = {} if raw is None else {"WAS_CORS_ORIGINS": raw}
    assert settings_from_env(env).cors_origins == expected


@pytest.mark.parametrize(
    "raw",
    [
        "wallet.example",
        "ftp://wallet.example",
        "https://wallet.example/app",
        "https://wallet.example?x",
        "https://wallet.example#x",
        "https://user@wallet.example",
        "https://wallet.example:99999",
        "https://wallet.example:port",
        "https://wallet.example:",
        "https://",
        "*, https://wallet.example",
        "https://wället.example",
        "null",
    ],
)
def test_cors_origins_errors_name_the_variable(raw: str) -> None:
    """Anything but *, off or origins stops start-up with one sentence naming WAS_CORS_ORIGINS."""
    with pytest.raises(ConfigError, match=r"^WAS_CORS_ORIGINS must be \*, off, or origins .*\.$"):
        settings_from_env({"WAS_CORS_ORIGINS": raw})
