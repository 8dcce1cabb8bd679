"""Resolve ``did:key`` identifiers to Ed25519 public keys, offline.

A ``did:key`` carries its public key inline, so resolving one is pure
decoding: no network, no registry.  Only Ed25519 keys are accepted because
that is what both supported clients sign with; any other key type is a clear
client error rather than a silent verification failure.
"""

from __future__ import annotations

import functools

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

__all__ = ["DidKeyError", "did_for", "did_key_from_public_key", "public_key_for"]

_PREFIX = "did:key:"
# Multicodec varint for "ed25519-pub" (0xed) is the two bytes 0xed 0x01.
_ED25519_MULTICODEC = b"\xed\x01"
_ED25519_KEY_LEN = 32
# An Ed25519 did:key multibase value is 'z' + 48 base58 characters; anything far
# longer is refused before decoding so hostile input cannot cost much.
_MAX_KEY_ID_LEN = 256
# Names for multicodecs we know but refuse, so the error says what was sent.
_KNOWN_OTHER_CODECS = {
    b"\xe7\x01": "secp256k1",
    b"\xec\x01": "X25519",
    b"\x80\x24": "P-256",
    b"\x81\x24": "P-384",
    b"\x85\x24": "RSA",
}


class DidKeyError(ValueError):
    """A key id is not a usable Ed25519 ``did:key``; the message is safe to show a client."""


def did_for(key_id: str) -> str:
    """Return the DID part of a verification method id (drop any ``#fragment``)."""
    return key_id.split("#", 1)[0]


@functools.lru_cache(maxsize=4096)
def public_key_for(key_id: str) -> Ed25519PublicKey:
    """Decode the Ed25519 public key named by a ``did:key`` DID or verification method id.

    Cached because the same few keys sign every request a client makes.
    """
    if len(key_id) > _MAX_KEY_ID_LEN:
        raise DidKeyError("The key id is too long to be an Ed25519 did:key.")
    if not key_id.startswith(_PREFIX):
        raise DidKeyError("The key id is not a did:key identifier.")
    did, sep, fragment = key_id.partition("#")
    multibase = did[len(_PREFIX) :]
    if sep and fragment != multibase:
        raise DidKeyError("The key id fragment does not match the did:key it belongs to.")
    if not multibase.startswith("z"):
        raise DidKeyError("The did:key value is not base58btc multibase (it must start with 'z').")
    try:
        raw = base58.b58decode(multibase[1:])
    except ValueError:
        raise DidKeyError("The did:key value is not valid base58btc.") from None
    codec = raw[:2]
    if codec != _ED25519_MULTICODEC:
        name = _KNOWN_OTHER_CODECS.get(codec)
        if name:
            raise DidKeyError(f"The did:key is a {name} key; only Ed25519 keys are supported.")
        raise DidKeyError("The did:key is not an Ed25519 public key; only Ed25519 keys are supported.")
    key_bytes = raw[2:]
    if len(key_bytes) != _ED25519_KEY_LEN:
        raise DidKeyError("The did:key Ed25519 public key is not exactly 32 bytes long.")
    try:
        return Ed25519PublicKey.from_public_bytes(key_bytes)
    except ValueError:
        raise DidKeyError("The did:key Ed25519 public key is not a valid key.") from None


def did_key_from_public_key(pub: Ed25519PublicKey) -> str:
    """Encode an Ed25519 public key as a ``did:key`` DID (no fragment)."""
    raw = _ED25519_MULTICODEC + pub.public_bytes_raw()
    return _PREFIX + "z" + base58.b58encode(raw).decode("ascii")
