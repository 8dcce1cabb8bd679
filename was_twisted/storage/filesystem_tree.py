"""The filesystem backend's tree: where each file lives, per-space locks, atomic replaces.

``FilesystemTree`` holds what the backend (``filesystem.py``) and its
records (``filesystem_records.py``) share: the directory layout, the locks
that make a guard and its write atomic, and the temp-file-fsync-rename
write that readers and crashes see whole or not at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import itertools
import json
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, TypeVar
from urllib.parse import quote

from was_twisted.storage.base import (
    DEFAULT_CONTENT_TYPE,
    SpaceRecord,
    StorageError,
    check_record,
)

from .filesystem_commit import Flush, GroupCommit, no_flush

T = TypeVar("T")

_CHUNK = 64 * 1024
#: A body up to this size is read whole by ``read_resource`` (as ``threaded.SMALL_BODY``).
_INLINE_BODY = 256 * 1024
_NAME_MAX = 255
_TMP_PREFIX = ".tmp-"
_META = "_meta.json"
_DATA_SUFFIX = ".data"
_META_SUFFIX = ".meta"
#: Parsed space records kept (``_load_space``); past this many the memo starts again empty.
_SPACES_SEEN = 4096


def _check_space_id(space_id: str) -> None:
    """Refuse ids that would escape ``spaces/`` or hide as a dot-file (a backstop: the caller validated)."""
    if not space_id or "/" in space_id or "\\" in space_id or "\0" in space_id or space_id.startswith("."):
        raise ValueError(f"unsafe space id {space_id!r}")


def _fits(name: str) -> bool:
    """Whether a file name fits the common 255-byte limit (so we refuse early, not mid-write)."""
    return len(os.fsencode(name)) <= _NAME_MAX


def _resource_stem(path: str) -> str:
    """The file name stem for a resource path, as the existing server quotes it."""
    if not path.startswith("/"):
        raise ValueError(f"resource path must start with '/': {path!r}")
    return quote(path, safe="")


def _etag(st: os.stat_result) -> str:
    """A strong etag from mtime and size; each write sets a fresh mtime (see ``_stamp``)."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _mtime(st: os.stat_result) -> float:
    """``Last-Modified`` of a stored file, in seconds since the epoch."""
    return st.st_mtime_ns / 1e9


def _space_etag(raw: bytes) -> str:
    """A strong etag over a ``_meta.json``'s bytes: a space whose record is unchanged keeps it."""
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def _data_etag(data_path: str) -> str | None:
    """The etag of the resource whose ``.data`` is ``data_path``, or ``None`` when there is none."""
    try:
        return _etag(os.stat(data_path))
    except (FileNotFoundError, NotADirectoryError):
        return None


@contextlib.contextmanager
def _flocked(directory: str) -> Iterator[int]:
    """An exclusive ``flock`` on ``directory`` (no extra file): the lock other processes share.

    ``FileNotFoundError`` when the directory is gone.  Yields its descriptor,
    so a holder can check the path still names the directory it locked.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)  # releases the lock


class _Slice:
    """At most ``length`` bytes of an open file from where it stands: a ``Range`` read."""

    def __init__(self, f: IO[bytes], length: int) -> None:
        self._f = f
        self._left = length

    def read(self, size: int = -1) -> bytes:
        n = self._left if size is None or size < 0 else min(size, self._left)
        data = self._f.read(n) if n > 0 else b""
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> _Slice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_O_READ = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_O_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _read_fd(fd: int, size_hint: int = _CHUNK) -> bytes:
    """Everything left in an open regular file, by plain ``read`` calls (no file object: fewer calls).

    A read of a regular file returns less than asked only at its end, so a
    small file (a ``.meta``, a record) costs one ``read``, not two.
    """
    size_hint = max(size_hint, 1)
    first = os.read(fd, size_hint)
    if len(first) < size_hint:
        return first
    parts = [first]
    while chunk := os.read(fd, _CHUNK):
        parts.append(chunk)
    return first if len(parts) == 1 else b"".join(parts)


def _pread_all(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes of ``fd`` from ``offset`` (fewer only at the end of the file)."""
    data = os.pread(fd, length, offset)
    if len(data) == length or not data:
        return data
    parts = [data]
    got = len(data)
    while got < length and (chunk := os.pread(fd, length - got, offset + got)):
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def _read_file(path: str) -> bytes:
    """A small file's bytes: ``open``, ``read`` to the end, ``close`` (``OSError``s pass through)."""
    fd = os.open(path, _O_READ)
    try:
        return _read_fd(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (``write`` may take less than asked)."""
    while data:
        n = os.write(fd, data)
        data = memoryview(data)[n:] if n < len(data) else b""


def _read_json(path: str) -> object:
    """A JSON file's document (``FileNotFoundError`` passes through; other failures are ``ValueError``)."""
    return json.loads(_read_file(path).decode("utf-8"))


def _stored_content_type(meta_path: str) -> str | None:
    """The type a ``.meta`` holds, or ``None`` when it is missing, unreadable or malformed."""
    try:
        doc = _read_json(meta_path)
    except (OSError, ValueError):
        return None
    if isinstance(doc, dict):
        ct = doc.get("content_type")
        if isinstance(ct, str) and ct:
            return ct
    return None


def _read_content_type(meta_path: str) -> str:
    """The type to serve: the stored one, or the default when the ``.meta`` is missing (as the old server)."""
    return _stored_content_type(meta_path) or DEFAULT_CONTENT_TYPE


class _TempNames:
    """The per-process part of temp file names (see ``FilesystemTree._temp_file``)."""

    def __init__(self) -> None:
        self.renew()

    def renew(self) -> None:
        self.token = secrets.token_hex(6)
        self.counter = itertools.count()


_temp_names = _TempNames()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_temp_names.renew)


