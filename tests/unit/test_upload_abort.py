"""A body whose read fails part-way (a Digest mismatch, the limit, a client gone) leaves nothing behind.

On every backend: no object (the old bytes stay), no temporary file, and on
S3 no multipart upload in progress.  S3's multipart path also: parts go up
side by side but never more than ``PARTS_IN_FLIGHT`` at once, and a failing
part aborts the upload.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_storage_contract import allow, backend, read, with_space, write  # noqa: F401
from was_twisted.errors import InvalidDigest
from was_twisted.storage.base import Backend, SpaceRecord, StorageError
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.s3_upload import PARTS_IN_FLIGHT

MIB = 1024 * 1024


class FailingBody(io.RawIOBase):
    """``size`` bytes in small reads (as a pipe gives them), then ``error`` instead of the end."""

    def __init__(self, size: int, error: BaseException) -> None:
        self.left = size
        self.error = error

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            raise self.error
        take = min(n if n >= 0 else self.left, self.left, 256 * 1024)
        self.left -= take
        return b"z" * take


def leftovers(b: Backend, tmp_path: Path) -> list[object]:
    """Temporary files anywhere in the data directory, or S3 multipart uploads in progress."""
    if isinstance(b, S3Backend):
        return list(b.client.list_multipart_uploads(Bucket=b.bucket).get("Uploads", []))
    return [p for p in tmp_path.rglob("*") if p.name.startswith(".tmp-")]


@pytest.mark.parametrize("size", [3 * MIB, 40 * MIB], ids=["one-part", "multipart"])
def test_a_failing_body_stores_nothing(with_space: Backend, tmp_path: Path, size: int) -> None:  # noqa: F811
    write(with_space, "/old", b"old bytes")
    for path in ("/new", "/old"):
        with pytest.raises(InvalidDigest):
            with_space.write_resource(
                "s1", path, FailingBody(size, InvalidDigest("mismatch")), "text/plain", allow
            )
    assert read(with_space, "/new") is None
    assert read(with_space, "/old") == (b"old bytes", "text/plain")
    assert leftovers(with_space, tmp_path) == []


def test_a_refused_guard_never_reads_the_body(with_space: Backend) -> None:  # noqa: F811
    """Authorization first: a refused write does not touch its body (it may not have arrived)."""
    body = FailingBody(0, AssertionError("read before the guard"))

    def refuse(space: object) -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        with_space.write_resource("s1", "/x", body, "text/plain", refuse)


def _s3_with_space(mocked_aws: None) -> S3Backend:
    b = S3Backend("uploads", "pfx/", threads=4)
    b.client.create_bucket(Bucket="uploads")
    b.check()
    b.put_space("s1", lambda _: SpaceRecord(space_id="s1", id="urn:uuid:s1", controller="did:key:z"))
    return b


def test_parts_go_up_side_by_side_but_bounded(mocked_aws: None) -> None:
    b = _s3_with_space(mocked_aws)
    real = b.client.upload_part
    lock = threading.Lock()
    now = {"in": 0, "max": 0}

    def counting(**kwargs: Any) -> Any:
        with lock:
            now["in"] += 1
            now["max"] = max(now["max"], now["in"])
        time.sleep(0.05)
        try:
            return real(**kwargs)
        finally:
            with lock:
                now["in"] -= 1

    b.client.upload_part = counting
    data = bytes(range(256)) * (60 * 4096)  # 60 MiB: 8 parts
    info = b.write_resource("s1", "/big", io.BytesIO(data), "video/mp4", allow)
    assert info.size == len(data)
    assert 1 < now["max"] <= PARTS_IN_FLIGHT
    _, res = b.read_resource("s1", "/big")
    assert res is not None and res.body.read() == data
    b.close()


def test_a_failing_part_aborts_the_upload(mocked_aws: None) -> None:
    b = _s3_with_space(mocked_aws)
    real = b.client.upload_part

    def fail_third(**kwargs: Any) -> Any:
        if kwargs["PartNumber"] == 3:
            raise StorageError("the network went away")
        return real(**kwargs)

    b.client.upload_part = fail_third
    data = b"q" * (40 * MIB)
    with pytest.raises(StorageError):
        b.write_resource("s1", "/big", io.BytesIO(data), "video/mp4", allow)
    assert b.client.list_multipart_uploads(Bucket="uploads").get("Uploads", []) == []
    assert b.read_resource("s1", "/big")[1] is None
    b.close()
