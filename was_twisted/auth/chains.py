"""Verify zCap delegation chains: decoding, shape, attenuation along the chain, proofs, and a cache.

``ChainVerifier.verify`` checks everything about a delegated capability that
does not depend on the clock (``zcap.py`` holds the values it returns and the
header, root-id and target rules) and caches the result, because a client
repeats the same capability on every request and canonicalizing JSON-LD costs
milliseconds.  See ``zcap.py`` for what ezcap's capabilities contain.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import json
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import base58
from cryptography.exceptions import InvalidSignature

from was_twisted.auth import jsonld
from was_twisted.auth.didkey import DidKeyError, did_for, public_key_for
from was_twisted.auth.zcap import (
    ACTION_TOKEN,
    MAX_CHAIN_LENGTH,
    ROOT_PREFIX,
    Delegation,
    VerifiedChain,
    ZcapError,
    is_encoded_capability,
    is_iri,
    root_target,
    target_covers,
)

__all__ = ["CAPABILITY_MEMBERS", "PROOF_MEMBERS", "ChainVerifier"]

MAX_DECODED = 256 * 1024
_MAX_ACTIONS = 32
_CACHE_KEY_BYTES = 32 * 1024 * 1024  # per cache; keys are ASCII (base64url or hex digests)
DELEGATED_CONTEXT = (jsonld.ZCAP_CONTEXT_URL, jsonld.ED25519_2020_CONTEXT_URL)
CAPABILITY_MEMBERS = frozenset(
    {
        "@context",
        "id",
        "controller",
        "parentCapability",
        "invocationTarget",
        "allowedAction",
        "expires",
        "proof",
    }
)
PROOF_MEMBERS = frozenset(
    {"type", "created", "verificationMethod", "proofPurpose", "capabilityChain", "proofValue"}
)
_PROOF_TYPE = "Ed25519Signature2020"
_PROOF_PURPOSE = "capabilityDelegation"
_DATETIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(?:(Z)|([+-])([0-9]{2}):([0-9]{2}))"
)


# ---------------------------------------------------------------- verifier


class _Lru:
    """A thread-safe LRU map (verification may run in a thread pool), bounded in entries and in
    key bytes: keys are header values of up to 64 KiB, and anyone can mint a chain that verifies.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._max_key_bytes = _CACHE_KEY_BYTES
        self._key_bytes = 0
        self._items: OrderedDict[str, VerifiedChain] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> VerifiedChain | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: VerifiedChain) -> None:
        if self._size <= 0:
            return
        if len(key) > self._max_key_bytes:
            return
        with self._lock:
            if key not in self._items:
                self._key_bytes += len(key)
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size or self._key_bytes > self._max_key_bytes:
                evicted, _ = self._items.popitem(last=False)
                self._key_bytes -= len(evicted)


@dataclass(frozen=True)
class _Link:
    """A structurally checked capability, not yet checked against its parent or signature."""

    capability: dict[str, Any]
    delegation: Delegation
    chain_ids: tuple[str, ...]  # proof.capabilityChain with the embedded parent replaced by its id
    digest: str  # sha256 of its canonical JSON, embedded ancestors included


