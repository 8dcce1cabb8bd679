"""Tests for did:key decoding and encoding (was_twisted.auth.didkey)."""

from __future__ import annotations

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from wallet_attached_storage_client import Ed25519Signer

from was_twisted.auth.didkey import DidKeyError, did_for, did_key_from_public_key, public_key_for

SEED = bytes(range(32))
SEED_PUBLIC_HEX = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
SEED_DID = "did:key:z6MkehRgf7yJbgaGfYsdoAsKdBPE3dj2CYhowQdcjqSJgvVd"


def _did_from_bytes(raw: bytes) -> str:
    return "did:key:z" + base58.b58encode(raw).decode("ascii")


def test_fixed_seed_vector() -> None:
    """A fixed seed yields a fixed did:key, matching a hand-built multicodec encoding."""
    pub = Ed25519PrivateKey.from_private_bytes(SEED).public_key()
    assert pub.public_bytes_raw().hex() == SEED_PUBLIC_HEX
    assert did_key_from_public_key(pub) == SEED_DID
    assert _did_from_bytes(bytes([0xED, 0x01]) + bytes.fromhex(SEED_PUBLIC_HEX)) == SEED_DID
    assert SEED_DID.startswith("did:key:z6Mk")


def test_round_trip_did_and_verification_method() -> None:
    """Both the DID and the did#fragment method id decode to the key that produced them."""
    pub = Ed25519PrivateKey.generate().public_key()
    did = did_key_from_public_key(pub)
    fragment = did[len("did:key:") :]
    for key_id in (did, f"{did}#{fragment}"):
        assert public_key_for(key_id).public_bytes_raw() == pub.public_bytes_raw()


def test_matches_python_client_ids() -> None:
    """The client's id and controller resolve to the client's key, and did_for strips the fragment."""
    signer = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(SEED))
    assert signer.controller == SEED_DID
    assert did_for(signer.id) == signer.controller
    assert did_for(signer.controller) == signer.controller
    assert public_key_for(signer.id).public_bytes_raw().hex() == SEED_PUBLIC_HEX


def test_fragment_mismatch_rejected() -> None:
    """A fragment naming a different key than the DID is refused."""
    other = did_key_from_public_key(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(DidKeyError, match="fragment"):
        public_key_for(SEED_DID + "#" + other[len("did:key:") :])


def test_secp256k1_rejected() -> None:
    """A secp256k1 did:key (multicodec 0xe7 0x01) is refused by name."""
    did = _did_from_bytes(b"\xe7\x01" + b"\x02" + bytes(32))
    with pytest.raises(DidKeyError, match="secp256k1"):
        public_key_for(did)


def test_x25519_rejected() -> None:
    """An X25519 did:key (multicodec 0xec 0x01) is refused: it is not a signing key."""
    with pytest.raises(DidKeyError, match="X25519"):
        public_key_for(_did_from_bytes(b"\xec\x01" + bytes(32)))


def test_unknown_codec_rejected() -> None:
    """An unrecognised multicodec is refused as not Ed25519."""
    with pytest.raises(DidKeyError, match="not an Ed25519"):
        public_key_for(_did_from_bytes(b"\x12\x20" + bytes(32)))


@pytest.mark.parametrize("length", [0, 31, 33])
def test_wrong_length_rejected(length: int) -> None:
    """An Ed25519 multicodec followed by anything but 32 bytes is refused."""
    with pytest.raises(DidKeyError, match="32 bytes"):
        public_key_for(_did_from_bytes(b"\xed\x01" + bytes(length)))


@pytest.mark.parametrize(
    ("key_id", "message"),
    [
        ("did:web:example.com", "not a did:key"),
        ("https://example.com/key", "not a did:key"),
        ("", "not a did:key"),
        ("did:key:", "multibase"),
        ("did:key:u7QE", "multibase"),
        ("did:key:z0OIl", "base58"),
        ("did:key:z" + "1" * 300, "too long"),
    ],
)
def test_malformed_key_ids_rejected(key_id: str, message: str) -> None:
    """Non-did:key ids, non-base58btc multibase, bad base58 and absurd lengths are refused."""
    with pytest.raises(DidKeyError, match=message):
        public_key_for(key_id)


def test_did_key_error_is_value_error() -> None:
    """DidKeyError is a ValueError so generic input-validation handlers catch it."""
    assert issubclass(DidKeyError, ValueError)
