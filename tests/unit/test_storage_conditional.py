"""The storage contract's conditional writes, ETags, Last-Modified and ranges, on every backend.

Runs on the fixtures of ``test_storage_contract`` (memory, filesystem, s3 on
in-process moto).  The same races run over HTTP against real processes in
``tests/integration/test_e2e_conditional.py``.
"""

from __future__ import annotations

import io
import multiprocessing
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit import test_storage_contract as contract
from tests.unit.test_storage_contract import (
    ALICE,
    Refused,
    allow,
    etag,
    put,
    read,
    refuse,
    space,
    write,
)
from was_twisted.storage import s3_upload
from was_twisted.storage.base import (
    Backend,
    ByteRange,
    Condition,
    PreconditionFailed,
    SpaceRecord,
)
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.s3 import S3Backend

# The contract's fixtures: memory, filesystem and s3 (in-process moto).
backend = contract.backend
with_space = contract.with_space

CREATE = Condition(if_none_match=True)


def match(*tags: str) -> Condition:
    return Condition(if_match=tags)


def cwrite(b: Backend, path: str, data: bytes, condition: Condition | None) -> str | None:
    return b.write_resource("s1", path, io.BytesIO(data), "text/plain", allow, condition=condition).etag


# -- writes --------------------------------------------------------------------------------------------


def test_if_none_match_creates_once(with_space: Backend) -> None:
    """If-None-Match: * writes a new resource, then refuses to overwrite it (nothing written)."""
    first = cwrite(with_space, "/n", b"one", CREATE)
    assert first is not None and first == etag(with_space, "/n")
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/n", b"two", CREATE)
    assert read(with_space, "/n") == (b"one", "text/plain")


def test_if_match_is_compare_and_swap(with_space: Backend) -> None:
    """If-Match with the current ETag writes and changes it; a stale or absent one writes nothing."""
    old = cwrite(with_space, "/m", b"v1", None)
    assert old is not None
    new = cwrite(with_space, "/m", b"v2", match(old))
    assert new is not None and new != old and new == etag(with_space, "/m")
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/m", b"v3", match(old))
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/m", b"v3", match("W/" + new))  # weak never matches (strong comparison)
    assert read(with_space, "/m") == (b"v2", "text/plain")
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/absent", b"x", match(new))
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/absent", b"x", match("*"))
    assert read(with_space, "/absent") is None


def test_if_match_star_and_lists(with_space: Backend) -> None:
    """If-Match: * means "exists"; a list matches when the current ETag is any of it."""
    cwrite(with_space, "/l", b"v1", None)
    cur = cwrite(with_space, "/l", b"v2", match("*"))
    assert cur is not None
    cur2 = cwrite(with_space, "/l", b"v3", match('"nope"', cur))
    assert read(with_space, "/l") == (b"v3", "text/plain")
    with pytest.raises(PreconditionFailed):
        cwrite(with_space, "/l", b"v4", match('"nope"', cur))
    assert cur2 == etag(with_space, "/l")


def test_both_conditions_never_hold(with_space: Backend) -> None:
    """If-Match plus If-None-Match: * cannot both hold: refused whether or not the resource exists."""
    for path in ("/both", "/both"):
        with pytest.raises(PreconditionFailed):
            cwrite(with_space, path, b"x", Condition(if_match=("*",), if_none_match=True))
        cwrite(with_space, "/both", b"x", None)


def test_guard_is_decided_before_the_condition(with_space: Backend) -> None:
    """A refused caller learns nothing from a precondition: the guard's refusal wins."""
    cwrite(with_space, "/g", b"x", None)
    with pytest.raises(Refused):
        with_space.write_resource("s1", "/g", io.BytesIO(b"y"), "text/plain", refuse, condition=CREATE)
    with pytest.raises(Refused):
        with_space.delete_resource("s1", "/g", refuse, condition=match('"stale"'))
    assert read(with_space, "/g") == (b"x", "text/plain")


