"""Space deletes on S3 are atomic to readers: marked, the record gone, then the keys; a crash is finished.

In-process moto; the same through a real ``kill -9`` runs in tests/integration/test_kill9_e2e.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from tests.unit.test_storage_contract import allow
from was_twisted.storage import s3_bucket as s3_module
from was_twisted.storage.base import SpaceRecord
from was_twisted.storage.s3 import S3Backend

BUCKET = "was-delete"
ALICE = "did:key:z6MkAlice"


class Killed(BaseException):
    """The process dies at this S3 call."""


@pytest.fixture
def s3(mocked_aws: None) -> Iterator[tuple[S3Backend, Any]]:
    raw = boto3.client("s3", region_name="us-east-1")
    raw.create_bucket(Bucket=BUCKET)
    b = S3Backend(BUCKET, "pfx/", threads=4)
    b.check()
    b.reindex()
    yield b, raw
    b.close()


def raw_keys(raw: Any, prefix: str = "pfx/") -> list[str]:
    out: list[str] = []
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


def record(space_id: str = "s1", controller: str = ALICE) -> SpaceRecord:
    return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=controller)


def create(b: S3Backend, space_id: str = "s1") -> None:
    b.put_space(space_id, lambda current: record(space_id))


def fill(b: S3Backend, raw: Any, n: int = 7) -> list[str]:
    """A space with ``n`` resources and a policy; all its keys (and its index entry)."""
    create(b)
    for i in range(n):
        raw.put_object(Bucket=BUCKET, Key=f"pfx/spaces/s1/resources/%2F{i}", Body=b"old")
    b.put_record("s1", "policies", "/p", b"{}", allow)
    return raw_keys(raw)


def leftovers(raw: Any) -> list[str]:
    """Everything but the index's completeness mark."""
    return [k for k in raw_keys(raw) if k != "pfx/controllers/.indexed"]


def test_the_record_goes_before_any_resource(s3: tuple[S3Backend, Any]) -> None:
    """When the first DeleteObjects is sent, the space already reads 404 and the marker is written."""
    b, raw = s3
    fill(b, raw)
    seen: list[tuple[bool, list[str]]] = []

    def look(params: dict[str, Any], **_: Any) -> None:
        seen.append((b.get_space("s1") is None, raw_keys(raw, "pfx/deleting/")))

    b.client.meta.events.register("before-parameter-build.s3.DeleteObjects", look)
    assert b.delete_space("s1", allow) is True
    assert seen and all(gone and marks == ["pfx/deleting/s1"] for gone, marks in seen)
    assert leftovers(raw) == []


@pytest.mark.parametrize("finisher", ["sweep", "create", "delete-again"])
def test_killed_at_any_call_the_space_is_whole_or_gone_and_then_finished(
    s3: tuple[S3Backend, Any], monkeypatch: pytest.MonkeyPatch, finisher: str
) -> None:
    """Killed at the n-th S3 call of a delete, for every n: the space reads whole or 404, never partial.

    Then a sweep, a create of the same id or a second delete leaves nothing of
    the old space: no resource, record, index entry or marker.
    """
    b, raw = s3
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 3)
    calls = {"n": 0, "allowed": 0}

    def die(**_: Any) -> None:
        calls["n"] += 1
        if calls["n"] > calls["allowed"]:
            raise Killed

    stops = 0
    while True:
        full = fill(b, raw)
        calls.update(n=0, allowed=stops)
        b.client.meta.events.register("before-call.s3", die)
        try:
            b.delete_space("s1", allow)
            finished = True
        except Killed:
            finished = False
        b.client.meta.events.unregister("before-call.s3", die)
        if finished:
            assert leftovers(raw) == [] and stops > 8
            return
        left = raw_keys(raw, "pfx/spaces/")
        whole = b.get_space("s1") is not None
        if whole:
            assert [k for k in full if k.startswith("pfx/spaces/")] == left  # whole
        else:
            assert b.read_resource("s1", "/0")[0] is None  # gone (404), even with its bytes still there
        if finisher == "sweep":
            for space_id, _ in b.pending_deletes():
                b.finish_delete(space_id)
            if b.get_space("s1") is not None:  # killed before the mark took: the delete was never seen
                b.delete_space("s1", allow)
        elif finisher == "create":
            create(b)  # an update of a whole space; a create of a gone one, where nothing old comes back
            assert len(b.list_resources("s1", "/", allow)) == (7 if whole else 0)
            b.delete_space("s1", allow)
        else:
            b.delete_space("s1", allow)
            for space_id, _ in b.pending_deletes():
                b.finish_delete(space_id)
        assert leftovers(raw) == [], (stops, leftovers(raw))
        stops += 1


