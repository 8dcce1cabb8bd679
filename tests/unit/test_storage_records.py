"""Records beside a space (policies, zCap revocations): the contract on every backend, and raw layouts."""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from twisted.internet import defer

from tests.unit.test_filesystem_layout import CONTROLLER, SPACE_ID, URN, files_under, old_server_tree
from tests.unit.test_storage_contract import (
    ALICE,
    BOB,
    Recorder,
    Refused,
    allow,
    backend,
    put,
    read,
    refuse,
    space,
    with_space,
    write,
)
from was_twisted.errors import InvalidId
from was_twisted.storage.base import RECORD_KINDS, Backend, KeyTooLong, SpaceMissing, SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.threaded import AsyncStorage, run_inline

#: The contract's fixtures (memory, filesystem and moto-backed s3), which the tests below take by name.
SHARED_FIXTURES = (backend, with_space)

REVOKED = "urn:uuid:7f0c8a52-2a8e-4b8e-9d1f-0c7b5e3a9d10"
POLICY = b'{"type":"PublicCanRead"}'


def policies(b: Backend, sid: str = "s1") -> list[tuple[str, bytes]]:
    return b.list_records(sid, "policies", allow)


# -- the contract, on every backend ----------------------------------------------------------------------


def test_put_get_replace(with_space: Backend) -> None:
    """put_record says True when it creates and False when it replaces; get_records sees the latest bytes."""
    b = with_space
    assert b.put_record("s1", "policies", "/notes", POLICY, allow) is True
    assert b.put_record("s1", "policies", "/notes", b'{"v":2}', allow) is False
    assert b.get_records("s1", "policies", ["/notes"]) == {"/notes": b'{"v":2}'}
    assert b.put_record("s1", "revocations", REVOKED, b"{}", allow) is True
    assert b.get_records("s1", "revocations", [REVOKED, "urn:uuid:other"]) == {REVOKED: b"{}"}


def test_get_records_leaves_absent_out(with_space: Backend) -> None:
    """Only stored names come back: an anchor walk asks for '/', '/notes', '/notes/a.txt' at once."""
    b = with_space
    b.put_record("s1", "policies", "/", b"root", allow)
    b.put_record("s1", "policies", "/notes/a.txt", b"leaf", allow)
    got = b.get_records("s1", "policies", ("/", "/notes", "/notes/a.txt", "/notes/a.txt"))
    assert got == {"/": b"root", "/notes/a.txt": b"leaf"}
    assert b.get_records("s1", "policies", []) == {}
    assert b.get_records("s1", "revocations", ["/"]) == {}


def test_get_records_of_absent_space_is_empty(backend: Backend) -> None:
    """An absent space has no records, and listing it (when the guard allows) is empty."""
    assert backend.get_records("ghost", "policies", ["/"]) == {}
    assert backend.list_records("ghost", "revocations", allow) == []


def test_kinds_and_spaces_are_separate(backend: Backend) -> None:
    """One name under two kinds, or in two spaces, is four independent records."""
    put(backend, space("s1"), allow)
    put(backend, space("s2"), allow)
    for sid in ("s1", "s2"):
        for kind in RECORD_KINDS:
            backend.put_record(sid, kind, "/x", f"{sid}-{kind}".encode(), allow)
    for sid in ("s1", "s2"):
        for kind in RECORD_KINDS:
            assert backend.get_records(sid, kind, ["/x"]) == {"/x": f"{sid}-{kind}".encode()}
    assert backend.delete_record("s1", "policies", "/x", allow) is True
    assert backend.get_records("s1", "revocations", ["/x"]) == {"/x": b"s1-revocations"}
    assert backend.get_records("s2", "policies", ["/x"]) == {"/x": b"s2-policies"}


ODD_NAMES = [
    "/",
    "/notes",
    "/notes/a.txt",
    REVOKED,
    "/a/b",
    "/a%2Fb",
    "%",
    "100%",
    "/日本語/é ü.txt",
    "?x=1&y=#f",
    ".tmp-x",
    ".",
    "..",
    "_meta",
    "_meta.json",
    "resources",
    "a.json",
]