def test_conditional_delete(with_space: Backend) -> None:
    """DELETE with a stale If-Match (or If-None-Match: * on an existing one) deletes nothing."""
    cur = cwrite(with_space, "/d", b"x", None)
    assert cur is not None
    with pytest.raises(PreconditionFailed):
        with_space.delete_resource("s1", "/d", allow, condition=match('"stale"'))
    with pytest.raises(PreconditionFailed):
        with_space.delete_resource("s1", "/d", allow, condition=CREATE)
    assert read(with_space, "/d") == (b"x", "text/plain")
    assert with_space.delete_resource("s1", "/d", allow, condition=match(cur)) is True
    assert read(with_space, "/d") is None
    with pytest.raises(PreconditionFailed):
        with_space.delete_resource("s1", "/d", allow, condition=match(cur))
    assert with_space.delete_resource("s1", "/d", allow, condition=CREATE) is False


# -- spaces ---------------------------------------------------------------------------------------------


def test_space_etag_is_filled_and_changes(backend: Backend) -> None:
    """put_space returns the record with its new ETag; get_space and the next build see the same one."""
    created, first = backend.put_space("s1", lambda current: space())
    assert created and first.etag
    got = backend.get_space("s1")
    assert got is not None and got.etag == first.etag
    seen: list[str | None] = []

    def rename(current: SpaceRecord | None) -> SpaceRecord:
        assert current is not None
        seen.append(current.etag)
        return SpaceRecord("s1", "urn:uuid:s1", ALICE, name="renamed")

    _, second = backend.put_space("s1", rename)
    assert seen[-1] == first.etag and second.etag and second.etag != first.etag
    got = backend.get_space("s1")
    assert got is not None and got.etag == second.etag


# -- reads ----------------------------------------------------------------------------------------------


def test_last_modified_on_reads(with_space: Backend) -> None:
    """A read carries when the bytes last changed (seconds since the epoch)."""
    before = time.time()
    write(with_space, "/t", b"x")
    _, res = with_space.read_resource("s1", "/t")
    assert res is not None
    res.body.close()
    assert res.info.last_modified is not None
    assert before - 5 <= res.info.last_modified <= time.time() + 5


@pytest.mark.parametrize(
    ("wanted", "span", "data"),
    [
        (ByteRange(first=0, last=3), (0, 3), b"0123"),
        (ByteRange(first=6), (6, 9), b"6789"),
        (ByteRange(first=8, last=100), (8, 9), b"89"),
        (ByteRange(suffix=3), (7, 9), b"789"),
        (ByteRange(suffix=50), (0, 9), b"0123456789"),
    ],
)
def test_range_reads_only_the_slice(
    with_space: Backend, wanted: ByteRange, span: tuple[int, int], data: bytes
) -> None:
    """A byte range comes back as its slice and span; the metadata describes the whole resource."""
    write(with_space, "/r", b"0123456789")
    _, res = with_space.read_resource("s1", "/r", byte_range=wanted)
    assert res is not None
    with res.body as f:
        got = f.read()
    assert (got, res.span, res.info.size, res.length) == (data, span, 10, len(data))


def test_unsatisfiable_range(with_space: Backend) -> None:
    """A range past the end selects nothing: no span, and resolve says so for the caller's 416."""
    write(with_space, "/r", b"0123456789")
    wanted = ByteRange(first=10)
    _, res = with_space.read_resource("s1", "/r", byte_range=wanted)
    assert res is not None
    res.body.close()
    assert res.span is None and res.info.size == 10 and wanted.resolve(res.info.size) is None


# -- races ----------------------------------------------------------------------------------------------


