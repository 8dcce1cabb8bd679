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
    {root}/spaces/{space_id}/collections/{id}.json             one created collection
    {root}/spaces/{space_id}/collection-meta/{id}.json         its metadata object
    {root}/spaces/{space_id}/metadata/{quote(path)}.json       one resource's metadata

(``base.record_stem``: also escapes a leading ``.`` or ``_``.)

Every file is written whole to a ``.tmp-*`` file in the same directory,
fsynced and renamed into place, so readers and crashes see an old file or a
new one, never part of one; concurrent writes share their flushes
(``filesystem_commit``: group commit, and why it keeps that promise).
Names starting with ``.`` are never a space or a resource (quoted paths
start with ``%2F``), which is what lets temp files and tombstones share the
directories safely.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import heapq
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, BinaryIO, cast
from urllib.parse import unquote

from was_twisted.storage.base import (
    DEFAULT_CONTENT_TYPE,
    Backend,
    Builder,
    ByteRange,
    Condition,
    Guard,
    KeyTooLong,
    ResourceInfo,
    SpaceMissing,
    SpaceRecord,
    StorageError,
    StoredResource,
    check_condition,
    listing_key,
)

from .filesystem_records import FilesystemRecords
from .filesystem_sweep import TOMBSTONE_PREFIX
from .filesystem_tree import (
    _CHUNK,
    _DATA_SUFFIX,
    _INLINE_BODY,
    _META,
    _META_SUFFIX,
    _NAME_MAX,
    _O_READ,
    _data_etag,
    _etag,
    _fits,
    _flocked,
    _mtime,
    _pread_all,
    _read_content_type,
    _resource_stem,
    _Slice,
    _space_etag,
    _stored_content_type,
    _write_all,
)