def test_odd_names_round_trip_and_list(with_space: Backend) -> None:
    """Names with '/', '%', unicode, dots and look-alikes of our own files round-trip and list exactly."""
    b = with_space
    for n, name in enumerate(ODD_NAMES):
        assert b.put_record("s1", "policies", name, b"%d" % n, allow) is True
    expected = {name: b"%d" % n for n, name in enumerate(ODD_NAMES)}
    assert b.get_records("s1", "policies", ODD_NAMES) == expected
    assert policies(b) == sorted(expected.items())
    assert b.get_space("s1") == space()
    assert b.list_resources("s1", "/", allow) == []


def test_list_records_sorted_with_bytes(with_space: Backend) -> None:
    """list_records gives every record of the kind, sorted by name, with its exact bytes."""
    b = with_space
    data = bytes(range(256))
    for name in ["/z", "/a/b", "/", "/a"]:
        b.put_record("s1", "revocations", name, data + name.encode(), allow)
    listed = b.list_records("s1", "revocations", allow)
    assert listed == [(n, data + n.encode()) for n in ["/", "/a", "/a/b", "/z"]]
    assert b.list_records("s1", "policies", allow) == []


def test_delete_record(with_space: Backend) -> None:
    """delete_record is True once, then False (S3 cannot tell: True); the record is gone afterwards."""
    b = with_space
    b.put_record("s1", "policies", "/d", POLICY, allow)
    assert b.delete_record("s1", "policies", "/d", allow) is True
    assert b.delete_record("s1", "policies", "/d", allow) is isinstance(b, S3Backend)
    assert b.get_records("s1", "policies", ["/d"]) == {}
    assert policies(b) == []
    assert b.delete_record("ghost", "policies", "/d", allow) is False


@pytest.mark.parametrize("kind", ["", "resources", "collection", "Policies", "../policies", "_meta.json"])
def test_unknown_kind_is_value_error(with_space: Backend, kind: str) -> None:
    """Only RECORD_KINDS are kinds; anything else is a caller's bug, refused before anything is stored."""
    b = with_space
    with pytest.raises(ValueError):
        b.get_records("s1", kind, ["/"])
    with pytest.raises(ValueError):
        b.put_record("s1", kind, "/", POLICY, allow)
    with pytest.raises(ValueError):
        b.delete_record("s1", kind, "/", allow)
    with pytest.raises(ValueError):
        b.list_records("s1", kind, allow)
    assert b.list_resources("s1", "/", allow) == []
    assert b.get_space("s1") == space()


def test_empty_name_is_value_error(with_space: Backend) -> None:
    """A record's name is a non-empty string."""
    b = with_space
    with pytest.raises(ValueError):
        b.put_record("s1", "policies", "", POLICY, allow)
    with pytest.raises(ValueError):
        b.get_records("s1", "policies", ["/", ""])
    with pytest.raises(ValueError):
        b.delete_record("s1", "policies", "", allow)
    assert policies(b) == []


def test_guard_sees_current_space(backend: Backend) -> None:
    """put, delete and list show the guard the stored space, or None when absent; get takes no guard."""
    rec = Recorder()
    put(backend, space(), allow)
    backend.put_record("s1", "policies", "/", POLICY, rec)
    backend.list_records("s1", "policies", rec)
    backend.delete_record("s1", "policies", "/", rec)
    assert rec.seen == [space()] * 3
    backend.list_records("ghost", "policies", rec)
    backend.delete_record("ghost", "policies", "/", rec)
    with pytest.raises(SpaceMissing):
        backend.put_record("ghost", "policies", "/", POLICY, rec)
    assert rec.seen[3:] == [None, None, None]


def test_refusing_guard_writes_nothing(with_space: Backend) -> None:
    """A guard that raises stops a create, a replace, a delete and a listing; nothing changes."""
    b = with_space
    b.put_record("s1", "policies", "/keep", b"old", allow)
    with pytest.raises(Refused):
        b.put_record("s1", "policies", "/keep", b"new", refuse)
    with pytest.raises(Refused):
        b.put_record("s1", "policies", "/fresh", b"new", refuse)
    with pytest.raises(Refused):
        b.put_record("s1", "revocations", REVOKED, b"new", refuse)
    with pytest.raises(Refused):
        b.delete_record("s1", "policies", "/keep", refuse)
    with pytest.raises(Refused):
        b.list_records("s1", "policies", refuse)
    assert policies(b) == [("/keep", b"old")]
    assert b.list_records("s1", "revocations", allow) == []