def _race(n: int, attempt: Callable[[int], None]) -> list[str]:
    """Run ``attempt(i)`` on ``n`` threads released together; each outcome: ok, 412, or an error."""
    barrier = threading.Barrier(n)
    outcomes: list[str] = [""] * n

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            attempt(i)
            outcomes[i] = "ok"
        except PreconditionFailed:
            outcomes[i] = "412"
        except Exception as exc:  # reported, so the assertion says what went wrong
            outcomes[i] = repr(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_twenty_concurrent_creates_one_wins(with_space: Backend) -> None:
    """20 threads PUT one new resource with If-None-Match: *: exactly one succeeds, and its bytes stay."""
    outcomes = _race(20, lambda i: cwrite(with_space, "/race", b"writer %d" % i, CREATE))
    assert sorted(outcomes) == ["412"] * 19 + ["ok"]
    winner = outcomes.index("ok")
    assert read(with_space, "/race") == (b"writer %d" % winner, "text/plain")


def test_twenty_concurrent_updates_from_one_etag_one_wins(with_space: Backend) -> None:
    """20 threads update from the same ETag with If-Match: exactly one succeeds."""
    start = cwrite(with_space, "/cas", b"v0", None)
    assert start is not None
    outcomes = _race(20, lambda i: cwrite(with_space, "/cas", b"v%d" % (i + 1), match(start)))
    assert sorted(outcomes) == ["412"] * 19 + ["ok"]
    assert read(with_space, "/cas") == (b"v%d" % (outcomes.index("ok") + 1), "text/plain")


def _process_create(root: str, i: int, barrier: object, results: object) -> None:
    """One process's attempt: a conditional create through its own backend on the shared directory."""
    b = FilesystemBackend(root)
    barrier.wait(30)  # type: ignore[attr-defined]
    try:
        b.write_resource("s1", "/p", io.BytesIO(b"process %d" % i), "text/plain", allow, condition=CREATE)
        results.put("ok")  # type: ignore[attr-defined]
    except PreconditionFailed:
        results.put("412")  # type: ignore[attr-defined]
    except Exception as exc:
        results.put(repr(exc))  # type: ignore[attr-defined]


def test_filesystem_processes_race_one_wins(tmp_path: Path) -> None:
    """8 processes on one data directory: If-None-Match: * still gives one success (the flock)."""
    root = tmp_path / "data"
    put(FilesystemBackend(root), space())
    ctx = multiprocessing.get_context("fork")
    n = 8
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_create, args=(str(root), i, barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in range(n)]
    for p in procs:
        p.join(30)
    assert sorted(outcomes) == ["412"] * (n - 1) + ["ok"]


# -- S3 specifics ---------------------------------------------------------------------------------------


@pytest.fixture
def s3(mocked_aws: None) -> S3Backend:
    b = S3Backend("cond", "", threads=4)
    b.client.create_bucket(Bucket="cond")
    b.check()
    b.reindex()
    put(b, space())
    return b


def test_s3_conditional_write_is_one_put(s3: S3Backend) -> None:
    """A conditional write: the record GET and a HEAD side by side (checked before the body is read), one PUT.

    The HEAD is the one every write makes (``ResourceInfo.existed``): a condition adds no request.
    """
    cwrite(s3, "/x", b"x", None)
    cur = etag(s3, "/x")
    assert cur is not None
    s3.calls.clear()
    cwrite(s3, "/x", b"y", match(cur))
    assert dict(s3.calls) == {"GetObject": 1, "HeadObject": 1, "PutObject": 1}
    s3.calls.clear()
    with pytest.raises(PreconditionFailed):
        cwrite(s3, "/x", b"z", match(cur))
    assert "PutObject" not in s3.calls


def test_s3_large_conditional_body_goes_up_in_parts_after_a_head(s3: S3Backend) -> None:
    """Past one part: a HEAD first (a stale condition uploads nothing), then parts; the completion commits."""
    old, new = b"a" * (s3_upload.part_size(1) + 5), b"b" * (s3_upload.part_size(1) + 7)
    cwrite(s3, "/big", old, CREATE)
    assert read(s3, "/big") == (old, "text/plain")
    s3.calls.clear()
    with pytest.raises(PreconditionFailed):
        cwrite(s3, "/big", new, CREATE)
    with pytest.raises(PreconditionFailed):
        cwrite(s3, "/big", new, match('"stale"'))
    assert "CreateMultipartUpload" not in s3.calls
    cur = etag(s3, "/big")
    assert cur is not None
    s3.calls.clear()
    cwrite(s3, "/big", new, match(cur))
    assert s3.calls["CreateMultipartUpload"] == 1 and s3.calls["CompleteMultipartUpload"] == 1
    assert read(s3, "/big") == (new, "text/plain")
    assert s3.client.list_multipart_uploads(Bucket="cond").get("Uploads", []) == []


def test_s3_range_is_passed_to_get_object(s3: S3Backend) -> None:
    """A ranged read is one ranged GetObject: S3 sends only the slice."""
    write(s3, "/r", b"0123456789")
    s3.calls.clear()
    _, res = s3.read_resource("s1", "/r", byte_range=ByteRange(first=2, last=4))
    assert res is not None
    with res.body as f:
        assert f.read() == b"234"
    assert res.span == (2, 4) and res.info.size == 10
    assert dict(s3.calls) == {"GetObject": 2}  # the record, and the ranged object
