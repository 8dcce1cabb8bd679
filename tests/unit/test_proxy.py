"""Forwarded headers count only from trusted proxies: parsing, the chain walk, the origin, the access log."""

from __future__ import annotations

import ipaddress
import json
import time
import uuid
from typing import Any

import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.web.http import combinedLogFormatter
from twisted.web.http_headers import Headers
from twisted.web.test.requesthelper import DummyRequest
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, sign
from tests.invoke import invoke
from was_twisted.config import ConfigError, Settings, settings_from_env
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp
from was_twisted.web.proxy import (
    Forwarded,
    TrustedProxies,
    access_log_formatter,
    forwarded,
    parse_address,
    parse_forwarded,
)

ip = ipaddress.ip_address
TRUSTED = TrustedProxies(["127.0.0.1/8", "10.0.0.0/8", "fd00::/8"])
PUBLIC = "https://storage.example.com"


def headers(**values: str | list[str]) -> Headers:
    h = Headers()
    for name, value in values.items():
        h.setRawHeaders(name.replace("_", "-"), value if isinstance(value, list) else [value])
    return h


# -- configuration ------------------------------------------------------------------


def test_trusted_proxies_setting_is_parsed_and_normalized() -> None:
    assert settings_from_env({}).trusted_proxies == ()
    parsed = settings_from_env({"WAS_TRUSTED_PROXIES": " 127.0.0.1/8, 10.1.2.3  fd00::/8,::1 10.1.2.3"})
    assert parsed.trusted_proxies == ("127.0.0.0/8", "10.1.2.3/32", "fd00::/8", "::1/128")


@pytest.mark.parametrize(
    "value", ["localhost", "10.0.0.0/33", "300.1.1.1", "fd00::/129", "10.0.0.1-10.0.0.9"]
)
def test_trusted_proxies_setting_refuses_what_is_not_an_address(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        settings_from_env({"WAS_TRUSTED_PROXIES": f"127.0.0.1 {value}"})
    message = str(info.value)
    assert message.startswith("WAS_TRUSTED_PROXIES ") and repr(value) in message
    assert message.count(".") >= 1 and message.endswith(".")


# -- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7:4711 ", "203.0.113.7"),
        ("2001:db8::1", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ('"[2001:db8::1]:4711"', "2001:db8::1"),
        ("[2001:db8::1]:_port", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
    ],
)
def test_parse_address_reads_every_form_proxies_write(text: str, expected: str) -> None:
    assert parse_address(text) == ip(expected)


@pytest.mark.parametrize(
    "text",
    ["", "unknown", "_hidden", "1.2.3", "example.com", "[2001:db8::1", "[192.0.2.1]", "1.2.3.4:x", "[::1]x"],
)
def test_parse_address_refuses_the_rest(text: str) -> None:
    assert parse_address(text) is None


def test_trusted_proxies_match_cidrs_of_both_families_and_nothing_else() -> None:
    assert (
        TRUSTED.trusts(ip("127.9.9.9")) and TRUSTED.trusts(ip("10.200.0.1")) and TRUSTED.trusts(ip("fd12::1"))
    )
    assert not TRUSTED.trusts(ip("192.0.2.1")) and not TRUSTED.trusts(ip("2001:db8::1"))
    assert not TRUSTED.trusts(None)
    assert not TrustedProxies() and not TrustedProxies().trusts(ip("127.0.0.1"))


def test_parse_forwarded_elements_and_quoting() -> None:
    line = 'For="[2001:db8::1]:4711";Proto=https;host="a.example", for=10.0.0.2 ;;by=x, ,for="q\\"t"'
    assert parse_forwarded([line]) == [
        {"for": "[2001:db8::1]:4711", "proto": "https", "host": "a.example"},
        {"for": "10.0.0.2", "by": "x"},
        {"for": 'q"t'},
    ]
    for bad in ['for="open', "for", "for=a b", "for=a;for=b", "=x", "for=a,host"]:
        assert parse_forwarded([bad]) is None, bad


# -- who the client is -------------------------------------------------------------------


def test_an_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    sent = headers(
        x_forwarded_for="198.51.100.1",
        x_forwarded_proto="https",
        x_forwarded_host="evil.example",
        forwarded="for=198.51.100.1;proto=https;host=evil.example",
    )
    assert forwarded(ip("192.0.2.50"), sent, TRUSTED) == Forwarded(ip("192.0.2.50"))
    assert forwarded(ip("127.0.0.1"), sent, TrustedProxies()) == Forwarded(ip("127.0.0.1"))


def test_trusted_peer_without_forwarded_headers_is_the_client() -> None:
    assert forwarded(ip("10.0.0.5"), Headers(), TRUSTED) == Forwarded(ip("10.0.0.5"))


def test_chain_is_walked_from_the_right_past_trusted_proxies() -> None:
    """A client's own X-Forwarded-For (left) is never believed: the first untrusted hop from the right is."""
    sent = headers(x_forwarded_for=["198.51.100.1, 203.0.113.7", "10.0.0.9, 127.0.0.2"])
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED).client == ip("203.0.113.7")
    # Every hop a trusted proxy: the left-most is the client.
    assert forwarded(ip("127.0.0.1"), headers(x_forwarded_for="10.0.0.1, 10.0.0.2"), TRUSTED).client == ip(
        "10.0.0.1"
    )
    # A malformed hop ends the walk: nothing left of it is believed.
    sent = headers(x_forwarded_for="203.0.113.7, not-an-ip, 10.0.0.9")
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED).client == ip("10.0.0.9")
    sent = headers(x_forwarded_for="203.0.113.7, garbage")
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED).client == ip("127.0.0.1")