class FilesystemBackend(FilesystemRecords):
    """A ``Backend`` storing files under ``root``; data survives restarts.

    Writers of one space hold that space's write lock from the guard to the
    last rename, so a guard and the write it allows are atomic within this
    process.  Across processes, the commit of a resource write or delete
    (the check of its ``Condition`` against the stored ETag, then the
    renames) holds an ``flock`` on the space's directory, and space writes
    one on ``spaces/``: a conditional write is atomic against every writer of
    the data directory, whatever its process.  The lock is taken after the
    body is on disk, so it is held for a stat and a rename or two, never for
    a body's copy.  Renames keep every file whole, and a delete renames the
    space away before removing it.  Readers take only the short commit lock
    (see ``_SpaceLocks``) and never an ``flock``.
    """

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
        with locks.write, _flocked(self._spaces_dir):
            current = self._load_space(space_id)
            record = build(current)
            if record.space_id != space_id:
                raise ValueError(f"built record is for {record.space_id!r}, not {space_id!r}")
            os.makedirs(space_dir, exist_ok=True)
            raw = json.dumps(record.to_json(), ensure_ascii=False).encode("utf-8")
            # A new space's directory is a new name in spaces/: flushed in the same round.
            new_name = (self._spaces_dir,) if current is None else ()
            self._replace_atomically(os.path.join(space_dir, _META), raw, new_name)
            return current is None, dataclasses.replace(record, etag=_space_etag(raw))

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Delete a space, its resources and its records after ``guard(current)``; True if it existed.

        The directory is first renamed to ``spaces/.deleting-*`` so the space
        vanishes in one step (a concurrent writer's rename then fails or lands
        in the tombstone), and only then removed; a crash mid-removal leaves a
        dot-directory that nothing reads and the sweeper removes
        (``filesystem_sweep.py``).  Resources, policies, revocations and
        ``_meta.json`` go in that one rename, so no order of removal can ever
        show resources without their records.
        """
        space_dir = self._space_dir(space_id)
        locks = self._space_locks(space_id)
        with locks.write, _flocked(self._spaces_dir):
            current = self._load_space(space_id)
            guard(current)
            if current is None:
                return False
            tomb = os.path.join(self._spaces_dir, f"{TOMBSTONE_PREFIX}{space_id}-{uuid.uuid4().hex}")
            if not _fits(os.path.basename(tomb)):
                tomb = os.path.join(self._spaces_dir, f"{TOMBSTONE_PREFIX}{uuid.uuid4().hex}")
            try:
                # Waits for commits in flight in other processes; theirs after this find it gone.
                with _flocked(space_dir), locks.commit:
                    os.rename(space_dir, tomb)
            except FileNotFoundError:
                return False
            self._sync_dirs((self._spaces_dir,))
        shutil.rmtree(tomb, ignore_errors=True)
        return True

    def list_spaces(
        self, controller: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """Scan ``spaces/*/_meta.json`` in id order, reading records only until the page is full.

        Dot-directories and unreadable documents are skipped, not fatal.
        """
        found: list[str] = []
        try:
            names = sorted(e.name for e in os.scandir(self._spaces_dir) if not e.name.startswith("."))
        except FileNotFoundError:
            return found
        for name in names:
            if limit is not None and len(found) >= limit:
                break
            if start_after is not None and name <= start_after:
                continue
            try:
                record = self._load_space(name)
            except (OSError, StorageError, ValueError, KeyError, TypeError):
                continue
            if record is not None and record.controller == controller:
                found.append(record.space_id)
        return found

    # -- resources -------------------------------------------------------

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True, byte_range: ByteRange | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The space and the open ``.data`` file (each ``None`` when absent); the caller closes it.

        The ``.data`` is opened before the ``.meta`` is read: writers replace
        ``.meta`` first, so new bytes always come with their own type (see
        ``write_resource``).  Size and etag come from the open descriptor, so
        they describe exactly the bytes served even if a write lands now.
        A ``byte_range`` seeks: only the slice is read.  A body (or slice) up
        to ``_INLINE_BODY`` is read in this call and returned in memory (the
        GET's one pool call then needs no further read); a larger one is an
        open unbuffered file.
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
                fd = os.open(base + _DATA_SUFFIX, _O_READ)
            except (FileNotFoundError, NotADirectoryError):
                return space, None
            try:
                st = os.fstat(fd)
                content_type = _read_content_type(base + _META_SUFFIX)
            except BaseException:
                os.close(fd)
                raise
        info = ResourceInfo(content_type, st.st_size, _etag(st), _mtime(st))
        span = byte_range.resolve(st.st_size) if byte_range is not None and with_body else None
        start, length = (0, st.st_size) if span is None else (span[0], span[1] - span[0] + 1)
        if not with_body or length <= _INLINE_BODY:
            # A small body (or none, for a HEAD) is read here and now: no file object, one read.
            try:
                data = _pread_all(fd, length, start) if with_body else b""
            finally:
                os.close(fd)
            return space, StoredResource(info, io.BytesIO(data), span)
        f = open(fd, "rb", buffering=0, closefd=True)  # noqa: SIM115 - the caller closes it
        if span is None:
            return space, StoredResource(info, cast(BinaryIO, f))
        f.seek(start)
        return space, StoredResource(info, cast(BinaryIO, _Slice(f, length)), span)

    def write_resource(
        self,
        space_id: str,
        path: str,
        body: BinaryIO,
        content_type: str,
        guard: Guard,
        *,
        condition: Condition | None = None,
    ) -> ResourceInfo:
        """Stream ``body`` to disk after ``guard(space)``; ``SpaceMissing`` if the space is absent.

        ``condition`` is checked right after the guard (so a false one costs
        no copy) and again under the space's ``flock``, just before the
        renames (so another process's write in between is seen).

        Order: the bytes (and a changed ``.meta``) go to temp files, made
        durable in one group-commit round shared with concurrent writers
        (nothing is visible yet); then ``.meta`` is renamed into place, then
        ``.data``, back to back; then a second round makes the renames
        durable, and only then does the call return (see
        ``filesystem_commit`` for why two rounds, and why an overwrite's
        rename needs its directory flushed too).
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
            base = os.path.join(res_dir, stem)
            if condition is not None:  # answered before a byte of the body is read; checked again below
                check_condition(condition, _data_etag(base + _DATA_SUFFIX))
        content_type = content_type or DEFAULT_CONTENT_TYPE
        meta_path = base + _META_SUFFIX
        try:
            # The body is copied with no lock held: it may still be arriving from a slow client,
            # and other writes to the space must not wait for it.  The commit below finds out if
            # the space went meanwhile: a delete renames it away, so the renames fail (ENOENT).
            with contextlib.ExitStack() as temps:
                fd, tmp, new_dirs = self._temp_in(temps, res_dir)
                while chunk := body.read(_CHUNK):
                    _write_all(fd, chunk)
                stamp = self._stamp()
                os.utime(fd if os.utime in os.supports_fd else tmp, ns=(stamp, stamp))
                st = os.fstat(fd)
                durable = [fd]
                meta_tmp = None
                if _stored_content_type(meta_path) != content_type:
                    meta_tmp = self._write_meta_temp(temps, res_dir, content_type, durable)
                self._sync_files(durable)  # round 1: the bytes, before any name points at them
                with locks.write:
                    if _stored_content_type(meta_path) == content_type:
                        if meta_tmp is not None:  # another write just stored this type
                            os.unlink(meta_tmp)
                            meta_tmp = None
                    elif meta_tmp is None:  # another write just changed the type: rare, flushed alone
                        meta_tmp = self._write_meta_temp(temps, res_dir, content_type, None)
                    with self._committing(space_id, base, condition, renames=True), locks.commit:
                        existed = os.path.lexists(base + _DATA_SUFFIX)  # under the flock: what this replaces
                        if meta_tmp is not None:
                            os.replace(meta_tmp, meta_path)
                        os.replace(tmp, base + _DATA_SUFFIX)
        except FileNotFoundError as e:
            raise SpaceMissing(f"space {space_id!r} was deleted") from e
        except OSError as e:
            if e.errno == errno.ENAMETOOLONG:
                raise KeyTooLong(str(e)) from e
            raise
        self._sync_dirs((res_dir, *new_dirs))  # round 2: the renames
        return ResourceInfo(content_type, st.st_size, _etag(st), _mtime(st), existed=existed)

    def _write_meta_temp(
        self, temps: contextlib.ExitStack, res_dir: str, content_type: str, durable: list[int] | None
    ) -> str:
        """A ``.meta`` temp file holding ``content_type``, removed on exit unless renamed.

        Its descriptor joins ``durable`` (the caller's next flush round), or,
        with ``None``, is flushed here and now.
        """
        mfd, mtmp = temps.enter_context(self._temp_file(res_dir))
        _write_all(mfd, json.dumps({"content_type": content_type}, ensure_ascii=False).encode("utf-8"))
        if durable is None:
            self._sync_files((mfd,))
        else:
            durable.append(mfd)
        return mtmp

    @contextlib.contextmanager
    def _committing(
        self, space_id: str, base: str, condition: Condition | None, *, renames: bool = False
    ) -> Iterator[None]:
        """Hold the space directory's ``flock`` while a write or delete commits; check ``condition``.

        ``SpaceMissing`` when the directory was deleted (or deleted and made
        again) while its ``flock`` was awaited: the commit would land in a
        tombstone.  A commit that only ``renames`` temp files made in the
        space's own directory needs no such check (one ``stat`` and ``fstat``
        fewer): if the directory at that path is no longer the one they are
        in, the first rename fails (``ENOENT``), which its caller reports as
        ``SpaceMissing`` too.
        """
        space_dir = self._space_dir(space_id)
        with contextlib.ExitStack() as stack:
            try:
                fd = stack.enter_context(_flocked(space_dir))
                same = renames or os.stat(space_dir).st_ino == os.fstat(fd).st_ino
            except (FileNotFoundError, NotADirectoryError) as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            if not same:
                raise SpaceMissing(f"space {space_id!r} was deleted")
            if condition is not None:
                check_condition(condition, _data_etag(base + _DATA_SUFFIX))
            yield

    def delete_resource(
        self, space_id: str, path: str, guard: Guard, *, condition: Condition | None = None
    ) -> bool:
        """Delete one resource after ``guard(space)`` and ``condition``; True if it existed.

        ``.data`` goes first: it is the existence marker, so a crash between
        the two unlinks leaves only an invisible ``.meta``.
        """
        stem = _resource_stem(path)
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None or not _fits(stem + _DATA_SUFFIX):
                check_condition(condition, None)
                return False
            res_dir = self._resources_dir(space_id)
            base = os.path.join(res_dir, stem)
            try:
                with self._committing(space_id, base, condition), locks.commit:
                    try:
                        os.unlink(base + _DATA_SUFFIX)
                    except (FileNotFoundError, NotADirectoryError):
                        return False
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(base + _META_SUFFIX)
            except SpaceMissing:
                check_condition(condition, None)
                return False
            self._sync_dirs((res_dir,))
            return True

    def list_resources(
        self,
        space_id: str,
        prefix: str,
        guard: Guard,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ResourceInfo]]:
        """Resources under ``prefix`` in ``listing_key`` order, post-``guard``; a page of them.

        The directory is flat, so every name is looked at, but only the page's
        ``limit`` smallest names are kept (a heap) and only they are stat'ed.
        Temp files and lone ``.meta`` files are skipped.
        """
        space = self._load_space(space_id)
        guard(space)
        if space is None:
            return []
        res_dir = self._resources_dir(space_id)
        quoted_prefix = listing_key(prefix)
        after = None if start_after is None else listing_key(start_after)

        def stems() -> Iterator[str]:
            with os.scandir(res_dir) as entries:
                for entry in entries:
                    name = entry.name
                    if name.startswith(".") or not name.endswith(_DATA_SUFFIX):
                        continue
                    stem = name[: -len(_DATA_SUFFIX)]
                    if stem.startswith(quoted_prefix) and (after is None or stem > after):
                        yield stem

        try:
            chosen = sorted(stems()) if limit is None else heapq.nsmallest(limit, stems())
        except (FileNotFoundError, NotADirectoryError):
            return []
        found: list[tuple[str, ResourceInfo]] = []
        locks = self._space_locks(space_id)
        for stem in chosen:
            with locks.commit:
                try:
                    st = os.stat(os.path.join(res_dir, stem + _DATA_SUFFIX))
                except FileNotFoundError:
                    continue  # deleted while we listed
                content_type = _read_content_type(os.path.join(res_dir, stem + _META_SUFFIX))
            found.append((unquote(stem), ResourceInfo(content_type, st.st_size, _etag(st), _mtime(st))))
        return found

    def delete_resources(self, space_id: str, prefix: str, guard: Guard) -> int:
        """Unlink every resource under ``prefix`` after ``guard(space)``, holding the space's write lock.

        Each goes as ``delete_resource`` does (``.data``, the existence
        marker, first); one directory fsync at the end.
        """
        if not prefix.startswith("/"):
            raise ValueError(f"prefix must start with '/': {prefix!r}")
        locks = self._space_locks(space_id)
        with locks.write:
            space = self._load_space(space_id)
            guard(space)
            if space is None:
                return 0
            res_dir = self._resources_dir(space_id)
            try:
                entries = list(os.scandir(res_dir))
            except (FileNotFoundError, NotADirectoryError):
                return 0
            deleted = 0
            for entry in entries:
                name = entry.name
                if name.startswith(".") or not name.endswith(_DATA_SUFFIX):
                    continue
                stem = name[: -len(_DATA_SUFFIX)]
                if not unquote(stem).startswith(prefix):
                    continue
                with locks.commit:
                    try:
                        os.unlink(entry.path)
                    except FileNotFoundError:
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(res_dir, stem + _META_SUFFIX))
                deleted += 1
            if deleted:
                self._sync_dirs((res_dir,))
            return deleted

    def ping(self) -> None:
        """The data directory is still a directory this user may write (not unmounted, not read-only)."""
        if not os.path.isdir(self._spaces_dir) or not os.access(self._spaces_dir, os.W_OK | os.X_OK):
            raise StorageError(f"{self._spaces_dir} is not a writable directory")

    def close(self) -> None:
        """Nothing is held open between calls; the group commit's idle helper threads go."""
        self._commit.close()


if TYPE_CHECKING:

    def _conforms(backend: FilesystemBackend) -> Backend:
        """Let mypy check that the class meets the protocol."""
        return backend