def test_create_over_a_pending_delete_starts_empty(s3: tuple[S3Backend, Any]) -> None:
    """A PUT that re-creates a space whose delete was interrupted finishes that delete first."""
    b, raw = s3
    fill(b, raw)

    def die(params: dict[str, Any], **_: Any) -> None:
        raise Killed

    b.client.meta.events.register("before-parameter-build.s3.DeleteObjects", die)
    with pytest.raises(Killed):
        b.delete_space("s1", allow)
    b.client.meta.events.unregister("before-parameter-build.s3.DeleteObjects", die)
    assert b.get_space("s1") is None and b.pending_deletes()[0][0] == "s1"
    create(b)
    assert b.list_resources("s1", "/", allow) == []
    assert b.list_records("s1", "policies", allow) == []
    assert b.pending_deletes() == []
    assert b.list_spaces(ALICE) == ["s1"]


def test_a_space_recreated_by_a_server_without_markers_is_kept(s3: tuple[S3Backend, Any]) -> None:
    """The existing server knows no markers: a space it re-created meanwhile is live; only the marker goes."""
    b, raw = s3
    fill(b, raw)
    raw.put_object(
        Bucket=BUCKET,
        Key="pfx/deleting/s1",
        Body=json.dumps({"controller": ALICE, "etag": '"an-older-record"'}).encode(),
    )
    assert b.finish_delete("s1") is True
    assert b.get_space("s1") == record()
    assert raw_keys(raw, "pfx/spaces/s1/resources/") != []
    assert b.pending_deletes() == []


def test_two_finishers_never_delete_what_came_after(s3: tuple[S3Backend, Any]) -> None:
    """A finisher that finds the marker gone (another finished, the space was re-created) stops at once."""
    b, raw = s3
    fill(b, raw)

    def die(params: dict[str, Any], **_: Any) -> None:
        raise Killed

    b.client.meta.events.register("before-parameter-build.s3.DeleteObjects", die)
    with pytest.raises(Killed):
        b.delete_space("s1", allow)
    b.client.meta.events.unregister("before-parameter-build.s3.DeleteObjects", die)
    # A second backend (another worker) re-creates the space meanwhile and writes a new resource.
    other = S3Backend(BUCKET, "pfx/", threads=2)
    other.check()
    create(other)
    other.write_resource("s1", "/new", io.BytesIO(b"new"), "text/plain", allow)
    other.close()
    assert b.pending_deletes() == []
    # The first finisher wakes up late: the marker is gone, so it deletes nothing.
    assert b._purge("s1", ALICE) == 0
    assert [p for p, _ in b.list_resources("s1", "/", allow)] == ["/new"]
    assert b.list_spaces(ALICE) == ["s1"]


def test_request_cost_of_a_delete(s3: tuple[S3Backend, Any]) -> None:
    """An empty space: 8 requests (mark, unlink, list, index, list again, unmark); +3 per 1,000 keys."""
    b, raw = s3
    create(b)
    b.calls.clear()
    b.delete_space("s1", allow)
    assert b.calls == {
        "GetObject": 1,
        "PutObject": 1,
        "DeleteObject": 2,
        "ListObjectsV2": 2,
        "HeadObject": 1,
        "DeleteObjects": 1,
    }
    fill(b, raw, 2100)
    b.calls.clear()
    b.delete_space("s1", allow)
    assert b.calls["DeleteObjects"] == 4 and b.calls["HeadObject"] == 4 and b.calls["ListObjectsV2"] == 4
    assert leftovers(raw) == []


def test_a_finish_cut_short_keeps_its_marker(
    s3: tuple[S3Backend, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped between batches (shutdown), a finisher leaves the marker: the next sweep carries on."""
    b, raw = s3
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 3)
    fill(b, raw)

    def die(params: dict[str, Any], **_: Any) -> None:
        raise Killed

    b.client.meta.events.register("before-parameter-build.s3.DeleteObjects", die)
    with pytest.raises(Killed):
        b.delete_space("s1", allow)
    b.client.meta.events.unregister("before-parameter-build.s3.DeleteObjects", die)
    batches = {"n": 0}

    def stop() -> bool:
        batches["n"] += 1
        return batches["n"] > 1  # one batch, then stop

    assert b.finish_delete("s1", stop) is True
    assert b.pending_deletes()[0][0] == "s1"
    assert f"pfx/controllers/{quote(ALICE, safe='')}/s1" in raw_keys(raw)  # not reached
    assert b.finish_delete("s1") is True
    assert leftovers(raw) == []


def test_a_record_changed_under_the_delete_is_decided_again(s3: tuple[S3Backend, Any]) -> None:
    """The record is rewritten between the delete's read and its unlink: If-Match refuses; read again."""
    b, raw = s3
    fill(b, raw)
    guarded: list[SpaceRecord | None] = []
    rewrites = {"left": 1}

    def rewrite(params: dict[str, Any], **_: Any) -> None:
        if params["Key"].endswith("_meta.json") and rewrites["left"]:
            rewrites["left"] -= 1
            doc = {"id": "urn:uuid:s1", "controller": ALICE, "name": "renamed"}
            raw.put_object(Bucket=BUCKET, Key=params["Key"], Body=json.dumps(doc).encode())

    b.client.meta.events.register("before-parameter-build.s3.DeleteObject", rewrite)
    assert b.delete_space("s1", guarded.append) is True
    assert len(guarded) == 2 and guarded[1] is not None and guarded[1].etag != guarded[0].etag  # type: ignore[union-attr]
    assert leftovers(raw) == []
