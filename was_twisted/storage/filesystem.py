"""The zero-config embedded backend: files under one directory, in the existing Python server's layout.

A data directory the existing server wrote serves unchanged, and vice versa::

    {root}/spaces/{space_id}/_meta.json                       {"id": ..., "controller": ...}
    {root}/spaces/{space_id}/resources/{quote(path)}.data     the bytes
    {root}/spaces/{space_id}/resources/{quote(path)}.meta     {"content_type": ...}

``quote`` is ``urllib.parse.quote(path, safe="")`` of the path *with* its
leading slash, so ``/notes/a.txt`` is ``%2Fnotes%2Fa.txt.data``.

Beside ``resources/``, ours only (the existing server never looks there)::

    {root}/spaces/{space_id}/policies/{quote(name)}.json       one policy document
    {root}/spaces/{space_id}/revocations/{quote(name)}.json    one zCap revocation

(``base.record_stem``: also escapes a leading ``.`` or ``_``.)

Every file is written whole to a ``.tmp-*`` file in the same directory,
fsynced and renamed into place, so readers and crashes see an old file or a
new one, never part of one.  Names starting with ``.`` are never a space or
a resource (quoted paths start with ``%2F``), which is what lets temp files
and tombstones share the directories safely.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Iterator, Sequence
from typing import IO, TYPE_CHECKING, BinaryIO
from urllib.parse import quote, unquote

from was_twisted.storage.base import (
    DEFAULT_CONTENT_TYPE,
    RECORD_SUFFIX,
    Backend,
    Builder,
    Guard,
    KeyTooLong,
    ResourceInfo,
    SpaceMissing,
    SpaceRecord,
    StorageError,
    StoredResource,
    check_record,
    record_stem,
)

__all__ = ["FilesystemBackend"]

_CHUNK = 64 * 1024
_NAME_MAX = 255
_TMP_PREFIX = ".tmp-"
_META = "_meta.json"
_DATA_SUFFIX = ".data"
_META_SUFFIX = ".meta"


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


def _record_file(name: str) -> str:
    """A record's file name (see ``record_stem``: never a dot-file, so never taken for a temp file)."""
    return record_stem(name) + RECORD_SUFFIX


def _read_record(path: str) -> bytes | None:
    """A record file's bytes, or ``None`` when it (or its space) is gone."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return None
        raise StorageError(f"cannot read {path}: {e}") from e


def _etag(st: os.stat_result) -> str:
    """A strong etag from mtime and size; each write sets a fresh mtime (see ``_stamp``)."""
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


def _fsync_dir(path: str) -> None:
    """Make renames and unlinks in ``path`` durable; a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_json(path: str) -> object:
    """A JSON file's document (``FileNotFoundError`` passes through; other failures are ``ValueError``)."""
    with open(path, "rb") as f:
        raw = f.read()
    return json.loads(raw.decode("utf-8"))


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