def test_put_into_missing_space_raises_and_stores_nothing(backend: Backend) -> None:
    """A record write the guard lets into an absent space raises SpaceMissing; a later space starts empty."""
    with pytest.raises(SpaceMissing):
        backend.put_record("ghost", "revocations", REVOKED, b"{}", allow)
    put(backend, space("ghost"), allow)
    assert backend.get_records("ghost", "revocations", [REVOKED]) == {}
    assert backend.list_records("ghost", "revocations", allow) == []


def test_delete_space_removes_records(with_space: Backend) -> None:
    """Deleting a space deletes its records with its resources; a recreated space has none."""
    b = with_space
    write(b, "/a", b"1")
    for kind in RECORD_KINDS:
        b.put_record("s1", kind, "/", POLICY, allow)
        b.put_record("s1", kind, REVOKED, POLICY, allow)
    assert b.delete_space("s1", allow) is True
    assert b.get_records("s1", "policies", ["/"]) == {}
    put(b, space(), allow)
    for kind in RECORD_KINDS:
        assert b.get_records("s1", kind, ["/", REVOKED]) == {}
        assert b.list_records("s1", kind, allow) == []
    assert b.list_resources("s1", "/", allow) == []


RESOURCE_LOOKALIKES = [
    "/policies",
    "/revocations",
    "/policies/%2F.json",
    "/a/policies/b",
    "/revocations/urn%3Auuid%3Ax.json",
    "/_meta.json",
]


def test_resources_named_like_records_stay_resources(with_space: Backend) -> None:
    """Resources called 'policies' or 'revocations' at any depth are resources; records are not resources."""
    b = with_space
    for path in RESOURCE_LOOKALIKES:
        write(b, path, path.encode())
    b.put_record("s1", "policies", "/policies", b"record", allow)
    b.put_record("s1", "revocations", "/revocations", b"record", allow)
    assert [p for p, _ in b.list_resources("s1", "/", allow)] == sorted(RESOURCE_LOOKALIKES)
    for path in RESOURCE_LOOKALIKES:
        assert read(b, path) == (path.encode(), "text/plain")
    assert policies(b) == [("/policies", b"record")]
    assert b.list_records("s1", "revocations", allow) == [("/revocations", b"record")]
    assert b.list_spaces(ALICE) == ["s1"]
    assert b.delete_resource("s1", "/policies", allow) is True
    assert policies(b) == [("/policies", b"record")]
    assert b.get_records("s1", "policies", ["/policies/%2F.json", "/"]) == {}


def _result(coro: Any) -> Any:
    """Drive a coroutine over run_inline (it never waits) and give its result or raise its failure."""
    out: list[Any] = []
    defer.ensureDeferred(coro).addBoth(out.append)
    [value] = out
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_async_wrappers(with_space: Backend) -> None:
    """AsyncStorage offers the four calls with the same arguments and results."""
    storage = AsyncStorage(with_space, run_inline)
    assert _result(storage.put_record("s1", "policies", "/", POLICY, allow)) is True
    assert _result(storage.get_records("s1", "policies", ("/", "/x"))) == {"/": POLICY}
    assert _result(storage.list_records("s1", "policies", allow)) == [("/", POLICY)]
    assert _result(storage.delete_record("s1", "policies", "/", allow)) is True
    with pytest.raises(Refused):
        _result(storage.put_record("s1", "policies", "/", POLICY, refuse))
    assert _result(storage.list_records("s1", "policies", allow)) == []


def test_async_wrappers_translate_errors(tmp_path: Path) -> None:
    """Backend errors come out of the wrappers as the edge's domain errors (KeyTooLong -> InvalidId)."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    storage = AsyncStorage(b, run_inline)
    with pytest.raises(InvalidId):
        _result(storage.put_record("s1", "policies", "/" + "x" * 300, POLICY, allow))


@pytest.fixture(params=["memory", "filesystem"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Local backends only: moto's in-process mock is not thread-safe for racing writes of one key."""
    b: Backend = MemoryBackend() if request.param == "memory" else FilesystemBackend(tmp_path / "data")
    put(b, space(), allow)
    yield b
    b.close()


