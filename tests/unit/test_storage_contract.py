"""The storage contract, run against every synchronous backend."""

from __future__ import annotations

import io
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from was_twisted.storage.base import Backend, Condition, Guard, SpaceMissing, SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.s3 import S3Backend

ALICE = "did:key:z6MkAlice"
BOB = "did:key:z6MkBob"


class Refused(Exception):
    """What the test guards raise to refuse."""


def allow(current: SpaceRecord | None) -> None:
    """A guard that lets everything through."""


def refuse(current: SpaceRecord | None) -> None:
    """A guard that refuses everything."""
    raise Refused


class Recorder:
    """A guard that remembers what it was shown."""

    def __init__(self) -> None:
        self.seen: list[SpaceRecord | None] = []

    def __call__(self, current: SpaceRecord | None) -> None:
        self.seen.append(current)


def put(b: Backend, record: SpaceRecord, guard: Guard = allow) -> bool:
    """put_space with a builder that runs ``guard`` and returns ``record``; True if created."""

    def build(current: SpaceRecord | None) -> SpaceRecord:
        guard(current)
        return record

    created, written = b.put_space(record.space_id, build)
    assert written == record
    return created


def space(space_id: str = "s1", controller: str = ALICE) -> SpaceRecord:
    return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=controller)


@pytest.fixture(params=["memory", "filesystem", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "s3":
        # In-process moto; the same behaviours run over HTTP in tests/integration.
        request.getfixturevalue("mocked_aws")
        s3 = S3Backend("contract", "pfx/", threads=4)
        s3.client.create_bucket(Bucket="contract")
        s3.check()
        s3.reindex()
        yield s3
        s3.close()
        return
    b: Backend = MemoryBackend() if request.param == "memory" else FilesystemBackend(tmp_path / "data")
    yield b
    b.close()


@pytest.fixture
def with_space(backend: Backend) -> Backend:
    put(backend, space(), allow)
    return backend


def assert_listed_type(b: Backend, content_type: str, expected: str) -> None:
    """S3's LIST carries no content type, so its listings leave it empty; the others give it."""
    assert content_type == ("" if isinstance(b, S3Backend) else expected)


def write(b: Backend, path: str, data: bytes, ct: str = "text/plain", sid: str = "s1") -> None:
    b.write_resource(sid, path, io.BytesIO(data), ct, allow)


def read(b: Backend, path: str, sid: str = "s1") -> tuple[bytes, str] | None:
    _, res = b.read_resource(sid, path)
    if res is None:
        return None
    with res.body as f:
        data = f.read()
    assert len(data) == res.info.size
    return data, res.info.content_type


def etag(b: Backend, path: str) -> str | None:
    _, res = b.read_resource("s1", path)
    assert res is not None
    res.body.close()
    return res.info.etag


# -- spaces --------------------------------------------------------------------------------------------


def test_put_space_creates_then_replaces(backend: Backend) -> None:
    """put_space returns True when it creates and False when it replaces; get_space sees the latest."""
    assert backend.get_space("s1") is None
    assert put(backend, space(), allow) is True
    assert put(backend, SpaceRecord("s1", "urn:uuid:s1", ALICE, name="renamed"), allow) is False
    got = backend.get_space("s1")
    assert got is not None
    assert (got.id, got.controller, got.name) == ("urn:uuid:s1", ALICE, "renamed")


def test_put_space_keeps_created_by_and_extra(backend: Backend) -> None:
    """createdBy and unknown members round-trip through the backend."""
    rec = SpaceRecord("s1", "urn:uuid:x", ALICE, name="n", created_by=BOB, extra={"custom": [1, 2]})
    put(backend, rec, allow)
    got = backend.get_space("s1")
    assert got is not None
    assert got.created_by == BOB
    assert got.extra == {"custom": [1, 2]}


def test_guard_sees_current_space(backend: Backend) -> None:
    """Every guarded call shows the guard the stored record, or None when the space is absent."""
    rec = Recorder()
    put(backend, space(), rec)
    assert rec.seen == [None]
    put(backend, space(), rec)
    backend.write_resource("s1", "/a", io.BytesIO(b"x"), "text/plain", rec)
    backend.list_resources("s1", "/", rec)
    backend.delete_resource("s1", "/a", rec)
    backend.delete_space("s1", rec)
    assert rec.seen[1:] == [space()] * 5
    backend.delete_space("s1", rec)
    backend.list_resources("s1", "/", rec)
    backend.delete_resource("s1", "/a", rec)
    assert rec.seen[6:] == [None, None, None]


def test_refusing_guard_leaves_storage_unchanged(with_space: Backend) -> None:
    """A guard that raises aborts every kind of write and nothing changes."""
    b = with_space
    write(b, "/keep", b"old", "text/plain")
    with pytest.raises(Refused):
        put(b, space(controller=BOB), refuse)
    with pytest.raises(Refused):
        put(b, space("s2"), refuse)
    with pytest.raises(Refused):
        b.write_resource("s1", "/keep", io.BytesIO(b"new"), "text/html", refuse)
    with pytest.raises(Refused):
        b.write_resource("s1", "/fresh", io.BytesIO(b"new"), "text/html", refuse)
    with pytest.raises(Refused):
        b.delete_resource("s1", "/keep", refuse)
    with pytest.raises(Refused):
        b.list_resources("s1", "/", refuse)
    with pytest.raises(Refused):
        b.delete_space("s1", refuse)
    assert b.get_space("s1") == space()
    assert b.get_space("s2") is None
    assert read(b, "/keep") == (b"old", "text/plain")
    assert read(b, "/fresh") is None
    assert [p for p, _ in b.list_resources("s1", "/", allow)] == ["/keep"]


def test_delete_space_removes_resources(with_space: Backend) -> None:
    """Deleting a space removes it and its resources; a recreated space starts empty."""
    b = with_space
    write(b, "/a", b"1")
    write(b, "/b/c", b"2")
    assert b.delete_space("s1", allow) is True
    assert b.get_space("s1") is None
    assert b.read_resource("s1", "/a") == (None, None)
    put(b, space(), allow)
    assert b.list_resources("s1", "/", allow) == []
    assert read(b, "/a") is None


def test_delete_absent_space_returns_false(backend: Backend) -> None:
    """Deleting a space that does not exist returns False."""
    assert backend.delete_space("nope", allow) is False


def test_list_spaces_filters_by_controller_and_sorts(backend: Backend) -> None:
    """list_spaces returns the ids of only the controller's spaces, sorted."""
    for sid, ctl in [("zeta", ALICE), ("alpha", ALICE), ("mid", BOB), ("beta", ALICE)]:
        put(backend, space(sid, ctl), allow)
    assert backend.list_spaces(ALICE) == ["alpha", "beta", "zeta"]
    assert backend.list_spaces(BOB) == ["mid"]
    assert backend.list_spaces("did:key:nobody") == []


def test_replacing_controller_moves_space_between_lists(backend: Backend) -> None:
    """A space replaced with a new controller is listed under the new controller only."""
    put(backend, space("s1", ALICE), allow)
    put(backend, space("s1", BOB), allow)
    assert backend.list_spaces(ALICE) == []
    assert backend.list_spaces(BOB) == ["s1"]


# -- resources -----------------------------------------------------------------------------------------


def test_round_trip_all_byte_values(with_space: Backend) -> None:
    """All 256 byte values come back exactly, with the right size."""
    data = bytes(range(256)) * 3
    info = with_space.write_resource("s1", "/bin", io.BytesIO(data), "application/octet-stream", allow)
    assert info.size == len(data)
    assert read(with_space, "/bin") == (data, "application/octet-stream")


def test_empty_body(with_space: Backend) -> None:
    """An empty body is stored as an existing zero-length resource."""
    info = with_space.write_resource("s1", "/empty", io.BytesIO(b""), "text/plain", allow)
    assert info.size == 0
    assert read(with_space, "/empty") == (b"", "text/plain")


@pytest.mark.parametrize("ct", ["text/plain", 'application/ld+json; profile="x"', "Text/HTML;charset=UTF-8"])
def test_content_type_verbatim(with_space: Backend, ct: str) -> None:
    """The content type comes back byte-identical: no charset added, nothing normalised."""
    write(with_space, "/t", b"x", ct)
    got = read(with_space, "/t")
    assert got is not None and got[1] == ct
    [(_, info)] = with_space.list_resources("s1", "/", allow)
    assert_listed_type(with_space, info.content_type, ct)


def test_content_type_changes_on_overwrite(with_space: Backend) -> None:
    """Overwriting with a new type stores the new bytes with the new type."""
    write(with_space, "/t", b"one", "text/plain")
    write(with_space, "/t", b"<two/>", "application/xml")
    assert read(with_space, "/t") == (b"<two/>", "application/xml")


def test_a_write_says_whether_it_created(with_space: Backend) -> None:
    """``existed``: False for a creation, True for an overwrite (also conditional), False after a delete."""
    b = with_space

    def existed(condition: Condition | None = None) -> bool | None:
        kw = {} if condition is None else {"condition": condition}
        return b.write_resource("s1", "/e", io.BytesIO(b"x"), "text/plain", allow, **kw).existed

    assert existed() is False
    assert existed() is True
    b.delete_resource("s1", "/e", allow)
    assert existed(Condition(if_match=None, if_none_match=True)) is False
    assert existed(Condition(if_match=("*",), if_none_match=False)) is True


def test_write_to_missing_space_raises(backend: Backend) -> None:
    """A write the guard allows into an absent space raises SpaceMissing and stores nothing."""
    with pytest.raises(SpaceMissing):
        write(backend, "/a", b"x", sid="ghost")
    put(backend, space("ghost"), allow)
    assert read(backend, "/a", sid="ghost") is None


def test_read_missing(with_space: Backend) -> None:
    """Reading reports the space and resource separately as None when absent."""
    assert with_space.read_resource("ghost", "/a") == (None, None)
    assert with_space.read_resource("s1", "/a") == (space(), None)


def test_delete_resource_idempotent(with_space: Backend) -> None:
    """Deleting a resource returns True once, then False (S3 cannot tell: True); it is gone afterwards."""
    write(with_space, "/a", b"x")
    assert with_space.delete_resource("s1", "/a", allow) is True
    assert with_space.delete_resource("s1", "/a", allow) is isinstance(with_space, S3Backend)
    assert read(with_space, "/a") is None
    assert with_space.delete_resource("ghost", "/a", allow) is False


def test_list_resources_by_prefix_sorted(with_space: Backend) -> None:
    """list_resources returns the paths under a prefix, sorted, with sizes and types."""
    for p in ["/notes/b.txt", "/photos/x.jpg", "/notes/a.txt", "/notes/sub/c.txt", "/notesX"]:
        write(with_space, p, p.encode(), "text/plain")
    listed = with_space.list_resources("s1", "/notes/", allow)
    assert [p for p, _ in listed] == ["/notes/a.txt", "/notes/b.txt", "/notes/sub/c.txt"]
    for p, i in listed:
        assert i.size == len(p)
        assert_listed_type(with_space, i.content_type, "text/plain")
    assert len(with_space.list_resources("s1", "/", allow)) == 5
    assert with_space.list_resources("s1", "/nothing", allow) == []


def test_list_resources_of_absent_space_is_empty(backend: Backend) -> None:
    """Listing an absent space the guard allows returns an empty list."""
    assert backend.list_resources("ghost", "/", allow) == []


ODD_PATHS = ["/a/b/c/é ü.txt", "/deep/" + "d/" * 40 + "leaf", "/q?x=1&y=%20#f", "/日本語"]


@pytest.mark.parametrize("path", ODD_PATHS)
def test_deep_and_unicode_paths(with_space: Backend, path: str) -> None:
    """Deep, unicode and punctuation-heavy paths round-trip and list under their own name."""
    write(with_space, path, b"payload")
    assert read(with_space, path) == (b"payload", "text/plain")
    assert [p for p, _ in with_space.list_resources("s1", "/", allow)] == [path]


def test_paths_differing_only_by_encoding_are_distinct(with_space: Backend) -> None:
    """A literal '%2F' in a path is not confused with a '/'."""
    write(with_space, "/a/b", b"slash")
    write(with_space, "/a%2Fb", b"percent")
    assert read(with_space, "/a/b") == (b"slash", "text/plain")
    assert read(with_space, "/a%2Fb") == (b"percent", "text/plain")


def test_etag_changes_when_content_changes(with_space: Backend) -> None:
    """Each overwrite yields a new etag, even at the same size; the write reports the stored etag."""
    seen = set()
    for data in [b"aaa", b"bbb", b"ccc", b"cccc"]:
        info = with_space.write_resource("s1", "/e", io.BytesIO(data), "text/plain", allow)
        assert info.etag is not None and info.etag.startswith('"') and info.etag.endswith('"')
        assert etag(with_space, "/e") == info.etag
        seen.add(info.etag)
    assert len(seen) == 4
    [(_, listed)] = with_space.list_resources("s1", "/", allow)
    assert listed.etag == info.etag


def test_large_body_streamed_from_file(with_space: Backend, tmp_path: Path) -> None:
    """An 8 MiB body read from a real file is stored and read back byte for byte."""
    data = os.urandom(8 * 1024 * 1024 + 17)
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    with open(src, "rb") as f:
        info = with_space.write_resource("s1", "/big", f, "application/octet-stream", allow)
    assert info.size == len(data)
    _, res = with_space.read_resource("s1", "/big")
    assert res is not None
    with res.body as body, tempfile.TemporaryFile() as out:
        while chunk := body.read(65536):
            out.write(chunk)
        out.seek(0)
        assert out.read() == data
    assert res.info.size == len(data)


def test_reader_keeps_old_bytes_across_overwrite(with_space: Backend) -> None:
    """A body opened before an overwrite still yields the old bytes, whole."""
    write(with_space, "/r", b"old-bytes")
    _, res = with_space.read_resource("s1", "/r")
    assert res is not None
    write(with_space, "/r", b"new")
    with res.body as f:
        assert f.read() == b"old-bytes"
    assert res.info.size == len(b"old-bytes")
    assert read(with_space, "/r") == (b"new", "text/plain")


def test_resources_are_per_space(backend: Backend) -> None:
    """The same path in two spaces holds two independent resources."""
    put(backend, space("s1"), allow)
    put(backend, space("s2"), allow)
    write(backend, "/x", b"one", sid="s1")
    write(backend, "/x", b"two", sid="s2")
    assert read(backend, "/x", sid="s1") == (b"one", "text/plain")
    assert read(backend, "/x", sid="s2") == (b"two", "text/plain")
    backend.delete_space("s2", allow)
    assert read(backend, "/x", sid="s1") == (b"one", "text/plain")


def test_guard_and_write_are_atomic(backend: Backend) -> None:
    """Racing create-only puts of one space: the guard lets exactly one through."""
    results: list[bool] = []
    refusals: list[Refused] = []
    start = threading.Barrier(8)

    def create_only(current: SpaceRecord | None) -> None:
        if current is not None:
            raise Refused

    def worker(n: int) -> None:
        start.wait()
        try:
            results.append(put(backend, space("race", f"did:key:{n}"), create_only))
        except Refused as e:
            refusals.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True]
    assert len(refusals) == 7


@pytest.fixture(params=["memory", "filesystem"])
def local_with_space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A space on the local backends only: moto's in-process mock is not thread-safe for racing
    overwrites of one key (tests/integration/test_e2e_s3.py races them over HTTP instead)."""
    b: Backend = MemoryBackend() if request.param == "memory" else FilesystemBackend(tmp_path / "data")
    put(b, space(), allow)
    yield b
    b.close()


def test_concurrent_overwrites_never_mix(local_with_space: Backend) -> None:
    """Readers racing writers always see one whole version with its own type."""
    with_space = local_with_space
    versions = {bytes([n]) * 50_000: f"application/x-v{n}" for n in range(4)}
    stop = threading.Event()
    bad: list[object] = []

    def writer() -> None:
        while not stop.is_set():
            for data, ct in versions.items():
                write(with_space, "/hot", data, ct)

    write(with_space, "/hot", *next(iter(versions.items())))
    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(300):
            got = read(with_space, "/hot")
            if got is None or versions.get(got[0]) != got[1]:
                bad.append(got and (got[0][:1], len(got[0]), got[1]))
    finally:
        stop.set()
        t.join()
    assert bad == []


def test_put_space_writes_what_build_returns(backend: Backend) -> None:
    """build sees the current record and put_space stores and returns the record it builds."""
    seen: list[SpaceRecord | None] = []

    def build(current: SpaceRecord | None) -> SpaceRecord:
        seen.append(current)
        name = "first" if current is None else f"{current.name}+"
        return SpaceRecord("s1", "urn:uuid:s1", ALICE, name=name)

    assert backend.put_space("s1", build) == (True, SpaceRecord("s1", "urn:uuid:s1", ALICE, name="first"))
    created, rec = backend.put_space("s1", build)
    assert (created, rec.name) == (False, "first+")
    assert seen == [None, SpaceRecord("s1", "urn:uuid:s1", ALICE, name="first")]
    assert backend.get_space("s1") == rec


def test_put_space_refuses_record_for_another_id(backend: Backend) -> None:
    """A builder returning a record with a different space_id is a bug and writes nothing."""
    with pytest.raises(ValueError):
        backend.put_space("s1", lambda current: space("other"))
    assert backend.get_space("s1") is None
    assert backend.get_space("other") is None


def test_read_without_body_gives_the_same_metadata(with_space: Backend) -> None:
    """A HEAD's read (with_body=False) reports the type, size and etag a GET would."""
    write(with_space, "/h", b"x" * 3000, "image/png")
    _, full = with_space.read_resource("s1", "/h")
    _, head = with_space.read_resource("s1", "/h", with_body=False)
    assert full is not None and head is not None
    full.body.close()
    head.body.close()
    assert head.info == full.info and head.info.size == 3000 and head.info.content_type == "image/png"
    assert with_space.read_resource("s1", "/absent", with_body=False) == (space(), None)
