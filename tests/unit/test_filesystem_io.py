"""The filesystem backend's lean I/O: reads in one call, temp files by name, directories made on demand."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from was_twisted.storage.base import ByteRange, SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.filesystem_commit import fsync_each
from was_twisted.storage.filesystem_tree import _INLINE_BODY, _TMP_PREFIX


def allow(space: SpaceRecord | None) -> None:
    return None


class Flushes:
    """Records what each flush covered (and flushes it)."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[str]]] = []

    def __call__(self, files: Sequence[int], dirs: Sequence[str]) -> None:
        self.calls.append((len(files), list(dirs)))
        fsync_each(files, dirs)


def _backend(tmp_path: Path, flush: Flushes | None = None) -> FilesystemBackend:
    backend = FilesystemBackend(tmp_path / "data", flush=flush)
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:z6Mk"))
    if flush is not None:
        flush.calls.clear()
    return backend


@pytest.mark.parametrize("size", [0, 1, 1024, _INLINE_BODY, _INLINE_BODY + 1, 3 * _INLINE_BODY])
def test_reads_whole_and_ranged(tmp_path: Path, size: int) -> None:
    """Small bodies come back in memory, large ones as an open file; both whole and sliced."""
    backend = _backend(tmp_path)
    data = os.urandom(size)
    info = backend.write_resource("s1", "/r", io.BytesIO(data), "application/x-test", allow)
    _, stored = backend.read_resource("s1", "/r")
    assert stored is not None
    assert isinstance(stored.body, io.BytesIO) == (size <= _INLINE_BODY)
    assert stored.body.read() == data
    stored.body.close()
    assert (stored.info.etag, stored.info.size, stored.info.content_type) == (
        info.etag,
        size,
        "application/x-test",
    )
    if size >= 2:
        first, last = size // 3, size - 2
        _, part = backend.read_resource("s1", "/r", True, ByteRange(first, last))
        assert part is not None and part.span == (first, last)
        got = part.body.read()
        part.body.close()
        assert got == data[first : last + 1]
    _, head = backend.read_resource("s1", "/r", with_body=False)
    assert head is not None and head.info.size == size and head.body.read() == b""


def test_temp_names_are_hidden_unique_and_gone(tmp_path: Path) -> None:
    """Temp files are dot-files (never a resource), distinct per write, and none is left behind."""
    backend = _backend(tmp_path)
    backend.write_resource("s1", "/first", io.BytesIO(b"x"), "text/plain", allow)  # makes resources/
    res = tmp_path / "data" / "spaces" / "s1" / "resources"
    names: set[str] = set()
    original = os.open

    def spying(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        name = os.path.basename(path)
        if name.startswith(_TMP_PREFIX):
            assert flags & os.O_EXCL
            names.add(name)
        return original(path, flags, mode, dir_fd=dir_fd)

    os.open = spying  # type: ignore[assignment]
    try:
        for i in range(20):
            backend.write_resource("s1", f"/r{i}", io.BytesIO(b"x"), f"text/x{i % 2}", allow)
    finally:
        os.open = original
    assert len(names) == 40  # a .data and a .meta temp file each, never the same name twice
    assert not [p.name for p in res.iterdir() if p.name.startswith(".")]


def test_first_write_makes_resources_and_flushes_its_new_name(tmp_path: Path) -> None:
    """``resources/`` is made by the first write only; that new name is flushed before the answer."""
    flush = Flushes()
    backend = _backend(tmp_path, flush)
    space = str(tmp_path / "data" / "spaces" / "s1")
    assert not os.path.exists(os.path.join(space, "resources"))
    backend.write_resource("s1", "/a", io.BytesIO(b"1"), "text/plain", allow)
    assert flush.calls[-1][1] == [os.path.join(space, "resources"), space]
    flush.calls.clear()
    backend.write_resource("s1", "/b", io.BytesIO(b"2"), "text/plain", allow)
    assert flush.calls[-1][1] == [os.path.join(space, "resources")]  # nothing new in the space itself
    assert backend.create_resource_meta("s1", "/a", b"{}")
    assert flush.calls[-1][1] == [os.path.join(space, "metadata"), space]
    flush.calls.clear()
    assert backend.create_resource_meta("s1", "/b", b"{}")
    assert flush.calls[-1][1] == [os.path.join(space, "metadata")]
    assert not backend.create_resource_meta("s1", "/b", b"{}")  # exists: nothing staged, nothing flushed
    assert len(flush.calls) == 2


class _Meanwhile(io.BytesIO):
    """A body that runs ``action`` each time a read returns bytes: the space changes while it is copied."""

    def __init__(self, data: bytes, action: Callable[[], None]) -> None:
        super().__init__(data)
        self._action = action

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if chunk:
            self._action()
        return chunk


def test_a_write_into_a_deleted_space_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    """The space going while a body is copied: the renames fail, the write is SpaceMissing."""
    from was_twisted.storage.base import SpaceMissing

    backend = _backend(tmp_path)
    backend.write_resource("s1", "/a", io.BytesIO(b"1"), "text/plain", allow)

    def delete() -> None:
        backend.delete_space("s1", allow)

    with pytest.raises(SpaceMissing):
        backend.write_resource("s1", "/b", _Meanwhile(b"2", delete), "text/plain", allow)
    assert backend.get_space("s1") is None
    assert not (tmp_path / "data" / "spaces" / "s1").exists()


@pytest.mark.parametrize("conditional", [False, True])
def test_a_write_into_a_space_deleted_and_made_again_is_refused(tmp_path: Path, conditional: bool) -> None:
    """Its temp files went with the old directory: nothing lands in the new space of the same id."""
    from was_twisted.storage.base import Condition, SpaceMissing

    backend = _backend(tmp_path)
    backend.write_resource("s1", "/a", io.BytesIO(b"1"), "text/plain", allow)

    def recreate() -> None:
        backend.delete_space("s1", allow)
        record = SpaceRecord(space_id="s1", id="s1", controller="did:x")
        backend.put_space("s1", lambda current: record)
        backend.write_resource("s1", "/other", io.BytesIO(b"new"), "text/plain", allow)

    condition = Condition(if_match=None, if_none_match=True) if conditional else None
    with pytest.raises(SpaceMissing):
        backend.write_resource(
            "s1", "/b", _Meanwhile(b"2", recreate), "text/html", allow, condition=condition
        )
    space = backend.get_space("s1")
    assert space is not None and space.controller == "did:x"
    assert backend.read_resource("s1", "/b") == (space, None)
    res = tmp_path / "data" / "spaces" / "s1" / "resources"
    # At most a lone .meta (invisible, like one a crash leaves; the next write of /b replaces it).
    assert {p.name for p in res.iterdir()} - {"%2Fb.meta"} == {"%2Fother.data", "%2Fother.meta"}
    assert [path for path, _ in backend.list_resources("s1", "/", allow)] == ["/other"]
