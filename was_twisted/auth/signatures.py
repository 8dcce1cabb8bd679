"""Verify Cavage draft-12 HTTP Signatures as the WAS Python and JS clients send them.

Both clients sign ``(created) (expires) (key-id) (request-target)`` with an
Ed25519 ``did:key``; the JS stack may add real headers.  We insist that the
signature covers the method, path and validity window, so a captured header
cannot be replayed against another request or kept forever.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from was_twisted.auth.didkey import DidKeyError, did_for, public_key_for

__all__ = [
    "check_window",
    "ParsedSignature",
    "RepeatedParameter",
    "SignatureError",
    "VerifiedSignature",
    "parse_authorization",
    "verify_authorization",
]

# Covered names without which a signature could be replayed elsewhere or forever.
_REQUIRED_COVERED = ("(request-target)", "(created)", "(expires)")
_ALLOWED_ALGORITHMS = frozenset({"hs2019", "ed25519"})
# Cavage's default when ``headers`` is absent.
_DEFAULT_COVERED = ("(created)",)
_MAX_HEADER_LEN = 8192

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
# One ``name="value"`` (or ``name=123``) pair, then a comma or the end.
_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"([^"]*)"|([0-9]+))\s*(?:,|\Z)')
_INT_RE = re.compile(r"[0-9]{1,15}\Z")


class SignatureError(ValueError):
    """The Authorization header is unacceptable; the message is a sentence safe to show a client."""


class RepeatedParameter(SignatureError):
    """A signature parameter (or RFC 9421 label) appears twice: refused, never first- or last-wins."""


@dataclass(frozen=True)
class ParsedSignature:
    """The parameters of a ``Signature`` Authorization header, syntactically checked only."""

    key_id: str
    signature: str
    covered: tuple[str, ...]
    created: str | None
    expires: str | None
    algorithm: str | None


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: who signed, for what window, covering what."""

    key_id: str
    signer: str
    created: int
    expires: int
    covered: tuple[str, ...]


def parse_authorization(value: str) -> ParsedSignature:
    """Parse a ``Signature`` Authorization header value without verifying anything."""
    if len(value) > _MAX_HEADER_LEN:
        raise SignatureError("The Authorization header is too long.")
    # Split by hand: a regex with a lazy group over the whole header cost more than the parse.
    parts = value.split(None, 1)
    if not parts or _SCHEME_RE.match(parts[0]) is None:
        raise SignatureError("The Authorization header is malformed.")
    scheme, rest = parts[0], (parts[1].rstrip() if len(parts) > 1 else "")
    if scheme.lower() != "signature":
        raise SignatureError("The Authorization scheme must be Signature.")
    params: dict[str, str] = {}
    pos = 0
    # Each pair must start where the last ended: the leftmost match from ``pos`` is the one at ``pos``
    # if there is one, so a match starting later means bytes no pair accounts for.
    for pm in _PARAM_RE.finditer(rest):
        if pm.start() != pos:
            raise SignatureError("The Signature parameters are malformed.")
        name, quoted, number = pm.groups()
        if name in params:
            raise RepeatedParameter(f"The Signature parameter {name} appears more than once.")
        params[name] = quoted if quoted is not None else number
        pos = pm.end()
    if pos != len(rest) or rest.endswith(","):
        raise SignatureError("The Signature parameters are malformed.")
    for required in ("keyId", "signature"):
        if not params.get(required):
            raise SignatureError(f"The Signature parameter {required} is required.")
    headers = params.get("headers")
    covered = tuple(headers.lower().split()) if headers is not None else _DEFAULT_COVERED
    return ParsedSignature(
        key_id=params["keyId"],
        signature=params["signature"],
        covered=covered,
        created=params.get("created"),
        expires=params.get("expires"),
        algorithm=params.get("algorithm"),
    )


def _parse_time(name: str, raw: str | None) -> int:
    """Read an integer timestamp parameter, refusing anything else."""
    if raw is None:
        raise SignatureError(f"The Signature parameter {name} is required.")
    if not _INT_RE.match(raw):
        raise SignatureError(f"The Signature parameter {name} must be an integer Unix timestamp.")
    return int(raw)


