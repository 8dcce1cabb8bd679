"""The filesystem backend reuses a parsed space record only while its file is unchanged."""

from __future__ import annotations

import json
import os
from pathlib import Path

from was_twisted.storage.base import SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend


def test_a_changed_space_file_is_read_again(tmp_path: Path) -> None:
    backend = FilesystemBackend(tmp_path)
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:zA"))
    first = backend.get_space("s1")
    assert first is not None and backend.get_space("s1") is first  # reused: the file did not change
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:zB"))
    second = backend.get_space("s1")
    assert second is not None and second.controller == "did:key:zB" and second.etag != first.etag
    # Another program replacing the file (the existing server, an operator's restore) is seen too.
    meta = tmp_path / "spaces" / "s1" / "_meta.json"
    other = tmp_path / "spaces" / "s1" / "other.json"
    other.write_text(json.dumps({"id": "s1", "controller": "did:key:zC"}))
    os.replace(other, meta)
    third = backend.get_space("s1")
    assert third is not None and third.controller == "did:key:zC"
    meta.unlink()
    assert backend.get_space("s1") is None
