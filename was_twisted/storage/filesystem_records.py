"""Records beside a space on disk (``RECORD_KINDS``): ``{root}/spaces/{id}/{kind}/{name}.json``.

A resource's metadata record is named by its path (``metadata/%2Fnotes%2Fa.txt.json``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from urllib.parse import unquote

from was_twisted.storage.base import (
    RECORD_SUFFIX,
    Condition,
    Guard,
    KeyTooLong,
    PreconditionFailed,
    ResourceInfo,
    ResourceMeta,
    SpaceMissing,
    SpaceRecord,
    StorageError,
    check_record,
    record_etag,
    record_stem,
)

from .filesystem_tree import (
    _DATA_SUFFIX,
    _META_SUFFIX,
    _NAME_MAX,
    FilesystemTree,
    _etag,
    _fits,
    _read_content_type,
    _read_file,
    _resource_stem,
)


def _record_file(name: str) -> str:
    """A record's file name (see ``record_stem``: never a dot-file, so never taken for a temp file)."""
    return record_stem(name) + RECORD_SUFFIX


def _read_record(path: str) -> bytes | None:
    """A record file's bytes, or ``None`` when it (or its space) is gone."""
    try:
        return _read_file(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        if e.errno == errno.ENAMETOOLONG:
            return None
        raise StorageError(f"cannot read {path}: {e}") from e


class FilesystemRecords(FilesystemTree):
    """The records half of the ``Backend`` contract."""

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

    def put_record(
        self,
        space_id: str,
        kind: str,
        name: str,
        data: bytes,
        guard: Guard,
        condition: Condition | None = None,
    ) -> bool:
        """Replace one record file atomically after ``guard(space)`` and ``condition``; True if it is new.

        The condition is checked under the space's write lock, which every
        writer of the space holds: atomic within this process (one process
        per data directory).
        """
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
            if condition is not None:
                current = _read_record(target)
                if not condition.holds(None if current is None else record_etag(current)):
                    raise PreconditionFailed(f"{kind}/{name}")
            try:
                # A directory made now is a new name in the space's directory: flushed with the record.
                self._replace_atomically(target, bytes(data), (os.path.dirname(rec_dir),) if made else ())
            except FileNotFoundError as e:
                raise SpaceMissing(f"space {space_id!r} was deleted") from e
            except OSError as e:
                if e.errno == errno.ENAMETOOLONG:
                    raise KeyTooLong(str(e)) from e
                raise
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
            self._sync_dirs((rec_dir,))
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

    # -- resource metadata -----------------------------------------------

    def read_resource_meta(self, space_id: str, path: str) -> tuple[SpaceRecord | None, ResourceMeta | None]:
        """The space, the ``.data`` file's size and mtime with the ``.meta`` type, and the record."""
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
                st = os.stat(base + _DATA_SUFFIX)
            except (FileNotFoundError, NotADirectoryError):
                return space, None
            content_type = _read_content_type(base + _META_SUFFIX)
        file_name = _record_file(path)
        record = None
        if _fits(file_name):
            record = _read_record(os.path.join(self._records_dir(space_id, "metadata"), file_name))
        info = ResourceInfo(content_type, st.st_size, _etag(st))
        return space, ResourceMeta(info, st.st_mtime_ns / 1e9, record)

    def put_resource_meta(self, space_id: str, path: str, data: bytes) -> None:
        """Replace the record file atomically; nothing if the space is gone (or the name cannot fit)."""
        self._write_resource_meta(space_id, path, data, replace=True)

    def create_resource_meta(self, space_id: str, path: str, data: bytes) -> bool:
        """Link a staged file into place, which fails if a record exists: atomic across processes.

        An existing record is seen first without staging anything, so an
        overwrite of a recorded resource costs one ``stat`` and no flush.
        """
        return self._write_resource_meta(space_id, path, data, replace=False)

    def _write_resource_meta(self, space_id: str, path: str, data: bytes, *, replace: bool) -> bool:
        """Stage, then rename (``replace``) or link (only if absent) the record file: whether written."""
        rec_dir = self._records_dir(space_id, "metadata")
        file_name = _record_file(path)
        if not _fits(file_name):
            return False  # a path this long still serves its content type and size; it keeps no record
        target = os.path.join(rec_dir, file_name)
        if not replace and os.path.lexists(target):
            return False
        locks = self._space_locks(space_id)
        try:
            # Written and flushed with no lock held; the space's write lock covers only the rename,
            # so other writers of the space never wait for this flush.  A ``metadata/`` made now
            # (by ``_staged``) is a new name in the space's directory, flushed with the record.
            with self._staged(rec_dir, bytes(data)) as (tmp, made), locks.write:
                if replace:
                    os.replace(tmp, target)
                else:
                    os.link(tmp, target)  # the staged name is then removed by _staged
        except FileNotFoundError:
            return False  # the space is gone
        except FileExistsError:
            return False
        self._sync_dirs((rec_dir, *made))
        return True

    def delete_resource_meta(self, space_id: str, path: str) -> None:
        """Unlink the record file, if any."""
        file_name = _record_file(path)
        if not _fits(file_name):
            return
        rec_dir = self._records_dir(space_id, "metadata")
        locks = self._space_locks(space_id)
        with locks.write:
            try:
                os.unlink(os.path.join(rec_dir, file_name))
            except (FileNotFoundError, NotADirectoryError):
                return
            self._sync_dirs((rec_dir,))