class ChainVerifier:
    """Verify delegated zCaps and remember the ones that verified."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._by_encoded = _Lru(cache_size)
        self._by_digest = _Lru(cache_size)

    def cached(self, encoded: str) -> VerifiedChain | None:
        """The cached result for a ``capability=`` value, without verifying anything."""
        return self._by_encoded.get(encoded)

    def verify(self, encoded: str) -> VerifiedChain:
        """Decode a ``capability=`` header value and verify its chain (cached by the value)."""
        hit = self._by_encoded.get(encoded)
        if hit is not None:
            return hit
        chain = self._verify(_decode(encoded))
        self._by_encoded.put(encoded, chain)
        return chain

    def verify_document(self, capability: Mapping[str, object]) -> VerifiedChain:
        """Verify a capability given as JSON (e.g. a revocation body), cached by its digest."""
        try:
            text = json.dumps(dict(capability), allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise ZcapError("The capability is not a JSON object.") from None
        if len(text) > MAX_DECODED:
            raise ZcapError("The capability is larger than 256 KiB.")
        return self._verify(_parse_json(text.encode("utf-8")))

    def _verify(self, capability: dict[str, Any]) -> VerifiedChain:
        links = _unpack(capability, depth=1)
        hit = self._by_digest.get(links[-1].digest)
        if hit is not None:
            return hit
        root_id = links[0].chain_ids[0]
        target = root_target(root_id)
        for index, link in enumerate(links):
            _check_against_parent(link.delegation, links[index - 1].delegation if index else None, target)
        # Signatures last (they are the expensive part), root side first, skipping the longest
        # prefix already verified as part of another chain.
        start = 0
        for index in range(len(links) - 1, -1, -1):
            if self._by_digest.get(links[index].digest) is not None:
                start = index + 1
                break
        delegations = tuple(link.delegation for link in links)
        result = VerifiedChain(root_id=root_id, root_target=target, delegations=delegations)
        for index in range(start, len(links)):
            _check_signature(links[index].capability)
            self._by_digest.put(
                links[index].digest,
                VerifiedChain(root_id=root_id, root_target=target, delegations=delegations[: index + 1]),
            )
        return result


# ---------------------------------------------------------------- decoding


def _decode(encoded: str) -> dict[str, Any]:
    """base64url → gunzip → JSON object, with every size bounded before the work is done."""
    if not is_encoded_capability(encoded):
        raise ZcapError("The capability is not base64url of at most 64 KiB.")
    unpadded = encoded.rstrip("=")
    try:
        compressed = base64.urlsafe_b64decode(unpadded + "=" * (-len(unpadded) % 4))
    except (binascii.Error, ValueError):
        raise ZcapError("The capability is not valid base64url.") from None
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
    try:
        raw = inflater.decompress(compressed, MAX_DECODED + 1)
    except zlib.error:
        raise ZcapError("The capability is not valid gzip.") from None
    if len(raw) > MAX_DECODED:
        raise ZcapError("The capability is larger than 256 KiB once decompressed.")
    if not inflater.eof or inflater.unused_data:
        raise ZcapError("The capability is not exactly one complete gzip stream.")
    return _parse_json(raw)


def _refuse_constant(name: str) -> object:
    raise ValueError(name)


def _parse_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ZcapError("The capability is not valid JSON.") from None
    if not isinstance(value, dict):
        raise ZcapError("The capability is not a JSON object.")
    return value


# ---------------------------------------------------------------- structure


def _unpack(capability: object, depth: int) -> list[_Link]:
    """Check one capability's shape and, recursively, its embedded parent's: root side first."""
    if depth > MAX_CHAIN_LENGTH:
        raise ZcapError(f"The capability chain is longer than {MAX_CHAIN_LENGTH} capabilities.")
    if not isinstance(capability, dict):
        raise ZcapError("An embedded capability is not a JSON object.")
    if "parentCapability" not in capability:
        raise ZcapError("A root capability must be invoked by id, not passed by value.")
    if set(capability) - CAPABILITY_MEMBERS:
        raise ZcapError("The capability has members this server does not accept.")
    missing = CAPABILITY_MEMBERS - {"allowedAction"} - set(capability)
    if missing:
        raise ZcapError("The capability lacks a required member.")
    context = capability["@context"]
    if not isinstance(context, list) or tuple(context) != DELEGATED_CONTEXT:
        raise ZcapError("The capability @context is not the zcap/v1 and ed25519-2020/v1 contexts.")
    zcap_id = _iri(capability["id"], "id")
    parent_id = _iri(capability["parentCapability"], "parentCapability")
    controller = _iri(capability["controller"], "controller")
    target = _iri(capability["invocationTarget"], "invocationTarget")
    expires = _datetime(capability["expires"], "expires")
    actions = _actions(capability.get("allowedAction"))

    proof = capability["proof"]
    if not isinstance(proof, dict):
        raise ZcapError("The capability proof must be a single object.")
    if set(proof) != PROOF_MEMBERS:
        raise ZcapError("The capability proof does not have exactly the members this server accepts.")
    if proof["type"] != _PROOF_TYPE:
        raise ZcapError("The capability proof is not an Ed25519Signature2020 proof.")
    if proof["proofPurpose"] != _PROOF_PURPOSE:
        raise ZcapError("The capability proof purpose is not capabilityDelegation.")
    created = _datetime(proof["created"], "proof created")
    delegator = _verification_method(proof["verificationMethod"])
    if not isinstance(proof["proofValue"], str):
        raise ZcapError("The capability proofValue is not a string.")

    chain = proof["capabilityChain"]
    if not isinstance(chain, list) or not chain:
        raise ZcapError("The capability proof has no capabilityChain.")
    if len(chain) + 1 > MAX_CHAIN_LENGTH:
        raise ZcapError(f"The capability chain is longer than {MAX_CHAIN_LENGTH} capabilities.")
    root_id = chain[0]
    if not isinstance(root_id, str) or not root_id.startswith(ROOT_PREFIX):
        raise ZcapError("The capability chain does not start with a root capability id.")
    root_target(root_id)
    for entry in chain[1:-1]:
        _iri(entry, "capabilityChain entry")
    ancestors: list[_Link] = []
    if len(chain) == 1:
        chain_ids: tuple[str, ...] = (root_id,)
    else:
        ancestors = _unpack(chain[-1], depth + 1)
        parent = ancestors[-1]
        chain_ids = (*(str(entry) for entry in chain[:-1]), parent.delegation.id)
        if chain_ids[:-1] != parent.chain_ids:
            raise ZcapError("The capability chain is inconsistent with its parent's chain.")
    if parent_id != chain_ids[-1]:
        raise ZcapError("The capability chain does not end with the parent capability.")
    if len({*chain_ids, zcap_id}) != len(chain_ids) + 1:
        raise ZcapError("The capability chain contains a cycle.")

    delegation = Delegation(
        id=zcap_id,
        controller=controller,
        delegator=delegator,
        parent=parent_id,
        invocation_target=target,
        allowed_actions=actions,
        expires=expires,
        created=created,
    )
    digest = hashlib.sha256(json.dumps(capability, sort_keys=True).encode("ascii")).hexdigest()
    return [
        *ancestors,
        _Link(capability=capability, delegation=delegation, chain_ids=chain_ids, digest=digest),
    ]


def _iri(value: object, name: str) -> str:
    if not isinstance(value, str) or not is_iri(value):
        raise ZcapError(f"The capability {name} is not an absolute URI.")
    return value


def _actions(value: object) -> frozenset[str] | None:
    if value is None:
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or len(values) > _MAX_ACTIONS:
        raise ZcapError("The capability allowedAction must be a string or a non-empty list of strings.")
    for action in values:
        if not isinstance(action, str) or not ACTION_TOKEN.fullmatch(action):
            raise ZcapError("The capability allowedAction holds an invalid action name.")
    return frozenset(values)


def _datetime(value: object, name: str) -> float:
    """Parse an xsd:dateTime with an explicit zone (as ezcap writes them) to unix seconds."""
    match = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ZcapError(f"The capability {name} is not a date-time with a time zone.")
    year, month, day, hour, minute, second = (int(part) for part in match.group(1, 2, 3, 4, 5, 6))
    if year < 1 or not (1 <= month <= 12 and 1 <= day <= calendar.monthrange(year, month)[1]):
        raise ZcapError(f"The capability {name} is not a valid date.")
    if hour > 23 or minute > 59 or second > 59:
        raise ZcapError(f"The capability {name} is not a valid time.")
    fraction = float(match.group(7) or 0)
    offset = 0
    if match.group(9):
        offset_hours, offset_minutes = int(match.group(10)), int(match.group(11))
        if offset_hours > 23 or offset_minutes > 59:
            raise ZcapError(f"The capability {name} has an invalid time zone.")
        offset = (offset_hours * 60 + offset_minutes) * 60 * (1 if match.group(9) == "+" else -1)
    return calendar.timegm((year, month, day, hour, minute, second)) + fraction - offset


def _verification_method(value: object) -> str:
    """The DID of a proof's did:key verification method (``did:key:z…#z…``)."""
    if not isinstance(value, str) or "#" not in value:
        raise ZcapError("The capability proof verificationMethod is not a did:key key id.")
    try:
        public_key_for(value)
    except DidKeyError as error:
        raise ZcapError(str(error)) from None
    return did_for(value)


