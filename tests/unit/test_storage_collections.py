"""The storage contract's collection pieces on every backend: prefix deletes, conditional records.

Memory, filesystem and moto-backed s3 (the shared fixtures of test_storage_contract), plus
the raw layouts: collection records sit beside ``resources/``, never inside it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.unit.test_storage_contract import (
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
from was_twisted.storage import s3_bucket as s3_module
from was_twisted.storage.base import Backend, Condition, PreconditionFailed, record_etag
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.s3 import S3Backend

SHARED_FIXTURES = (backend, with_space)

PATHS = ["/c", "/c/a", "/c/b", "/c/deep/d", "/cc/x", "/c.txt", "/d/c/x"]


def paths(b: Backend, sid: str = "s1") -> list[str]:
    """Every stored path, sorted (listings come in ``listing_key`` order, not path order)."""
    return sorted(p for p, _ in b.list_resources(sid, "/", allow))


# -- delete_resources ------------------------------------------------------------------------------


def test_delete_resources_removes_exactly_the_prefix(with_space: Backend) -> None:
    """Everything under /c/ at any depth goes; /c itself, /cc/... and /c.txt stay."""
    b = with_space
    for p in PATHS:
        write(b, p, p.encode())
    recorder = Recorder()
    assert b.delete_resources("s1", "/c/", recorder) == 3
    assert recorder.seen == [space()]
    assert paths(b) == ["/c", "/c.txt", "/cc/x", "/d/c/x"]
    assert read(b, "/c") == (b"/c", "text/plain")
    assert b.delete_resources("s1", "/c/", allow) == 0


def test_delete_resources_refused_by_guard_deletes_nothing(with_space: Backend) -> None:
    b = with_space
    for p in PATHS:
        write(b, p, b"x")
    with pytest.raises(Refused):
        b.delete_resources("s1", "/c/", refuse)
    assert paths(b) == sorted(PATHS)


def test_delete_resources_of_absent_space(backend: Backend) -> None:
    """The guard sees None; nothing to delete."""
    recorder = Recorder()
    assert backend.delete_resources("nope", "/c/", recorder) == 0
    assert recorder.seen == [None]


@pytest.mark.parametrize("prefix", ["/a b/", "/é/", "/a%2Fb/", "/x?y/"])
def test_delete_resources_odd_names(with_space: Backend, prefix: str) -> None:
    """Prefixes with spaces, Unicode, a literal %2F or ? match exactly (S3 keys are quoted)."""
    b = with_space
    write(b, prefix + "in", b"1")
    write(b, prefix[:-1] + "-out", b"2")
    write(b, "/a/b/keep", b"3")
    assert b.delete_resources("s1", prefix, allow) == 1
    assert paths(b) == sorted(["/a/b/keep", prefix[:-1] + "-out"])


def test_delete_resources_leaves_other_spaces(with_space: Backend) -> None:
    b = with_space
    put(b, space("s2"), allow)
    write(b, "/c/a", b"1")
    write(b, "/c/a", b"2", sid="s2")
    b.delete_resources("s1", "/c/", allow)
    assert paths(b, "s2") == ["/c/a"]


def test_delete_resources_keeps_records(with_space: Backend) -> None:
    """A prefix delete touches resources only, never the records beside them."""
    b = with_space
    write(b, "/c/a", b"1")
    b.put_record("s1", "collections", "c", b"{}", allow)
    b.put_record("s1", "policies", "/c", b"{}", allow)
    b.delete_resources("s1", "/c/", allow)
    assert b.get_records("s1", "collections", ["c"]) == {"c": b"{}"}
    assert b.get_records("s1", "policies", ["/c"]) == {"/c": b"{}"}


# -- conditional put_record ------------------------------------------------------------------------


def test_put_record_if_none_match(with_space: Backend) -> None:
    """If-None-Match: * creates once; then PreconditionFailed, nothing written."""
    b = with_space
    create = Condition(if_none_match=True)
    assert b.put_record("s1", "collections", "c", b"one", allow, create) is True
    with pytest.raises(PreconditionFailed):
        b.put_record("s1", "collections", "c", b"two", allow, create)
    assert b.get_records("s1", "collections", ["c"]) == {"c": b"one"}


def test_put_record_if_match(with_space: Backend) -> None:
    """If-Match compares record_etag of the stored bytes; absent records never match."""
    b = with_space
    with pytest.raises(PreconditionFailed):
        b.put_record("s1", "collection-meta", "c", b"x", allow, Condition(if_match=("*",)))
    assert b.get_records("s1", "collection-meta", ["c"]) == {}
    b.put_record("s1", "collection-meta", "c", b"one", allow)
    with pytest.raises(PreconditionFailed):
        b.put_record("s1", "collection-meta", "c", b"two", allow, Condition(if_match=('"stale"',)))
    assert b.get_records("s1", "collection-meta", ["c"]) == {"c": b"one"}
    current = record_etag(b"one")
    assert b.put_record("s1", "collection-meta", "c", b"two", allow, Condition(if_match=(current,))) is False
    assert b.get_records("s1", "collection-meta", ["c"]) == {"c": b"two"}
    b.put_record("s1", "collection-meta", "c", b"three", allow, Condition(if_match=("*",)))
    assert b.get_records("s1", "collection-meta", ["c"]) == {"c": b"three"}


def test_put_record_guard_before_condition(with_space: Backend) -> None:
    """The guard decides first: a refused caller never learns whether the condition held."""
    b = with_space
    b.put_record("s1", "collections", "c", b"one", allow)
    with pytest.raises(Refused):
        b.put_record("s1", "collections", "c", b"two", refuse, Condition(if_none_match=True))
    assert b.get_records("s1", "collections", ["c"]) == {"c": b"one"}


def test_record_etag_is_strong_and_content_bound() -> None:
    assert record_etag(b"a") == record_etag(b"a") != record_etag(b"b")
    assert record_etag(b"a").startswith('"') and record_etag(b"a").endswith('"')


@pytest.fixture(params=["memory", "filesystem"])
def local(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Local backends only: moto's in-process mock is not thread-safe for racing writes of one key
    (S3 races run over HTTP on moto's server and Ceph: tests/integration/test_e2e_collections.py)."""
    b: Backend = MemoryBackend() if request.param == "memory" else FilesystemBackend(tmp_path / "data")
    put(b, space(), allow)
    yield b
    b.close()


