"""A corpus of malformed HTTP requests, each a named case, sent over raw sockets to the real server.

Every case must be answered with a 4xx ``application/problem+json``
document; the few that Twisted cannot answer at all (the client stops
sending before its request is complete, so there is nobody left to answer)
say so with ``closed=True`` and are listed in ``CLOSED``.  To grow the
corpus, append cases to a section (or add a section and list it in
``sections``): names must stay unique.

A case builds its bytes from a ``Target`` (the server's host, a space
that exists, its controller), so signed requests can be made at run time.
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from wallet_attached_storage_client import Ed25519Signer, create_authorization_header


@dataclass(frozen=True)
class Target:
    """What a case may refer to: the server's ``host``, a space that exists, and its controller."""

    host: str
    space: str
    signer: Ed25519Signer

    def auth(self, method: str, path: str) -> bytes:
        return create_authorization_header(signer=self.signer, method=method, url=path).encode()


Build = Callable[[Target], bytes]


@dataclass(frozen=True)
class Case:
    name: str
    build: Build
    #: Twisted cannot answer: the client half-closes before its request is complete.
    closed: bool = False


def request(
    method: bytes,
    target: bytes,
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    host: bytes | None = b"",
    version: bytes = b"HTTP/1.1",
    length: bool = True,
) -> Build:
    """A request builder; ``host=b""`` sends the target's host, ``None`` no Host at all.

    ``target`` and header values may contain ``{s}`` for the space id.
    """

    def build(t: Target) -> bytes:
        lines = [b"%s %s %s" % (method, target.replace(b"{s}", t.space.encode()), version)]
        if host is not None:
            lines.append(b"Host: " + (host or t.host.encode()))
        for name, value in headers:
            lines.append(name + b": " + value.replace(b"{s}", t.space.encode()))
        if length and body:
            lines.append(b"Content-Length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    return build


def raw(data: bytes) -> Build:
    return lambda t: data


def signed(
    method: str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    body: bytes = b"",
    *,
    sign_path: str | None = None,
) -> Build:
    """A request signed by the space's controller (Cavage, as the Python client signs)."""

    def build(t: Target) -> bytes:
        p = path.replace("{s}", t.space)
        auth = t.auth(method, (sign_path or path).replace("{s}", t.space))
        extra = [(b"Authorization", auth), *headers]
        return request(method.encode(), p.encode(), extra, body)(t)

    return build


def _cases() -> list[Case]:
    cases: list[Case] = []

    def add(name: str, build: Build, closed: bool = False) -> None:
        cases.append(Case(name, build, closed))

    # -- request lines -------------------------------------------------------------------
    lines = {
        "garbage line": b"GARBAGE",
        "two empty lines": b"\r\n",
        "method only": b"GET",
        "HTTP/0.9 line": b"GET /",
        "extra token": b"GET / HTTP/1.1 extra",
        "HTTP/2.0": b"GET / HTTP/2.0",
        "HTTP/1.2": b"GET / HTTP/1.2",
        "lower-case version": b"GET / http/1.1",
        "version without minor": b"GET / HTTP/1",
        "double space": b"GET  / HTTP/1.1",
        "leading space": b" GET / HTTP/1.1",
        "tabs": b"GET\t/\tHTTP/1.1",
        "bad method token": b"G(T / HTTP/1.1",
        "empty method": b" / HTTP/1.1",
        "DEL in target": b"GET /\x7f HTTP/1.1",
        "control in target": b"GET /\x01 HTTP/1.1",
        "raw UTF-8 in target": b"GET /space/\xc3\xa9 HTTP/1.1",
        "raw 0xff in target": b"GET /\xff HTTP/1.1",
        "raw overlong in target": b"GET /space/\xc0\xaf HTTP/1.1",
        "raw surrogate in target": b"GET /space/x/\xed\xa0\x80 HTTP/1.1",
        "NUL in method": b"G\x00T / HTTP/1.1",
        "NUL in target": b"GET /\x00 HTTP/1.1",
        "version garbage": b"GET / HTTP/x.y",
        "missing version": b"GET / ",
    }
    for name, line in lines.items():
        add(f"request line: {name}", raw(line + b"\r\nHost: h\r\n\r\n"))
    add("request line: over 16 KiB (414)", raw(b"GET /" + b"a" * 17_000 + b" HTTP/1.1\r\nHost: h\r\n\r\n"))
    add(
        "request line: 20 KiB path under /space (414)",
        raw(b"GET /space/" + b"b" * 20_000 + b" HTTP/1.1\r\n\r\n"),
    )
    for method in (b"PATCH", b"TRACE", b"FOO", b"CONNECT", b"PROPFIND"):
        add(f"method: {method.decode()} on /health", request(method, b"/health"))
        add(f"method: {method.decode()} on a space", request(method, b"/space/{s}"))
    add("method: PUT /health", request(b"PUT", b"/health", body=b"x"))
    add("method: DELETE /spaces/", request(b"DELETE", b"/spaces/"))
    add("absolute-form target elsewhere", request(b"GET", b"http://evil.example/space/{s}"))
    add("asterisk target", request(b"GET", b"*"))
    add("unknown route", request(b"GET", b"/nowhere"))
    add("unknown deep route", request(b"GET", b"/a/b/c/d"))

    # -- header syntax -------------------------------------------------------------------
    header_lines = {
        "no colon": b"NoColon",
        "space in name": b"Bad Name: x",
        "empty name": b": x",
        "paren in name": b"X(: y",
        "non-ASCII name": b"X\xff: y",
        "NUL in value": b"X: a\x00b",
        "bare LF in value": b"X: a\nb",
        "bare CR in value": b"X: a\rb",
        "colon only": b":",
        "name with slash": b"X/Y: z",
    }
    for name, line in header_lines.items():
        add(f"header: {name}", raw(b"GET /health HTTP/1.1\r\nHost: h\r\n" + line + b"\r\n\r\n"))
    add(
        "header: 501 fields (431)",
        raw(
            b"GET /health HTTP/1.1\r\nHost: h\r\n"
            + b"".join(b"X-%d: 1\r\n" % i for i in range(501))
            + b"\r\n"
        ),
    )
    add(
        "header: one line of 17 KiB (431)",
        raw(b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 17_000 + b"\r\n\r\n"),
    )
    add(
        "header: 20 lines of 1 KiB (431)",
        raw(
            b"GET / HTTP/1.1\r\nHost: h\r\n"
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
            + b"\r\n"
        ),
    )
    add("header: folded continuation", raw(b"GET /space/x/absent HTTP/1.1\r\nHost: h\r\nX: a\r\n  b\r\n\r\n"))

    # -- Host ----------------------------------------------------------------------------
    add("host: missing on HTTP/1.1", request(b"GET", b"/health", host=None))
    add("host: missing on HTTP/1.1 POST /spaces/", request(b"POST", b"/spaces/", body=b"{}", host=None))
    add(
        "host: two on HTTP/1.1",
        request(b"GET", b"/health", [(b"Host", b"other.example")]),
    )
    add(
        "host: two on HTTP/1.0",
        request(b"GET", b"/health", [(b"Host", b"b")], host=b"a", version=b"HTTP/1.0"),
    )
    bad_hosts = {
        "empty": b" ",
        "spaces": b"a b c",
        "tab": b"a\tb",
        "port too big": b"host:99999",
        "empty port": b"host:",
        "two ports": b"host:80:80",
        "letters in port": b"host:http",
        "bad IPv6": b"[::g]",
        "unclosed IPv6": b"[::1",
        "userinfo": b"user@host",
        "path": b"host/path",
        "query": b"host?x",
        "UTF-8": b"h\xc3\xa9st",
        "Latin-1": b"h\xe9st",
        "empty label": b"a..b",
        "300 characters": b"a" * 300,
        "quote": b'a"b',
        "angle brackets": b"<script>",
        "CRLF-less injection": b"a\x0bb",
        "percent": b"a%20b",
    }
    for name, value in bad_hosts.items():
        add(f"host: {name}", request(b"GET", b"/health", host=value))
        if name in ("spaces", "path", "userinfo", "Latin-1"):
            add(
                f"host: {name}, on POST /spaces/",
                request(b"POST", b"/spaces/", [(b"Content-Type", b"application/json")], b"{}", host=value),
            )

    # -- repeated single-valued headers ------------------------------------------------------
    for name in (b"Authorization", b"Signature-Input", b"Signature", b"Capability-Invocation", b"Digest"):
        add(
            f"repeated: {name.decode()}",
            request(b"GET", b"/space/{s}", [(name, b"x"), (name, b"y")]),
        )
    add(
        "repeated: Authorization, valid first",
        lambda t: request(
            b"GET",
            b"/space/{s}",
            [(b"Authorization", t.auth("GET", f"/space/{t.space}"))] * 1
            + [(b"Authorization", b"Signature garbage")],
        )(t),
    )
    add(
        "repeated: Authorization, valid second",
        lambda t: request(
            b"GET",
            b"/space/{s}",
            [
                (b"Authorization", b"Signature garbage"),
                (b"Authorization", t.auth("GET", f"/space/{t.space}")),
            ],
        )(t),
    )
    add(
        "repeated: Authorization, valid twice, on a PUT",
        lambda t: request(
            b"PUT", b"/space/{s}/r", [(b"Authorization", t.auth("PUT", f"/space/{t.space}/r"))] * 2, b"x"
        )(t),
    )
    add("repeated: Content-Digest", request(b"PUT", b"/space/{s}/r", [(b"Content-Digest", b"a=1")] * 2, b"x"))
    for name in (b"Content-Type", b"Range", b"If-Range", b"Key-Epoch", b"Writer-Id"):
        add(
            f"repeated: {name.decode()}", request(b"PUT", b"/space/{s}/r", [(name, b"a"), (name, b"b")], b"x")
        )
    add(
        "repeated: Content-Type on a signed PUT",
        signed(
            "PUT", "/space/{s}/r", [(b"Content-Type", b"text/plain"), (b"Content-Type", b"text/html")], b"x"
        ),
    )

    # -- odd bytes in header values (an unsigned read of a private space: 404 at best) ---------------
    odd_values = {
        "0xff": b"\xff\xfe",
        "UTF-8": "é😀".encode(),
        "overlong": b"\xc0\xaf",
        "surrogate": b"\xed\xa0\x80",
        "DEL": b"a\x7fb",
        "C1 controls": b"\x80\x9f",
        "vertical tab": b"a\x0bb",
    }
    for header in (
        b"Authorization",
        b"Capability-Invocation",
        b"Digest",
        b"Content-Digest",
        b"Signature-Input",
        b"If-None-Match",
        b"Range",
        b"X-Forwarded-Host",
        b"Origin",
    ):
        for vname, value in odd_values.items():
            if header in (b"Digest", b"Content-Digest", b"Range", b"X-Forwarded-Host") and vname in (
                "DEL",
                "UTF-8",
            ):
                continue
            add(
                f"odd bytes: {header.decode()} {vname}",
                request(b"GET", b"/space/{s}/absent", [(header, value)]),
            )
    for vname, value in odd_values.items():
        add(
            f"odd bytes: Content-Type {vname} on a signed PUT",
            signed("PUT", "/space/{s}/r", [(b"Content-Type", b"text/" + value)], b"x"),
        )

    # -- lengths -------------------------------------------------------------------------
    lengths = {
        "negative": b"-1",
        "letters": b"abc",
        "hex": b"0x10",
        "plus sign": b"+5",
        "list": b"5, 5",
        "decimal point": b"5.0",
        "empty": b"",
        "NBSP digit": "５".encode(),
    }
    for name, value in lengths.items():
        add(
            f"length: Content-Length {name}",
            request(b"PUT", b"/space/{s}/r", [(b"Content-Length", value)], b"xxxxx", length=False),
        )
    add(
        "length: two Content-Lengths",
        request(b"PUT", b"/space/{s}/r", [(b"Content-Length", b"1")] * 2, b"x", length=False),
    )
    add(
        "length: two different Content-Lengths",
        request(
            b"PUT",
            b"/space/{s}/r",
            [(b"Content-Length", b"1"), (b"Content-Length", b"2")],
            b"xx",
            length=False,
        ),
    )
    add(
        "length: Content-Length and chunked",
        request(
            b"PUT",
            b"/space/{s}/r",
            [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")],
            b"5\r\nxxxxx\r\n0\r\n\r\n",
            length=False,
        ),
    )
    add(
        "length: chunked and Content-Length",
        request(
            b"PUT",
            b"/space/{s}/r",
            [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")],
            b"5\r\nxxxxx\r\n0\r\n\r\n",
            length=False,
        ),
    )
    for coding in (b"gzip", b"chunked, gzip", b"gzip, chunked", b"compress", b"x-unknown", b"chunked;q=1"):
        add(
            f"length: Transfer-Encoding {coding.decode()}",
            request(b"PUT", b"/space/{s}/r", [(b"Transfer-Encoding", coding)], b"0\r\n\r\n", length=False),
        )
    add(
        "length: 20-digit Content-Length, unsigned",
        request(b"PUT", b"/space/{s}/r", [(b"Content-Length", b"9" * 20)], length=False),
    )
    add(
        "length: over the upload limit, signed",
        lambda t: request(
            b"PUT",
            b"/space/{s}/big",
            [
                (b"Authorization", t.auth("PUT", f"/space/{t.space}/big")),
                (b"Content-Length", b"%d" % (3 << 20)),
            ],
            length=False,
        )(t),
    )
    add(
        "length: over the upload limit, Expect 100-continue",
        lambda t: request(
            b"PUT",
            b"/space/{s}/big",
            [
                (b"Authorization", t.auth("PUT", f"/space/{t.space}/big")),
                (b"Expect", b"100-continue"),
                (b"Content-Length", b"%d" % (3 << 20)),
            ],
            length=False,
        )(t),
    )
    add(
        "length: 300 KB announced, none sent, unsigned",
        request(b"PUT", b"/space/{s}/r", [(b"Content-Length", b"300000")], length=False),
    )
    add(
        "length: 300 KB announced, Expect 100-continue, unsigned",
        request(
            b"PUT",
            b"/space/{s}/r",
            [(b"Content-Length", b"300000"), (b"Expect", b"100-continue")],
            length=False,
        ),
    )

    # -- chunking ------------------------------------------------------------------------
    chunked = [(b"Transfer-Encoding", b"chunked")]
    chunk_bodies = {
        "size not hex": b"zz\r\nxx\r\n0\r\n\r\n",
        "negative size": b"-1\r\nx\r\n0\r\n\r\n",
        "size with 0x": b"0x1\r\nx\r\n0\r\n\r\n",
        "size with plus": b"+1\r\nx\r\n0\r\n\r\n",
        "size with space": b"1 1\r\nx\r\n0\r\n\r\n",
        "huge size": b"f" * 40 + b"\r\nx\r\n",
        "data longer than size": b"1\r\nxyz\r\n0\r\n\r\n",
        "missing CRLF after data": b"1\r\nxX0\r\n\r\n",
        "empty size line": b"\r\nx\r\n0\r\n\r\n",
        "NUL in extension": b"1;a=\x00\r\nx\r\n0\r\n\r\n",
        "non-ASCII size": "１\r\nx\r\n0\r\n\r\n".encode(),
        "bad trailer": b"1\r\nx\r\n0\r\nNoColonTrailer\r\n\r\n",
    }
    for name, body in chunk_bodies.items():
        add(f"chunked: {name}", request(b"PUT", b"/space/{s}/r", chunked, body, length=False))
        if name in ("size not hex", "huge size", "data longer than size"):
            add(
                f"chunked: {name}, signed",
                lambda t, b=body: request(
                    b"PUT",
                    b"/space/{s}/r",
                    [(b"Authorization", t.auth("PUT", f"/space/{t.space}/r")), *chunked],
                    b,
                    length=False,
                )(t),
            )
    add("chunked: on a space PUT, garbage", request(b"PUT", b"/space/{s}", chunked, b"q\r\n", length=False))

    # -- encodings in paths -----------------------------------------------------------------
    bad_paths = {
        "0xff 0xfe": b"/space/{s}/x/%ff%fe",
        "lone continuation": b"/space/{s}/%80",
        "overlong slash": b"/space/{s}/%c0%af",
        "overlong NUL": b"/space/{s}/%c0%80",
        "3-byte overlong": b"/space/{s}/%e0%80%af",
        "4-byte overlong": b"/space/{s}/%f0%80%80%af",
        "high surrogate": b"/space/{s}/%ed%a0%80",
        "low surrogate": b"/space/{s}/%ed%bf%bf",
        "surrogate pair as CESU-8": b"/space/{s}/%ed%a0%bd%ed%b8%80",
        "truncated sequence": b"/space/{s}/%e2%82",
        "beyond U+10FFFF": b"/space/{s}/%f4%90%80%80",
        "0xf8 lead byte": b"/space/{s}/%f8%88%80%80%80",
        "invalid in space id": b"/space/%ff",
        "invalid in /spaces/": b"/spaces/%c3",
        "invalid in unknown route": b"/nowhere/%ed%a0%80",
        "NUL in space id": b"/space/a%00b",
        "NUL in resource": b"/space/{s}/a%00b",
        "control in resource": b"/space/{s}/a%01b",
        "DEL in resource": b"/space/{s}/a%7fb",
        "encoded dot-dot": b"/space/{s}/%2e%2e/x",
        "dot-dot": b"/space/{s}/a/../b",
        "dot segment": b"/space/{s}/./b",
        "empty segment": b"/space/{s}/a//b",
        "slash in space id": b"/space/a%2Fb",
        "space in space id": b"/space/a%20b",
        "dot space id": b"/space/.hidden",
        "129-character space id": b"/space/" + b"a" * 129,
        "2 KB resource path": b"/space/{s}/" + b"x" * 2000,
        "bare percent": b"/space/{s}/%",
        "percent with one digit": b"/space/{s}/%4",
        "percent non-hex": b"/space/{s}/%zz",
    }
    for name, path in bad_paths.items():
        for method in (b"GET", b"PUT", b"DELETE"):
            add(
                f"path: {name} ({method.decode()})",
                request(method, path, body=b"x" if method == b"PUT" else b""),
            )
    for name in ("0xff 0xfe", "overlong slash", "high surrogate", "NUL in resource", "dot-dot"):
        path = bad_paths[name].decode("latin-1")
        add(f"path: {name}, signed PUT", signed("PUT", path, body=b"x"))

    # -- signatures ----------------------------------------------------------------------
    now = "1780000000"
    window = b'headers="(request-target) (created) (expires)"'
    cavage = {
        "scheme only": b"Signature",
        "Bearer": b"Bearer abc",
        "Basic": b"Basic YTpi",
        "no keyId": b'Signature signature="abc",headers="(request-target) (created) (expires)"',
        "no signature": b'Signature keyId="did:key:z6Mk",headers="(created)"',
        "unterminated quote": b'Signature keyId="did:key:z6Mk,signature="a',
        "trailing comma": b'Signature keyId="a",signature="b",',
        "duplicate keyId": b'Signature keyId="a",keyId="b",signature="c"',
        "duplicate created": b'Signature keyId="a",signature="c",created=1,created=2',
        "non-ASCII keyId": 'Signature keyId="did:key:zé",signature="c",created=1,expires=2'.encode(),
        "Latin-1 keyId": b'Signature keyId="did:key:z\xe9",signature="c",created=1,expires=2',
        "keyId not did:key": b'Signature keyId="https://x",signature="c",headers="(request-target) (created) '
        b'(expires)",created=1,expires=2',
        "8 KiB header": b'Signature keyId="' + b"a" * 9000 + b'",signature="c"',
        "created not a number": b'Signature keyId="a",signature="c",headers="(request-target) (created) '
        b'(expires)",created="soon",expires="later"',
        "expired": b'Signature keyId="a",signature="c",headers="(request-target) (created) (expires)",'
        b"created=1,expires=2",
        "in the future": b'Signature keyId="a",signature="c",'
        + window
        + b",created=9999999999,expires=9999999999",
        "lifetime too long": b'Signature keyId="a",signature="c",'
        + window
        + b",created="
        + now.encode()
        + b",expires=1790000000",
        "unsupported pseudo-header": b'Signature keyId="a",signature="c",headers="(request-target) (created) '
        b'(expires) (nonsense)",created=1,expires=2',
        "algorithm rsa": b'Signature keyId="a",signature="c",algorithm="rsa-sha256",'
        + window
        + b",created=1,expires=2",
    }
    for name, value in cavage.items():
        add(f"cavage: {name}", request(b"GET", b"/space/{s}", [(b"Authorization", value)]))
        add(f"cavage: {name}, on PUT", request(b"PUT", b"/space/{s}/r", [(b"Authorization", value)], b"x"))

    def tampered(t: Target) -> bytes:
        auth = t.auth("GET", f"/space/{t.space}")
        start = auth.index(b'signature="') + len(b'signature="')
        flipped = auth[:start] + (b"B" if auth[start : start + 1] != b"B" else b"C") + auth[start + 1 :]
        return request(b"GET", b"/space/{s}", [(b"Authorization", flipped)])(t)

    add("cavage: tampered signature", tampered)
    add(
        "cavage: signed for another path",
        lambda t: request(b"GET", b"/space/{s}", [(b"Authorization", t.auth("GET", "/space/other"))])(t),
    )
    add(
        "cavage: signed for another method",
        lambda t: request(b"DELETE", b"/space/{s}", [(b"Authorization", t.auth("GET", f"/space/{t.space}"))])(
            t
        ),
    )
    add(
        "cavage: signed by a stranger",
        lambda t: request(
            b"DELETE",
            b"/space/{s}",
            [
                (
                    b"Authorization",
                    create_authorization_header(
                        signer=Ed25519Signer(), method="DELETE", url=f"/space/{t.space}"
                    ).encode(),
                )
            ],
        )(t),
    )

    rfc9421 = {
        "input without signature": [(b"Signature-Input", b'sig=("@method");created=1;keyid="a"')],
        "signature without input": [(b"Signature", b"sig=:AAAA:")],
        "not a dictionary": [(b"Signature-Input", b"((("), (b"Signature", b"sig=:AAAA:")],
        "two labels": [
            (b"Signature-Input", b'a=("@method"), b=("@method")'),
            (b"Signature", b"a=:AA==:, b=:AA==:"),
        ],
        "label mismatch": [(b"Signature-Input", b'a=("@method")'), (b"Signature", b"b=:AA==:")],
        "duplicate parameter": [
            (b"Signature-Input", b'sig=("@method");created=1;created=2'),
            (b"Signature", b"sig=:AA==:"),
        ],
        "duplicate label": [
            (b"Signature-Input", b'sig=("@method"), sig=("@path")'),
            (b"Signature", b"sig=:AA==:"),
        ],
        "signature not bytes": [
            (b"Signature-Input", b'sig=("@method");created=1'),
            (b"Signature", b'sig="x"'),
        ],
        "non-ASCII keyid": [
            (b"Signature-Input", 'sig=("@method");keyid="é"'.encode()),
            (b"Signature", b"sig=:AA==:"),
        ],
        "with Cavage too": [
            (b"Signature-Input", b'sig=("@method")'),
            (b"Signature", b"sig=:AA==:"),
            (b"Authorization", b'Signature keyId="a",signature="b"'),
        ],
    }
    for name, headers in rfc9421.items():
        add(f"rfc9421: {name}", request(b"GET", b"/space/{s}", headers))

    junk_capability = base64.urlsafe_b64encode(gzip.compress(b"[1,2,3]")).decode().rstrip("=").encode()
    invocations = {
        "unsigned root": b'zcap id="urn:zcap:root:http%3A%2F%2Fh%2Fspace%2Fs",action="GET"',
        "wrong scheme": b'Bearer id="x",action="GET"',
        "no action": b'zcap id="urn:zcap:root:x"',
        "both id and capability": b'zcap id="urn:zcap:root:x",capability="abc",action="GET"',
        "repeated parameter": b'zcap action="GET",action="PUT",id="urn:zcap:root:x"',
        "capability not base64": b'zcap capability="!!!",action="GET"',
        "capability not gzip": b'zcap capability="aGVsbG8",action="GET"',
        "capability gzip of an array": b'zcap capability="' + junk_capability + b'",action="GET"',
        "id not a root": b'zcap id="urn:other:x",action="GET"',
        "root id invalid UTF-8": b'zcap id="urn:zcap:root:%ff",action="GET"',
    }
    for name, value in invocations.items():
        add(f"capability: {name}", request(b"GET", b"/space/{s}", [(b"Capability-Invocation", value)]))
    add(
        "capability: signed, capability not gzip",
        lambda t: request(
            b"GET",
            b"/space/{s}",
            [
                (b"Authorization", t.auth("GET", f"/space/{t.space}")),
                (b"Capability-Invocation", b'zcap capability="aGVsbG8",action="GET"'),
            ],
        )(t),
    )

    digests = {
        "mh=zzz": b"mh=zzz",
        "not mh": b"sha-256=abc",
        "wrong digest": b"mh=uEiA" + b"A" * 43,
        "md5 multihash": b"mh=uAAA",
    }
    for name, value in digests.items():
        add(f"digest: {name}, signed PUT", signed("PUT", "/space/{s}/r", [(b"Digest", value)], b"x"))
    content_digests = {
        "not a dictionary": b"(((",
        "wrong length": b"sha-256=:AAAA:",
        "wrong digest": b"sha-256=:" + base64.b64encode(b"\0" * 32) + b":",
        "unknown algorithm only": b"md5=:AAAA:",
        "repeated algorithm": b"sha-256=:AA==:, sha-256=:AA==:",
    }
    for name, value in content_digests.items():
        add(
            f"content-digest: {name}, signed PUT",
            signed("PUT", "/space/{s}/r", [(b"Content-Digest", value)], b"x"),
        )

    # -- JSON bodies (signed by the space's controller) ------------------------------------------------
    def space_body(body: Callable[[Target], bytes], path: str = "/space/{s}", method: str = "PUT") -> Build:
        def build(t: Target) -> bytes:
            return signed(method, path, [(b"Content-Type", b"application/json")], body(t))(t)

        return build

    def with_controller(fmt: bytes) -> Callable[[Target], bytes]:
        return lambda t: fmt.replace(b"%c", t.signer.controller.encode())

    json_bodies = {
        "not JSON": lambda t: b"not json",
        "empty": lambda t: b"",
        "array": lambda t: b"[]",
        "null": lambda t: b"null",
        "number": lambda t: b"42",
        "truncated": lambda t: b'{"controller":',
        "invalid UTF-8": with_controller(b'{"controller":"%c","name":"\xff"}'),
        "escaped lone surrogate name": with_controller(b'{"controller":"%c","name":"\\ud800"}'),
        "raw surrogate bytes in name": with_controller(b'{"controller":"%c","name":"\xed\xa0\x80"}'),
        "lone surrogate member name": with_controller(b'{"controller":"%c","\\udfff":1}'),
        "2,000 levels deep": with_controller(b'{"controller":"%c","x":' + b"[" * 2000 + b"]" * 2000 + b"}"),
        "100 levels of objects": with_controller(
            b'{"controller":"%c","x":' + b'{"a":' * 100 + b"1" + b"}" * 101
        ),
        "controller not a DID": lambda t: b'{"controller":"bob"}',
        "controller a number": lambda t: b'{"controller":5}',
        "name an object": with_controller(b'{"controller":"%c","name":{}}'),
        "id mismatch": with_controller(b'{"controller":"%c","id":"other"}'),
        "NaN": with_controller(b'{"controller":"%c","x":NaN}'),
        "over 64 KiB": with_controller(b'{"controller":"%c","name":"' + b"a" * 70_000 + b'"}'),
        "duplicate members": with_controller(b'{"controller":"%c","controller":"bob"}'),
        "BOM then JSON": with_controller(b'\xef\xbb\xbf{"controller":"did:\xff"}'),
    }
    for name, body in json_bodies.items():
        add(f"json: space PUT, {name}", space_body(body))
    for name in ("not JSON", "escaped lone surrogate name", "2,000 levels deep", "array"):
        add(f"json: POST /spaces/, {name}", space_body(json_bodies[name], "/spaces/", "POST"))
        add(f"json: policy PUT, {name}", space_body(json_bodies[name], "/space/{s}/policy"))
        add(
            f"json: collections POST, {name}",
            space_body(json_bodies[name], "/space/{s}/collections/", "POST"),
        )
    add("json: policy with surrogate type", space_body(lambda t: b'{"type":"\\ud800"}', "/space/{s}/policy"))
    add(
        "json: policy 2,000 deep",
        space_body(lambda t: b'{"type":' + b"[" * 2000 + b"]" * 2000 + b"}", "/space/{s}/policy"),
    )
    add("json: revocation not JSON", space_body(lambda t: b"nope", "/space/{s}/zcaps/revocations/x", "POST"))
    add(
        "json: revocation deep",
        space_body(lambda t: b"[" * 3000 + b"]" * 3000, "/space/{s}/zcaps/revocations/x", "POST"),
    )

    # -- query strings -------------------------------------------------------------------
    for name, query in {
        "cursor garbage": b"cursor=!!",
        "cursor invalid UTF-8": b"cursor=%ff%fe",
        "limit zero": b"limit=0",
        "limit negative": b"limit=-5",
        "limit not a number": b"limit=abc",
        "limit twice": b"limit=1&limit=2",
    }.items():
        add(
            f"query: {name}",
            signed("GET", "/space/{s}/c/?" + query.decode(), sign_path="/space/{s}/c/?" + query.decode()),
        )

    # -- requests the client never finishes (Twisted cannot answer: nobody is left to answer) --------
    add("closed: headers never end", raw(b"GET /health HTTP/1.1\r\nHost: h\r\n"), closed=True)
    add(
        "closed: body shorter than Content-Length",
        request(b"PUT", b"/space/{s}/r", [(b"Content-Length", b"10")], b"short", length=False),
        closed=True,
    )
    add(
        "closed: signed chunked upload without its last chunk",
        lambda t: request(
            b"PUT",
            b"/space/{s}/r",
            [(b"Authorization", t.auth("PUT", f"/space/{t.space}/r")), *chunked],
            b"5\r\nhello\r\n",
            length=False,
        )(t),
        closed=True,
    )
    return cases


CASES: list[Case] = _cases()
#: The cases Twisted cannot answer at all (the client stops before its request is complete).
CLOSED = [case.name for case in CASES if case.closed]
