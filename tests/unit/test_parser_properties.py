"""Property-based tests of every parser hostile input reaches (issue 9 item 6).

Whatever the bytes, each parser either returns a value or raises its own
documented error (the domain errors of ``errors.py``, or the ``ValueError``
kind its module declares and ``auth.authenticate`` turns into one): never
``KeyError``, ``IndexError``, ``UnicodeError``, ``RecursionError``...  The
strategies mix free text with near-valid shapes (a Cavage header with
random parameters, an RFC 9421 dictionary, a ``zcap`` header), since pure
noise rarely gets past a parser's first check.  Examples are bounded so the
file runs in a few seconds.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from was_twisted.auth.authenticate import SignedRequest, authenticate
from was_twisted.auth.didkey import DidKeyError, public_key_for
from was_twisted.auth.digest import DigestError, body_digests, parse_content_digest, parse_digest
from was_twisted.auth.rfc9421 import verify_message_signature
from was_twisted.auth.signatures import SignatureError, parse_authorization, verify_authorization
from was_twisted.auth.zcap import ZcapError, parse_capability_invocation, root_target, target_covers
from was_twisted.bodies import json_object
from was_twisted.errors import BadRequest, InvalidId, InvalidParameter, InvalidRequestBody, WASError
from was_twisted.ids import check_resource_path, check_space_id
from was_twisted.operations.reserved import classify
from was_twisted.web.guard import check_host, check_path
from was_twisted.web.preconditions import parse_condition
from was_twisted.web.ranges import parse_range

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_780_000_000
KEY = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"

#: Header values as a server can receive them: any Latin-1 text (Twisted's bytes, decoded).
header_text = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=300)
any_text = st.text(max_size=200)
token = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
b64ish = st.text(string.ascii_letters + string.digits + "+/=-_", max_size=100)


# -- Cavage ---------------------------------------------------------------------------

cavage_names = st.sampled_from(["keyId", "signature", "headers", "created", "expires", "algorithm", "x"])
cavage_values = st.one_of(
    st.just(KEY),
    st.just("(request-target) (created) (expires)"),
    st.integers(NOW - 10, NOW + 10).map(str),
    b64ish,
    header_text.filter(lambda v: '"' not in v),
)


@st.composite
def cavage_headers(draw: st.DrawFn) -> str:
    params = draw(st.lists(st.tuples(cavage_names, cavage_values), max_size=7))
    quoted = draw(st.booleans())
    parts = [f'{n}="{v}"' if quoted or not v.isdigit() else f"{n}={v}" for n, v in params]
    return draw(st.sampled_from(["Signature ", "signature ", "Bearer ", ""])) + ",".join(parts)


@FAST
@given(st.one_of(header_text, cavage_headers()))
def test_cavage_parser(value: str) -> None:
    try:
        parse_authorization(value)
    except SignatureError:
        pass


@FAST
@given(st.one_of(header_text, cavage_headers()), any_text, st.dictionaries(token, header_text, max_size=4))
def test_cavage_verify(value: str, target: str, headers: dict[str, str]) -> None:
    try:
        verify_authorization(value, method="GET", targets=("/" + target,), now=NOW, headers=headers)
    except SignatureError:
        pass


@FAST
@given(any_text)
def test_did_key(key_id: str) -> None:
    try:
        public_key_for(key_id)
    except DidKeyError:
        pass


# -- RFC 9421 -----------------------------------------------------------------------

sf_params = st.lists(
    st.tuples(
        st.sampled_from(["created", "expires", "keyid", "alg", "nonce", "tag", "x"]),
        st.one_of(st.integers(NOW - 10, NOW + 10).map(str), st.just(f'"{KEY}"'), st.just('"ed25519"'), token),
    ),
    max_size=6,
)
components = st.lists(
    st.sampled_from(
        ['"@method"', '"@target-uri"', '"@path"', '"@authority"', '"content-digest"', '"x";sf', "@x"]
    ),
    max_size=5,
)


@st.composite
def signature_pairs(draw: st.DrawFn) -> tuple[str, str]:
    label = draw(st.sampled_from(["sig", "sig1", "a"]))
    params = "".join(f";{k}={v}" for k, v in draw(sf_params))
    signature_input = f"{label}=({' '.join(draw(components))}){params}"
    raw = base64.b64encode(draw(st.binary(min_size=60, max_size=66))).decode()
    signature = f"{draw(st.sampled_from([label, 'other']))}=:{raw}:"
    if draw(st.booleans()):
        signature_input += ", " + draw(header_text)
    return signature_input, signature


@FAST
@given(st.one_of(signature_pairs(), st.tuples(header_text, header_text)), st.booleans(), st.booleans())
def test_rfc9421_verify(pair: tuple[str, str], has_body: bool, invocation: bool) -> None:
    signature_input, signature = pair
    try:
        verify_message_signature(
            signature_input=signature_input,
            signature=signature,
            method="PUT",
            target_uri="http://was.test/space/s/r?x=1",
            headers={"content-digest": "sha-256=:AAAA:", "host": "was.test"},
            has_body=has_body,
            invocation=invocation,
            now=NOW,
            max_lifetime=3600,
            skew=300,
        )
    except SignatureError:
        pass


# -- Digest, Content-Digest -------------------------------------------------------------

digest_like = st.one_of(
    header_text,
    st.builds(lambda e: "mh=u" + e, b64ish),
    st.builds(lambda b: "mh=u" + base64.urlsafe_b64encode(b).decode().rstrip("="), st.binary(max_size=70)),
)
content_digest_like = st.one_of(
    header_text,
    st.builds(
        lambda name, b, extra: f"{name}=:{base64.b64encode(b).decode()}:{extra}",
        st.sampled_from(["sha-256", "sha-512", "md5", "sha-256, sha-256"]),
        st.binary(max_size=70),
        st.sampled_from(["", ", sha-256=:AA==:", ";p=1", ", x"]),
    ),
)


@FAST
@given(digest_like, content_digest_like)
def test_digest_parsers(digest: str, content_digest: str) -> None:
    for parse, value in ((parse_digest, digest), (parse_content_digest, content_digest)):
        try:
            parse(value)  # type: ignore[operator]
        except DigestError:
            pass
    try:
        body_digests({"digest": digest, "content-digest": content_digest})
    except DigestError:
        pass


# -- capability headers ----------------------------------------------------------------------


@st.composite
def invocation_headers(draw: st.DrawFn) -> str:
    names = st.sampled_from(["id", "capability", "action", "ID", "x"])
    values = st.one_of(
        st.just("urn:zcap:root:http%3A%2F%2Fwas.test%2Fspace%2Fs"),
        st.builds(lambda t: "urn:zcap:root:" + t, header_text.filter(lambda v: '"' not in v)),
        st.sampled_from(["GET", "PUT", "read"]),
        b64ish,
    )
    params = draw(st.lists(st.tuples(names, values), max_size=4))
    separator = draw(st.sampled_from([",", ", ", " ,", ";"]))
    scheme = draw(st.sampled_from(["zcap ", "ZCAP ", "zcap", ""]))
    return scheme + separator.join(f'{n}="{v}"' for n, v in params)


@FAST
@given(st.one_of(header_text, invocation_headers()))
def test_capability_invocation(value: str) -> None:
    try:
        parse_capability_invocation(value)
    except ZcapError:
        pass


@FAST
@given(any_text, any_text)
def test_root_ids_and_targets(a: str, b: str) -> None:
    try:
        root_target("urn:zcap:root:" + a)
    except ZcapError:
        pass
    assert isinstance(target_covers("http://was.test/" + a, "http://was.test/" + b), bool)


# -- the whole authentication step ----------------------------------------------------------


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["authorization", "signature-input", "signature", "capability-invocation", "digest"]
            + ["content-type"]
        ),
        st.one_of(header_text, cavage_headers(), invocation_headers(), digest_like),
        max_size=5,
    ),
    st.booleans(),
)
def test_authenticate(headers: dict[str, str], lenient: bool) -> None:
    request = SignedRequest(
        method="PUT",
        targets=("/space/s/r",),
        url="http://was.test/space/s/r",
        host="was.test",
        headers={"host": "was.test", **headers},
        has_body=True,
    )
    try:
        authenticate(request, now=NOW, max_lifetime=3600, skew=300, lenient=lenient)
    except WASError:
        pass


# -- paths and ids -----------------------------------------------------------------------

path_text = st.text(
    st.one_of(st.characters(), st.sampled_from(["/", ".", "%", "\x00", "\ud800", "\udfff"])), max_size=200
)


@FAST
@given(path_text)
def test_space_ids(value: str) -> None:
    try:
        assert check_space_id(value) == value
    except InvalidId:
        return
    assert value.isascii() and not value.startswith(".")


@FAST
@given(path_text)
def test_resource_paths(value: str) -> None:
    """An accepted path is storable: UTF-8 encodable, no control characters, and classified."""
    path = "/" + value
    try:
        check_resource_path(path)
    except InvalidId:
        return
    assert len(path.encode("utf-8")) <= 1024
    classify(path)


@FAST
@given(st.binary(max_size=300))
def test_raw_paths(raw: bytes) -> None:
    """The guard's path check on any request target: passes only what percent-decodes to UTF-8."""
    try:
        check_path(raw)
    except InvalidId:
        pass


