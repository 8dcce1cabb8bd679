"""Tests for RFC 9421 HTTP Message Signature verification (was_twisted.auth.rfc9421).

Pinned to RFC 9421 Appendix B.2.6 (signature base and Ed25519 signature, with the RFC's own key)
and to requests signed by the npm http-message-signatures library with did:key Ed25519 keys
(tests/js/make_rfc9421_fixtures.mjs).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from was_twisted.auth.didkey import public_key_for
from was_twisted.auth.digest import DigestCheck, DigestError, body_digests
from was_twisted.auth.rfc9421 import _verify_with_key, verify_message_signature
from was_twisted.auth.signatures import SignatureError, VerifiedSignature

FIXTURE_DIR = Path(__file__).parent.parent / "fixtures" / "rfc9421"
FIXTURES = {path.stem: json.loads(path.read_text()) for path in sorted(FIXTURE_DIR.glob("*.json"))}
ACCEPTED = sorted(name for name, f in FIXTURES.items() if f["expect"] == "ok")
REFUSED = sorted(name for name, f in FIXTURES.items() if f["expect"] == "refuse")
MAX_LIFETIME = 3600
SKEW = 60

# RFC 9421 Appendix B.1.4 (test-key-ed25519), B.2 (test request) and B.2.6 (its ed25519 signature).
RFC_PUBLIC_X = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs"
RFC_TARGET = "https://example.com/foo?param=Value&Pet=dog"
RFC_HEADERS = {
    "host": "example.com",
    "date": "Tue, 20 Apr 2021 02:07:55 GMT",
    "content-type": "application/json",
    "content-digest": (
        "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:"
    ),
    "content-length": "18",
}
RFC_SIGNATURE_INPUT = (
    'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length")'
    ';created=1618884473;keyid="test-key-ed25519"'
)
RFC_SIGNATURE = (
    "sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:"
)
RFC_BASE = "\n".join(
    [
        '"date": Tue, 20 Apr 2021 02:07:55 GMT',
        '"@method": POST',
        '"@path": /foo',
        '"@authority": example.com',
        '"content-type": application/json',
        '"content-length": 18',
        '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length")'
        ';created=1618884473;keyid="test-key-ed25519"',
    ]
)

# What each refused fixture must be refused for.
REFUSAL_MESSAGES = {
    "alg": "algorithm is not supported",
    "digest-coverage": "must cover content-digest because the request has a body",
    "lifetime": "lifetime is too long",
    "keyid": "not a did:key identifier",
    "query": "must cover @query",
    "method": "must cover @method",
    "capability": "must cover capability-invocation",
    "labels": "more than one RFC 9421 signature",
}
FAKE_SIGNATURE = "sig=:" + base64.b64encode(bytes(64)).decode("ascii") + ":"


def _rfc_key() -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(RFC_PUBLIC_X + "="))


def _verify(fixture: dict[str, Any], **overrides: Any) -> VerifiedSignature:
    """Verify a fixture, with any argument (or header, via ``headers=``) replaced."""
    headers = dict(fixture["headers"])
    headers.update(overrides.pop("headers", {}))
    kwargs: dict[str, Any] = {
        "signature_input": headers["signature-input"],
        "signature": headers["signature"],
        "method": fixture["method"],
        "target_uri": fixture["url"],
        "headers": headers,
        "has_body": fixture["has_body"],
        "invocation": fixture["invocation"],
        "now": fixture["now"],
        "max_lifetime": MAX_LIFETIME,
        "skew": SKEW,
    }
    kwargs.update(overrides)
    return verify_message_signature(**kwargs)


def _covered_names(signature_input: str) -> tuple[str, ...]:
    inner = signature_input.split("=(", 1)[1].split(")", 1)[0]
    return tuple(part.strip('"') for part in inner.split())


def _policy_only(signature_input: str, **overrides: Any) -> VerifiedSignature:
    """Run a hand-written Signature-Input through the policy; the signature bytes are zeros."""
    key = FIXTURES["get-target-uri"]["key_id"]
    kwargs: dict[str, Any] = {
        "signature_input": signature_input.replace("KEY", key),
        "signature": FAKE_SIGNATURE,
        "method": "PUT",
        "target_uri": "https://was.example/space/s/r",
        "headers": {"content-digest": "x", "capability-invocation": "zcap", "host": "was.example"},
        "has_body": False,
        "invocation": False,
        "now": 1_750_000_010,
        "max_lifetime": MAX_LIFETIME,
        "skew": SKEW,
    }
    kwargs.update(overrides)
    return verify_message_signature(**kwargs)


WINDOW = ';keyid="KEY";created=1750000000;expires=1750000300'


# --- RFC 9421 Appendix B.2.6 -----------------------------------------------------------------------


def test_rfc9421_b26_signature_base_and_signature() -> None:
    base = _verify_with_key(
        signature_input=RFC_SIGNATURE_INPUT,
        signature=RFC_SIGNATURE,
        method="POST",
        target_uri=RFC_TARGET,
        headers=RFC_HEADERS,
        public_key=_rfc_key(),
    )
    assert base.decode("ascii") == RFC_BASE


@pytest.mark.parametrize(
    ("field", "value"),
    [("date", "Tue, 20 Apr 2021 02:07:56 GMT"), ("content-type", "text/plain"), ("content-length", "19")],
)
def test_rfc9421_b26_tampered_header_fails(field: str, value: str) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        _verify_with_key(
            signature_input=RFC_SIGNATURE_INPUT,
            signature=RFC_SIGNATURE,
            method="POST",
            target_uri=RFC_TARGET,
            headers={**RFC_HEADERS, field: value},
            public_key=_rfc_key(),
        )


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("PUT", RFC_TARGET),
        ("POST", "https://example.com/bar?param=Value&Pet=dog"),
        ("POST", "https://example.org/foo"),
    ],
)
def test_rfc9421_b26_other_request_fails(method: str, target: str) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        _verify_with_key(
            signature_input=RFC_SIGNATURE_INPUT,
            signature=RFC_SIGNATURE,
            method=method,
            target_uri=target,
            headers=RFC_HEADERS,
            public_key=_rfc_key(),
        )


def test_rfc9421_b26_is_refused_by_policy() -> None:
    """The RFC's request lacks what WAS requires (expires, a did:key), so the public API refuses it."""
    with pytest.raises(SignatureError, match="expires is required"):
        verify_message_signature(
            signature_input=RFC_SIGNATURE_INPUT,
            signature=RFC_SIGNATURE,
            method="POST",
            target_uri=RFC_TARGET,
            headers=RFC_HEADERS,
            has_body=True,
            invocation=False,
            now=1618884473,
            max_lifetime=MAX_LIFETIME,
            skew=SKEW,
        )