def check_window(created: int, expires: int, *, now: float, max_lifetime: int, skew: int) -> None:
    """The validity window every signature format shares: ordered, bounded, current (within ``skew``)."""
    if expires < created:
        raise SignatureError("The signature expires before it was created.")
    if expires - created > max_lifetime:
        raise SignatureError("The signature lifetime is too long.")
    if expires + skew < now:
        raise SignatureError("The signature has expired.")
    if created - skew > now:
        raise SignatureError("The signature was created in the future.")


def _decode_signature(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not, into exactly 64 bytes."""
    stripped = text.rstrip("=")
    # 64 bytes is 86 base64 characters before padding; anything else cannot be Ed25519.
    if len(stripped) != 86 or len(text) - len(stripped) > 2:
        raise SignatureError("The signature is not a 64-byte Ed25519 signature.")
    normal = stripped.replace("-", "+").replace("_", "/") + "=="
    try:
        raw = base64.b64decode(normal, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("The signature is not valid base64.") from None
    if len(raw) != 64:
        raise SignatureError("The signature is not a 64-byte Ed25519 signature.")
    return raw


def verify_authorization(
    value: str,
    *,
    method: str,
    targets: Sequence[str],
    now: float,
    headers: Mapping[str, str] | None = None,
    max_lifetime: int = 3600,
    skew: int = 300,
) -> VerifiedSignature:
    """Verify a ``Signature`` Authorization header for this method and any candidate target path.

    ``targets`` lists the spellings of the request path a client may have signed
    (raw with query, raw without, percent-decoded); the first that verifies wins.
    """
    candidates = [t for t in dict.fromkeys(targets) if "\n" not in t and "\r" not in t]
    if not targets:
        raise ValueError("verify_authorization needs at least one candidate target.")
    parsed = parse_authorization(value)
    covered = parsed.covered
    for name in _REQUIRED_COVERED:
        if name not in covered:
            raise SignatureError(f"The signature must cover {name}.")
    if parsed.algorithm is not None and parsed.algorithm.lower() not in _ALLOWED_ALGORITHMS:
        raise SignatureError("The signature algorithm is not supported; use Ed25519.")

    created = _parse_time("created", parsed.created)
    expires = _parse_time("expires", parsed.expires)
    check_window(created, expires, now=now, max_lifetime=max_lifetime, skew=skew)

    try:
        public_key = public_key_for(parsed.key_id)
    except DidKeyError as e:
        raise SignatureError(str(e)) from None
    signature = _decode_signature(parsed.signature)

    # Build every line except (request-target) once; only that line varies per candidate.
    lowered: dict[str, str] | None = None
    lines: list[str] = []
    target_index = -1
    for name in covered:
        if name == "(request-target)":
            target_index = len(lines)
            lines.append("")
        elif name == "(created)":
            lines.append(f"(created): {parsed.created}")
        elif name == "(expires)":
            lines.append(f"(expires): {parsed.expires}")
        elif name == "(key-id)":
            lines.append(f"(key-id): {parsed.key_id}")
        elif name.startswith("("):
            raise SignatureError(f"The signature covers {name}, which is not supported.")
        else:
            if lowered is None:
                lowered = {k.lower(): v for k, v in (headers or {}).items()}
            header_value = lowered.get(name)
            if header_value is None:
                raise SignatureError(f"The signature covers the {name} header, but the request has none.")
            lines.append(f"{name}: {header_value.strip()}")

    prefix = method.lower() + " "
    for target in candidates:
        lines[target_index] = "(request-target): " + prefix + target
        try:
            public_key.verify(signature, "\n".join(lines).encode("utf-8"))
        except (InvalidSignature, UnicodeEncodeError):
            continue
        return VerifiedSignature(
            key_id=parsed.key_id,
            signer=did_for(parsed.key_id),
            created=created,
            expires=expires,
            covered=covered,
        )
    raise SignatureError("The signature does not verify.")
