"""Delegated capabilities over the HTTP API, in-process, with chains made by the JavaScript libraries.

The fixtures (tests/fixtures/zcap, made by tests/js/make_zcap_fixtures.mjs)
target ``https://was.example/space/s1``; the server runs with that public
URL and its clock at the moment they were made.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import Api, sign
from tests.invoke import invoke
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "zcap"
META = json.loads((FIXTURES / "meta.json").read_text())
CASES: dict[str, Any] = json.loads((FIXTURES / "cases.json").read_text())
HEADERS: dict[str, Any] = json.loads((FIXTURES / "headers.json").read_text())
ORIGIN = "https://was.example"
ITEM = "/space/s1/things/item1"
NOT_FOUND = b'{"type":"https://wallet.storage/spec#not-found"'


def signer(name: str) -> Ed25519Signer:
    seed = bytes.fromhex(META["keys"][name]["seed_hex"])
    s = Ed25519Signer(Ed25519PrivateKey.from_private_bytes(seed))
    assert s.controller == META["keys"][name]["did"]
    return s


def holder(case: str) -> str:
    """The fixture key that controls a case's capability."""
    did = CASES[case]["capability"]["controller"]
    return next(name for name, key in META["keys"].items() if key["did"] == did)


def at(api: Api, who: Ed25519Signer, method: str, path: str) -> dict[str, str]:
    """A plain signature made at the fixtures' moment (the server's clock), not the wall clock."""
    now = api.clock.seconds()
    return sign(who, method, path, created=now, expires=now + 30)


async def body_of(r: Any) -> bytes:
    return bytes(await r.content())


@pytest.fixture
def shared() -> Api:
    """Space ``s1`` controlled by the fixtures' root key, with two resources under ``things/``."""
    clock = Clock()
    clock.advance(META["now_ms"] / 1000)
    backend = MemoryBackend()
    settings = Settings(backend="memory", public_url=ORIGIN)
    ops = Operations(AsyncStorage(backend, run_inline), settings, clock)
    return Api(StubTreq(WASApp(ops, "memory").resource()), ops, clock, backend)


async def setup_space(api: Api) -> None:
    root = signer("root")
    body = json.dumps({"controller": root.controller}).encode()
    r = await api.http.put(ORIGIN + "/space/s1", data=body, headers=at(api, root, "PUT", "/space/s1"))
    assert r.code == 201, await r.text()
    for name in ("item1", "item2"):
        path = f"/space/s1/things/{name}"
        r = await api.http.put(
            ORIGIN + path,
            data=name.encode(),
            headers={"content-type": "text/plain", **at(api, root, "PUT", path)},
        )
        assert r.code == 204


async def get_with(api: Api, case: str, path: str = ITEM, method: str = "GET", who: str | None = None) -> Any:
    url = ORIGIN + path
    headers = invoke(
        signer(who or holder(case)),
        method,
        url,
        capability=CASES[case]["capability"],
        action="GET" if method == "HEAD" else method,
        body=b"new" if method == "PUT" else None,
        content_type="text/plain",
        now=api.clock.seconds(),
    )
    return await api.http.request(method, url, data=b"new" if method == "PUT" else None, headers=headers)


@pytest.mark.parametrize(
    "case", ["chain1_resource", "chain2_container", "chain3_space", "chain3_middle", "chain10"]
)
@pytest_twisted.ensureDeferred
async def test_valid_chains_read_where_granted(shared: Api, case: str) -> None:
    await setup_space(shared)
    for method in ("GET", "HEAD"):
        r = await get_with(shared, case, method=method)
        assert r.code == 200, (case, method, await r.text())
    r = await get_with(shared, case)
    assert await body_of(r) == b"item1"
    # Not under its target, or another action: as absent.
    target = CASES[case]["capability"]["invocationTarget"].removeprefix(ORIGIN)
    outside = {ITEM: "/space/s1/things/item2", "/space/s1": "/space/s1x/things/item1"}.get(
        target, target + "X"
    )
    r = await get_with(shared, case, path=outside)
    assert r.code == 404
    r = await get_with(shared, case, method="DELETE")
    assert r.code == 404


