"""The S3 backend against in-process moto: raw keys, the seed's contract, the index, request counts.

The same behaviours run over HTTP against moto's server and Ceph RGW in
tests/integration; these are the fast, exhaustive ones.
"""

from __future__ import annotations

import io
import json
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.unit.test_storage_contract import allow
from was_twisted.errors import Unavailable
from was_twisted.storage.base import SpaceMissing, SpaceRecord, StorageError
from was_twisted.storage.s3 import DELETE_BATCH, REINDEX_GRACE_SECONDS, S3Backend, S3SetupError
from was_twisted.storage.threaded import AsyncStorage, run_inline

BUCKET = "was-unit"
ALICE = "did:key:z6MkAlice"
BOB = "did:key:z6MkBob"

#: The seed's IAM policy, by the boto3 operations it allows.
SEED_POLICY_OPERATIONS = {
    "GetObject",
    "PutObject",
    "DeleteObject",
    "DeleteObjects",
    "ListObjectsV2",
    "HeadObject",
}


@pytest.fixture
def s3(mocked_aws: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def backend(prefix: str = "prod/") -> S3Backend:
    b = S3Backend(BUCKET, prefix, threads=4)
    b.check()
    return b


def keys(client: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


def create(b: S3Backend, space_id: str, controller: str = ALICE) -> None:
    def build(current: SpaceRecord | None) -> SpaceRecord:
        return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=controller)

    b.put_space(space_id, build)


def test_layout_is_the_seeds(s3: Any) -> None:
    """Spaces and resources land at the seed's keys, with native ContentType and no sidecars."""
    b = backend("prod/")
    b.reindex()
    create(b, "s1")
    b.write_resource("s1", "/file.txt", io.BytesIO(b"hello"), "text/plain", allow)
    b.write_resource("s1", "/a b/ü.json", io.BytesIO(b"{}"), "application/json", allow)
    assert keys(s3, "prod/spaces/") == [
        "prod/spaces/s1/_meta.json",
        "prod/spaces/s1/resources/%2Fa%20b%2F%C3%BC.json",
        "prod/spaces/s1/resources/%2Ffile.txt",
    ]
    meta = json.loads(s3.get_object(Bucket=BUCKET, Key="prod/spaces/s1/_meta.json")["Body"].read())
    assert meta["id"] == "urn:uuid:s1" and meta["controller"] == ALICE
    obj = s3.get_object(Bucket=BUCKET, Key="prod/spaces/s1/resources/%2Ffile.txt")
    assert obj["ContentType"] == "text/plain" and obj["Body"].read() == b"hello"
    assert keys(s3, "prod/controllers/") == [
        "prod/controllers/.indexed",
        f"prod/controllers/{quote(ALICE, safe='')}/s1",
    ]


def test_bucket_written_by_the_existing_server(s3: Any) -> None:
    """Objects laid out as the seed shows are served with their types; listed before and after reindex."""
    sid = "6f1c1c4e-1b7a-4c34-9f59-9e0b1a7d2c11"
    s3.put_object(
        Bucket=BUCKET,
        Key=f"spaces/{sid}/_meta.json",
        Body=json.dumps({"id": f"urn:uuid:{sid}", "controller": ALICE}).encode(),
    )
    s3.put_object(
        Bucket=BUCKET,
        Key=f"spaces/{sid}/resources/{quote('/file.txt', safe='')}",
        Body=b"old",
        ContentType="text/csv",
    )
    b = backend("")
    assert b.indexed is False
    space, res = b.read_resource(sid, "/file.txt")
    assert space is not None and space.id == f"urn:uuid:{sid}" and space.controller == ALICE
    assert res is not None and res.info.content_type == "text/csv" and res.body.read() == b"old"
    assert b.list_spaces(ALICE) == [sid]  # scanned: no index yet
    assert b.reindex() == (1, 0)
    assert backend("").indexed is True
    b.calls.clear()
    assert b.list_spaces(ALICE) == [sid]
    assert b.calls == {"ListObjectsV2": 1}


def test_delete_space_batches_deletes(s3: Any) -> None:
    """Deleting a space with 2,100 resources uses DeleteObjects with at most 1,000 keys each."""
    b = backend()
    create(b, "big")
    # Write the objects directly: the backend's write path is tested elsewhere, and this is faster.
    for n in range(2100):
        s3.put_object(Bucket=BUCKET, Key=f"prod/spaces/big/resources/%2F{n}", Body=b"x")
    batch_sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        batch_sizes.append(len(params["Delete"]["Objects"]))

    b.client.meta.events.register("before-parameter-build.s3.DeleteObjects", record)
    b.calls.clear()
    assert b.delete_space("big", allow) is True
    assert keys(s3, "prod/spaces/big/") == []
    assert max(batch_sizes) <= DELETE_BATCH and sum(batch_sizes) >= 2101
    assert b.calls["DeleteObjects"] == len(batch_sizes) >= 3
    assert b.get_space("big") is None
    assert b.list_spaces(ALICE) == []


def test_write_into_missing_space_fails_and_writes_nothing(s3: Any) -> None:
    """A resource write into an absent space raises SpaceMissing and leaves no object behind."""
    b = backend()
    with pytest.raises(SpaceMissing):
        b.write_resource("ghost", "/a", io.BytesIO(b"x"), "text/plain", allow)
    assert keys(s3, "prod/") == []


def test_prefixes_isolate_servers(s3: Any) -> None:
    """Two servers with different prefixes on one bucket never see each other's spaces."""
    one, two = backend("one/"), backend("two/")
    one.reindex()
    two.reindex()
    create(one, "s")
    assert two.get_space("s") is None
    assert two.list_spaces(ALICE) == []
    assert two.read_resource("s", "/x") == (None, None)
    create(two, "s", BOB)
    assert one.get_space("s").controller == ALICE  # type: ignore[union-attr]
    assert one.list_spaces(BOB) == [] and two.list_spaces(ALICE) == []


def test_create_is_conditional(s3: Any) -> None:
    """Creating over an existing record fails the IfNoneMatch='*' PUT: the build sees it and refuses."""
    b = backend()
    create(b, "s1")
    # Simulate another server's create racing ours: the record appears after our read.
    real_get = b._load_space
    calls = {"n": 0}

    def stale_first(space_id: str, fresh: bool = False) -> Any:
        calls["n"] += 1
        return (None, None) if calls["n"] == 1 else real_get(space_id, fresh)

    b._load_space = stale_first  # type: ignore[method-assign]
    seen: list[SpaceRecord | None] = []

    def build(current: SpaceRecord | None) -> SpaceRecord:
        seen.append(current)
        if current is not None:
            raise RuntimeError("exists")
        return SpaceRecord(space_id="s1", id="s1", controller=BOB)

    with pytest.raises(RuntimeError):
        b.put_space("s1", build)
    assert seen[0] is None and seen[-1] is not None and seen[-1].controller == ALICE
    assert real_get("s1")[0].controller == ALICE  # type: ignore[union-attr]
    # Bob's provisional index entry was taken back.
    assert b.list_spaces(BOB) == []


def test_transfer_moves_index_entry(s3: Any) -> None:
    """A controller transfer lists the space under the new controller only."""
    b = backend()
    b.reindex()
    create(b, "s1")
    create(b, "s1", BOB)
    assert b.list_spaces(ALICE) == [] and b.list_spaces(BOB) == ["s1"]


def test_crash_between_index_and_record(s3: Any) -> None:
    """If the process dies after the index write, the id is listed but absent; reindex removes it."""
    b = backend()
    b.reindex()

    def die_on_meta(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("_meta.json"):
            raise KeyboardInterrupt("process killed")

    b.client.meta.events.register("before-parameter-build.s3.PutObject", die_on_meta)
    with pytest.raises(KeyboardInterrupt):
        create(b, "s1")
    b.client.meta.events.unregister("before-parameter-build.s3.PutObject", die_on_meta)
    assert b.list_spaces(ALICE) == ["s1"]
    assert b.get_space("s1") is None
    assert b.reindex() == (0, 0)  # too young to remove: it may still be being created
    import time

    assert b.reindex(now=time.time() + REINDEX_GRACE_SECONDS + 60) == (0, 1)
    assert b.list_spaces(ALICE) == []


def test_requests_per_operation(s3: Any) -> None:
    """Read: 2 GETs side by side; write: GET and HEAD side by side, PUT; create: 4; list: 1; delete: 2.

    A create GETs the record, then the pending-delete marker (``s3_delete.py``), then PUTs twice.
    """
    b = backend()
    b.reindex()
    b.calls.clear()
    create(b, "s1")
    assert b.calls == {"GetObject": 2, "PutObject": 2}
    b.calls.clear()
    assert b.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow).existed is False
    assert b.calls == {"GetObject": 1, "HeadObject": 1, "PutObject": 1}  # GET and HEAD side by side
    b.calls.clear()
    _, res = b.read_resource("s1", "/r")
    assert res is not None and res.body.read() == b"x"
    assert b.calls == {"GetObject": 2}
    b.calls.clear()
    assert b.list_spaces(ALICE) == ["s1"]
    assert b.calls == {"ListObjectsV2": 1}
    b.calls.clear()
    b.delete_resource("s1", "/r", allow)
    assert b.calls == {"GetObject": 1, "DeleteObject": 1}


def test_a_write_refused_by_its_guard_says_so_whatever_the_head(s3: Any) -> None:
    """The HEAD beside the space lookup is only used once the guard passed: its failure never
    replaces the guard's refusal, and a refused write stores nothing."""
    b = backend()
    create(b, "s1")

    class Refused(Exception):
        pass

    def refuse(current: SpaceRecord | None) -> None:
        raise Refused

    def broken_head(key: str) -> None:
        raise StorageError("HeadObject down")

    b._head = broken_head  # type: ignore[assignment,method-assign]
    with pytest.raises(Refused):
        b.write_resource("s1", "/a", io.BytesIO(b"x"), "text/plain", refuse)
    with pytest.raises(StorageError):
        b.write_resource("s1", "/a", io.BytesIO(b"x"), "text/plain", allow)
    del b._head
    assert b.read_resource("s1", "/a")[1] is None


def test_operations_stay_within_the_seed_policy(s3: Any) -> None:
    """Everything but a multipart upload uses only the seed policy's actions."""
    b = backend()
    b.reindex()
    create(b, "s1")
    create(b, "s1", BOB)
    b.write_resource("s1", "/a", io.BytesIO(b"x"), "text/plain", allow)
    b.read_resource("s1", "/a")
    b.list_resources("s1", "/", allow)
    b.list_spaces(BOB)
    b.delete_resource("s1", "/a", allow)
    b.delete_space("s1", allow)
    assert set(b.calls) <= SEED_POLICY_OPERATIONS, set(b.calls) - SEED_POLICY_OPERATIONS


def test_large_body_goes_multipart(s3: Any) -> None:
    """A body over the threshold is uploaded in 8 MiB parts (s3:PutObject) and reads back whole."""
    b = backend()
    create(b, "s1")
    data = bytes(range(256)) * (17 * 4096)  # 17 MiB
    b.calls.clear()
    info = b.write_resource("s1", "/big", io.BytesIO(data), "video/mp4", allow)
    assert info.size == len(data)
    assert b.calls["CreateMultipartUpload"] == 1 and b.calls["UploadPart"] == 3
    _, res = b.read_resource("s1", "/big")
    assert res is not None and res.info.content_type == "video/mp4" and res.body.read() == data


def test_throttling_is_unavailable(s3: Any) -> None:
    """S3 throttling (after boto3's retries) becomes Unavailable, which the edge answers 503 + Retry-After."""
    b = backend()

    def slow_down(**_: Any) -> Any:
        raise ClientError(
            {
                "Error": {"Code": "SlowDown", "Message": "Reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            },
            "GetObject",
        )

    b.client.get_object = slow_down
    storage = AsyncStorage(b, run_inline)
    d = storage.get_space("s1")  # type: ignore[arg-type]
    failures: list[Any] = []
    import twisted.internet.defer as defer

    defer.ensureDeferred(d).addErrback(failures.append)
    assert failures and failures[0].check(Unavailable)


def test_missing_bucket_is_one_sentence(s3: Any) -> None:
    """A missing bucket stops start-up with a sentence naming WAS_STORAGE_BUCKET."""
    b = S3Backend("no-such-bucket", "", threads=2)
    with pytest.raises(S3SetupError, match="WAS_STORAGE_BUCKET 'no-such-bucket' does not exist"):
        b.check()


def test_timestamps_parse_both_s3_forms() -> None:
    """Header dates (GetObject) and ISO dates (ListObjectsV2) parse to the same aware datetime."""
    from was_twisted.storage.s3 import _parse_timestamp

    a = _parse_timestamp("Tue, 24 Nov 2026 03:01:29 GMT")
    b = _parse_timestamp("2026-11-24T03:01:29.000Z")
    assert a == b and a.tzinfo is not None
    assert _parse_timestamp("1795489289").timestamp() == 1795489289


def test_head_fetches_no_bytes(s3: Any) -> None:
    """A HEAD is a HeadObject beside the record's GetObject: the object's bytes are not fetched."""
    b = backend()
    create(b, "s1")
    b.write_resource("s1", "/r", io.BytesIO(b"x" * 5000), "text/plain", allow)
    b.calls.clear()
    _, res = b.read_resource("s1", "/r", with_body=False)
    assert res is not None and res.info.size == 5000 and res.info.content_type == "text/plain"
    assert b.calls == {"GetObject": 1, "HeadObject": 1}