def test_ipv6_peer_and_clients() -> None:
    sent = headers(x_forwarded_for="2001:db8::7, [fd00::3]:8080", x_forwarded_proto="https")
    seen = forwarded(ip("fd00::1"), sent, TRUSTED)
    assert seen == Forwarded(ip("2001:db8::7"), "https", None)
    sent = headers(x_forwarded_host="[2001:db8::1]:8443")
    assert forwarded(ip("::ffff:127.0.0.1"), sent, TRUSTED).host == "[2001:db8::1]:8443"


def test_proto_and_host_come_from_the_nearest_proxy_and_are_validated() -> None:
    sent = headers(x_forwarded_proto="http, HTTPS", x_forwarded_host=["spoof.example", "storage.example.com"])
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED) == Forwarded(
        ip("127.0.0.1"), "https", "storage.example.com"
    )
    for proto in ("ftp", "https://", ""):
        assert forwarded(ip("127.0.0.1"), headers(x_forwarded_proto=proto), TRUSTED).proto is None
    for host in ("evil/x", "a b", "user@host", "h:99999", "[::zz]", "-bad.example", "h:", "a..b"):
        assert forwarded(ip("127.0.0.1"), headers(x_forwarded_host=host), TRUSTED).host is None, host
    assert forwarded(ip("127.0.0.1"), headers(x_forwarded_host="Storage.example.com:8443"), TRUSTED).host == (
        "Storage.example.com:8443"
    )


def test_rfc7239_forwarded_header() -> None:
    sent = headers(
        forwarded='for=198.51.100.1;host=spoof, for="[2001:db8::1]:4711";proto=https;host=a.example'
    )
    sent.addRawHeader("forwarded", "for=10.0.0.2;proto=http;host=internal")
    # The element about the client was written by the outermost trusted proxy: its proto and host count.
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED) == Forwarded(ip("2001:db8::1"), "https", "a.example")
    # An obfuscated node stops the walk; the element a trusted proxy wrote about it still counts.
    sent = headers(forwarded="for=_hidden;proto=https;host=b.example, for=10.0.0.2")
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED) == Forwarded(ip("10.0.0.2"), "https", "b.example")
    # Malformed: ignored as a whole.
    assert forwarded(ip("127.0.0.1"), headers(forwarded='for="x;proto=https'), TRUSTED) == Forwarded(
        ip("127.0.0.1")
    )


def test_x_forwarded_headers_win_over_forwarded() -> None:
    sent = headers(x_forwarded_proto="https", forwarded="for=198.51.100.1;host=other.example")
    assert forwarded(ip("127.0.0.1"), sent, TRUSTED) == Forwarded(ip("127.0.0.1"), "https", None)


# -- the origin, through the app (StubTreq's peer is 127.0.0.1) ----------------------------


def app(**settings: Any) -> StubTreq:
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(MemoryBackend(), run_inline), Settings(backend="memory", **settings), clock)
    return StubTreq(WASApp(ops, "memory").resource())


VIA_PROXY = {
    "x-forwarded-proto": "https",
    "x-forwarded-host": "storage.example.com",
    "x-forwarded-for": "1.2.3.4",
}


async def create(http: StubTreq, signer: Ed25519Signer, extra: dict[str, str]) -> Any:
    path = f"/space/{uuid.uuid4()}"
    body = json.dumps({"controller": signer.controller}).encode()
    r = await http.put(BASE + path, data=body, headers={**sign(signer, "PUT", path), **extra})
    assert r.code == 201, await r.text()
    return path, r.headers.getRawHeaders("location")


