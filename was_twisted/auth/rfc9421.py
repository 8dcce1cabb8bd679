"""Verify RFC 9421 HTTP Message Signatures (``Signature-Input`` / ``Signature``) made with did:key Ed25519.

The signature base (RFC 9421 section 2) and the Ed25519 check come from the
``http-message-signatures`` package; this module adds the WAS policy on top:
one signature, a ``did:key`` signer, a bounded validity window measured with the
caller's clock, and coverage of everything that would let a captured signature
be replayed against another method, URL, body or capability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import http_sf
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureAlgorithm,
    HTTPSignatureKeyResolver,
)

from was_twisted.auth.didkey import DidKeyError, did_for, public_key_for
from was_twisted.auth.signatures import RepeatedParameter, SignatureError, VerifiedSignature, check_window

__all__ = ["verify_message_signature"]

_MAX_HEADER_LEN = 8192
_ED25519_SIGNATURE_LEN = 64
# RFC 9421 section 2.3 registers exactly these signature parameters.
_KNOWN_PARAMS = frozenset({"alg", "created", "expires", "keyid", "nonce", "tag"})
# Either names a body digest header whose value the caller recomputes.
_BODY_DIGEST_HEADERS = ("content-digest", "digest")


@dataclass(frozen=True)
class _Parsed:
    """One signature from the two headers, syntactically checked only."""

    label: str
    components: tuple[tuple[str, dict[str, Any]], ...]
    params: dict[str, Any]
    signature: bytes


def _refuse_duplicate_label(key: str, context: str) -> None:
    """Structured fields let a repeated key win silently; here any repeat (label or parameter) is refused."""
    if context == "dictionary":
        raise RepeatedParameter(f"The signature label {key} appears more than once.")
    raise RepeatedParameter(f"The signature parameter {key} appears more than once.")


def _parse_dictionary(name: str, value: str) -> dict[str, Any]:
    if len(value) > _MAX_HEADER_LEN:
        raise SignatureError(f"The {name} header is too long.")
    try:
        parsed = http_sf.parse(
            value.encode("ascii"), tltype="dictionary", on_duplicate_key=_refuse_duplicate_label
        )
    except SignatureError:
        raise
    except (UnicodeEncodeError, ValueError):
        raise SignatureError(f"The {name} header is not a valid structured-field dictionary.") from None
    if not isinstance(parsed, dict) or not parsed:
        raise SignatureError(f"The {name} header is empty.")
    return parsed


def _parse(signature_input: str, signature: str) -> _Parsed:
    """Read the single labelled signature; several are refused rather than guessed between."""
    inputs = _parse_dictionary("Signature-Input", signature_input)
    signatures = _parse_dictionary("Signature", signature)
    if len(inputs) != 1 or len(signatures) != 1:
        raise SignatureError("The request carries more than one RFC 9421 signature; send exactly one.")
    ((label, (members, params)),) = inputs.items()
    if label not in signatures:
        raise SignatureError("The Signature and Signature-Input headers use different labels.")
    if not isinstance(members, list):
        raise SignatureError("The Signature-Input value must be a list of covered components.")
    components: list[tuple[str, dict[str, Any]]] = []
    for item, item_params in members:
        if not isinstance(item, str):
            raise SignatureError("Every covered component must be a quoted string.")
        components.append((item, dict(item_params)))
    raw, _ = signatures[label]
    if not isinstance(raw, bytes):
        raise SignatureError("The Signature value must be a byte sequence (:base64:).")
    if len(raw) != _ED25519_SIGNATURE_LEN:
        raise SignatureError("The signature is not a 64-byte Ed25519 signature.")
    return _Parsed(label=label, components=tuple(components), params=dict(params), signature=raw)


def _integer_param(params: Mapping[str, Any], name: str) -> int:
    value = params.get(name)
    if value is None:
        raise SignatureError(f"The signature parameter {name} is required.")
    if type(value) is not int:
        raise SignatureError(f"The signature parameter {name} must be an integer Unix timestamp.")
    return value


def _check_window(params: Mapping[str, Any], *, now: float, max_lifetime: int, skew: int) -> tuple[int, int]:
    created = _integer_param(params, "created")
    expires = _integer_param(params, "expires")
    check_window(created, expires, now=now, max_lifetime=max_lifetime, skew=skew)
    return created, expires


def _check_coverage(
    parsed: _Parsed, *, target_uri: str, headers: Mapping[str, str], has_body: bool, invocation: bool
) -> None:
    """Require the components that tie the signature to this request (only unparameterised ones count)."""
    plain = {name for name, params in parsed.components if not params}
    for name, _params in parsed.components:
        if not name.startswith("@") and name not in headers:
            raise SignatureError(f"The signature covers the {name} header, but the request has none.")
    if "@method" not in plain:
        raise SignatureError("The signature must cover @method.")
    if "@target-uri" not in plain:
        if "@path" not in plain:
            raise SignatureError("The signature must cover @target-uri or @path.")
        if "?" in target_uri and "@query" not in plain:
            raise SignatureError("The signature must cover @query because the request has a query string.")
    if has_body and not plain.intersection(_BODY_DIGEST_HEADERS):
        raise SignatureError("The signature must cover content-digest because the request has a body.")
    if invocation:
        if "capability-invocation" not in plain:
            raise SignatureError("The signature must cover capability-invocation.")
        if not plain.intersection(("@authority", "host", "@target-uri")):
            raise SignatureError("The signature must cover @authority (or host).")


def _component_label(name: str, params: Mapping[str, Any]) -> str:
    """A plain name, or the full structured-field form when parameters change what is covered."""
    if not params:
        return name
    return http_sf.ser((name, dict(params)))


@dataclass
class _KeySlot:
    """Carries the key into the library's algorithm object and the signature base back out."""

    public_key: Ed25519PublicKey
    base: bytes | None = field(default=None)


