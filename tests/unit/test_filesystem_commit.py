"""Group commit on the filesystem backend: a write is answered only after the flush that covers it.

The flush is instrumented: a slow (or blocked, or failing) flush stands in
for the disk, and the tests watch when writes return relative to it.
"""

from __future__ import annotations

import errno
import io
import json
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool
from twisted.web.server import Site
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import sign
from was_twisted.config import ConfigError, Settings, settings_from_env
from was_twisted.operations import Operations
from was_twisted.service import make_backend
from was_twisted.storage.base import SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.filesystem_commit import GroupCommit, fsync_each, no_flush
from was_twisted.storage.threaded import AsyncStorage, PoolRunner
from was_twisted.web.app import WASApp


def allow(space: SpaceRecord | None) -> None:
    return None


class RecordingFlush:
    """A flush that logs each call's start and end (and can be held, slowed or made to fail)."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.events: list[tuple[str, float]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.fail: OSError | None = None
        self.calls: list[tuple[list[int], list[str]]] = []

    def __call__(self, files: Sequence[int], dirs: Sequence[str]) -> None:
        self.events.append(("start", time.monotonic()))
        self.calls.append((list(files), list(dirs)))
        self.entered.set()
        assert self.release.wait(10), "never released"
        time.sleep(self.delay)
        fsync_each(files, dirs)
        self.events.append(("end", time.monotonic()))
        if self.fail is not None:
            raise self.fail


def _backend(tmp_path: Path, flush: RecordingFlush) -> FilesystemBackend:
    backend = FilesystemBackend(tmp_path / "data", flush=flush)
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:z6Mk"))
    flush.events.clear()
    flush.calls.clear()
    backend._commit.batches = backend._commit.synced = 0
    return backend


def test_concurrent_writes_return_only_after_the_flush_they_share(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)
    flush.release.clear()
    flush.entered.clear()
    returned: dict[str, float] = {}

    def write(name: str) -> None:
        backend.write_resource("s1", f"/{name}", io.BytesIO(name.encode()), "text/plain", allow)
        returned[name] = time.monotonic()

    threads = [threading.Thread(target=write, args=(f"r{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    assert flush.entered.wait(5)
    time.sleep(0.3)  # every writer has had time to write its temp file and join a batch
    assert returned == {}, "a write returned while its flush was still running"
    released = time.monotonic()
    flush.release.set()
    for t in threads:
        t.join(10)
    assert sorted(returned) == [f"r{i}" for i in range(6)]
    assert all(at >= released for at in returned.values())
    # Two rounds per write (bytes, then names), but the six writers shared the batches.
    commit = backend._commit
    assert commit.synced == 12
    assert commit.batches < 12
    for name in returned:
        _, stored = backend.read_resource("s1", f"/{name}")
        assert stored is not None and stored.body.read() == name.encode()
        stored.body.close()


def test_the_bytes_are_flushed_before_the_rename_and_the_name_after(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)
    target = tmp_path / "data" / "spaces" / "s1" / "resources" / "%2Fr.data"
    seen: list[bool] = []
    original = flush.__call__

    def watching(files: Sequence[int], dirs: Sequence[str]) -> None:
        seen.append(target.exists())
        original(files, dirs)

    backend._commit.flush = watching
    backend.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow)
    # Round 1 (temp files: .data and the new .meta) before the name exists; round 2 after.
    assert seen == [False, True]
    assert [len(files) for files, _ in flush.calls] == [2, 0]
    assert flush.calls[1][1][0].endswith("resources")


def test_an_overwrite_of_the_same_type_flushes_no_meta(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)
    meta = tmp_path / "data" / "spaces" / "s1" / "resources" / "%2Fr.meta"
    backend.write_resource("s1", "/r", io.BytesIO(b"one"), "text/plain", allow)
    before = meta.stat().st_ino
    flush.calls.clear()
    backend.write_resource("s1", "/r", io.BytesIO(b"two"), "text/plain", allow)
    assert meta.stat().st_ino == before  # not rewritten
    assert [len(files) for files, _ in flush.calls] == [1, 0]  # only the .data temp, then the directory
    # The overwrite's rename still changes the directory entry: the directory is flushed.
    assert flush.calls[1][1] == [str(tmp_path / "data" / "spaces" / "s1" / "resources")]
    backend.write_resource("s1", "/r", io.BytesIO(b"three"), "text/html", allow)
    assert meta.stat().st_ino != before
    _, stored = backend.read_resource("s1", "/r")
    assert stored is not None and stored.info.content_type == "text/html"
    stored.body.close()


def test_a_failed_flush_fails_every_write_in_its_batch(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)
    flush.fail = OSError(errno.EIO, "disk on fire")
    with pytest.raises(OSError, match="disk on fire"):
        backend.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow)
    # Round 1 failed: nothing was renamed into place and no temp file stays.
    assert sorted(p.name for p in (tmp_path / "data" / "spaces" / "s1" / "resources").iterdir()) == []


def test_followers_get_the_leaders_error() -> None:
    gate = threading.Event()

    def failing(files: Sequence[int], dirs: Sequence[str]) -> None:
        gate.wait(5)
        raise OSError(errno.EIO, "boom")

    commit = GroupCommit(failing)
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            commit.sync(dirs=("/",))
        except OSError as e:
            errors.append(e)

    threads = [threading.Thread(target=sync) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    gate.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 4 and all(e.errno == errno.EIO for e in errors)  # type: ignore[attr-defined]


def test_fsync_off_flushes_nothing(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = FilesystemBackend(tmp_path / "data", fsync=False, flush=flush)
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:z6Mk"))
    backend.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow)
    assert flush.calls == [] and backend._commit.flush is no_flush


def test_was_fsync_setting(tmp_path: Path) -> None:
    assert settings_from_env({}).fsync is True
    assert settings_from_env({"WAS_FSYNC": "off"}).fsync is False
    with pytest.raises(ConfigError, match="WAS_FSYNC must be on or off"):
        settings_from_env({"WAS_FSYNC": "sometimes"})
    off = make_backend(Settings(root_dir=str(tmp_path), fsync=False))
    assert isinstance(off, FilesystemBackend) and not off._commit.durable
    on = make_backend(Settings(root_dir=str(tmp_path)))
    assert isinstance(on, FilesystemBackend) and on._commit.durable


@pytest_twisted.ensureDeferred
async def test_a_put_is_answered_only_after_its_flush(tmp_path: Path, alice: Ed25519Signer) -> None:
    """Over HTTP on 127.0.0.1, through the real thread pool: the 2xx comes after a slow flush ended."""
    flush = RecordingFlush(delay=0.2)
    backend = FilesystemBackend(tmp_path / "data", flush=flush)
    pool = ThreadPool(minthreads=0, maxthreads=4, name="test-commit")
    pool.start()
    port = None
    try:
        ops = Operations(AsyncStorage(backend, PoolRunner(reactor, pool, 64)), Settings(), reactor)
        port = reactor.listenTCP(0, Site(WASApp(ops, "filesystem").resource()), interface="127.0.0.1")
        base = f"http://127.0.0.1:{port.getHost().port}"
        sid = str(uuid.uuid4())
        path = f"/space/{sid}"
        doc = json.dumps({"id": f"urn:uuid:{sid}", "controller": alice.controller}).encode()
        headers = {**sign(alice, "PUT", path), "content-type": "application/json"}
        response = await treq.put(base + path, data=doc, headers=headers)
        assert response.code in (201, 204)
        await response.content()
        flush.events.clear()
        path = f"/space/{sid}/r"
        headers = {**sign(alice, "PUT", path), "content-type": "text/plain"}
        response = await treq.put(base + path, data=b"hello", headers=headers)
        answered = time.monotonic()
        await response.content()
        assert response.code in (201, 204)
        ends = [at for what, at in flush.events if what == "end"]
        # The data and .meta, their names, then the metadata record and its name: each round ended first.
        assert len(ends) >= 2
        assert max(ends) <= answered
        flush.fail = OSError(errno.EIO, "disk on fire")
        path = f"/space/{sid}/r2"
        headers = {**sign(alice, "PUT", path), "content-type": "text/plain"}
        response = await treq.put(base + path, data=b"hello", headers=headers)
        await response.content()
        assert response.code >= 500  # never a 2xx for a write whose flush failed
    finally:
        if port is not None:
            await port.stopListening()
        pool.stop()


def test_a_batched_call_merges_its_last_rounds_and_flushes_before_returning(tmp_path: Path) -> None:
    """Content then record in one storage call: three flushes, not four; all done when it returns."""
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)
    resources = str(tmp_path / "data" / "spaces" / "s1" / "resources")

    def composite() -> str:
        backend.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow)
        assert len(flush.calls) == 1  # the names' round is put off...
        backend.put_resource_meta("s1", "/r", b"{}")
        return "done"

    assert backend.batched(composite) == "done"
    # ...and joins the record's temp-file round; the record's name is flushed at the end.
    assert len(flush.calls) == 3
    assert resources in flush.calls[1][1]
    assert flush.calls[2][1][0].endswith("metadata")
    # Outside a batched call nothing is put off.
    backend.write_resource("s1", "/r", io.BytesIO(b"y"), "text/plain", allow)
    assert len(flush.calls) == 5


def test_a_batched_call_that_fails_still_flushes_what_it_renamed(tmp_path: Path) -> None:
    flush = RecordingFlush()
    backend = _backend(tmp_path, flush)

    def composite() -> None:
        backend.write_resource("s1", "/r", io.BytesIO(b"x"), "text/plain", allow)
        raise RuntimeError("later step failed")

    with pytest.raises(RuntimeError):
        backend.batched(composite)
    assert len(flush.calls) == 2 and flush.calls[1][1][0].endswith("resources")


class _SlowFsync:
    """``os.fsync`` stood in for by a slow disk: each call logged with its start and end."""

    def __init__(self, delay: float = 0.05, fail_fd: int | None = None) -> None:
        self.delay = delay
        self.fail_fd = fail_fd
        self.calls: list[tuple[int, float, float]] = []
        self._lock = threading.Lock()

    def __call__(self, fd: int) -> None:
        start = time.monotonic()
        time.sleep(self.delay)
        with self._lock:
            self.calls.append((fd, start, time.monotonic()))
        if fd == self.fail_fd:
            raise OSError(errno.EIO, "injected")


def _open_files(tmp_path: Path, n: int) -> list[int]:
    import os

    return [os.open(tmp_path / f"f{i}", os.O_CREAT | os.O_WRONLY) for i in range(n)]


def test_a_lone_writer_flushes_a_round_side_by_side_and_returns_after_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrency 1: a new resource's two temp files (and a round's directory) are flushed at once."""
    import os

    slow = _SlowFsync()
    monkeypatch.setattr(os, "fsync", slow)
    commit = GroupCommit()
    files = _open_files(tmp_path, 2)
    try:
        began = time.monotonic()
        commit.sync(files=files, dirs=[str(tmp_path)])
        returned = time.monotonic()
    finally:
        commit.close()
        for fd in files:
            os.close(fd)
    assert sorted(fd for fd, _, _ in slow.calls[:3] if fd in files) == sorted(files)
    assert len(slow.calls) == 3  # both files and the directory
    assert all(end <= returned for _, _, end in slow.calls)  # answered only after every flush ended
    assert max(start for _, start, _ in slow.calls) < min(end for _, _, end in slow.calls)  # side by side
    assert returned - began < 2.5 * slow.delay
    assert commit.side_by_side == 1


