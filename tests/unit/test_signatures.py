"""Tests for Cavage HTTP Signature verification (was_twisted.auth.signatures)."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import base58
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from was_twisted.auth.didkey import did_key_from_public_key
from was_twisted.auth.signatures import (
    SignatureError,
    VerifiedSignature,
    parse_authorization,
    verify_authorization,
)

NOW = 1_700_000_000
CLIENT_COVERED = ("(created)", "(expires)", "(key-id)", "(request-target)")
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
DID = did_key_from_public_key(KEY.public_key())
KEY_ID = DID + "#" + DID[len("did:key:") :]


def _b64(raw: bytes, *, url: bool, pad: bool) -> str:
    text = (base64.urlsafe_b64encode if url else base64.b64encode)(raw).decode("ascii")
    return text if pad else text.rstrip("=")


def _sign(
    *,
    method: str = "PUT",
    path: str = "/space/x",
    created: int = NOW,
    expires: int = NOW + 30,
    covered: tuple[str, ...] = CLIENT_COVERED,
    key: Ed25519PrivateKey = KEY,
    key_id: str = KEY_ID,
    headers: Mapping[str, str] | None = None,
    url: bool = True,
    pad: bool = False,
) -> str:
    """Build a header the way a Cavage signer would, straight from `cryptography`."""
    values = {
        "(created)": str(created),
        "(expires)": str(expires),
        "(key-id)": key_id,
        "(request-target)": f"{method.lower()} {path}",
    }
    for name, value in (headers or {}).items():
        values[name.lower()] = value
    text = "\n".join(f"{name}: {values[name]}" for name in covered)
    sig = _b64(key.sign(text.encode("utf-8")), url=url, pad=pad)
    return (
        f'Signature keyId="{key_id}",headers="{" ".join(covered)}",signature="{sig}",'
        f'created="{created}",expires="{expires}"'
    )


def _verify(
    value: str,
    *,
    method: str = "PUT",
    targets: tuple[str, ...] = ("/space/x",),
    now: float = NOW + 1,
    headers: Mapping[str, str] | None = None,
) -> VerifiedSignature:
    return verify_authorization(value, method=method, targets=targets, now=now, headers=headers)


def _replace_param(header: str, name: str, value: str) -> str:
    head, _, tail = header.partition(f'{name}="')
    _, _, rest = tail.partition('"')
    return f'{head}{name}="{value}"{rest}'


# --- accepted --------------------------------------------------------------------------------------


def test_python_client_header_accepted() -> None:
    """A header from the real Python client verifies and names the signer's DID."""
    signer = Ed25519Signer()
    header = create_authorization_header(
        signer=signer, method="PUT", url="/space/x", created=NOW, expires=NOW + 30
    )
    result = _verify(header)
    assert result == VerifiedSignature(
        key_id=signer.id, signer=signer.controller, created=NOW, expires=NOW + 30, covered=CLIENT_COVERED
    )


@pytest.mark.parametrize(("url", "pad"), [(True, False), (True, True), (False, True), (False, False)])
def test_base64_variants_accepted(url: bool, pad: bool) -> None:
    """Standard and URL-safe base64 signatures are accepted, padded or not."""
    assert _verify(_sign(url=url, pad=pad)).signer == DID


def test_js_style_encoded_path_with_query_accepted() -> None:
    """A signature over the raw wire path with query verifies when that candidate is offered."""
    wire = "/space/a%20b/r?x=1"
    header = _sign(method="GET", path=wire, url=False, pad=True)
    assert _verify(header, method="GET", targets=(wire, "/space/a%20b/r", "/space/a b/r")).signer == DID


def test_python_style_decoded_path_accepted() -> None:
    """A signature from the Python client over the decoded path verifies via the decoded candidate."""
    signer = Ed25519Signer(KEY)
    header = create_authorization_header(
        signer=signer, method="GET", url="/space/a b/r", created=NOW, expires=NOW + 30
    )
    result = _verify(header, method="GET", targets=("/space/a%20b/r?x=1", "/space/a%20b/r", "/space/a b/r"))
    assert result.signer == DID


def test_duplicate_candidates_tolerated() -> None:
    """Repeated candidate targets are harmless."""
    assert _verify(_sign(), targets=("/space/x", "/space/x", "/space/x")).signer == DID