@FAST
@given(st.lists(st.binary(max_size=80), max_size=3), st.sampled_from([b"HTTP/1.0", b"HTTP/1.1"]))
def test_hosts(values: list[bytes], version: bytes) -> None:
    try:
        check_host(values or None, version)
    except BadRequest:
        return
    if values:
        assert b" " not in values[0] and b"/" not in values[0] and b"@" not in values[0]


@FAST
@given(st.one_of(st.none(), header_text), st.one_of(st.none(), header_text), header_text)
def test_preconditions_and_ranges(if_match: str | None, if_none_match: str | None, range_: str) -> None:
    try:
        parse_condition(if_match, if_none_match)
    except InvalidRequestBody:
        pass
    try:
        parse_range(range_)
    except (InvalidRequestBody, InvalidParameter):
        pass


# -- JSON bodies --------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@FAST
@given(st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode())))
def test_json_bodies(body: bytes) -> None:
    """Any body: a JSON object that can be stored as UTF-8 JSON again, or 400 invalid-request-body."""
    try:
        doc = json_object(body, limit=64 * 1024, what="The body")
    except InvalidRequestBody:
        return
    json.dumps(doc, ensure_ascii=False).encode("utf-8")


@FAST
@given(st.integers(1, 3000), st.sampled_from(["[", '{"a":']), st.booleans())
def test_json_nesting(depth: int, opener: str, surrogate: bool) -> None:
    closer = "]" if opener == "[" else "}"
    inner = '"\\ud800"' if surrogate else "1"
    body = ('{"x":' + opener * depth + inner + closer * depth + "}").encode()
    try:
        doc: Any = json_object(body, limit=1 << 20, what="The body")
    except InvalidRequestBody:
        return
    assert not surrogate and depth < 64
    json.dumps(doc)