class FilesystemBackend:
    """A ``Backend`` storing files under ``root``; data survives restarts.

    Writers of one space hold that space's write lock from the guard to the
    last rename, so a guard and the write it allows are atomic within this
    process.  Across processes there is no lock: renames keep every file
    whole, and a delete renames the space away before removing it.
    Readers take only the short commit lock (see ``_SpaceLocks``).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self._root = os.fspath(root)
        self._spaces_dir = os.path.join(self._root, "spaces")
        os.makedirs(self._spaces_dir, exist_ok=True)
        self._locks_lock = threading.Lock()
        self._locks: weakref.WeakValueDictionary[str, _SpaceLocks] = weakref.WeakValueDictionary()
        self._stamp_lock = threading.Lock()
        self._last_stamp = 0

    # -- helpers ---------------------------------------------------------

    def _space_locks(self, space_id: str) -> _SpaceLocks:
        """One space's locks; they live while someone references them, so keep the result in a local."""
        with self._locks_lock:
            locks = self._locks.get(space_id)
            if locks is None:
                locks = _SpaceLocks()
                self._locks[space_id] = locks
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
        """Read ``_meta.json``; ``None`` if absent, ``StorageError`` if present but unreadable."""
        if not _fits(space_id):
            return None
        meta = os.path.join(self._space_dir(space_id), _META)
        try:
            doc = _read_json(meta)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise StorageError(f"cannot read {meta}: {e}") from e
        if not isinstance(doc, dict) or "controller" not in doc:
            raise StorageError(f"{meta} is not a space document")
        return SpaceRecord.from_json(space_id, doc)

    @contextlib.contextmanager
    def _temp_file(self, directory: str) -> Iterator[tuple[IO[bytes], str]]:
        """A temp file in ``directory`` (so the rename stays on one file system); removed unless renamed."""
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=_TMP_PREFIX)
        try:
            with os.fdopen(fd, "wb") as f:
                yield f, tmp
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _replace_atomically(self, target: str, data: bytes) -> None:
        """Write a small file whole: temp file, fsync, rename."""
        directory = os.path.dirname(target)
        with self._temp_file(directory) as (f, tmp):
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)

    # -- spaces ----------------------------------------------------------

    def get_space(self, space_id: str) -> SpaceRecord | None:
        """The space, or ``None``."""
        return self._load_space(space_id)

    def put_space(self, space_id: str, build: Builder) -> tuple[bool, SpaceRecord]:
        """Write ``build(current)`` as ``_meta.json``; (created?, record).  Resources are untouched."""
        space_dir = self._space_dir(space_id)
        if not _fits(space_id):
            raise KeyTooLong(f"space id is over {_NAME_MAX} bytes")
        locks = self._space_locks(space_id)
        with locks.write:
            current = self._load_space(space_id)
            record = build(current)
            if record.space_id != space_id:
                raise ValueError(f"built record is for {record.space_id!r}, not {space_id!r}")
            os.makedirs(space_dir, exist_ok=True)
            doc = json.dumps(record.to_json(), ensure_ascii=False)
            self._replace_atomically(os.path.join(space_dir, _META), doc.encode("utf-8"))
            _fsync_dir(space_dir)
            if current is None:
                _fsync_dir(self._spaces_dir)
            return current is None, record

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Delete a space, its resources and its records after ``guard(current)``; True if it existed.

        The directory is first renamed to ``spaces/.deleting-*`` so the space
        vanishes in one step (a concurrent writer's rename then fails or lands
        in the tombstone), and only then removed; a crash mid-removal leaves a
        dot-directory that nothing reads.  Resources, policies, revocations and
        ``_meta.json`` go in that one rename, so no order of removal can ever
        show resources without their records.
        """
        space_dir = self._space_dir(space_id)
        locks = self._space_locks(space_id)
        with locks.write:
            current = self._load_space(space_id)
            guard(current)
            if current is None:
                return False
            tomb = os.path.join(self._spaces_dir, f".deleting-{space_id}-{uuid.uuid4().hex}")
            if not _fits(os.path.basename(tomb)):
                tomb = os.path.join(self._spaces_dir, f".deleting-{uuid.uuid4().hex}")
            try:
                with locks.commit:
                    os.rename(space_dir, tomb)
            except FileNotFoundError:
                return False
            _fsync_dir(self._spaces_dir)
        shutil.rmtree(tomb, ignore_errors=True)
        return True

    def list_spaces(self, controller: str) -> list[str]:
        """Scan ``spaces/*/_meta.json``; dot-directories and unreadable documents are skipped, not fatal."""
        found: list[str] = []
        try:
            entries = list(os.scandir(self._spaces_dir))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if not entry.is_dir():
                    continue
                record = self._load_space(entry.name)
            except (OSError, StorageError, ValueError, KeyError, TypeError):
                continue
            if record is not None and record.controller == controller:
                found.append(record.space_id)
        found.sort()
        return found

    # -- resources -------------------------------------------------------

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The space and the open ``.data`` file (each ``None`` when absent); the caller closes it.

        The ``.data`` is opened before the ``.meta`` is read: writers replace
        ``.meta`` first, so new bytes always come with their own type (see
        ``write_resource``).  Size and etag come from the open descriptor, so
        they describe exactly the bytes served even if a write lands now.
        """
        space = self._load_space(space_id)
        if space is None:
            return None, None
        stem = _resource_stem(path)
        if not _fits(stem + _DATA_SUFFIX):
            return space, None
        base = os.path.join(self._resources_dir(space_id), stem)
        locks = self._space_locks(space_id)
        with locks.commit:
            try:
                f = open(base + _DATA_SUFFIX, "rb")  # noqa: SIM115 - the caller closes it
            except (FileNotFoundError, NotADirectoryError):
                return space, None
            try:
                st = os.fstat(f.fileno())
                content_type = _read_content_type(base + _META_SUFFIX)
            except BaseException:
                f.close()
                raise
        return space, StoredResource(ResourceInfo(content_type, st.st_size, _etag(st)), f)

    def write_resource(
        self, space_id: str, path: str, body: BinaryIO, content_type: str, guard: Guard
    ) -> ResourceInfo:
        """Stream ``body`` to disk after ``guard(space)``; ``SpaceMissing`` if the space is absent.

        Order: the bytes (and a changed ``.meta``) go to temp files and are
        fsynced first (nothing visible yet); then ``.meta`` is renamed into
        place, then ``.data``, back to back.
        ``.data`` is the existence marker, so:

        * a new resource is invisible until its bytes land, and by then its
          type is in place; writing ``.data`` first would briefly serve it as
          ``application/octet-stream``;
        * an overwrite that keeps its type (the common case) does not touch
          ``.meta`` at all, so readers see old or new bytes, each rightly typed;
        * an overwrite that changes type renames both under the commit lock,
          so readers in this process see a matching pair; another process, or
          a crash between the renames, may pair the *old* bytes with the new
          type -- never new bytes with a stale type;
        * a crash before the ``.data`` rename of a new resource leaves a lone
          ``.meta`` that nothing lists or serves, and the next write replaces.
        """
        stem = _resource_stem(path)
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None:
                raise SpaceMissing(f"space {space_id!r} does not exist")
            if not _fits(stem + _DATA_SUFFIX):
                raise KeyTooLong(f"resource file name is over {_NAME_MAX} bytes")
            res_dir = self._resources_dir(space_id)
            try:
                os.mkdir(res_dir)  # not makedirs: a space deleted meanwhile must not come back
            except FileExistsError:
                pass
            except FileNotFoundError as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            base = os.path.join(res_dir, stem)
            content_type = content_type or DEFAULT_CONTENT_TYPE
            try:
                with self._temp_file(res_dir) as (f, tmp):
                    shutil.copyfileobj(body, f, _CHUNK)
                    f.flush()
                    stamp = self._stamp()
                    os.utime(f.fileno() if os.utime in os.supports_fd else tmp, ns=(stamp, stamp))
                    os.fsync(f.fileno())
                    st = os.fstat(f.fileno())
                    if _stored_content_type(base + _META_SUFFIX) == content_type:
                        with locks.commit:
                            os.replace(tmp, base + _DATA_SUFFIX)
                    else:
                        meta = json.dumps({"content_type": content_type}, ensure_ascii=False)
                        with self._temp_file(res_dir) as (mf, mtmp):
                            mf.write(meta.encode("utf-8"))
                            mf.flush()
                            os.fsync(mf.fileno())
                            with locks.commit:
                                os.replace(mtmp, base + _META_SUFFIX)
                                os.replace(tmp, base + _DATA_SUFFIX)
            except FileNotFoundError as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:
                    raise KeyTooLong(str(e)) from e
                raise
            _fsync_dir(res_dir)
            return ResourceInfo(content_type, st.st_size, _etag(st))

    def delete_resource(self, space_id: str, path: str, guard: Guard) -> bool:
        """Delete one resource after ``guard(space)``; True if it existed.

        ``.data`` goes first: it is the existence marker, so a crash between
        the two unlinks leaves only an invisible ``.meta``.
        """
        stem = _resource_stem(path)
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None or not _fits(stem + _DATA_SUFFIX):
                return False
            res_dir = self._resources_dir(space_id)
            base = os.path.join(res_dir, stem)
            with locks.commit:
                try:
                    os.unlink(base + _DATA_SUFFIX)
                except (FileNotFoundError, NotADirectoryError):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(base + _META_SUFFIX)
            _fsync_dir(res_dir)
            return True

    def list_resources(self, space_id: str, prefix: str, guard: Guard) -> list[tuple[str, ResourceInfo]]:
        """Resources under ``prefix``, sorted, post-``guard``; temp files and lone ``.meta`` skipped."""
        space = self._load_space(space_id)
        guard(space)
        if space is None:
            return []
        res_dir = self._resources_dir(space_id)
        try:
            entries = list(os.scandir(res_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found: list[tuple[str, ResourceInfo]] = []
        locks = self._space_locks(space_id)
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not name.endswith(_DATA_SUFFIX):
                continue
            stem = name[: -len(_DATA_SUFFIX)]
            path = unquote(stem)
            if not path.startswith(prefix):
                continue
            with locks.commit:
                try:
                    st = os.stat(entry.path)  # not entry.stat(): scandir may have cached an older file
                except FileNotFoundError:
                    continue  # deleted while we listed
                content_type = _read_content_type(os.path.join(res_dir, stem + _META_SUFFIX))
            found.append((path, ResourceInfo(content_type, st.st_size, _etag(st))))
        found.sort(key=lambda item: item[0])
        return found

    # -- records ---------------------------------------------------------

    def get_records(self, space_id: str, kind: str, names: Sequence[str]) -> dict[str, bytes]:
        """The named records that exist; {} if the space is absent.  No guard, no lock: files are whole."""
        rec_dir = self._records_dir(space_id, kind)
        for name in names:
            check_record(kind, name)
        if self._load_space(space_id) is None:
            return {}
        found: dict[str, bytes] = {}
        for name in names:
            file_name = _record_file(name)
            if name in found or not _fits(file_name):
                continue
            data = _read_record(os.path.join(rec_dir, file_name))
            if data is not None:
                found[name] = data
        return found

    def put_record(self, space_id: str, kind: str, name: str, data: bytes, guard: Guard) -> bool:
        """Replace one record file atomically after ``guard(space)``; True if it is new."""
        rec_dir = self._records_dir(space_id, kind)
        check_record(kind, name)
        file_name = _record_file(name)
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None:
                raise SpaceMissing(f"space {space_id!r} does not exist")
            if not _fits(file_name):
                raise KeyTooLong(f"record file name is over {_NAME_MAX} bytes")
            made = False
            try:
                os.mkdir(rec_dir)  # not makedirs: a space deleted meanwhile must not come back
                made = True
            except FileExistsError:
                pass
            except FileNotFoundError as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            target = os.path.join(rec_dir, file_name)
            created = not os.path.lexists(target)
            try:
                self._replace_atomically(target, bytes(data))
            except FileNotFoundError as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:
                    raise KeyTooLong(str(e)) from e
                raise
            _fsync_dir(rec_dir)
            if made:
                _fsync_dir(os.path.dirname(rec_dir))
            return created

    def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        """Unlink one record file after ``guard(space)``; True if it existed."""
        rec_dir = self._records_dir(space_id, kind)
        check_record(kind, name)
        file_name = _record_file(name)
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None or not _fits(file_name):
                return False
            try:
                os.unlink(os.path.join(rec_dir, file_name))
            except (FileNotFoundError, NotADirectoryError):
                return False
            _fsync_dir(rec_dir)
            return True

    def list_records(self, space_id: str, kind: str, guard: Guard) -> list[tuple[str, bytes]]:
        """Every record of ``kind``, sorted by name, after ``guard``; temp and foreign files skipped."""
        rec_dir = self._records_dir(space_id, kind)
        space = self._load_space(space_id)
        guard(space)
        if space is None:
            return []
        try:
            entries = list(os.scandir(rec_dir))
        except (FileNotFoundError, NotADirectoryError):
            return []
        found: list[tuple[str, bytes]] = []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(RECORD_SUFFIX):
                continue
            name = unquote(entry.name[: -len(RECORD_SUFFIX)])
            if not name or _record_file(name) != entry.name:
                continue  # not a name we would have written: get_records could never find it
            data = _read_record(entry.path)
            if data is not None:
                found.append((name, data))
        found.sort(key=lambda item: item[0])
        return found

    def close(self) -> None:
        """Nothing is held open between calls."""


if TYPE_CHECKING:

    def _conforms(backend: FilesystemBackend) -> Backend:
        """Let mypy check that the class meets the protocol."""
        return backend