# --- requests signed by the JS library --------------------------------------------------------------


def test_fixture_set_is_complete() -> None:
    assert {"get-target-uri", "put-path-sha256", "put-path-sha512", "invocation"} <= set(ACCEPTED)
    assert {f["reason"] for f in FIXTURES.values() if f["expect"] == "refuse"} == set(REFUSAL_MESSAGES)


@pytest.mark.parametrize("name", ACCEPTED)
def test_js_signed_request_verifies(name: str) -> None:
    fixture = FIXTURES[name]
    result = _verify(fixture)
    assert result.signer == fixture["signer"]
    assert result.key_id == fixture["key_id"]
    assert result.covered == _covered_names(fixture["headers"]["signature-input"])
    assert (result.created, result.expires) == (1_750_000_000, 1_750_000_300)
    # The digest the signature covers matches the body the JS side sent.
    digests = body_digests(fixture["headers"])
    assert bool(digests) == fixture["has_body"]
    check = DigestCheck(digests)
    check.update(base64.b64decode(fixture["body_base64"]))
    check.verify()


@pytest.mark.parametrize("name", REFUSED)
def test_js_signed_request_is_refused(name: str) -> None:
    fixture = FIXTURES[name]
    with pytest.raises(SignatureError, match=REFUSAL_MESSAGES[fixture["reason"]]):
        _verify(fixture)