def test_replace_is_atomic(local: Backend) -> None:
    """Readers racing a writer always see one whole version of a record, never a mix or nothing."""
    versions = [bytes([n]) * 200_000 for n in range(3)]
    local.put_record("s1", "policies", "/hot", versions[0], allow)
    stop = threading.Event()
    bad: list[object] = []

    def writer() -> None:
        while not stop.is_set():
            for data in versions:
                local.put_record("s1", "policies", "/hot", data, allow)

    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            got = local.get_records("s1", "policies", ["/hot"]).get("/hot")
            if got not in versions:
                bad.append(got and (got[:1], len(got)))
    finally:
        stop.set()
        t.join()
    assert bad == []


# -- filesystem: raw layout ------------------------------------------------------------------------------


def test_filesystem_exact_layout(tmp_path: Path) -> None:
    """Records are {kind}/{quote(name)}.json beside resources/; the old server's files are untouched."""
    space_dir = old_server_tree(tmp_path)
    before = {p: (tmp_path / p).read_bytes() for p in files_under(tmp_path)}
    b = FilesystemBackend(tmp_path)
    b.put_record(SPACE_ID, "policies", "/", b"p-root", allow)
    b.put_record(SPACE_ID, "policies", "/notes/a.txt", b"p-leaf", allow)
    b.put_record(SPACE_ID, "revocations", REVOKED, b"r", allow)
    b.put_record(SPACE_ID, "policies", ".hidden", b"dot", allow)
    b.put_record(SPACE_ID, "policies", "_meta", b"underscore", allow)
    base = f"spaces/{SPACE_ID}"
    assert files_under(tmp_path) == sorted(
        [
            *before,
            f"{base}/policies/%2F.json",
            f"{base}/policies/%2Fnotes%2Fa.txt.json",
            f"{base}/policies/%2Ehidden.json",
            f"{base}/policies/%5Fmeta.json",
            f"{base}/revocations/urn%3Auuid%3A7f0c8a52-2a8e-4b8e-9d1f-0c7b5e3a9d10.json",
        ]
    )
    assert (space_dir / "policies" / "%2F.json").read_bytes() == b"p-root"
    assert {p: (tmp_path / p).read_bytes() for p in before} == before
    # The old server's view is unchanged: same space, same resources.
    assert b.list_spaces(CONTROLLER) == [SPACE_ID]
    assert b.get_space(SPACE_ID) == SpaceRecord(SPACE_ID, URN, CONTROLLER)
    assert [p for p, _ in b.list_resources(SPACE_ID, "/", allow)] == [
        "/credentials/vc 1.json",
        "/notes/a.txt",
    ]


def test_filesystem_no_temp_files_remain(tmp_path: Path) -> None:
    """Creates, replaces, a refused write and a failed write leave no .tmp- file behind."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    for n in range(3):
        b.put_record("s1", "policies", "/", b"v%d" % n, allow)
    with pytest.raises(Refused):
        b.put_record("s1", "policies", "/", b"no", refuse)
    with pytest.raises(KeyTooLong):
        b.put_record("s1", "policies", "/" + "y" * 300, b"no", allow)
    assert not [p for p in files_under(tmp_path) if ".tmp-" in p]
    assert files_under(tmp_path / "spaces" / "s1" / "policies") == ["%2F.json"]


def test_filesystem_name_too_long(tmp_path: Path) -> None:
    """A name whose file would pass 255 bytes raises KeyTooLong on write; reads and deletes see nothing."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    fits = "/" + "a" * (255 - len("%2F") - len(".json"))
    assert b.put_record("s1", "policies", fits, b"ok", allow) is True
    for too_long in [fits + "a", "/" + "é" * 42]:
        with pytest.raises(KeyTooLong):
            b.put_record("s1", "policies", too_long, b"x", allow)
        assert b.get_records("s1", "policies", [too_long, fits]) == {fits: b"ok"}
        assert b.delete_record("s1", "policies", too_long, allow) is False
    assert policies(b) == [(fits, b"ok")]