def test_unquoted_integers_and_loose_whitespace_accepted() -> None:
    """Unquoted created/expires, a lowercase scheme and spaces around commas are accepted."""
    header = _sign()
    header = header.replace(f'created="{NOW}"', f"created={NOW}").replace(",", " , ")
    header = "signature" + header[len("Signature") :]
    assert _verify(header).created == NOW


@pytest.mark.parametrize("algorithm", ["hs2019", "ed25519", "Ed25519"])
def test_allowed_algorithm_param_accepted(algorithm: str) -> None:
    """An algorithm parameter of hs2019 or ed25519 is tolerated."""
    assert _verify(_sign() + f',algorithm="{algorithm}"').signer == DID


def test_skew_allows_slightly_stale_and_early() -> None:
    """Clock skew within the allowance is tolerated on both sides."""
    header = _sign()
    assert _verify(header, now=NOW + 30 + 300).signer == DID
    assert _verify(header, now=NOW - 300).signer == DID


# --- time rules ------------------------------------------------------------------------------------


def test_expired_rejected() -> None:
    """A signature past its expiry plus skew is refused as expired."""
    with pytest.raises(SignatureError, match="expired"):
        _verify(_sign(), now=NOW + 30 + 301)


def test_future_created_rejected() -> None:
    """A signature created beyond the skew in the future is refused."""
    with pytest.raises(SignatureError, match="in the future"):
        _verify(_sign(created=NOW + 400, expires=NOW + 430), now=NOW)


def test_lifetime_over_max_rejected() -> None:
    """A validity window longer than max_lifetime is refused."""
    with pytest.raises(SignatureError, match="lifetime is too long"):
        _verify(_sign(expires=NOW + 3601))


def test_expires_before_created_rejected() -> None:
    """An expiry earlier than creation is refused."""
    with pytest.raises(SignatureError, match="expires before"):
        _verify(_sign(expires=NOW - 1))


@pytest.mark.parametrize("bad", ["1.5", "-1", "abc", "", "9" * 20])
def test_non_integer_time_rejected(bad: str) -> None:
    """created must be a plain integer timestamp."""
    with pytest.raises(SignatureError, match="integer"):
        _verify(_replace_param(_sign(), "created", bad))


# --- coverage rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["(request-target)", "(created)", "(expires)"])
def test_covered_list_missing_required_rejected(missing: str) -> None:
    """A genuinely valid signature that omits a required item is refused for that reason."""
    covered = tuple(h for h in CLIENT_COVERED if h != missing)
    with pytest.raises(SignatureError, match=f"must cover \\{missing[:-1]}\\)"):
        _verify(_sign(covered=covered))


def test_absent_headers_param_defaults_to_created_only() -> None:
    """Without headers=, Cavage's default of (created) alone is refused."""
    header = _sign(covered=("(created)",)).replace('headers="(created)",', "")
    assert parse_authorization(header).covered == ("(created)",)
    with pytest.raises(SignatureError, match="must cover"):
        _verify(header)


def test_unknown_pseudo_header_rejected() -> None:
    """A covered pseudo-header we do not know is refused rather than guessed at."""
    with pytest.raises(SignatureError, match=r"\(algorithm\)"):
        _verify(_sign(covered=(*CLIENT_COVERED, "(algorithm)"), headers={"(algorithm)": "x"}))


# --- binding to the request ------------------------------------------------------------------------


def test_path_swap_rejected() -> None:
    """A signature for /space/a does not authorize /space/b."""
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_sign(path="/space/a"), targets=("/space/b",))


def test_method_swap_rejected() -> None:
    """A signature for GET does not authorize DELETE."""
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_sign(method="GET"), method="DELETE")


@pytest.mark.parametrize(("name", "value"), [("created", str(NOW - 1)), ("expires", str(NOW + 31))])
def test_tampered_times_rejected(name: str, value: str) -> None:
    """Changing created or expires after signing breaks the signature."""
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_replace_param(_sign(), name, value))


def test_tampered_key_id_rejected() -> None:
    """Swapping in another Ed25519 key id breaks the signature."""
    other = did_key_from_public_key(Ed25519PrivateKey.generate().public_key())
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_replace_param(_sign(), "keyId", other))


def test_tampered_signature_rejected() -> None:
    """Flipping one signature byte breaks verification."""
    header = _sign()
    sig = parse_authorization(header).signature
    raw = bytearray(base64.urlsafe_b64decode(sig + "=="))
    raw[0] ^= 1
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_replace_param(header, "signature", _b64(bytes(raw), url=True, pad=False)))


