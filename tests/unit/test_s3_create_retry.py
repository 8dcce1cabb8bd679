"""A create whose conditional write reached S3 but whose answer was lost is still a create.

botocore retries a PutObject whose answer never came; when the first try
was stored, the retry meets that object and S3 answers 412.  These tests
replay exactly that (the real write, then the 412 the retry gets) on
in-process moto, under the backend and through the HTTP routes.
"""

from __future__ import annotations

import io
import json
import time
import uuid
from typing import Any

import pytest_twisted
from botocore.exceptions import ClientError
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, sign
from tests.unit.test_s3_backend import ALICE, backend, create, keys, s3  # noqa: F401 - the fixture
from tests.unit.test_storage_contract import allow
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.base import Condition, SpaceRecord
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp


def lose_answers(b: S3Backend, times: int = 1) -> list[str]:
    """The next ``times`` conditional PutObjects are stored, then answered 412 (a retry's answer)."""
    real = b.client.put_object
    lost: list[str] = []

    def put(**kwargs: Any) -> Any:
        real(**kwargs)
        if len(lost) < times and ("IfNoneMatch" in kwargs or "IfMatch" in kwargs):
            lost.append(kwargs["Key"])
            raise ClientError(
                {
                    "Error": {"Code": "PreconditionFailed"},
                    "ResponseMetadata": {"HTTPStatusCode": 412, "RetryAttempts": 1},
                },
                "PutObject",
            )
        return None

    b.client.put_object = put
    return lost


def record(space_id: str, controller: str = ALICE) -> SpaceRecord:
    return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=controller)


def test_a_create_retried_into_its_own_object_is_a_create(s3: Any) -> None:  # noqa: F811
    b = backend()
    lost = lose_answers(b)
    created, stored = b.put_space("s1", lambda current: record("s1"))
    assert lost == ["prod/spaces/s1/_meta.json"]
    assert created and stored.etag is not None and stored.etag == b.get_space("s1").etag  # type: ignore[union-attr]


def test_a_create_that_lost_to_another_writer_is_not(s3: Any) -> None:  # noqa: F811
    """Another writer's object behind the 412: no token of ours, so the write was not ours."""
    b = backend()
    create(b, "s1", controller="did:key:z6MkOther")
    seen: list[SpaceRecord | None] = []

    def build(current: SpaceRecord | None) -> SpaceRecord:
        seen.append(current)
        return record("s1") if current is None else current

    stale = b._load_space
    calls = {"n": 0}

    def first_stale(space_id: str, fresh: bool = False) -> Any:
        calls["n"] += 1
        return (None, None) if calls["n"] == 1 else stale(space_id, fresh)

    b._load_space = first_stale  # type: ignore[method-assign]
    created, stored = b.put_space("s1", build)
    assert not created and stored.controller == "did:key:z6MkOther" and seen[0] is None


def test_the_token_goes_with_the_next_update(s3: Any) -> None:  # noqa: F811
    """An update replaces the object's metadata: a stale token can never match a later write."""
    b = backend()
    create(b, "s1")
    first = s3.head_object(Bucket="was-unit", Key="prod/spaces/s1/_meta.json")["Metadata"]["was-write"]
    b.put_space("s1", lambda current: record("s1"))
    second = s3.head_object(Bucket="was-unit", Key="prod/spaces/s1/_meta.json")["Metadata"]["was-write"]
    assert first != second
    assert json.loads(s3.get_object(Bucket="was-unit", Key="prod/spaces/s1/_meta.json")["Body"].read()) == {
        "id": "urn:uuid:s1",
        "controller": ALICE,
    }


def test_a_conditional_resource_write_retried_into_itself_succeeds(s3: Any) -> None:  # noqa: F811
    """``If-None-Match: *`` and ``If-Match`` writes whose answer was lost: not 412, the write stands."""
    b = backend()
    create(b, "s1")
    lose_answers(b, times=2)
    info = b.write_resource(
        "s1", "/r", io.BytesIO(b"one"), "text/plain", allow, condition=Condition(None, True)
    )
    info2 = b.write_resource(
        "s1", "/r", io.BytesIO(b"two"), "text/plain", allow, condition=Condition((str(info.etag),), False)
    )
    _, res = b.read_resource("s1", "/r")
    assert res is not None and res.body.read() == b"two" and res.info.etag == info2.etag


def test_a_collection_create_retried_into_itself_is_a_create(s3: Any) -> None:  # noqa: F811
    b = backend()
    create(b, "s1")
    lose_answers(b)
    assert b.put_record("s1", "collections", "c1", b'{"id": "c1"}', allow) is True
    assert "prod/spaces/s1/collections/c1.json" in keys(s3, "prod/")


@pytest_twisted.ensureDeferred
async def test_put_space_answers_201_when_the_create_was_retried(s3: Any) -> None:  # noqa: F811
    """Through the route: 201 and Location, as if the first answer had come."""
    alice = Ed25519Signer()
    b = backend()
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(b, run_inline), Settings(backend="s3"), clock)
    http = StubTreq(WASApp(ops, "s3").resource())
    lose_answers(b)
    sid = str(uuid.uuid4())
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller}).encode()
    r = await http.put(BASE + path, data=body, headers=sign(alice, "PUT", path))
    assert r.code == 201, await r.text()
    assert r.headers.getRawHeaders("location") == [BASE + path]
    lose_answers(b)
    body = json.dumps({"controller": alice.controller}).encode()
    r = await http.post(BASE + "/spaces/", data=body, headers=sign(alice, "POST", "/spaces/"))
    assert r.code == 201, await r.text()
    assert r.headers.getRawHeaders("location")


def test_a_multipart_completion_retried_after_it_succeeded_is_a_success(s3: Any) -> None:  # noqa: F811
    """CompleteMultipartUpload done, its answer lost; the retry gets NoSuchUpload: the upload stands."""
    from was_twisted.storage.s3 import PART_SIZE

    b = backend()
    create(b, "s1")
    real = b.client.complete_multipart_upload

    def complete(**kwargs: Any) -> Any:
        real(**kwargs)
        raise ClientError(
            {
                "Error": {"Code": "NoSuchUpload"},
                "ResponseMetadata": {"HTTPStatusCode": 404, "RetryAttempts": 1},
            },
            "CompleteMultipartUpload",
        )

    b.client.complete_multipart_upload = complete
    data = b"m" * (PART_SIZE + 1000)
    info = b.write_resource("s1", "/big", io.BytesIO(data), "application/octet-stream", allow)
    assert info.size == len(data)
    _, res = b.read_resource("s1", "/big")
    assert res is not None and res.body.read() == data
    assert s3.list_multipart_uploads(Bucket="was-unit").get("Uploads", []) == []