@pytest.mark.parametrize("name", [n for n in REFUSED if n not in ("two-signatures", "bad-alg")])
def test_refused_fixtures_are_refused_by_policy_not_by_crypto(name: str) -> None:
    """Each refused fixture carries a signature that verifies, so the refusal is the rule under test."""
    fixture = FIXTURES[name]
    _verify_with_key(
        signature_input=fixture["headers"]["signature-input"],
        signature=fixture["headers"]["signature"],
        method=fixture["method"],
        target_uri=fixture["url"],
        headers=fixture["headers"],
        public_key=public_key_for(fixture["signer"]),
    )


def test_bad_alg_fixture_is_a_valid_ed25519_signature() -> None:
    """The library refuses a mismatched alg before verifying, so check this one by hand (RFC 9421 §2.5)."""
    fixture = FIXTURES["bad-alg"]
    signature_input = fixture["headers"]["signature-input"]
    base = "\n".join(
        [
            f'"@method": {fixture["method"]}',
            f'"@target-uri": {fixture["url"]}',
            f'"@signature-params": {signature_input.removeprefix("sig=")}',
        ]
    )
    raw = base64.b64decode(fixture["headers"]["signature"].removeprefix("sig=:").removesuffix(":"))
    public_key_for(fixture["signer"]).verify(raw, base.encode("ascii"))


def test_two_signatures_are_each_valid() -> None:
    fixture = FIXTURES["two-signatures"]
    inputs = fixture["headers"]["signature-input"].split(", ")
    signatures = fixture["headers"]["signature"].split(", ")
    assert [s.split("=", 1)[0] for s in inputs] == ["sig", "sig0"]
    for signature_input, signature in zip(inputs, signatures, strict=True):
        result = _verify(fixture, signature_input=signature_input, signature=signature)
        assert result.signer in signature_input


@pytest.mark.parametrize(
    ("name", "header", "value"),
    [
        ("put-path-sha256", "content-type", "text/plain"),
        ("put-path-sha256", "content-digest", "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"),
        ("put-path-sha512", "content-digest", "sha-512=:" + base64.b64encode(bytes(64)).decode() + ":"),
        ("invocation", "capability-invocation", 'zcap id="urn:zcap:root:x",action="write"'),
        ("put-digest-mh", "digest", "mh=uEiCtvZgrj-C72Ed_CSYgKNOsJkAB3Dbjx1eZBecsC3GHVQ"),
    ],
)
def test_tampered_covered_header_fails(name: str, header: str, value: str) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(FIXTURES[name], headers={header: value})


def test_uncovered_header_may_change() -> None:
    fixture = FIXTURES["get-target-uri"]
    assert _verify(fixture, headers={"accept": "text/html"}).signer == fixture["signer"]


