"""``web/protocol.py``: what Twisted's HTTP channel refuses by itself is answered as a problem document."""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from was_twisted.service import WASSite
from was_twisted.web.protocol import ProblemChannel

SPEC = "https://wallet.storage/spec#"


class _Hello(Resource):
    isLeaf = True

    def render(self, request: object) -> bytes:
        return b"hello"


def exchange(data: bytes) -> bytes:
    """Feed ``data`` to a fresh channel of the real site class; what it wrote back."""
    site = WASSite(_Hello(), access_log=False)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    assert isinstance(channel, ProblemChannel)
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(data)
    return transport.value()


def problem_of(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines[1:])
    assert headers[b"Content-Type"] == b"application/problem+json"
    assert int(headers[b"Content-Length"]) == len(body)
    assert headers[b"Connection"] == b"close"
    return int(lines[0].split()[1]), json.loads(body)


GET = b"GET / HTTP/1.1\r\nHost: h\r\n"

CASES = [
    ("garbage request line", b"GARBAGE\r\n\r\n", 400, "bad-request"),
    ("HTTP/2.0 request line", b"GET / HTTP/2.0\r\n\r\n", 400, "bad-request"),
    ("two spaces in the line", b"GET  / HTTP/1.1\r\n\r\n", 400, "bad-request"),
    ("raw UTF-8 in the target", b"GET /space/\xc3\xa9 HTTP/1.1\r\n\r\n", 400, "invalid-id"),
    ("raw invalid UTF-8 in the target", b"GET /\xff\xfe HTTP/1.1\r\n\r\n", 400, "invalid-id"),
    ("header without a colon", GET + b"NoColon\r\n\r\n", 400, "bad-request"),
    ("header name with a space", GET + b"Bad Name: x\r\n\r\n", 400, "bad-request"),
    ("NUL in a header value", GET + b"X: a\x00b\r\n\r\n", 400, "bad-request"),
    ("bare LF in a header value", GET + b"X: a\nb\r\n\r\n", 400, "bad-request"),
    ("negative Content-Length", GET + b"Content-Length: -1\r\n\r\n", 400, "invalid-request-body"),
    (
        "two Content-Lengths",
        GET + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        400,
        "invalid-request-body",
    ),
    ("unknown Transfer-Encoding", GET + b"Transfer-Encoding: gzip\r\n\r\n", 400, "invalid-request-body"),
    ("bad chunk size", GET + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "invalid-request-body"),
    ("request line over 16 KiB", b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n\r\n", 414, "uri-too-long"),
    ("header line over 16 KiB", GET + b"X: " + b"a" * 17000 + b"\r\n\r\n", 431, "header-fields-too-large"),
    (
        "header block over 16 KiB",
        GET + b"X: " + b"a" * 9000 + b"\r\nY: " + b"b" * 9000 + b"\r\n\r\n",
        431,
        "header-fields-too-large",
    ),
    (
        "chunk over the upload limit",
        GET + b"Transfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nx",
        413,
        "payload-too-large",
    ),
    (
        "501 header fields",
        GET + b"".join(b"X-%d: 1\r\n" % i for i in range(501)) + b"\r\n",
        431,
        "header-fields-too-large",
    ),
]


@pytest.mark.parametrize(("name", "data", "status", "kind"), CASES, ids=[c[0] for c in CASES])
def test_channel_refusals_are_problem_documents(name: str, data: bytes, status: int, kind: str) -> None:
    code, doc = problem_of(exchange(data))
    assert (code, doc["type"], doc["status"]) == (status, SPEC + kind, status)
    assert doc["title"] and doc["detail"]


def test_one_answer_and_nothing_after() -> None:
    """After a refusal the rest of the stream (here a valid request) is dropped, never answered."""
    raw = exchange(b"GARBAGE\r\n\r\n" + GET + b"\r\n")
    assert raw.count(b"HTTP/1.1 ") == 1


def test_valid_requests_still_served() -> None:
    raw = exchange(GET + b"\r\n")
    assert raw.startswith(b"HTTP/1.1 200 ") and raw.endswith(b"hello")


def test_asterisk_target_only_for_options() -> None:
    """``GET *`` is a 405 problem naming OPTIONS (Twisted's own answer is a bare 405)."""
    raw = exchange(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 405 ")
    assert b"\r\nContent-Type: application/problem+json" in head and b"\r\nAllow: OPTIONS" in head
    assert json.loads(body)["status"] == 405


def _clocked_channel() -> tuple[ProblemChannel, StringTransport, Clock]:
    site = WASSite(_Hello(), access_log=False)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    assert isinstance(channel, ProblemChannel)
    clock = Clock()
    channel.callLater = clock.callLater  # type: ignore[method-assign]
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, clock


def test_unfinished_request_gets_408_at_the_idle_timeout() -> None:
    channel, transport, clock = _clocked_channel()
    channel.dataReceived(b"PUT / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc")
    clock.advance(WASSite.IDLE_TIMEOUT + 1)
    code, doc = problem_of(transport.value())
    assert (code, doc["type"]) == (408, SPEC + "request-timeout")


def test_idle_connection_closes_without_an_answer() -> None:
    channel, transport, clock = _clocked_channel()
    channel.dataReceived(GET + b"\r\n")
    answered = transport.value()
    clock.advance(WASSite.IDLE_TIMEOUT + 1)
    assert transport.value() == answered and transport.disconnecting
