"""Tests for body digest checking (was_twisted.auth.digest).

Pinned to the WAS spec vector, to RFC 9421's test request, and to values made by
@digitalbazaar/http-digest-header and Node's crypto (tests/js/make_digest_fixtures.mjs).
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path
from typing import Any

import pytest

from was_twisted.auth.digest import (
    BodyDigest,
    DigestCheck,
    DigestError,
    body_digests,
    check_file,
    multihash_digest_header,
    parse_content_digest,
    parse_digest,
)

FIXTURES = sorted((Path(__file__).parent.parent / "fixtures" / "digest").glob("*.json"))
SPEC_BODY = b'{"message":"hi"}'
SPEC_DIGEST = "mh=uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ"
# RFC 9421 Appendix B.2: the test request's body and its Content-Digest.
RFC_BODY = b'{"hello": "world"}'
RFC_CONTENT_DIGEST = (
    "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
)


def _load(path: Path) -> tuple[dict[str, Any], bytes]:
    fixture = json.loads(path.read_text())
    return fixture, base64.b64decode(fixture["body_base64"]) * fixture["repeat"]


def _check(digests: tuple[BodyDigest, ...], body: bytes, *, chunk: int = 1000) -> None:
    check = DigestCheck(digests)
    for i in range(0, len(body), chunk):
        check.update(body[i : i + chunk])
    check.verify()


def _flip(body: bytes) -> bytes:
    return bytes([body[0] ^ 1]) + body[1:] if body else b"x"


class _RecordingFile(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.sizes: list[int | None] = []

    def read(self, size: int | None = -1, /) -> bytes:
        self.sizes.append(size)
        return super().read(size)


# --- the spec vector and the RFC request -----------------------------------------------------------


def test_spec_vector() -> None:
    assert multihash_digest_header(SPEC_BODY) == SPEC_DIGEST
    digest = parse_digest(SPEC_DIGEST)
    assert digest.header == "digest"
    assert digest.algorithm == "sha-256"
    assert digest.expected.hex() == "adbd982b8fe0bbd8477f09262028d3ac264001dc36e3c7579905e72c0b718755"
    _check((digest,), SPEC_BODY)
    with pytest.raises(DigestError, match="does not match its Digest header"):
        _check((digest,), b'{"message":"ho"}')


def test_rfc9421_test_request_content_digest() -> None:
    (digest,) = parse_content_digest(RFC_CONTENT_DIGEST)
    assert (digest.header, digest.algorithm) == ("content-digest", "sha-512")
    _check((digest,), RFC_BODY)
    with pytest.raises(DigestError, match="Content-Digest header \\(sha-512\\)"):
        _check((digest,), RFC_BODY + b"\n")


# --- values from the independent JS implementations ------------------------------------------------


def test_fixtures_cover_binary_empty_and_large_bodies() -> None:
    names = {path.stem for path in FIXTURES}
    assert {"spec-vector", "empty", "binary-all-bytes", "large-binary", "utf8-text"} <= names
    _, large = _load(next(p for p in FIXTURES if p.stem == "large-binary"))
    assert len(large) > 64 * 1024


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_multihash_header_matches_digitalbazaar(path: Path) -> None:
    fixture, body = _load(path)
    assert len(body) == fixture["length"]
    assert multihash_digest_header(body) == fixture["digest"]
    digest = parse_digest(fixture["digest"])
    assert digest.expected.hex() == fixture["sha256_hex"]
    _check((digest,), body)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_sha512_multihash_and_content_digest(path: Path) -> None:
    fixture, body = _load(path)
    sha512 = parse_digest(fixture["digest_sha512"])
    assert sha512.algorithm == "sha-512" and len(sha512.expected) == 64
    content = parse_content_digest(fixture["content_digest"])
    assert [d.algorithm for d in content] == ["sha-256", "sha-512"]
    assert content[0].expected == parse_digest(fixture["digest"]).expected
    _check((sha512, *content), body, chunk=4096)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_every_claimed_digest_must_match(path: Path) -> None:
    fixture, body = _load(path)
    digests = body_digests({"digest": fixture["digest"], "content-digest": fixture["content_digest"]})
    assert [(d.header, d.algorithm) for d in digests] == [
        ("digest", "sha-256"),
        ("content-digest", "sha-256"),
        ("content-digest", "sha-512"),
    ]
    _check(digests, body)
    with pytest.raises(DigestError, match="does not match"):
        _check(digests, _flip(body))
    # One wrong digest among right ones is still a failure.
    wrong = BodyDigest("content-digest", "sha-512", bytes(64))
    with pytest.raises(DigestError, match="Content-Digest header \\(sha-512\\)"):
        _check((*digests, wrong), body)


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_check_file_reads_from_the_start_in_64k_chunks_and_rewinds(path: Path) -> None:
    fixture, body = _load(path)
    digests = body_digests({"digest": fixture["digest"], "content-digest": fixture["content_digest"]})
    spool = _RecordingFile(body)
    spool.seek(0, io.SEEK_END)  # as left by whoever wrote the spool
    check_file(digests, spool)
    assert spool.tell() == 0
    assert spool.sizes and set(spool.sizes) == {64 * 1024}
    assert len(spool.sizes) == -(-len(body) // (64 * 1024)) + 1  # the last read returns b""

    bad = _RecordingFile(_flip(body))
    with pytest.raises(DigestError):
        check_file(digests, bad)
    assert bad.tell() == 0


# --- header handling and malformed values ---------------------------------------------------------


def test_body_digests_without_headers_is_empty() -> None:
    assert body_digests({}) == ()
    assert body_digests({"content-type": "application/json"}) == ()
    DigestCheck(()).verify()  # nothing claimed, nothing to contradict


def test_digest_header_tolerates_whitespace_and_key_case() -> None:
    assert parse_digest("  MH=" + SPEC_DIGEST[3:] + " ") == parse_digest(SPEC_DIGEST)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "form mh="),
        ("uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ", "form mh="),
        ("sha-256=rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=", "form mh="),
        ("mh=", "must start with 'u'"),
        ("mh=zQmYtUc4iTCbbfVSDNKvtQqrfyezPPnFvE33wFmutw9PBBk", "must start with 'u'"),
        ("mh=uEiCtvZgrj+C72Ed/CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ", "base64url"),
        ("mh=uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ=", "base64url"),
        ("mh=uEiCtvZgrj-C72Ed_CSYgKNOs JkAB3Dbjx1eZBecsC3GHVQ", "base64url"),
        ("mh=uE", "base64url"),
        ("mh=uEQ", "sha2-256 or sha2-512"),  # 0x11 is sha1
        ("mh=uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GH", "wrong length"),
        ("mh=uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQAA", "wrong length"),
        ("mh=uE0CtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ", "wrong length"),  # sha-512 code, 32 bytes
        ("mh=u" + "A" * 5000, "too long"),
    ],
)
def test_malformed_digest_header(value: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        parse_digest(value)
    with pytest.raises(DigestError):
        body_digests({"digest": value})


def test_content_digest_ignores_unknown_algorithms() -> None:
    sha256 = "sha-256=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=:"
    digests = parse_content_digest(f"md5=:AAAAAAAAAAAAAAAAAAAAAA==:, {sha256};x=1, unixsum=30637")
    assert [d.algorithm for d in digests] == ["sha-256"]
    _check(digests, SPEC_BODY)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no supported algorithm"),
        ("md5=:AAAAAAAAAAAAAAAAAAAAAA==:", "no supported algorithm"),
        ("sha-256", "byte sequence"),
        ('sha-256="rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U="', "byte sequence"),
        ("sha-256=:AAAA:", "wrong length"),
        ("sha-512=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=:", "wrong length"),
        ("SHA-256=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=:", "structured-field dictionary"),
        ("sha-256=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=", "structured-field dictionary"),
        ("sha-256=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=:,", "structured-field dictionary"),
        ("sha-256=:é:", "structured-field dictionary"),
        (
            "sha-256=:rb2YK4/gu9hHfwkmICjTrCZAAdw248dXmQXnLAtxh1U=:, sha-256=:"
            "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            "more than once",
        ),
        ("a=1, " * 1000, "too long"),
    ],
)
def test_malformed_content_digest(value: str, message: str) -> None:
    with pytest.raises(DigestError, match=message):
        parse_content_digest(value)
    with pytest.raises(DigestError):
        body_digests({"content-digest": value})