# ---------------------------------------------------------------- rules and signature


def _check_against_parent(child: Delegation, parent: Delegation | None, root: str) -> None:
    """The delegation rules between a capability and its parent (None: the root)."""
    if parent is None:
        if not target_covers(root, child.invocation_target):
            raise ZcapError("The capability invocationTarget is outside its parent's.")
        return
    if parent.controller not in (child.delegator, _signing_key(child)):
        raise ZcapError("The capability was not delegated by the controller of its parent.")
    if parent.allowed_actions is not None and (
        child.allowed_actions is None or not child.allowed_actions <= parent.allowed_actions
    ):
        raise ZcapError("The capability allowedAction is broader than its parent's.")
    if not target_covers(parent.invocation_target, child.invocation_target):
        raise ZcapError("The capability invocationTarget is outside its parent's.")
    if child.expires > parent.expires:
        raise ZcapError("The capability expires after its parent.")
    if child.created < parent.created:
        raise ZcapError("The capability was delegated before its parent.")


def _signing_key(child: Delegation) -> str:
    """The key id itself, which a controller may name instead of the DID (as zcap's isController)."""
    key = child.delegator.removeprefix("did:key:")
    return f"{child.delegator}#{key}"


def _check_signature(capability: dict[str, Any]) -> None:
    """Verify the Ed25519Signature2020 proof: sign(SHA-256(c14n proof options) || SHA-256(c14n zcap))."""
    proof = capability["proof"]
    options = {"@context": capability["@context"], **{k: v for k, v in proof.items() if k != "proofValue"}}
    document = {k: v for k, v in capability.items() if k != "proof"}
    try:
        proof_quads = jsonld.canonicalize(options)
        document_quads = jsonld.canonicalize(document)
    except jsonld.CanonicalizationError as error:
        raise ZcapError(str(error)) from None
    # Every member but id is one quad (allowedAction one per distinct action): fewer means
    # canonicalization dropped something the signature would then not cover.
    actions = capability.get("allowedAction")
    expected = 4 + len(_actions(actions) or ())
    if document_quads.count("\n") != expected:
        raise ZcapError("The capability did not canonicalize to the members it has.")
    signature = _proof_value(proof["proofValue"])
    data = (
        hashlib.sha256(proof_quads.encode("utf-8")).digest()
        + hashlib.sha256(document_quads.encode("utf-8")).digest()
    )
    try:
        public_key_for(proof["verificationMethod"]).verify(signature, data)
    except InvalidSignature:
        raise ZcapError("The capability delegation signature does not verify.") from None


def _proof_value(value: str) -> bytes:
    if not value.startswith("z") or len(value) > 100:
        raise ZcapError("The capability proofValue is not base58btc multibase.")
    try:
        signature = base58.b58decode(value[1:])
    except ValueError:
        raise ZcapError("The capability proofValue is not valid base58btc.") from None
    if len(signature) != 64:
        raise ZcapError("The capability proofValue is not a 64-byte Ed25519 signature.")
    return signature
