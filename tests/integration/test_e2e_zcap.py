"""End to end: Digital Bazaar's zCap libraries (ezcap, http-signature-zcap-invoke) against ``twistd -n was``.

``tests/js/zcap_e2e.mjs`` provisions a space, delegates it piecewise to other
did:key keys with ``ZcapClient.delegate`` and invokes the capabilities over
HTTP: each grant works exactly where it was given, and every way of stepping
outside it (action, expiry, target, delegator, invoker, revocation, chain
length, tampering, origin) answers as an absent target.  It prints one JSON
line per check.  Install its dependencies first: ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import backend_env
from .jsdriver import node_with, run_driver
from .processes import WasProcess

#: Every check the driver must report (a check that silently stops running is a failure too).
EXPECTED = frozenset(
    {
        "provision: A PUTs the space (root zCap, action PUT) -> 201",
        "A reads the space description",
        "A writes docs/one.json (root zCap of the URL)",
        "A writes docs/two.json (root zCap of the URL)",
        "A writes docs/one.jsonx (root zCap naming the space URL, an ancestor)",
        "A writes photos/p.txt as text/plain (root zCap naming the container)",
        "baseline: a truly absent resource -> 404 not-found (problem+json)",
        "(1) B GETs docs/one.json with its GET zCap",
        "(1) B HEADs docs/one.json with its GET zCap (action HEAD)",
        "(1) B HEADs docs/one.json with its GET zCap (action GET)",
        "(2) B PUTs docs/two.json with its PUT zCap",
        "(2) A reads back B's bytes from docs/two.json",
        "(3) B GETs the space description with a GET zCap on the space URL",
        "(3) B GETs docs/one.json with the space zCap",
        "(3) B GETs photos/p.txt with the space zCap",
        "(4) B GETs photos/p.txt with the container zCap",
        "(4) B lists photos/ with the container zCap",
        "wrong action: the GET zCap (1) used for PUT -> 404",
        "wrong action: the GET zCap (1) used for DELETE -> 404",
        "wrong action: the PUT zCap (2) used for GET -> 404",
        "wrong action: the space GET zCap (3) used for PUT -> 404",
        "invocation action not the method: GET zCap, action GET, method PUT -> 404",
        "ezcap's default action 'read' on a GET -> 404",
        "one.json unchanged after the refused writes",
        "expired: zCap made 2 h ago that expired 1 h ago (ezcap delegate with `now`) -> 404",
        "other resource: the one.json zCap used on two.json -> 404",
        "other resource: the one.json zCap used on one.jsonx (string prefix) -> 404",
        "other resource: the photos container zCap used on docs/one.json -> 404",
        "delegated by a non-controller: C delegates the space root to B, B GETs one.json -> 404",
        "delegated by a non-controller: C delegates the space root to B, B GETs the space -> 404",
        "replayed with another key: B's zCap (1) invoked by C -> 404",
        "replayed with another key: B's space zCap (3) invoked by C -> 404",
        "chain of 10 (root, A->k1->...->k9): k9 GETs one.json",
        "chain of 11 (k9->k10): k10 GETs one.json -> 404",
        "control: an untampered twin of the tampered zCaps works",
        "tampered proof: one character of proofValue changed -> 404",
        "tampered: allowedAction widened to GET+PUT after signing, used for PUT -> 404",
        "tampered: allowedAction widened after signing, used for GET -> 404",
        "other origin: zCap from the root of https://other.example/space/S, invoked here -> 404",
        "other origin: our space root delegated for https://other.example/.../one.json -> 404",
        "body altered after signing: delegated PUT signed for X, sent Y -> 400 invalid-authorization-header",
        "body altered after signing: two.json still holds the earlier bytes",
        "revoke: A POSTs (1) to /zcaps/revocations/{id} (root zCap, action POST) -> 204",
        "revoke: the revocation list shows (1)",
        "revoked: B GETs one.json with the revoked zCap (1) -> 404",
        "revoked: the revocation list is not readable by B -> 404",
        "onward: D GETs one.json with the B->D zCap",
        "onward: C (outside the chain) cannot revoke B->D -> 404",
        "onward: D still reads after the refused revocation",
        "onward: B revokes the B->D zCap it delegated -> 204",
        "onward: D GETs one.json with the revoked B->D zCap -> 404",
        "onward: B's own docs zCap still works",
        "before the policy: unsigned GET of one.json -> 404",
        'policy: A PUTs {"type":"PublicCanRead"} on the space',
        "PublicCanRead: unsigned fetch GET of one.json -> 200",
        "PublicCanRead: unsigned HEAD of photos/p.txt -> 200",
        "PublicCanRead: unsigned PUT is still refused -> 404",
    }
)


@pytest.fixture
def node() -> str:
    """Path to ``node``, with the zCap libraries installed in ``tests/js/node_modules``."""
    return node_with(
        *(
            f"@digitalbazaar/{p}"
            for p in ("ezcap", "http-signature-zcap-invoke", "ed25519-signature-2020", "zcap")
        )
    )


@pytest.fixture(params=["filesystem", "memory", "s3-moto"])
def zcap_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WasProcess]:
    """``twistd -n was`` (spec profile) on each backend in turn."""
    backend: str = request.param
    env = (
        {"WAS_STORAGE_BACKEND": "memory"} if backend == "memory" else backend_env(request, backend, tmp_path)
    )
    server = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_zcap_delegation_end_to_end(node: str, zcap_server: WasProcess) -> None:
    """Every driver check passes, and every expected check ran."""
    run_driver(node, "zcap_e2e.mjs", zcap_server).assert_all_passed(zcap_server, EXPECTED)
