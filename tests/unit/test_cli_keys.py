"""``was-admin``'s keys and signing, checked against the server's verifiers and the PyPI client."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from wallet_attached_storage_client import Ed25519Signer

from tests.invoke import digest_header
from was_twisted.auth.authenticate import SignedRequest, authenticate
from was_twisted.auth.chains import ChainVerifier
from was_twisted.auth.didkey import public_key_for
from was_twisted.auth.zcap import ZcapError
from was_twisted.cli.keys import KeyFileError, KeyPair
from was_twisted.cli.signing import (
    delegate,
    digest_of,
    encode_capability,
    invocation_headers,
    root_capability,
)
from was_twisted.cli.signing import digest_of as cli_digest

SPACE = "https://was.example/space/s1"


def test_key_file_round_trip_is_private_and_never_overwritten(tmp_path: Path) -> None:
    key = KeyPair.generate()
    path = str(tmp_path / "alice.json")
    key.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KeyPair.load(path).did == key.did
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        KeyPair.generate().save(path)
    assert KeyPair.load(path).did == key.did


def test_key_file_holds_the_did_key_of_its_seed() -> None:
    """The did:key must be the one the PyPI client derives from the same seed (independent code)."""
    private = Ed25519PrivateKey.generate()
    ours = KeyPair(private)
    theirs = Ed25519Signer(private)
    assert ours.did == theirs.controller and ours.key_id == theirs.id
    doc = ours.to_json()
    assert doc["controller"] == ours.did and doc["id"] == ours.key_id
    assert doc["publicKeyMultibase"] == ours.did.removeprefix("did:key:")


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.pop("privateKeyMultibase"),
        lambda d: d.update(privateKeyMultibase="u" + d["privateKeyMultibase"][1:]),
        lambda d: d.update(privateKeyMultibase="z0OIl"),
        lambda d: d.update(controller=KeyPair.generate().did),
        lambda d: d.update(privateKeyMultibase=KeyPair.generate().to_json()["privateKeyMultibase"][:-8]),
    ],
)
def test_a_damaged_key_file_is_refused_with_a_reason(change: object) -> None:
    doc = KeyPair.generate().to_json()
    change(doc)  # type: ignore[operator]
    with pytest.raises(KeyFileError):
        KeyPair.from_json(doc)


def test_missing_or_garbled_key_files_say_so(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="keygen"):
        KeyPair.load(str(tmp_path / "none.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(KeyFileError, match="not a readable JSON"):
        KeyPair.load(str(tmp_path / "bad.json"))


def test_digest_matches_the_test_suites_independent_encoder() -> None:
    for body in (b"", b"hello", bytes(range(256)) * 9):
        assert cli_digest(body) == digest_header(body) == digest_of(body)


def test_invocations_verify_with_the_servers_authentication() -> None:
    key = KeyPair.generate()
    url = SPACE + "/docs/a.txt"
    headers = invocation_headers(
        key, "PUT", url, capability=root_capability(SPACE), body=b"hi", content_type="text/plain"
    )
    signed = SignedRequest(
        method="PUT",
        targets=("/space/s1/docs/a.txt",),
        url=url,
        host="was.example",
        headers=headers,
        has_body=True,
    )
    invocation = authenticate(signed, now=time.time(), max_lifetime=3600, skew=300)
    assert invocation.signer == key.did
    assert invocation.zcap is not None and invocation.zcap.root_id == root_capability(SPACE)
    assert {"host", "capability-invocation", "content-type", "digest"} <= set(invocation.covered)


def test_delegations_verify_with_the_servers_chain_verifier_and_tampering_is_caught() -> None:
    alice, bob, carol = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    expires = time.time() + 3600
    first = delegate(
        alice, root_capability(SPACE), SPACE + "/docs/", bob.did, expires=expires, actions=["GET"]
    )
    second = delegate(bob, first, SPACE + "/docs/a.txt", carol.did, expires=expires - 60, actions=["GET"])
    chain = ChainVerifier().verify(encode_capability(second))
    assert [d.delegator for d in chain.delegations] == [alice.did, bob.did]
    assert chain.root_target == SPACE
    tampered = json.loads(json.dumps(first))
    tampered["invocationTarget"] = SPACE + "/"
    with pytest.raises(ZcapError, match="signature"):
        ChainVerifier().verify(encode_capability(tampered))


def test_the_proof_is_signed_by_the_delegators_key() -> None:
    alice, bob = KeyPair.generate(), KeyPair.generate()
    capability = delegate(alice, root_capability(SPACE), SPACE, bob.did, expires=time.time() + 60)
    method = capability["proof"]["verificationMethod"]
    assert method == alice.key_id
    assert public_key_for(method).public_bytes_raw() == alice.private.public_key().public_bytes_raw()
    assert "allowedAction" not in capability  # every action of the parent, as ezcap writes it


def test_a_delegation_never_outlives_its_parent() -> None:
    alice, bob, carol = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()
    now = time.time()
    parent = delegate(alice, root_capability(SPACE), SPACE + "/a", bob.did, expires=now + 600)
    child = delegate(bob, parent, SPACE + "/a/b", carol.did, expires=now + 86400)
    assert child["expires"] == parent["expires"]
    ChainVerifier().verify(encode_capability(child))