class _SpaceLocks:
    """One space's locks: ``write`` spans guard to last rename; ``commit`` only the renames.

    Readers take ``commit`` to open ``.data`` and read ``.meta`` as one pair,
    so they never wait behind a long body copy yet never pair bytes with
    another write's type.  Weak-referenceable, so idle spaces cost nothing.
    """

    __slots__ = ("write", "commit", "__weakref__")

    def __init__(self) -> None:
        self.write = threading.Lock()
        self.commit = threading.Lock()


class FilesystemTree:
    """The tree under ``root``, its locks, and the group commit every durable change goes through.

    ``fsync=False`` (``WAS_FSYNC=off``) skips every flush: a crash of the
    machine may then lose acknowledged writes (files stay whole: the renames
    still protect readers and a killed process).  ``flush`` overrides how a
    batch is flushed (tests, benchmarks).
    """

    def __init__(
        self, root: str | os.PathLike[str], *, fsync: bool = True, flush: Flush | None = None
    ) -> None:
        self._root = os.fspath(root)
        self._commit = GroupCommit(flush if fsync else no_flush)
        #: Directories renamed into during the current ``batched`` call, per thread (``None``: not in one).
        self._deferred = threading.local()
        #: Parsed space records by id, with the ``stat`` of the file they came from (see ``_load_space``).
        self._spaces_seen: dict[str, tuple[tuple[int, ...], SpaceRecord]] = {}
        self._spaces_dir = os.path.join(self._root, "spaces")
        os.makedirs(self._spaces_dir, exist_ok=True)
        self._locks_lock = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, _SpaceLocks] = weakref.WeakValueDictionary()
        self._recent_locks: dict[str, _SpaceLocks] = {}
        self._stamp_lock = threading.Lock()
        self._last_stamp = 0

    # -- durability -------------------------------------------------------

    def batched(self, f: Callable[..., T], *args: Any) -> T:
        """Run ``f(*args)`` (one storage call, maybe a composite) with its directory flushes merged.

        Inside, the final round of each write (its renamed names) is put off
        and joins the next flush on this thread -- the next write's round 1
        (its temp files), or the one at the end of ``f`` -- so a composite
        that writes twice (content, then its metadata record) waits for three
        flushes, not four.  Everything is durable before this returns (and if
        that last flush fails, so does the call): the answer still comes after
        the flush.  ``threaded.AsyncStorage`` runs every call through this.
        """
        if getattr(self._deferred, "dirs", None) is not None:
            return f(*args)  # nested: the outer call flushes
        self._deferred.dirs = []
        try:
            result = f(*args)
        finally:
            dirs, self._deferred.dirs = self._deferred.dirs, None
            if dirs:
                self._commit.sync(dirs=dirs)
        return result

    def _sync_files(self, files: Sequence[int]) -> None:
        """Round 1 of a write: ``files`` (temp files, no name yet) on disk, with any put-off directories."""
        dirs = getattr(self._deferred, "dirs", None)
        if dirs:
            self._deferred.dirs = []
            self._commit.sync(files=files, dirs=dirs)
        else:
            self._commit.sync(files=files)

    def _sync_dirs(self, dirs: Sequence[str]) -> None:
        """The last round of a write: the names renamed into ``dirs`` on disk (put off inside ``batched``)."""
        pending = getattr(self._deferred, "dirs", None)
        if pending is None:
            self._commit.sync(dirs=dirs)
        else:
            pending.extend(dirs)

    # -- helpers ---------------------------------------------------------

    def _space_locks(self, space_id: str) -> _SpaceLocks:
        """One space's locks; they live while someone references them, so keep the result in a local.

        The weak map is what makes them one per space; ``_recent_locks`` only
        keeps the last few thousand alive between calls, so a busy space's
        locks are found without a lock or a new weak entry per request.
        """
        locks = self._recent_locks.get(space_id)
        if locks is not None:
            return locks
        with self._locks_lock:
            locks = self._locks.get(space_id)
            if locks is None:
                locks = _SpaceLocks()
                self._locks[space_id] = locks
            if len(self._recent_locks) >= _SPACES_SEEN:
                self._recent_locks = {}
            self._recent_locks[space_id] = locks
            return locks

    def _stamp(self) -> int:
        """A strictly increasing mtime, so two same-size writes in one clock tick differ in etag."""
        with self._stamp_lock:
            self._last_stamp = max(time.time_ns(), self._last_stamp + 1)
            return self._last_stamp

    def _space_dir(self, space_id: str) -> str:
        _check_space_id(space_id)
        return os.path.join(self._spaces_dir, space_id)

    def _resources_dir(self, space_id: str) -> str:
        return os.path.join(self._space_dir(space_id), "resources")

    def _records_dir(self, space_id: str, kind: str) -> str:
        check_record(kind)
        return os.path.join(self._space_dir(space_id), kind)

    def _load_space(self, space_id: str) -> SpaceRecord | None:
        """Read ``_meta.json``; ``None`` if absent, ``StorageError`` if present but unreadable.

        A PUT looks its space up three times and a GET once, so a parsed
        record is kept per space and reused while a ``stat`` shows the same
        file (device, inode, mtime, ctime, size): every write of it is a
        rename of a new file, so any change shows.  (Only another program
        rewriting it in place, same size, within one clock tick, could go
        unseen; one process per data directory.)
        """
        if not _fits(space_id):
            return None
        meta = os.path.join(self._space_dir(space_id), _META)
        try:
            st = os.stat(meta)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise StorageError(f"cannot read {meta}: {e}") from e
        key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        seen = self._spaces_seen.get(space_id)
        if seen is not None and seen[0] == key:
            return seen[1]
        try:
            raw = _read_file(meta)
            doc = json.loads(raw.decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot read {meta}: {e}") from e
        if not isinstance(doc, dict) or "controller" not in doc:
            raise StorageError(f"{meta} is not a space document")
        record = dataclasses.replace(SpaceRecord.from_json(space_id, doc), etag=_space_etag(raw))
        if len(self._spaces_seen) >= _SPACES_SEEN:
            self._spaces_seen.clear()
        # Keyed by the stat before the read: if the file was replaced in between, the next stat differs.
        self._spaces_seen[space_id] = (key, record)
        return record

    @contextlib.contextmanager
    def _temp_file(self, directory: str) -> Iterator[tuple[int, str]]:
        """A new temp file in ``directory`` (so the rename stays on one file system): (descriptor, path).

        Closed on exit, and removed unless renamed.  The name is
        ``.tmp-{random}-{n}``: a token drawn once per process (again in a forked
        child) and a counter, made with ``O_EXCL`` so a clash is never shared,
        only retried; cheaper than ``tempfile``'s six random letters each time.
        """
        while True:
            tmp = os.path.join(directory, f"{_TMP_PREFIX}{_temp_names.token}-{next(_temp_names.counter)}")
            try:
                fd = os.open(tmp, _O_TEMP, 0o600)
                break
            except FileExistsError:
                _temp_names.renew()
        try:
            yield fd, tmp
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        finally:
            os.close(fd)

    def _temp_in(self, temps: contextlib.ExitStack, directory: str) -> tuple[int, str, tuple[str, ...]]:
        """A temp file in ``directory`` (closed with ``temps``), making the directory if it is missing.

        Returns (descriptor, path, new names): the space directory when
        ``directory`` was made now (its new entry must be flushed with the
        write's renames).  The directory is made only after creating the file
        failed, so a write into an existing directory costs no ``mkdir``; and
        by ``mkdir``, not ``makedirs``: a space deleted meanwhile must not come
        back (``FileNotFoundError`` then, for the caller to report).
        """
        try:
            fd, tmp = temps.enter_context(self._temp_file(directory))
            return fd, tmp, ()
        except FileNotFoundError:
            pass
        made: tuple[str, ...] = ()
        try:
            os.mkdir(directory)
            made = (os.path.dirname(directory),)
        except FileExistsError:
            pass
        fd, tmp = temps.enter_context(self._temp_file(directory))
        return fd, tmp, made

    @contextlib.contextmanager
    def _staged(self, directory: str, data: bytes) -> Iterator[tuple[str, tuple[str, ...]]]:
        """A temp file in ``directory`` holding ``data``, already on disk (round 1); removed unless renamed.

        Yields its path and the new names to flush with the rename (see
        ``_temp_in``: the directory is made if missing).  Staging needs no
        lock: the caller takes its locks only for the checks and the rename,
        never across a flush that other writers would wait for.
        """
        with contextlib.ExitStack() as temps:
            fd, tmp, made = self._temp_in(temps, directory)
            _write_all(fd, data)
            self._sync_files((fd,))
            try:
                yield tmp, made
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)  # not renamed: the caller decided against it (or failed)

    def _replace_atomically(self, target: str, data: bytes, dirs: tuple[str, ...] = ()) -> None:
        """Write a small file whole and durably: temp file, flush, rename, flush its directory.

        Both flushes are group-commit rounds (``filesystem_commit``); ``dirs``
        are further directories to make durable in the second (one whose new
        entry made ``target``'s directory, say).
        """
        directory = os.path.dirname(target)
        with self._staged(directory, data) as (tmp, made):
            os.replace(tmp, target)
        self._sync_dirs((directory, *made, *dirs))
