"""A slow upload on the filesystem backend holds no lock: other writes to its space go on meanwhile."""

from __future__ import annotations

import io
import threading
from pathlib import Path

from was_twisted.storage.base import SpaceMissing, SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend


class SlowBody(io.RawIOBase):
    """A body whose bytes come only once ``release`` is set (a client still sending)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.release = threading.Event()
        self.reading = threading.Event()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        self.reading.set()
        assert self.release.wait(10), "never released"
        data, self.data = self.data, b""
        return data


def allow(space: SpaceRecord | None) -> None:
    return None


def _space(backend: FilesystemBackend) -> None:
    backend.put_space("s1", lambda current: SpaceRecord(space_id="s1", id="s1", controller="did:key:z6Mk"))


def test_a_slow_upload_does_not_hold_up_other_writes(tmp_path: Path) -> None:
    backend = FilesystemBackend(str(tmp_path))
    _space(backend)
    slow = SlowBody(b"slow bytes")
    result: list[object] = []
    upload = threading.Thread(
        target=lambda: result.append(backend.write_resource("s1", "/big", slow, "text/plain", allow))
    )
    upload.start()
    assert slow.reading.wait(5)
    # While the upload waits for its client, a small write and a delete in the same space finish.
    backend.write_resource("s1", "/small", io.BytesIO(b"quick"), "text/plain", allow)
    assert backend.delete_resource("s1", "/small", allow)
    slow.release.set()
    upload.join(10)
    _, stored = backend.read_resource("s1", "/big")
    assert stored is not None and stored.body.read() == b"slow bytes"
    stored.body.close()


def test_a_space_deleted_during_an_upload_takes_nothing_back(tmp_path: Path) -> None:
    backend = FilesystemBackend(str(tmp_path))
    _space(backend)
    slow = SlowBody(b"late")
    errors: list[BaseException] = []

    def write() -> None:
        try:
            backend.write_resource("s1", "/late", slow, "text/plain", allow)
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    upload = threading.Thread(target=write)
    upload.start()
    assert slow.reading.wait(5)
    assert backend.delete_space("s1", allow)
    _space(backend)  # made again, empty
    slow.release.set()
    upload.join(10)
    assert len(errors) == 1 and isinstance(errors[0], SpaceMissing)
    assert backend.read_resource("s1", "/late")[1] is None
    leftovers = [p for p in Path(tmp_path).rglob("*") if p.name.startswith(".tmp-")]
    assert leftovers == []
