"""What a crash leaves in a data directory, and its removal.

* ``spaces/.deleting-*``: a space delete renames the space there in one step,
  then removes it; a crash (or ``kill -9``) mid-removal leaves the rest.
  Nothing reads a dot-directory, and nothing writes into one after its
  rename, so it is removed whatever its age.
* ``.tmp-*`` files (``filesystem_tree._TMP_PREFIX``) in a space directory or
  one level below (``resources/``, record kinds): a write's bytes before their
  rename.  One older than the bound is a write that died; a younger one may
  be an upload still arriving, so it is kept.
* a space directory with no ``_meta.json`` and nothing in it: a create that
  died between ``mkdir`` and the record's rename.  Removed under the lock
  creates hold, so a create in progress is never undone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass

from .filesystem_tree import _META, _TMP_PREFIX, _flocked

#: The prefix ``FilesystemBackend.delete_space`` renames a space directory to.
TOMBSTONE_PREFIX = ".deleting-"


@dataclass
class FilesystemSwept:
    """What one sweep of a data directory removed."""

    tombstones: int = 0
    temp_files: int = 0
    empty_spaces: int = 0


def sweep_filesystem(root: str, older_than: float) -> FilesystemSwept:
    """Remove tombstones, temp files last changed before ``older_than`` (epoch seconds), empty spaces."""
    spaces = os.path.join(root, "spaces")
    done = FilesystemSwept()
    try:
        entries = list(os.scandir(spaces))
    except FileNotFoundError:
        return done
    for entry in entries:
        if entry.name.startswith(TOMBSTONE_PREFIX) and entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
            done.tombstones += not os.path.lexists(entry.path)
        elif not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            done.temp_files += _sweep_temp_files(entry.path, older_than, depth=2)
            if _remove_if_empty_space(spaces, entry.path):
                done.empty_spaces += 1
    return done


def _sweep_temp_files(directory: str, older_than: float, depth: int) -> int:
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        try:
            if entry.name.startswith(_TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                if entry.stat(follow_symlinks=False).st_mtime < older_than:
                    os.unlink(entry.path)
                    removed += 1
            elif depth > 1 and not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                removed += _sweep_temp_files(entry.path, older_than, depth - 1)
        except FileNotFoundError:
            continue  # renamed into place or removed meanwhile
    return removed


def _remove_if_empty_space(spaces: str, space_dir: str) -> bool:
    """``rmdir`` a space directory left empty by a create that died; creates hold the same lock."""
    if os.path.exists(os.path.join(space_dir, _META)):
        return False
    with _flocked(spaces), contextlib.suppress(OSError):  # not empty, or gone: leave it
        if not os.path.exists(os.path.join(space_dir, _META)):
            os.rmdir(space_dir)
            return True
    return False
