"""``ProblemChannel._head_at_once``: a head parsed in one pass means exactly what it means line by line.

Each stream is fed twice to a fresh channel of the real site class: whole (one
read, the one-pass parse where it applies) and one byte per read (never the
one-pass parse: no read holds a whole head).  What the server saw and answered
must be the same, refusals included.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource

from was_twisted.service import WASSite
from was_twisted.web.protocol import ProblemChannel


class _Echo(Resource):
    """Answers with what the request was, as the channel parsed it."""

    isLeaf = True

    def render(self, request: Any) -> bytes:
        request.content.seek(0)
        seen = {
            "method": request.method.decode("latin-1"),
            "uri": request.uri.decode("latin-1"),
            "version": request.clientproto.decode("latin-1"),
            "headers": sorted(
                [name.decode("latin-1"), [v.decode("latin-1") for v in values]]
                for name, values in request.requestHeaders.getAllRawHeaders()
            ),
            "body": request.content.read().decode("latin-1"),
        }
        return json.dumps(seen).encode()


_DATE = re.compile(rb"Date: [^\r]*\r\n")


def _feed(stream: bytes, whole: bool) -> tuple[bytes, int]:
    """What the channel wrote back (``Date`` removed) and how many lines it parsed one by one."""
    site = WASSite(_Echo(), access_log=False, max_upload=64)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    assert isinstance(channel, ProblemChannel)
    by_line = 0
    line_received = channel.lineReceived

    def counting(line: bytes) -> None:
        nonlocal by_line
        by_line += 1
        line_received(line)

    channel.lineReceived = counting  # type: ignore[method-assign]
    transport = StringTransport()
    channel.makeConnection(transport)
    if whole:
        channel.dataReceived(stream)
    else:
        for i in range(len(stream)):
            channel.dataReceived(stream[i : i + 1])
    return _DATE.sub(b"", transport.value()), by_line


GET = b"GET /space/s/r?q=1 HTTP/1.1\r\nHost: h\r\n"
PUT = b"PUT /space/s/r HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"

PLAIN = [
    GET + b"\r\n",
    GET + b'Authorization: Signature keyId="k"\r\nX-Empty:\r\nx-lower:  padded \t\r\n\r\n',
    PUT + b"Content-Length: 5\r\n\r\nhello",
    PUT + b"Content-Length: 0\r\n\r\n",
    GET + b"\r\n" + PUT + b"Content-Length: 3\r\n\r\nabc" + GET + b"\r\n",  # pipelined
    b"GET / HTTP/1.0\r\n\r\n",
    GET + b"Connection: close\r\n\r\n" + GET + b"\r\n",  # nothing after a close is served
    PUT + b"Content-Length: 3\r\nExpect: 100-continue\r\n\r\nabc",
    PUT + b"Content-Length: 100\r\n\r\n" + b"x" * 100,  # over the upload limit: kept as nothing
    GET + b"Range: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n",  # repeated: both kept, as line by line
]

REFUSED_OR_UNUSUAL = [
    PUT + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    PUT + b"Content-Length: -1\r\n\r\n",
    PUT + b"Content-Length: 1x\r\n\r\n",
    PUT + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    PUT + b"Transfer-Encoding: gzip\r\n\r\n",
    GET + b"X: a\r\n  continued\r\n\r\n",
    GET + b"NoColon\r\n\r\n",
    GET + b"Bad Name: x\r\n\r\n",
    GET + b"X: a\x00b\r\n\r\n",
    GET + b"X: a\rb\r\n\r\n",
    GET + b"X: a\nb\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/2.0\r\n\r\n",
    b"\r\n" + GET + b"\r\n",  # one empty line before a request is allowed
    b"GET /" + b"a" * 17000 + b" HTTP/1.1\r\n\r\n",
    GET + b"X: " + b"a" * 9000 + b"\r\nY: " + b"b" * 9000 + b"\r\n\r\n",
    GET + b"".join(b"X%d: v\r\n" % i for i in range(600)) + b"\r\n",
    GET,  # a head never finished
]


@pytest.mark.parametrize("stream", PLAIN + REFUSED_OR_UNUSUAL)
def test_whole_and_byte_by_byte_answer_alike(stream: bytes) -> None:
    whole, _ = _feed(stream, whole=True)
    split, _ = _feed(stream, whole=False)
    assert whole == split


@pytest.mark.parametrize("stream", PLAIN[:4])
def test_a_plain_head_in_one_read_is_not_parsed_line_by_line(stream: bytes) -> None:
    answer, by_line = _feed(stream, whole=True)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert by_line == 0
    _, split_lines = _feed(stream, whole=False)
    assert split_lines > 0


_NAMES = st.sampled_from(
    [b"Host", b"X-A", b"content-length", b"Content-Length", b"Transfer-Encoding", b"Expect", b"B d", b""]
)
_VALUES = st.sampled_from([b"1", b"0", b"abc", b" 2 ", b"chunked", b"100-continue", b"a\x00", b"-1", b""])


@settings(max_examples=200, deadline=None)
@given(fields=st.lists(st.tuples(_NAMES, _VALUES), max_size=5), tail=st.binary(max_size=8))
def test_any_mix_of_fields_answers_alike(fields: list[tuple[bytes, bytes]], tail: bytes) -> None:
    stream = b"POST /x HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields) + b"\r\n" + tail
    assert _feed(stream, whole=True)[0] == _feed(stream, whole=False)[0]


def test_is_secure_follows_the_transport() -> None:
    """Remembered per transport: a channel given a TLS transport says so, and a plain one does not."""
    from twisted.internet.interfaces import ISSLTransport
    from zope.interface import directlyProvides

    channel = WASSite(_Echo(), access_log=False).buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    plain = StringTransport()
    channel.makeConnection(plain)
    assert channel.isSecure() is False and channel.isSecure() is False
    tls = StringTransport()
    directlyProvides(tls, ISSLTransport)
    channel.transport = tls
    assert channel.isSecure() is True