class _RecordingEd25519(HTTPSignatureAlgorithm):
    """Ed25519 (RFC 9421 section 3.3.6) that keeps the signature base it was asked to check."""

    algorithm_id = "ed25519"

    def __init__(self, public_key: object = None, private_key: object = None) -> None:
        if not isinstance(public_key, _KeySlot):
            raise HTTPMessageSignaturesException("Verification needs an Ed25519 public key.")
        self._slot = public_key

    def sign(self, message: bytes) -> bytes:
        raise HTTPMessageSignaturesException("This algorithm object only verifies.")

    def verify(self, signature: bytes, message: bytes) -> None:
        self._slot.base = message
        self._slot.public_key.verify(signature, message)


class _OneKey(HTTPSignatureKeyResolver):
    def __init__(self, slot: _KeySlot) -> None:
        self._slot = slot

    def resolve_public_key(self, key_id: str) -> _KeySlot:
        return self._slot


class _Verifier(HTTPMessageVerifier):
    def validate_created_and_expires(self, sig_input: object, max_age: object = None) -> None:
        """Skipped: the caller checks the window against the request's own clock (``now``)."""


@dataclass
class _Message:
    """The request as the library's component resolver reads it."""

    method: str
    url: str
    headers: dict[str, str]


def _verify_with_key(
    *,
    signature_input: str,
    signature: str,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    public_key: Ed25519PublicKey,
) -> bytes:
    """Build the RFC 9421 signature base, verify it with ``public_key`` and return it; no WAS policy."""
    message_headers = {k.lower(): v for k, v in headers.items()}
    message_headers["signature-input"] = signature_input
    message_headers["signature"] = signature
    slot = _KeySlot(public_key)
    verifier = _Verifier(signature_algorithm=_RecordingEd25519, key_resolver=_OneKey(slot))
    try:
        verifier.verify(_Message(method, target_uri, message_headers), max_age=None)
    except HTTPMessageSignaturesException as e:
        if isinstance(e.__cause__, CryptoInvalidSignature):
            raise SignatureError("The signature does not verify.") from None
        raise SignatureError(f"The signature cannot be checked against this request ({e}).") from None
    if slot.base is None:  # pragma: no cover - the library always calls verify() on success
        raise SignatureError("The signature does not verify.")
    return slot.base


def verify_message_signature(
    *,
    signature_input: str,
    signature: str,
    method: str,
    target_uri: str,
    headers: Mapping[str, str],
    has_body: bool,
    invocation: bool,
    now: float,
    max_lifetime: int,
    skew: int,
) -> VerifiedSignature:
    """Verify the request's single RFC 9421 signature by a did:key Ed25519 key, or raise ``SignatureError``.

    ``target_uri`` is absolute (public origin + path + ``?query``); ``headers`` has
    lower-case names; ``invocation`` says the request carries ``Capability-Invocation``.
    The caller must still recompute any body digest header (see ``auth.digest``).
    """
    parsed = _parse(signature_input, signature)
    unknown = sorted(set(parsed.params) - _KNOWN_PARAMS)
    if unknown:
        raise SignatureError(f"The signature parameter {unknown[0]} is not supported.")
    alg = parsed.params.get("alg")
    # type() rather than ==: a Token compares equal to its text but is not an RFC 9421 string.
    if alg is not None and (type(alg) is not str or alg != "ed25519"):
        raise SignatureError("The signature algorithm is not supported; use ed25519.")
    key_id = parsed.params.get("keyid")
    if not isinstance(key_id, str) or not key_id:
        raise SignatureError("The signature parameter keyid is required.")
    created, expires = _check_window(parsed.params, now=now, max_lifetime=max_lifetime, skew=skew)
    _check_coverage(parsed, target_uri=target_uri, headers=headers, has_body=has_body, invocation=invocation)
    try:
        public_key = public_key_for(key_id)
    except DidKeyError as e:
        raise SignatureError(str(e)) from None
    _verify_with_key(
        signature_input=signature_input,
        signature=signature,
        method=method,
        target_uri=target_uri,
        headers=headers,
        public_key=public_key,
    )
    return VerifiedSignature(
        key_id=key_id,
        signer=did_for(key_id),
        created=created,
        expires=expires,
        covered=tuple(_component_label(name, params) for name, params in parsed.components),
    )
