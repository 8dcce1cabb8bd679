"""How a multipart upload's parts are sent: unsigned payload, from reused buffers, bytes unchanged."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.config import Config

from tests.unit.test_storage_contract import allow
from tests.unit.test_upload_abort import _s3_with_space
from was_twisted.storage.s3_client import UnsignedPartPayload
from was_twisted.storage.s3_upload import PARTS_IN_FLIGHT, PartBody, crc32, fill

MIB = 1024 * 1024


class ReadOnly(io.RawIOBase):
    """A body with ``read`` only (``readinto`` unsupported), in small pieces."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = min(n if n >= 0 else len(self.data), 1000)
        chunk, self.data = self.data[:n], self.data[n:]
        return chunk


@pytest.mark.parametrize("make", [io.BytesIO, ReadOnly], ids=["readinto", "read-only"])
def test_fill_fills_the_buffer_or_stops_at_the_end(make: Any) -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    body = make(data)
    buffer = bytearray(4096)
    assert fill(body, buffer) == 4096 and bytes(buffer) == data[:4096]
    assert fill(body, buffer) == 4096 and bytes(buffer) == data[4096:8192]
    assert fill(body, buffer) == 2048 and bytes(buffer[:2048]) == data[8192:]
    assert fill(body, buffer) == 0


def test_part_body_reads_slices_and_rewinds_for_a_retry() -> None:
    buffer = bytearray(b"0123456789")
    body = PartBody(memoryview(buffer)[:8])
    assert len(body) == 8
    assert bytes(body.read(3)) == b"012" and body.tell() == 3
    assert bytes(body.read(10)) == b"34567" and bytes(body.read(1)) == b""
    assert body.seek(0) == 0
    whole = body.read()
    assert isinstance(whole, bytes) and whole == b"01234567"  # read whole: a copy (the mock reads so)
    body.seek(-2, io.SEEK_END)
    target = bytearray(5)
    assert body.readinto(target) == 2 and target[:2] == b"67"


class Arriving(io.RawIOBase):
    """A body still arriving (as ``web/bodypipe.py`` gives one): ``readinto`` in pieces, not a ``BytesIO``."""

    def __init__(self, data: bytes) -> None:
        self.data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        return self.data.readinto(view[: 300 * 1024])


@pytest.mark.parametrize("make", [io.BytesIO, Arriving], ids=["in-memory", "arriving"])
def test_parts_are_unsigned_reuse_buffers_and_arrive_whole(mocked_aws: None, make: Any) -> None:
    b = _s3_with_space(mocked_aws)
    sent: dict[str, list[Any]] = {"UploadPart": [], "PutObject": [], "CreateMultipartUpload": []}
    checksums: dict[str, list[Any]] = {name: [] for name in sent}

    def signed(request: Any, operation_name: str, **_: Any) -> None:
        if operation_name in sent:
            body = request.body
            buffer = body._view.obj if isinstance(body, PartBody) else None
            sent[operation_name].append((request.headers.get("X-Amz-Content-SHA256"), id(buffer)))
            headers = request.headers
            found = headers.get("x-amz-checksum-crc32") or headers.get("x-amz-checksum-algorithm")
            checksums[operation_name].append(found.decode() if isinstance(found, bytes) else found)

    # After botocore's own signer (registered when the client was made): the headers as sent.
    b.client.meta.events.register("request-created.s3", signed)
    data = bytes(range(256)) * (100 * 4096)  # 100 MiB: 13 parts
    info = b.write_resource("s1", "/big", make(data), "video/mp4", allow)
    assert info.size == len(data)
    _, res = b.read_resource("s1", "/big")
    assert res is not None and res.body.read() == data

    parts = sent["UploadPart"]
    assert len(parts) == 13
    assert {sha for sha, _ in parts} == {"UNSIGNED-PAYLOAD"}
    # Each part carries its own CRC32, as boto3's upload_fileobj sends (S3 checks it).
    assert checksums["CreateMultipartUpload"] == ["CRC32"]
    expected = [crc32(data[i : i + 8 * MIB]) for i in range(0, len(data), 8 * MIB)]
    assert sorted(checksums["UploadPart"]) == sorted(expected)  # parts go up side by side: any order
    assert crc32(b"123456789") == "y/Q5Jg=="  # the CRC32 check value 0xCBF43926, big-endian
    if make is io.BytesIO:
        # Parts 1 and 2 were in memory already (bytes); later ones reuse buffers.
        assert len({buffer for _, buffer in parts[2:]}) <= PARTS_IN_FLIGHT + 1
    else:
        # Read into part buffers from the first part on, and reused: the head's too.
        assert None not in {buffer for _, buffer in parts}
        assert len({buffer for _, buffer in parts}) <= PARTS_IN_FLIGHT + 1
    # Everything else keeps a signed payload (a SHA-256 in hex).
    b.write_resource("s1", "/small", make(b"x" * 1000), "text/plain", allow)
    _, res = b.read_resource("s1", "/small")
    assert res is not None and res.body.read() == b"x" * 1000
    for sha, _ in sent["PutObject"] + sent["CreateMultipartUpload"]:
        assert sha is not None and len(sha) == 64
    assert sent["PutObject"]
    b.close()


def test_parts_keep_a_signed_payload_over_plain_http() -> None:
    """Over http the signed SHA-256 is a part's only protection in transit: only https drops it."""
    config = Config(s3={"addressing_style": "path"})
    unsigned = UnsignedPartPayload(config)
    for url, dropped in [("https://s3.example/b/k?partNumber=1", True), ("http://127.0.0.1:9000/b/k", False)]:
        request = SimpleNamespace(url=url, context={"client_config": config})
        unsigned(request)
        chosen = request.context["client_config"]
        assert (chosen.s3 or {}).get("payload_signing_enabled") is (False if dropped else None)
        assert chosen.s3["addressing_style"] == "path"