def test_changed_body_is_caught_by_the_digest_not_the_signature() -> None:
    fixture = FIXTURES["put-path-sha256"]
    _verify(fixture)
    check = DigestCheck(body_digests(fixture["headers"]))
    check.update(base64.b64decode(fixture["body_base64"]) + b" ")
    with pytest.raises(DigestError, match="Content-Digest"):
        check.verify()


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("put-path-sha256", {"method": "POST"}),
        ("get-target-uri", {"method": "HEAD"}),
        ("put-path-sha256", {"target_uri": "https://was.example:8443/space/z6MkSpace/doc2"}),
        ("put-path-sha256", {"target_uri": "https://was.example/space/z6MkSpace/doc1"}),  # @authority
        ("get-target-uri", {"target_uri": "https://was.example/space/z6MkSpace/?limit=6"}),
        ("get-target-uri", {"target_uri": "http://was.example/space/z6MkSpace/?limit=5"}),
        ("path-query-no-alg", {"target_uri": "https://was.example/space/z6MkSpace/?a=1&b=three"}),
        ("invocation", {"target_uri": "https://was.example/space/other/"}),
    ],
)
def test_other_method_or_url_fails(name: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(FIXTURES[name], **overrides)


def test_another_signers_key_fails() -> None:
    fixture = FIXTURES["get-target-uri"]
    with pytest.raises(SignatureError, match="does not verify"):
        _verify_with_key(
            signature_input=fixture["headers"]["signature-input"],
            signature=fixture["headers"]["signature"],
            method=fixture["method"],
            target_uri=fixture["url"],
            headers=fixture["headers"],
            public_key=public_key_for(FIXTURES["put-path-sha512"]["signer"]),
        )


# --- the validity window ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (1_750_000_300 + SKEW + 1, "has expired"),
        (1_750_000_000 - SKEW - 1, "created in the future"),
    ],
)
def test_window_is_measured_with_the_callers_clock(now: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _verify(FIXTURES["get-target-uri"], now=now)


@pytest.mark.parametrize("now", [1_750_000_300 + SKEW, 1_750_000_000 - SKEW])
def test_window_edges_are_accepted(now: int) -> None:
    _verify(FIXTURES["get-target-uri"], now=now)


def test_lifetime_limit_is_the_callers() -> None:
    fixture = FIXTURES["get-target-uri"]
    _verify(fixture, max_lifetime=300)
    with pytest.raises(SignatureError, match="lifetime is too long"):
        _verify(fixture, max_lifetime=299)
    _verify(FIXTURES["long-lifetime"], max_lifetime=7200)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (';keyid="KEY";expires=1750000300', "created is required"),
        (';keyid="KEY";created=1750000000', "expires is required"),
        (';keyid="KEY";created="1750000000";expires=1750000300', "created must be an integer"),
        (';keyid="KEY";created=1750000000;expires=1750000300.5', "expires must be an integer"),
        (';keyid="KEY";created=1750000000;expires=?1', "expires must be an integer"),
        (';keyid="KEY";created=1750000300;expires=1750000000', "expires before it was created"),
    ],
)
def test_created_and_expires_are_required_integers(params: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _policy_only('sig=("@method" "@target-uri")' + params)


# --- other policy rules (checked before any cryptography) ------------------------------------------


@pytest.mark.parametrize(
    ("components", "overrides", "message"),
    [
        ('"@target-uri"', {}, "must cover @method"),
        ('"@method"', {}, "must cover @target-uri or @path"),
        ('"@method" "@authority"', {}, "must cover @target-uri or @path"),
        ('"@method" "@request-target"', {}, "must cover @target-uri or @path"),
        ('"@method" "@path"', {"target_uri": "https://was.example/s/?q=1"}, "must cover @query"),
        ('"@method" "@path"', {"target_uri": "https://was.example/s/?"}, "must cover @query"),
        ('"@method" "@target-uri"', {"has_body": True}, "must cover content-digest"),
        ('"@method" "@target-uri" "content-digest";sf', {"has_body": True}, "must cover content-digest"),
        ('"@method" "@target-uri" "@authority"', {"invocation": True}, "must cover capability-invocation"),
        ('"@method" "@path" "capability-invocation"', {"invocation": True}, "must cover @authority"),
        (
            '"@method" "@target-uri" "content-type"',
            {},
            "covers the content-type header, but the request has none",
        ),
    ],
)
def test_coverage_rules(components: str, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _policy_only(f"sig=({components}){WINDOW}", **overrides)


@pytest.mark.parametrize(
    "components",
    [
        '"@method" "@path" "capability-invocation" "@authority"',
        '"@method" "@path" "capability-invocation" "host"',
        '"@method" "@target-uri" "capability-invocation"',
    ],
)
def test_invocation_authority_coverage_passes_policy(components: str) -> None:
    """These reach the cryptographic check (and fail it only because the signature bytes are zeros)."""
    with pytest.raises(SignatureError, match="does not verify"):
        _policy_only(f"sig=({components}){WINDOW}", invocation=True)


@pytest.mark.parametrize(
    ("signature_input", "message"),
    [
        (
            'sig=("@method" "@target-uri");keyid="KEY";alg="rsa-pss-sha512"'
            ";created=1750000000;expires=1750000300",
            "algorithm is not supported",
        ),
        (
            'sig=("@method" "@target-uri");keyid="KEY";alg=ed25519;created=1750000000;expires=1750000300',
            "algorithm is not supported",
        ),
        ('sig=("@method" "@target-uri");created=1750000000;expires=1750000300', "keyid is required"),
        (
            'sig=("@method" "@target-uri");keyid=KEY;created=1750000000;expires=1750000300',
            "keyid is required",
        ),
        (
            'sig=("@method" "@target-uri");keyid="test-key-ed25519";created=1750000000;expires=1750000300',
            "not a did:key identifier",
        ),
        (
            'sig=("@method" "@target-uri")'
            ';keyid="did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK#z6Mkx"'
            ";created=1750000000;expires=1750000300",
            "fragment does not match",
        ),
        (
            'sig=("@method" "@target-uri");keyid="KEY";created=1750000000;expires=1750000300;foo=1',
            "parameter foo is not supported",
        ),
    ],
)
def test_parameter_rules(signature_input: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _policy_only(signature_input.replace("KEY", FIXTURES["get-target-uri"]["key_id"], 1))


def test_nonce_and_tag_are_allowed() -> None:
    with pytest.raises(SignatureError, match="does not verify"):
        _policy_only(
            'sig=("@method" "@target-uri");keyid="KEY";created=1750000000;expires=1750000300;'
            'nonce="n1";tag="was"'
        )


@pytest.mark.parametrize(
    ("signature_input", "signature", "message"),
    [
        ("", FAKE_SIGNATURE, "Signature-Input header is empty"),
        ('sig=("@method"', FAKE_SIGNATURE, "Signature-Input header is not a valid"),
        (f'sig=("@method" "@target-uri"){WINDOW}', "", "Signature header is empty"),
        (f'sig=("@method" "@target-uri"){WINDOW}', "sig=abc", "must be a byte sequence"),
        (f'sig=("@method" "@target-uri"){WINDOW}', "sig=:AAAA:", "not a 64-byte Ed25519 signature"),
        (
            f'sig=("@method" "@target-uri"){WINDOW}',
            FAKE_SIGNATURE.replace("sig=", "other="),
            "different labels",
        ),
        (
            f'sig=("@method" "@target-uri"){WINDOW}',
            FAKE_SIGNATURE + ", " + FAKE_SIGNATURE.replace("sig=", "s2="),
            "more than one",
        ),
        (
            f'sig=("@method" "@target-uri"){WINDOW}, sig=("@method"){WINDOW}',
            FAKE_SIGNATURE,
            "appears more than once",
        ),
        (f'sig="@method"{WINDOW}', FAKE_SIGNATURE, "must be a list of covered components"),
        (f"sig=(method){WINDOW}", FAKE_SIGNATURE, "must be a quoted string"),
        (f'sig=("@method" "@target-uri"){WINDOW}' + " " * 9000, FAKE_SIGNATURE, "too long"),
        (f'sig=("@method" "@target-uri" "é"){WINDOW}', FAKE_SIGNATURE, "not a valid structured-field"),
    ],
)
def test_malformed_headers(signature_input: str, signature: str, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        _policy_only(signature_input, signature=signature)


def test_library_refusals_become_signature_errors() -> None:
    fixture = FIXTURES["get-target-uri"]
    with pytest.raises(SignatureError, match="cannot be checked against this request"):
        _verify(fixture, method="get")
    with pytest.raises(SignatureError, match="cannot be checked against this request"):
        _verify(fixture, target_uri="https://was.example/space/z6MkSpace/ü?limit=5")
