"""Check a request body against its ``Digest: mh=`` (WAS) or ``Content-Digest`` (RFC 9530) header.

A signature that covers a digest header binds the body only if the server
recomputes the digest over the bytes it actually received, so parsing is
strict (a malformed header is a client error, never "no digest") and the
check works incrementally for bodies streamed to disk.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import http_sf

__all__ = [
    "BodyDigest",
    "DigestCheck",
    "DigestError",
    "body_digests",
    "check_file",
    "multihash_digest_header",
    "parse_content_digest",
    "parse_digest",
]

_CHUNK = 64 * 1024
_MAX_HEADER_LEN = 4096
# Multihash codes (single-byte varints) and digest lengths we accept.
_MULTIHASH = {0x12: ("sha-256", 32), 0x13: ("sha-512", 64)}
_LENGTHS = {"sha-256": 32, "sha-512": 64}
_BASE64URL_RE = re.compile(r"[A-Za-z0-9_-]+\Z")
_HEADER_NAMES = {"digest": "Digest", "content-digest": "Content-Digest"}


class DigestError(ValueError):
    """A digest header is malformed or does not match the body; the message is safe to show a client."""


@dataclass(frozen=True)
class BodyDigest:
    """One digest a client claims for the body: which header said so, the algorithm and the bytes."""

    header: str
    algorithm: str
    expected: bytes


def _decode_base64url(text: str) -> bytes:
    """Decode unpadded base64url strictly (Python's urlsafe decoder silently skips bad characters)."""
    if not _BASE64URL_RE.match(text) or len(text) % 4 == 1:
        raise DigestError("The Digest header is not valid base64url multibase.")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise DigestError("The Digest header is not valid base64url multibase.") from None


def parse_digest(value: str) -> BodyDigest:
    """Parse the WAS ``Digest: mh=<multibase multihash>`` header (base64url ``u`` multibase only)."""
    if len(value) > _MAX_HEADER_LEN:
        raise DigestError("The Digest header is too long.")
    key, sep, encoded = value.strip().partition("=")
    if not sep or key.strip().lower() != "mh":
        raise DigestError("The Digest header must have the form mh=<multibase multihash>.")
    encoded = encoded.strip()
    if not encoded.startswith("u"):
        raise DigestError("The Digest multihash must be base64url multibase (it must start with 'u').")
    raw = _decode_base64url(encoded[1:])
    if len(raw) < 2 or raw[0] not in _MULTIHASH:
        raise DigestError("The Digest multihash must be sha2-256 or sha2-512.")
    algorithm, length = _MULTIHASH[raw[0]]
    if raw[1] != length or len(raw) != 2 + length:
        raise DigestError("The Digest multihash has the wrong length for its algorithm.")
    return BodyDigest(header="digest", algorithm=algorithm, expected=raw[2:])


def _refuse_duplicate(key: str, context: str) -> None:
    """Refuse a repeated algorithm: which of two values the client meant is anyone's guess."""
    if context == "dictionary":
        raise DigestError(f"The Content-Digest header names {key} more than once.")


def parse_content_digest(value: str) -> tuple[BodyDigest, ...]:
    """Parse an RFC 9530 ``Content-Digest`` dictionary; unknown algorithms are ignored, not trusted."""
    if len(value) > _MAX_HEADER_LEN:
        raise DigestError("The Content-Digest header is too long.")
    try:
        parsed = http_sf.parse(value.encode("ascii"), tltype="dictionary", on_duplicate_key=_refuse_duplicate)
    except DigestError:
        raise
    except (UnicodeEncodeError, http_sf.StructuredFieldError, ValueError):
        raise DigestError("The Content-Digest header is not a valid structured-field dictionary.") from None
    if not isinstance(parsed, dict):
        raise DigestError("The Content-Digest header is not a valid structured-field dictionary.")
    # The parser gives every dictionary member as a (value, parameters) pair.
    members: Mapping[str, Any] = parsed
    digests: list[BodyDigest] = []
    for algorithm, (member, _params) in members.items():
        length = _LENGTHS.get(algorithm)
        if length is None:
            continue
        if not isinstance(member, bytes):
            raise DigestError(f"The Content-Digest {algorithm} value must be a byte sequence (:base64:).")
        if len(member) != length:
            raise DigestError(f"The Content-Digest {algorithm} value has the wrong length.")
        digests.append(BodyDigest(header="content-digest", algorithm=algorithm, expected=member))
    if not digests:
        raise DigestError("The Content-Digest header names no supported algorithm (sha-256 or sha-512).")
    return tuple(digests)


def body_digests(headers: Mapping[str, str]) -> tuple[BodyDigest, ...]:
    """Every digest the request claims (lower-case header names); ``()`` when it sends neither header."""
    found: list[BodyDigest] = []
    digest = headers.get("digest")
    if digest is not None:
        found.append(parse_digest(digest))
    content_digest = headers.get("content-digest")
    if content_digest is not None:
        found.extend(parse_content_digest(content_digest))
    return tuple(found)


class DigestCheck:
    """Hash a body as it streams in, once per algorithm, and compare with every claimed digest."""

    def __init__(self, digests: Sequence[BodyDigest]) -> None:
        self._digests = tuple(digests)
        self._hashes = {d.algorithm: hashlib.new(d.algorithm.replace("-", "")) for d in self._digests}

    def update(self, chunk: bytes) -> None:
        for h in self._hashes.values():
            h.update(chunk)

    def verify(self) -> None:
        """Raise ``DigestError`` unless every claimed digest matches the bytes seen so far."""
        actual = {name: h.digest() for name, h in self._hashes.items()}
        for d in self._digests:
            if not hmac.compare_digest(actual[d.algorithm], d.expected):
                name = _HEADER_NAMES.get(d.header, d.header)
                raise DigestError(f"The request body does not match its {name} header ({d.algorithm}).")


def check_file(digests: Sequence[BodyDigest], body: BinaryIO) -> None:
    """Check a spooled body from its start, leaving it rewound to 0 for the next reader."""
    check = DigestCheck(digests)
    body.seek(0)
    try:
        while chunk := body.read(_CHUNK):
            check.update(chunk)
    finally:
        body.seek(0)
    check.verify()


def multihash_digest_header(body: bytes) -> str:
    """The ``Digest`` value a WAS client sends: ``mh=u`` + base64url(0x12 0x20 || SHA-256(body))."""
    multihash = b"\x12\x20" + hashlib.sha256(body).digest()
    return "mh=u" + base64.urlsafe_b64encode(multihash).decode("ascii").rstrip("=")