@pytest_twisted.ensureDeferred
async def test_location_follows_forwarded_headers_from_a_trusted_peer(alice: Ed25519Signer) -> None:
    http = app(trusted_proxies=("127.0.0.0/8",))
    path, location = await create(http, alice, VIA_PROXY)
    assert location == [PUBLIC + path]
    r = await http.post(
        BASE + "/spaces/",
        data=json.dumps({"controller": alice.controller}).encode(),
        headers={**sign(alice, "POST", "/spaces/"), **VIA_PROXY},
    )
    assert r.code == 201 and r.headers.getRawHeaders("location")[0].startswith(PUBLIC + "/space/")
    # Forwarded (RFC 7239) works the same; only the scheme forwarded: the Host stays.
    path, location = await create(http, alice, {"forwarded": "for=1.2.3.4;proto=https"})
    assert location == ["https://was.test" + path]


@pytest_twisted.ensureDeferred
async def test_forwarded_headers_are_ignored_from_an_untrusted_peer(alice: Ed25519Signer) -> None:
    for trusted in ((), ("10.0.0.0/8", "::1/128")):
        http = app(trusted_proxies=trusted)
        path, location = await create(http, alice, VIA_PROXY)
        assert location == [BASE + path]


@pytest_twisted.ensureDeferred
async def test_public_url_wins_and_malformed_values_are_never_a_500(alice: Ed25519Signer) -> None:
    http = app(trusted_proxies=("127.0.0.1",), public_url="https://public.example")
    path, location = await create(http, alice, VIA_PROXY)
    assert location == ["https://public.example" + path]
    http = app(trusted_proxies=("127.0.0.1",))
    bad = {
        "x-forwarded-proto": "gopher",
        "x-forwarded-host": "evil.example/x",
        "x-forwarded-for": "unknown, ;;,",
    }
    path, location = await create(http, alice, bad)
    assert location == [BASE + path]
    path, location = await create(http, alice, {"forwarded": 'for="[::1;proto=https'})
    assert location == [BASE + path]


@pytest_twisted.ensureDeferred
async def test_signed_targets_are_checked_against_the_forwarded_origin(alice: Ed25519Signer) -> None:
    """A zCap invocation of https://storage.example.com/... verifies only when the proxy is trusted."""
    for trusted, expected in ((("127.0.0.1",), 200), ((), 404)):
        http = app(trusted_proxies=trusted)
        sid = str(uuid.uuid4())
        spath = f"/space/{sid}"
        body = json.dumps({"controller": alice.controller}).encode()
        await http.put(BASE + spath, data=body, headers=sign(alice, "PUT", spath))
        url = f"{PUBLIC}{spath}"
        r = await http.get(BASE + spath, headers={**invoke(alice, "GET", url), "x-forwarded-proto": "https"})
        assert r.code == expected, (trusted, await r.text())


# -- the access log ---------------------------------------------------------------------


def log_request(peer: IPv4Address | IPv6Address, **sent: str) -> DummyRequest:
    request = DummyRequest([b"ready"])
    request.client = peer
    request.method = b"GET"
    request.uri = b"/ready"
    request.code = 200
    request.clientproto = b"HTTP/1.1"
    request.sentLength = 18
    for name, value in sent.items():
        request.requestHeaders.setRawHeaders(name.replace("_", "-"), [value])
    return request


def test_access_log_names_the_client_behind_a_trusted_proxy() -> None:
    line = access_log_formatter(TRUSTED)
    proxied = log_request(IPv4Address("TCP", "127.0.0.1", 5000), x_forwarded_for="203.0.113.7, 10.0.0.1")
    assert line("[ts]", proxied).startswith('"203.0.113.7" - - [ts] "GET /ready HTTP/1.1" 200 18')
    v6 = log_request(IPv6Address("TCP", "fd00::1", 5000), forwarded='for="[2001:db8::9]:1"')
    assert line("[ts]", v6).startswith('"2001:db8::9" - - [ts]')
    # An untrusted peer, or no header: the peer, exactly as twisted.web writes it.
    for request in (
        log_request(IPv4Address("TCP", "192.0.2.1", 5000), x_forwarded_for="203.0.113.7"),
        log_request(IPv4Address("TCP", "127.0.0.1", 5000)),
    ):
        assert line("[ts]", request) == combinedLogFormatter("[ts]", request)