def test_concurrent_creates_one_wins(local: Backend) -> None:
    """20 threads create one record with If-None-Match: * at once: exactly one succeeds."""
    b = local
    n = 20
    barrier = threading.Barrier(n)
    wins: list[int] = []
    losses: list[int] = []

    def racer(i: int) -> None:
        barrier.wait()
        try:
            b.put_record("s1", "collections", "race", str(i).encode(), allow, Condition(if_none_match=True))
            wins.append(i)
        except PreconditionFailed:
            losses.append(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1 and len(losses) == n - 1
    assert b.get_records("s1", "collections", ["race"]) == {"race": str(wins[0]).encode()}


def test_concurrent_updates_from_one_etag_one_wins(local: Backend) -> None:
    """20 threads update from the same ETag at once: exactly one succeeds."""
    b = local
    b.put_record("s1", "collection-meta", "m", b"base", allow)
    base = Condition(if_match=(record_etag(b"base"),))
    n = 20
    barrier = threading.Barrier(n)
    wins: list[int] = []

    def racer(i: int) -> None:
        barrier.wait()
        try:
            b.put_record("s1", "collection-meta", "m", f"v{i}".encode(), allow, base)
            wins.append(i)
        except PreconditionFailed:
            pass

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(wins) == 1
    assert b.get_records("s1", "collection-meta", ["m"]) == {"m": f"v{wins[0]}".encode()}


def test_delete_space_deletes_collection_records(with_space: Backend) -> None:
    b = with_space
    b.put_record("s1", "collections", "c", b"{}", allow)
    b.put_record("s1", "collection-meta", "c", b"{}", allow)
    assert b.delete_space("s1", allow) is True
    put(b, space(), allow)
    assert b.list_records("s1", "collections", allow) == []
    assert b.list_records("s1", "collection-meta", allow) == []


# -- raw layouts -----------------------------------------------------------------------------------


def test_filesystem_collection_records_beside_resources(tmp_path: Path) -> None:
    b = FilesystemBackend(tmp_path)
    put(b, space(), allow)
    write(b, "/c/a", b"1")
    b.put_record("s1", "collections", "c", b"{}", allow)
    b.put_record("s1", "collection-meta", "c", b"{}", allow)
    root = tmp_path / "spaces" / "s1"
    assert sorted(p.name for p in root.iterdir()) == [
        "_meta.json",
        "collection-meta",
        "collections",
        "resources",
    ]
    assert [p.name for p in (root / "collections").iterdir()] == ["c.json"]
    assert sorted(p.name for p in (root / "resources").iterdir()) == ["%2Fc%2Fa.data", "%2Fc%2Fa.meta"]
    b.delete_resources("s1", "/c/", allow)
    assert list((root / "resources").iterdir()) == []


BUCKET = "colls"


@pytest.fixture
def s3(mocked_aws: None) -> Iterator[tuple[S3Backend, Any]]:
    raw = boto3.client("s3", region_name="us-east-1")
    raw.create_bucket(Bucket=BUCKET)
    b = S3Backend(BUCKET, "pfx/", threads=4)
    b.check()
    b.reindex()
    yield b, raw
    b.close()


def test_s3_collection_keys(s3: tuple[S3Backend, Any]) -> None:
    b, raw = s3
    put(b, space(), allow)
    b.put_record("s1", "collections", "c", b"{}", allow)
    b.put_record("s1", "collection-meta", "c", b"{}", allow)
    keys = [o["Key"] for o in raw.list_objects_v2(Bucket=BUCKET, Prefix="pfx/spaces/s1/")["Contents"]]
    assert sorted(keys) == [
        "pfx/spaces/s1/_meta.json",
        "pfx/spaces/s1/collection-meta/c.json",
        "pfx/spaces/s1/collections/c.json",
    ]


def test_s3_delete_resources_batches(s3: tuple[S3Backend, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """One LIST page at a time, one DeleteObjects per page (and per DELETE_BATCH keys), no single deletes."""
    b, raw = s3
    monkeypatch.setattr(s3_module, "DELETE_BATCH", 4)
    put(b, space(), allow)
    for n in range(10):
        raw.put_object(Bucket=BUCKET, Key=f"pfx/spaces/s1/resources/%2Fc%2F{n}", Body=b"x")
    raw.put_object(Bucket=BUCKET, Key="pfx/spaces/s1/resources/%2Fcc", Body=b"x")
    before = dict(b.calls)
    assert b.delete_resources("s1", "/c/", allow) == 10
    made = {k: v - before.get(k, 0) for k, v in b.calls.items() if v != before.get(k, 0)}
    assert made == {"GetObject": 1, "ListObjectsV2": 1, "DeleteObjects": 3}
    assert paths(b) == ["/cc"]


def test_s3_conditional_put_loses_to_a_writer_in_between(
    s3: tuple[S3Backend, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process writing between our GET and PUT makes S3 refuse ours: PreconditionFailed."""
    b, raw = s3
    put(b, space(), allow)
    b.put_record("s1", "collection-meta", "m", b"base", allow)
    real_get = b._get

    def get_then_someone_writes(key: str) -> Any:
        obj = real_get(key)
        if key.endswith("/collection-meta/m.json"):
            raw.put_object(Bucket=BUCKET, Key=key, Body=b"theirs")
        return obj

    monkeypatch.setattr(b, "_get", get_then_someone_writes)
    with pytest.raises(PreconditionFailed):
        b.put_record(
            "s1", "collection-meta", "m", b"ours", allow, Condition(if_match=(record_etag(b"base"),))
        )
    monkeypatch.undo()
    assert b.get_records("s1", "collection-meta", ["m"]) == {"m": b"theirs"}


def test_async_delete_resources_and_conditional_put(with_space: Backend) -> None:
    """AsyncStorage passes the new call and the condition through, and a failed condition is a 412."""
    from twisted.internet import defer

    from was_twisted.errors import PreconditionFailed as PreconditionFailedError
    from was_twisted.storage.threaded import AsyncStorage, run_inline

    def result(coro: Any) -> Any:
        out: list[Any] = []
        defer.ensureDeferred(coro).addBoth(out.append)
        [value] = out
        if hasattr(value, "raiseException"):
            value.raiseException()
        return value

    storage = AsyncStorage(with_space, run_inline)
    write(with_space, "/c/a", b"1")
    assert result(storage.delete_resources("s1", "/c/", allow)) == 1
    create = Condition(if_none_match=True)
    assert result(storage.put_record("s1", "collections", "c", b"{}", allow, create)) is True
    with pytest.raises(PreconditionFailedError):
        result(storage.put_record("s1", "collections", "c", b"{}", allow, create))


def test_memory_and_filesystem_need_nonempty_prefix(tmp_path: Path) -> None:
    for b in (MemoryBackend(), FilesystemBackend(tmp_path)):
        put(b, space(), allow)
        with pytest.raises(ValueError):
            b.delete_resources("s1", "", allow)