def test_filesystem_foreign_files_are_not_records(tmp_path: Path) -> None:
    """Temp files, other suffixes, sub-directories and non-canonical names in a kind's dir are skipped."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    b.put_record("s1", "policies", "/a", b"real", allow)
    pol = tmp_path / "spaces" / "s1" / "policies"
    (pol / ".tmp-abc123").write_bytes(b"partial")
    (pol / ".tmp-def.json").write_bytes(b"partial")
    (pol / "%2Fb.txt").write_bytes(b"other suffix")
    (pol / "%61.json").write_bytes(b"not how we quote 'a'")
    (pol / "sub").mkdir()
    assert policies(b) == [("/a", b"real")]


def test_filesystem_interrupted_delete_hides_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the rename to a tombstone leaves no trace of the space, its resources or its records."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    write(b, "/r", b"x")
    b.put_record("s1", "policies", "/", POLICY, allow)
    b.put_record("s1", "revocations", REVOKED, b"{}", allow)
    monkeypatch.setattr(shutil, "rmtree", lambda *a, **k: None)  # the crash, after the rename
    assert b.delete_space("s1", allow) is True
    [tomb] = os.listdir(tmp_path / "spaces")
    assert tomb.startswith(".deleting-")
    assert b.get_space("s1") is None and b.list_spaces(ALICE) == []
    assert b.get_records("s1", "policies", ["/"]) == {}
    put(b, space(), allow)
    assert b.get_records("s1", "policies", ["/"]) == {}
    assert b.get_records("s1", "revocations", [REVOKED]) == {}
    assert b.list_resources("s1", "/", allow) == []


def test_filesystem_delete_leaves_no_trace(tmp_path: Path) -> None:
    """Deleting records and then the space removes every file and directory."""
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    b.put_record("s1", "policies", "/", POLICY, allow)
    b.put_record("s1", "revocations", REVOKED, b"{}", allow)
    b.delete_record("s1", "policies", "/", allow)
    assert files_under(tmp_path) == [
        "spaces/s1/_meta.json",
        "spaces/s1/revocations/urn%3Auuid%3A7f0c8a52-2a8e-4b8e-9d1f-0c7b5e3a9d10.json",
    ]
    b.delete_space("s1", allow)
    assert os.listdir(tmp_path / "spaces") == []


# -- s3: raw keys, requests, delete order ----------------------------------------------------------------

BUCKET = "records"


@pytest.fixture
def s3(mocked_aws: None) -> Iterator[tuple[S3Backend, Any]]:
    """Our backend over prefix 'pfx/' and a raw client to look at the keys."""
    raw = boto3.client("s3", region_name="us-east-1")
    raw.create_bucket(Bucket=BUCKET)
    b = S3Backend(BUCKET, "pfx/", threads=8)
    b.check()
    b.reindex()
    yield b, raw
    b.close()


def raw_keys(raw: Any, prefix: str = "pfx/spaces/") -> list[str]:
    out: list[str] = []
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        out.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(out)


def test_s3_exact_keys(s3: tuple[S3Backend, Any]) -> None:
    """Records land at spaces/{id}/{kind}/{quote(name)}.json with ContentType application/json."""
    b, raw = s3
    put(b, space(), allow)
    write(b, "/policies", b"a resource")
    b.put_record("s1", "policies", "/", b"p-root", allow)
    b.put_record("s1", "policies", "/notes/a.txt", b"p-leaf", allow)
    b.put_record("s1", "revocations", REVOKED, b"r", allow)
    b.put_record("s1", "revocations", "_meta", b"u", allow)
    assert raw_keys(raw) == [
        "pfx/spaces/s1/_meta.json",
        "pfx/spaces/s1/policies/%2F.json",
        "pfx/spaces/s1/policies/%2Fnotes%2Fa.txt.json",
        "pfx/spaces/s1/resources/%2Fpolicies",
        "pfx/spaces/s1/revocations/%5Fmeta.json",
        "pfx/spaces/s1/revocations/urn%3Auuid%3A7f0c8a52-2a8e-4b8e-9d1f-0c7b5e3a9d10.json",
    ]
    obj = raw.get_object(Bucket=BUCKET, Key="pfx/spaces/s1/policies/%2F.json")
    assert obj["ContentType"] == "application/json" and obj["Body"].read() == b"p-root"


def test_s3_records_are_not_spaces(s3: tuple[S3Backend, Any]) -> None:
    """The scan of spaces/ and reindex see only _meta.json spaces; a records-only prefix is no space."""
    b, raw = s3
    meta = json.dumps({"id": "old", "controller": BOB})
    raw.put_object(Bucket=BUCKET, Key="pfx/spaces/old/_meta.json", Body=meta)  # as the seed writes it
    raw.put_object(Bucket=BUCKET, Key="pfx/spaces/orphan/policies/%2F.json", Body=b"{}")
    raw.put_object(Bucket=BUCKET, Key="pfx/spaces/orphan/revocations/%5Fmeta.json", Body=meta)
    b.put_record("old", "policies", "/", POLICY, allow)
    fresh = S3Backend(BUCKET, "pfx/", threads=2)  # not check()ed: it scans, as before an index exists
    assert fresh.list_spaces(BOB) == ["old"]
    assert fresh.reindex() == (1, 0)
    assert fresh.list_spaces(BOB) == ["old"]
    fresh.close()
    assert b.get_records("orphan", "policies", ["/"]) == {}
    assert b.get_records("old", "policies", ["/"]) == {"/": POLICY}


def test_s3_get_records_fetches_side_by_side(s3: tuple[S3Backend, Any]) -> None:
    """get_records costs one HEAD of the space and one GET per name, all in flight together."""
    b, _ = s3
    put(b, space(), allow)
    names = ["/", "/notes", "/notes/a.txt", "/notes/a.txt/x"]
    for name in names[::2]:
        b.put_record("s1", "policies", name, name.encode(), allow)
    together = threading.Barrier(len(names), timeout=10)
    real = b._get_bytes

    def meet(key: str) -> bytes | None:
        together.wait()  # breaks (and fails the call) unless every GET is in flight at once
        return real(key)

    b._get_bytes = meet  # type: ignore[method-assign]
    b.calls.clear()
    assert b.get_records("s1", "policies", names) == {n: n.encode() for n in names[::2]}
    assert b.calls == {"HeadObject": 1, "GetObject": len(names)}


def test_s3_requests_per_record_call(s3: tuple[S3Backend, Any]) -> None:
    """Requests: create GET+PUT+HEAD, replace one PUT more, delete GET+DELETE, list GET+LIST+a GET each."""
    b, _ = s3
    put(b, space(), allow)
    b.calls.clear()
    assert b.put_record("s1", "policies", "/", POLICY, allow) is True
    assert b.calls == {"GetObject": 1, "PutObject": 1, "HeadObject": 1}
    b.calls.clear()
    assert b.put_record("s1", "policies", "/", b"v2", allow) is False
    assert b.calls == {"GetObject": 1, "PutObject": 2, "HeadObject": 1}
    b.calls.clear()
    assert policies(b) == [("/", b"v2")]
    assert b.calls == {"GetObject": 2, "ListObjectsV2": 1}
    b.calls.clear()
    assert b.delete_record("s1", "policies", "/", allow) is True
    assert b.calls == {"GetObject": 1, "DeleteObject": 1}


def test_s3_record_racing_space_delete_is_taken_back(s3: tuple[S3Backend, Any]) -> None:
    """A record PUT that lands after delete_space's last listing is removed again and the write fails."""
    b, raw = s3
    put(b, space(), allow)
    real_put = b._put

    def put_then_space_vanishes(key: str, *args: Any, **kwargs: Any) -> Any:
        out = real_put(key, *args, **kwargs)
        if "/policies/" in key:
            raw.delete_object(Bucket=BUCKET, Key="pfx/spaces/s1/_meta.json")
        return out

    b._put = put_then_space_vanishes  # type: ignore[method-assign]
    with pytest.raises(SpaceMissing):
        b.put_record("s1", "policies", "/", POLICY, allow)
    assert raw_keys(raw) == []


def test_s3_name_too_long(s3: tuple[S3Backend, Any]) -> None:
    """A name whose key passes 1,024 bytes raises KeyTooLong on write; reads and deletes see nothing."""
    b, raw = s3
    put(b, space(), allow)
    too_long = "/" + "é" * 200
    with pytest.raises(KeyTooLong):
        b.put_record("s1", "policies", too_long, POLICY, allow)
    assert b.get_records("s1", "policies", [too_long]) == {}
    assert b.delete_record("s1", "policies", too_long, allow) is False
    assert raw_keys(raw) == ["pfx/spaces/s1/_meta.json"]


def test_s3_foreign_keys_are_not_records(s3: tuple[S3Backend, Any]) -> None:
    """Keys under a kind's prefix that we would not have written are not listed as records."""
    b, raw = s3
    put(b, space(), allow)
    b.put_record("s1", "policies", "/a", b"real", allow)
    for key in ["%2Fb", "sub/%2Fc.json", "%61.json", ".json"]:
        raw.put_object(Bucket=BUCKET, Key=f"pfx/spaces/s1/policies/{key}", Body=b"x")
    assert policies(b) == [("/a", b"real")]