def test_signature_by_other_key_rejected() -> None:
    """A signature made by a key other than the one named is refused."""
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(_sign(key=Ed25519PrivateKey.generate()))


@pytest.mark.parametrize("bad", ["AAAA", "!" * 86, "A" * 87, "A" * 86 + "==="])
def test_undecodable_signature_rejected(bad: str) -> None:
    """Signatures that are not 64 bytes of base64 are refused before verifying."""
    with pytest.raises(SignatureError, match="signature is not"):
        _verify(_replace_param(_sign(), "signature", bad))


# --- keys ------------------------------------------------------------------------------------------


def test_secp256k1_key_rejected() -> None:
    """A did:key that is not Ed25519 (secp256k1) is refused with a key-type message."""
    did = "did:key:z" + base58.b58encode(b"\xe7\x01\x02" + bytes(32)).decode("ascii")
    with pytest.raises(SignatureError, match="secp256k1"):
        _verify(_sign(key_id=did))


def test_non_did_key_rejected() -> None:
    """A keyId that is not a did:key is refused."""
    with pytest.raises(SignatureError, match="not a did:key"):
        _verify(_sign(key_id="https://example.com/keys/1"))


# --- real headers ----------------------------------------------------------------------------------


def test_covered_host_header_accepted() -> None:
    """A covered real header is read case-insensitively from the request headers."""
    covered = (*CLIENT_COVERED, "host")
    header = _sign(covered=covered, headers={"host": "was.example"})
    result = _verify(header, headers={"Host": "was.example"})
    assert result.covered == covered


def test_covered_host_header_missing_rejected() -> None:
    """A covered header absent from the request is refused."""
    header = _sign(covered=(*CLIENT_COVERED, "host"), headers={"host": "was.example"})
    with pytest.raises(SignatureError, match="host header"):
        _verify(header, headers={"Content-Type": "text/plain"})
    with pytest.raises(SignatureError, match="host header"):
        _verify(header)


def test_covered_host_header_changed_rejected() -> None:
    """A covered header whose value differs from the signed one breaks the signature."""
    header = _sign(covered=(*CLIENT_COVERED, "host"), headers={"host": "was.example"})
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(header, headers={"host": "evil.example"})


# --- malformed headers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "malformed"),
        ("!!!", "malformed"),
        ("Bearer abc.def", "scheme must be Signature"),
        ("Basic dXNlcjpwYXNz", "scheme must be Signature"),
        ("Signature", "keyId is required"),
        ('Signature keyId="x" signature="y"', "malformed"),
        ('Signature keyId="x",signature="y",', "malformed"),
        ('Signature keyId="x",,signature="y"', "malformed"),
        ('Signature keyId="unterminated', "malformed"),
        ("Signature keyId=abc", "malformed"),
        ("Signature garbage here", "malformed"),
        ('Signature signature="y",headers="(created)"', "keyId is required"),
        ('Signature keyId="x",headers="(created)"', "signature is required"),
        ('Signature keyId="",signature="y"', "keyId is required"),
        ('Signature keyId="x",keyId="z",signature="y"', "more than once"),
        ("Signature " + "a" * 9000, "too long"),
    ],
)
def test_malformed_headers_rejected(value: str, message: str) -> None:
    """Garbage, wrong schemes, missing or duplicate params are refused with a clear message."""
    with pytest.raises(SignatureError, match=message):
        parse_authorization(value)


def test_duplicate_param_in_signed_header_rejected() -> None:
    """A second created= appended to a valid header is refused, not silently resolved."""
    with pytest.raises(SignatureError, match="more than once"):
        _verify(_sign() + f',created="{NOW + 5}"')


def test_bad_algorithm_rejected() -> None:
    """An algorithm other than hs2019/ed25519 is refused."""
    with pytest.raises(SignatureError, match="algorithm"):
        _verify(_sign() + ',algorithm="rsa-sha256"')


def test_empty_targets_is_a_programming_error() -> None:
    """Calling without candidate targets is a caller bug, not a client error."""
    with pytest.raises(ValueError) as info:
        verify_authorization(_sign(), method="PUT", targets=(), now=NOW)
    assert not isinstance(info.value, SignatureError)


def test_signature_error_messages_are_sentences() -> None:
    """Errors read as sentences suitable for a problem+json detail."""
    with pytest.raises(SignatureError) as info:
        _verify(_sign(), now=NOW + 10_000)
    assert str(info.value)[0].isupper() and str(info.value).endswith(".")
