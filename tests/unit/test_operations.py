"""Operations over memory storage, called directly: the spec's rules without HTTP."""

from __future__ import annotations

import json
import uuid

import pytest
import pytest_twisted
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from tests.conftest import Api
from was_twisted.errors import (
    ControllerMismatch,
    Forbidden,
    InvalidId,
    InvalidRequestBody,
    MissingAuthorization,
    NotFound,
    SpaceExists,
)
from was_twisted.operations import Call, parse_space_body


def call(signer: Ed25519Signer | None, method: str, path: str) -> Call:
    headers = {}
    if signer is not None:
        headers["authorization"] = create_authorization_header(signer=signer, method=method, url=path)
    return Call(method=method, targets=(path,), headers=headers)


def space_body(sid: str, controller: str, **extra: object) -> bytes:
    return json.dumps({"id": f"urn:uuid:{sid}", "controller": controller, **extra}).encode()


def test_body_id_forms() -> None:
    """A body id may be the path id or urn:uuid: + it (prefix and uuid case-insensitive), or absent."""
    sid = str(uuid.uuid4())
    for body_id in (sid, f"urn:uuid:{sid}", f"URN:UUID:{sid.upper()}", None):
        doc = (
            {"controller": "did:key:z6Mkx"}
            if body_id is None
            else {"id": body_id, "controller": "did:key:z6Mkx"}
        )
        assert parse_space_body(json.dumps(doc).encode(), sid).controller == "did:key:z6Mkx"
    for bad in (f"urn:uuid:{uuid.uuid4()}", f"{sid}x", 7):
        with pytest.raises(InvalidRequestBody):
            parse_space_body(json.dumps({"id": bad, "controller": "did:key:z6Mkx"}).encode(), sid)


def test_body_controller_rules() -> None:
    """The controller must be a DID; a #fragment (a key id) is stripped to its DID."""
    assert parse_space_body(b'{"controller": "did:key:z6Mkx#z6Mkx"}', "s").controller == "did:key:z6Mkx"
    for bad in (
        b"{}",
        b'{"controller": "bob"}',
        b'{"controller": 5}',
        b"[]",
        b"nope",
        b'{"controller": "did:x", "name": 1}',
    ):
        with pytest.raises(InvalidRequestBody):
            parse_space_body(bad, "s")


@pytest_twisted.ensureDeferred
async def test_transfer_keeps_created_by(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    """A transfer changes the controller but createdBy stays the creator's."""
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    created, _, _ = await api.ops.put_space(call(alice, "PUT", path), sid, space_body(sid, alice.controller))
    assert created
    created, doc, _ = await api.ops.put_space(
        call(alice, "PUT", path), sid, space_body(sid, mallory.controller)
    )
    assert not created and doc["controller"] == mallory.controller and doc["createdBy"] == alice.controller


@pytest_twisted.ensureDeferred
async def test_unsigned_space_put_is_missing_authorization(api: Api, alice: Ed25519Signer) -> None:
    """An unsigned space PUT is 401 missing-authorization before any lookup, so nothing leaks."""
    sid = str(uuid.uuid4())
    with pytest.raises(MissingAuthorization):
        await api.ops.put_space(call(None, "PUT", f"/space/{sid}"), sid, space_body(sid, alice.controller))


@pytest_twisted.ensureDeferred
async def test_create_space_with_body_id_and_conflict(api: Api, alice: Ed25519Signer) -> None:
    """POST /spaces/ honours a body id; the same id again is id-conflict; a bad id is invalid."""
    sid = str(uuid.uuid4())
    doc = await api.ops.create_space(call(alice, "POST", "/spaces/"), space_body(sid, alice.controller))
    assert doc["url"] == f"/space/{sid}" and doc["id"] == f"urn:uuid:{sid}"
    with pytest.raises(SpaceExists):
        await api.ops.create_space(call(alice, "POST", "/spaces/"), space_body(sid, alice.controller))
    with pytest.raises(InvalidRequestBody):
        body = json.dumps({"id": "a b", "controller": alice.controller}).encode()
        await api.ops.create_space(call(alice, "POST", "/spaces/"), body)
    with pytest.raises(ControllerMismatch):
        body = json.dumps({"controller": "did:key:z6MkSomeoneElse"}).encode()
        await api.ops.create_space(call(alice, "POST", "/spaces/"), body)


@pytest_twisted.ensureDeferred
async def test_delete_absent_space_by_profile(api: Api, legacy_api: Api, alice: Ed25519Signer) -> None:
    """Deleting an absent space: spec hides it (404: nobody controls it); legacy answers as done."""
    sid = str(uuid.uuid4())
    with pytest.raises(NotFound):
        await api.ops.delete_space(call(alice, "DELETE", f"/space/{sid}"), sid)
    await legacy_api.ops.delete_space(call(alice, "DELETE", f"/space/{sid}"), sid)
    with pytest.raises(MissingAuthorization):
        await legacy_api.ops.delete_space(call(None, "DELETE", f"/space/{sid}"), sid)


@pytest_twisted.ensureDeferred
async def test_legacy_wrong_signer_is_forbidden(
    legacy_api: Api, alice: Ed25519Signer, mallory: Ed25519Signer
) -> None:
    """Legacy: a valid signature by another DID on an existing space is Forbidden (403)."""
    sid = str(uuid.uuid4())
    await legacy_api.ops.put_space(
        call(alice, "PUT", f"/space/{sid}"), sid, space_body(sid, alice.controller)
    )
    with pytest.raises(Forbidden):
        await legacy_api.ops.read_space(call(mallory, "GET", f"/space/{sid}"), sid)


@pytest_twisted.ensureDeferred
async def test_ids_checked_before_storage(api: Api, alice: Ed25519Signer) -> None:
    """Bad space ids and paths are InvalidId whatever the storage holds."""
    with pytest.raises(InvalidId):
        await api.ops.read_space(call(alice, "GET", "/space/..x"), "..x")
    with pytest.raises(InvalidId):
        await api.ops.read_resource(call(alice, "GET", "/space/s/a/../b"), "s", "/a/../b")
