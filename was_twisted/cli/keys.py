"""Ed25519 key pairs for did:key, kept in a file only their owner can read.

The file is the JSON that ``@digitalbazaar/ed25519-verification-key-2020``
exports (``type``, ``id``, ``controller``, ``publicKeyMultibase``,
``privateKeyMultibase``), so the same key works with the JavaScript stack.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import base58
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..auth.didkey import did_key_from_public_key

#: Multicodec varint prefix of an Ed25519 private key (``ed25519-priv``, 0x1300).
_PRIVATE_PREFIX = b"\x80\x26"


class KeyFileError(ValueError):
    """The key file is missing, unreadable or not an Ed25519 key pair; the message says which."""


@dataclass(frozen=True)
class KeyPair:
    """An Ed25519 key and the did:key it is."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @property
    def did(self) -> str:
        return did_key_from_public_key(self.private.public_key())

    @property
    def key_id(self) -> str:
        """The verification method: the DID, ``#``, its own multibase value."""
        did = self.did
        return f"{did}#{did.removeprefix('did:key:')}"

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def to_json(self) -> dict[str, str]:
        seed = self.private.private_bytes_raw()
        public = self.private.public_key().public_bytes_raw()
        return {
            "type": "Ed25519VerificationKey2020",
            "id": self.key_id,
            "controller": self.did,
            "publicKeyMultibase": self.did.removeprefix("did:key:"),
            "privateKeyMultibase": "z" + base58.b58encode(_PRIVATE_PREFIX + seed + public).decode(),
        }

    @classmethod
    def from_json(cls, doc: object) -> KeyPair:
        if not isinstance(doc, dict) or not isinstance(doc.get("privateKeyMultibase"), str):
            raise KeyFileError("The key file has no privateKeyMultibase.")
        value: str = doc["privateKeyMultibase"]
        if not value.startswith("z"):
            raise KeyFileError("privateKeyMultibase is not base58btc multibase (it must start with 'z').")
        try:
            raw = base58.b58decode(value[1:])
        except ValueError:
            raise KeyFileError("privateKeyMultibase is not valid base58btc.") from None
        if not raw.startswith(_PRIVATE_PREFIX) or len(raw) not in (34, 66):
            raise KeyFileError("privateKeyMultibase is not an Ed25519 private key.")
        pair = cls(Ed25519PrivateKey.from_private_bytes(raw[2:34]))
        if len(raw) == 66 and raw[34:] != pair.private.public_key().public_bytes_raw():
            raise KeyFileError("privateKeyMultibase holds a public key that does not match its seed.")
        if "controller" in doc and doc["controller"] != pair.did:
            raise KeyFileError("The key file's controller is not the did:key of its private key.")
        return pair

    def save(self, path: str) -> None:
        """Write the key pair to a new file, readable by its owner only (mode 0600)."""
        data = (json.dumps(self.to_json(), indent=2) + "\n").encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise KeyFileError(f"{path} exists; refusing to overwrite a key.") from None
        except OSError as exc:
            raise KeyFileError(f"{path}: {exc.strerror}.") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)

    @classmethod
    def load(cls, path: str) -> KeyPair:
        try:
            with open(path, "rb") as f:
                doc = json.loads(f.read())
        except FileNotFoundError:
            raise KeyFileError(f"{path} does not exist (make one with: was-admin keygen {path}).") from None
        except (OSError, ValueError) as exc:
            raise KeyFileError(f"{path} is not a readable JSON key file ({exc}).") from None
        return cls.from_json(doc)