def test_a_failing_flush_beside_others_fails_the_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error on a helper thread is the writer's error: nothing is answered 2xx on a failed flush."""
    import os

    files = _open_files(tmp_path, 2)
    slow = _SlowFsync(delay=0.01, fail_fd=files[1])
    monkeypatch.setattr(os, "fsync", slow)
    commit = GroupCommit()
    try:
        with pytest.raises(OSError, match="injected"):
            commit.sync(files=files)
    finally:
        commit.close()
        for fd in files:
            os.close(fd)
    assert len(slow.calls) == 2


def test_writers_not_alone_flush_their_files_themselves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under concurrency no helper is used: the other writers' flushes already overlap."""
    import os

    slow = _SlowFsync(delay=0.02)
    monkeypatch.setattr(os, "fsync", slow)
    commit = GroupCommit()
    inside = threading.Event()
    original = commit._sync

    def holding(files: Sequence[int], dirs: Sequence[str], alone: bool) -> None:
        if alone:
            inside.set()
            time.sleep(0.2)  # stays inside sync while the second writer comes
        original(files, dirs, alone)

    monkeypatch.setattr(commit, "_sync", holding)
    first = _open_files(tmp_path, 2)
    lone = threading.Thread(target=commit.sync, kwargs={"files": first[:1]})
    lone.start()
    assert inside.wait(5)
    commit.sync(files=first)  # two files, but another writer is in sync
    lone.join(5)
    commit.close()
    for fd in first:
        os.close(fd)
    assert commit.side_by_side == 0
