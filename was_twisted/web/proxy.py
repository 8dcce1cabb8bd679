"""Forwarded headers, believed only from the proxies an operator trusts (``WAS_TRUSTED_PROXIES``).

Behind a load balancer the TCP peer is the balancer, and what the client
used (its address, ``https``, the public ``Host``) arrives in
``X-Forwarded-For``/``-Proto``/``-Host`` or RFC 7239 ``Forwarded``.  Anyone
can send those headers, so they count only when the peer is a trusted
proxy, and the client is found by walking the chain from the right: the
first hop that is not itself a trusted proxy.  Every value is validated;
a malformed one is ignored, never an error.

When any ``X-Forwarded-*`` header is present those are used and
``Forwarded`` is not (a proxy sets one family; the other may be the client's).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web.http import combinedLogFormatter
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAccessLogFormatter, IRequest

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_X_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host")
_PORT = re.compile(r":(?:[0-9]{1,5}|_[A-Za-z0-9._-]+)")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[([0-9A-Fa-f:.]+)\])(?::([0-9]{{1,5}}))?")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_ITEM = re.compile(rf"[ \t]*(?:({_TOKEN})=({_TOKEN}|{_QUOTED}))?[ \t]*([,;]|$)")


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs (host bits allowed: ``127.0.0.1/8``); ``ValueError`` names the bad item."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(item) from None
    return tuple(networks)


class TrustedProxies:
    """The networks whose forwarded headers we believe; empty (the default) trusts no one."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = parse_networks(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        address = _unmapped(address)
        return address is not None and any(address in net for net in self.networks)


def _unmapped(address: Address | None) -> Address | None:
    """An IPv4-mapped IPv6 address (``::ffff:10.0.0.1``, from a dual-stack socket) as its IPv4 address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_address(text: str) -> Address | None:
    """A hop as proxies write it (``1.2.3.4``, ``1.2.3.4:80``, ``::1``, ``"[::1]:80"``); else ``None``.

    An IPv4-mapped IPv6 address is its IPv4 address, as a dual-stack socket reports it.
    """
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or (text[end + 1 :] and not _PORT.fullmatch(text[end + 1 :])):
            return None
        text = text[1:end]
        if ":" not in text:
            return None
    elif text.count(":") == 1:
        text, colon, port = text.partition(":")
        if not _PORT.fullmatch(colon + port):
            return None
    try:
        return _unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def _proto(value: str | None) -> str | None:
    value = (value or "").strip().strip('"').lower()
    return value if value in ("http", "https") else None


def _host(value: str | None) -> str | None:
    """A ``host[:port]`` safe to build an origin from, as sent (a bracketed IPv6 literal checked)."""
    value = (value or "").strip().strip('"')
    match = _HOST.fullmatch(value)
    if match is None:
        return None
    literal, port = match.groups()
    if port is not None and int(port) > 65535:
        return None
    if literal is not None:
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None
    return value


def _values(headers: Headers, name: bytes) -> list[str]:
    """Every comma-separated item of every line of a header, left to right, empty items dropped."""
    items: list[str] = []
    for raw in headers.getRawHeaders(name) or []:
        line = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        items.extend(item.strip() for item in line.split(",") if item.strip())
    return items


def parse_forwarded(lines: Sequence[str]) -> list[dict[str, str]] | None:
    """RFC 7239 elements (parameter names lower-cased, quoted values unescaped); ``None`` if malformed."""
    elements: list[dict[str, str]] = []
    for line in lines:
        element: dict[str, str] = {}
        pos = 0
        while True:
            match = _ITEM.match(line, pos)
            if match is None:
                return None
            name, value, sep = match.groups()
            if name is not None:
                name = name.lower()
                if name in element:
                    return None
                element[name] = re.sub(r"\\(.)", r"\1", value[1:-1]) if value[:1] == '"' else value
            if sep != ";":
                if element:
                    elements.append(element)
                element = {}
            if not sep:
                break
            pos = match.end()
    return elements


def _walk(peer: Address, hops: Sequence[Address | None], trusted: TrustedProxies) -> tuple[int, Address]:
    """From the right: the index where the walk stopped (-1: no hops) and the client's address.

    It stops at the first hop that is not a trusted proxy (the client), or
    at a malformed one (then the client is the last trusted hop before it).
    """
    client = peer
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        if hop is None:
            return index, client
        client = hop
        if not trusted.trusts(hop):
            return index, client
    return (0 if hops else -1), client


@dataclass(frozen=True)
class Forwarded:
    """What the client used, as far as we may believe it: its address, scheme and Host (``None``: unknown)."""

    client: Address | None
    proto: str | None = None
    host: str | None = None


def forwarded(peer: Address | None, headers: Headers, trusted: TrustedProxies) -> Forwarded:
    """The client behind ``peer``: forwarded headers count only if ``peer`` is a trusted proxy."""
    peer = _unmapped(peer)
    if peer is None or not trusted.trusts(peer):
        return Forwarded(peer)
    if any(headers.hasHeader(name) for name in _X_HEADERS):
        _, client = _walk(peer, [parse_address(h) for h in _values(headers, b"x-forwarded-for")], trusted)
        protos, hosts = _values(headers, b"x-forwarded-proto"), _values(headers, b"x-forwarded-host")
        # The right-most value is the one the proxy in front of us set (a client's would be left of it).
        return Forwarded(client, _proto(protos[-1] if protos else None), _host(hosts[-1] if hosts else None))
    lines = [v.decode("latin-1") for v in headers.getRawHeaders(b"forwarded") or []]
    elements = parse_forwarded(lines) if lines else None
    if not elements:
        return Forwarded(peer)
    index, client = _walk(peer, [parse_address(e.get("for", "")) for e in elements], trusted)
    # The element a trusted proxy wrote about the hop where the walk stopped.
    element = elements[index]
    return Forwarded(client, _proto(element.get("proto")), _host(element.get("host")))


def peer_address(request: IRequest) -> Address | None:
    """The TCP peer's IP address (``None`` for a UNIX socket or anything else)."""
    peer = request.getClientAddress()
    if not isinstance(peer, IPv4Address | IPv6Address):
        return None
    return parse_address(peer.host)


def request_forwarded(request: IRequest, trusted: TrustedProxies) -> Forwarded:
    """``forwarded`` for a request: its peer and headers."""
    return forwarded(peer_address(request), request.requestHeaders, trusted)


class _SeenFrom:
    """A request whose client address is the one behind the trusted proxies (for the access log)."""

    def __init__(self, request: IRequest, client: IPv4Address | IPv6Address) -> None:
        self._request = request
        self._client = client

    def getClientAddress(self) -> IPv4Address | IPv6Address:
        return self._client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_formatter(trusted: TrustedProxies) -> IAccessLogFormatter:
    """twisted.web's combined log line, with the client's address instead of a trusted proxy's."""

    def format_line(timestamp: str, request: IRequest) -> str:
        client = request_forwarded(request, trusted).client
        if client is not None and client != peer_address(request):
            kind = IPv6Address if isinstance(client, ipaddress.IPv6Address) else IPv4Address
            request = cast(IRequest, _SeenFrom(request, kind("TCP", str(client), 0)))
        return cast(str, combinedLogFormatter(timestamp, request))

    return cast(IAccessLogFormatter, format_line)