@pytest.mark.parametrize(
    "case",
    [
        "chain11",
        "broader_action",
        "dropped_action_restriction",
        "target_outside_parent",
        "target_string_prefix",
        "root_target_outside",
        "expires_after_parent",
        "created_before_parent",
        "expired",
        "expired_parent",
        "created_in_future",
        "tampered",
        "tampered_parent",
        "tampered_proof",
        "root_not_controller",
        "wrong_delegator",
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_chains_answer_as_absent(shared: Api, case: str) -> None:
    await setup_space(shared)
    target = CASES[case]["capability"]["invocationTarget"].removeprefix(ORIGIN)
    r = await get_with(shared, case, path=target if target.startswith("/space/s1/") else ITEM)
    assert r.code == 404, (case, await r.text())
    assert (await body_of(r)).startswith(NOT_FOUND)


@pytest_twisted.ensureDeferred
async def test_delegated_write_and_replay_with_another_key(shared: Api) -> None:
    await setup_space(shared)
    r = await get_with(shared, "chain1_resource", method="PUT")
    assert r.code == 204, await r.text()
    root = signer("root")
    r = await shared.http.get(ORIGIN + ITEM, headers=at(shared, root, "GET", ITEM))
    assert await body_of(r) == b"new"
    # Bob holds no key of alice's: replaying her capability with his signature fails.
    r = await get_with(shared, "chain1_resource", who="bob")
    assert r.code == 404
    # chain2 (GET only) cannot write.
    r = await get_with(shared, "chain2_container", method="PUT")
    assert r.code == 404


@pytest_twisted.ensureDeferred
async def test_headers_made_by_http_signature_zcap_invoke(shared: Api) -> None:
    """The JavaScript library's own headers, replayed at the moment it made them."""
    await setup_space(shared)
    for name in ("root_get", "root_object_get"):
        case = HEADERS[name]
        r = await shared.http.request(case["method"], case["url"], headers=case["headers"])
        assert r.code == 200, (name, await r.text())
    put = HEADERS["delegated_put"]
    body = json.dumps(put["json"], separators=(",", ":")).encode()
    r = await shared.http.put(put["url"], data=body, headers=put["headers"])
    assert r.code == 204, await r.text()
    r = await shared.http.put(put["url"], data=body + b" ", headers=put["headers"])
    assert r.code == 400  # the Digest no longer matches


@pytest_twisted.ensureDeferred
async def test_revocation(shared: Api) -> None:
    """The controller, or a delegator in the chain, revokes; every chain holding it is refused."""
    await setup_space(shared)
    root, bob = signer("root"), signer("bob")
    assert (await get_with(shared, "chain3_space")).code == 200
    assert (await get_with(shared, "chain3_middle")).code == 200
    # chain3_middle is bob's capability (delegated by alice); carol's chain3_space descends from it.
    middle = CASES["chain3_middle"]["capability"]
    # A stranger cannot revoke it.
    mallory = Ed25519Signer()
    rid = middle["id"]
    path = f"/space/s1/zcaps/revocations/{rid}"
    body = json.dumps(middle).encode()
    r = await shared.http.post(
        ORIGIN + path,
        data=body,
        headers=invoke(mallory, "POST", ORIGIN + path, body=body, now=shared.clock.seconds()),
    )
    assert r.code == 404
    # Its delegate may (bob controls it).
    r = await shared.http.post(
        ORIGIN + path,
        data=body,
        headers=invoke(bob, "POST", ORIGIN + path, body=body, now=shared.clock.seconds()),
    )
    assert r.code == 204, await r.text()
    assert (await get_with(shared, "chain3_middle")).code == 404
    # Carol's capability descends from it: refused too; an unrelated chain is not.
    assert (await get_with(shared, "chain3_space")).code == 404
    assert (await get_with(shared, "chain1_resource")).code == 200
    # The list is the controller's.
    listing = "/space/s1/zcaps/revocations/"
    r = await shared.http.get(ORIGIN + listing, headers=at(shared, root, "GET", listing))
    doc = json.loads(await body_of(r))
    assert [item["id"] for item in doc["items"]] == [rid]
    r = await shared.http.get(ORIGIN + listing, headers=at(shared, bob, "GET", listing))
    assert r.code == 404
    # A capability id in the URL that is not the body's is refused.
    r = await shared.http.post(
        ORIGIN + path + "x",
        data=body,
        headers=invoke(root, "POST", ORIGIN + path + "x", body=body, now=shared.clock.seconds()),
    )
    assert r.code == 400


@pytest_twisted.ensureDeferred
async def test_delegated_space_creation(shared: Api) -> None:
    """A provisioning service holding a delegated PUT on the space URL creates it for the controller."""
    root = signer("root")
    url = ORIGIN + "/space/s1"
    body = json.dumps({"controller": root.controller}).encode()
    chain10 = CASES["chain10"]["capability"]  # k9 may GET and PUT https://was.example/space/s1

    def headers(who: str, case: str, doc: bytes) -> dict[str, str]:
        return invoke(
            signer(who),
            "PUT",
            url,
            capability=CASES[case]["capability"],
            body=doc,
            now=shared.clock.seconds(),
        )

    # GET-only, or not for the space URL: 400 controller-mismatch saying why; nothing created.
    for case in ("chain3_space", "chain2_container"):
        r = await shared.http.put(url, data=body, headers=headers(holder(case), case, body))
        assert r.code == 400, await r.text()
        problem = json.loads(await body_of(r))
        assert problem["type"] == "https://wallet.storage/spec#controller-mismatch" and problem["detail"]
    # Naming another controller than the chain's root: refused.
    other = json.dumps({"controller": signer("bob").controller}).encode()
    r = await shared.http.put(url, data=other, headers=headers("k9", "chain10", other))
    assert r.code == 400
    r = await shared.http.get(url, headers=at(shared, root, "GET", "/space/s1"))
    assert r.code == 404
    # The real thing.
    assert chain10["controller"] == META["keys"]["k9"]["did"]
    r = await shared.http.put(url, data=body, headers=headers("k9", "chain10", body))
    assert r.code == 201, await r.text()
    r = await shared.http.get(url, headers=at(shared, root, "GET", "/space/s1"))
    doc = json.loads(await body_of(r))
    assert doc["controller"] == root.controller and doc["createdBy"] == signer("k9").controller
