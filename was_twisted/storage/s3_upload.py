"""Upload one resource body to S3 as it is read: one PutObject, or a multipart upload with parts in flight.

The body may still be arriving from the client (``web/bodypipe.py``): its
size is unknown, and ``read`` blocks until bytes come, raises when the body
turns out bad (a Digest mismatch at its end, the size limit, a client gone)
and returns ``b""`` only at the verified end.  So:

* a body that fits in one part is read whole, then sent with one PutObject
  (the common case: one request, as before);
* a larger one becomes a multipart upload whose parts go up side by side
  (at most ``PARTS_IN_FLIGHT``, in their own small pool) while the next part
  is read; CompleteMultipartUpload is sent only after the end was reported,
  and any failure (reading, a part, completing) aborts the upload once the
  parts in flight have settled, so no part is left behind.

A part after the first two is read straight into a part buffer (one copy
from the pipe) and sent from it without another (``PartBody``); a buffer is
reused once its part is uploaded.  Memory per upload: at most
``PARTS_IN_FLIGHT + 1`` parts.  Over https, parts are sent with an unsigned
payload (``s3_client.UnsignedPartPayload``: no SHA-256 of the bytes, which
was most of our CPU per MiB; TLS protects them).  Every part carries its
CRC32 (``x-amz-checksum-crc32``, the upload created with
``ChecksumAlgorithm=CRC32``), as boto3's own ``upload_fileobj`` sends: S3
checks each part against it, and an S3 that is told no algorithm works out a
whole-object checksum itself at completion (moto's server did so by copying
the whole object twice: +50 % of its CPU for a 1 GiB upload).  Parts are
``PART_SIZE`` for the first 1,000 (8 GiB), then double every 1,000, so the
10,000-part limit of S3 is reached only past 8 TiB.
"""

from __future__ import annotations

import base64
import io
import mmap
import secrets
import zlib
from collections import deque
from concurrent.futures import Executor, Future, wait
from typing import Any, BinaryIO, cast

from botocore.exceptions import ClientError
from twisted.logger import Logger

from .base import StorageError
from .s3_bucket import _CONFLICT, _MISSING, PART_SIZE, WRITE_TOKEN, S3Bucket, _code, _Conflict

_log = Logger("was_twisted.storage.s3_upload")

#: Parts uploading at once for one body (each holds one part in memory).
PARTS_IN_FLIGHT = 4
#: Parts of one size before the size doubles.
PARTS_PER_SIZE = 1000


def part_size(number: int) -> int:
    """The size of part ``number`` (from 1): ``PART_SIZE``, doubling every ``PARTS_PER_SIZE`` parts."""
    return PART_SIZE << ((number - 1) // PARTS_PER_SIZE)


def read_part(body: BinaryIO, size: int) -> bytes:
    """``size`` bytes, or fewer only at the body's end (a pipe's ``read`` may return less)."""
    first = body.read(size)
    if not first or len(first) == size:
        return first
    chunks = [first]
    got = len(first)
    while got < size:
        chunk = body.read(size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def part_buffer(size: int) -> mmap.mmap:
    """A part's buffer: a mapping of its own, returned to the system when the upload drops it.

    A ``bytearray`` this size comes from the allocating thread's malloc
    arena once glibc's mmap threshold has risen past it (after the first
    free), and an arena keeps what is freed: with uploads landing on
    different storage threads, each thread's arena kept its last upload's
    parts (peak RSS +139 MiB after a few 1 GiB uploads; +85 with this).
    """
    return mmap.mmap(-1, size)


def fill(body: BinaryIO, buffer: bytearray | mmap.mmap) -> int:
    """Fill ``buffer`` from ``body``; how many bytes (fewer only at the body's end).

    One copy per byte (the pipe's chunks straight into the part), where
    ``read_part`` makes two (the pipe joins what it has, then the pieces
    are joined); a body without ``readinto`` is read and copied.
    """
    view = memoryview(buffer)
    got = 0
    size = len(buffer)
    try:
        while got < size:
            n = _readinto(body, view[got:])
            if not n:
                break
            got += n
    finally:
        view.release()
    return got


def _readinto(body: BinaryIO, view: memoryview) -> int:
    try:
        return body.readinto(view)  # type: ignore[attr-defined,no-any-return]
    except (AttributeError, NotImplementedError, io.UnsupportedOperation):
        chunk = body.read(len(view))
        view[: len(chunk)] = chunk
        return len(chunk)


def crc32(data: bytes | memoryview) -> str:
    """A part's ``ChecksumCRC32``: the big-endian CRC32 in base64 (``zlib`` lets go of the GIL)."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode("ascii")


class PartBody(io.RawIOBase):
    """A part as botocore's request body: read in slices of its buffer, never copied whole.

    A bytes-like body is not one the in-process ``mock_aws`` accepts, and
    ``bytes(buffer)`` is a copy (a quarter of the CPU a part costs to send);
    urllib3 reads a file in 128 KiB blocks and sends each as it is.  Seekable,
    so botocore can rewind it to retry.
    """

    def __init__(self, data: bytes | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data)
        self._pos = 0

    def __len__(self) -> int:
        return self._view.nbytes

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._view.nbytes}[whence]
        self._pos = min(max(base + offset, 0), self._view.nbytes)
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes: a slice of the buffer (bytes-like), a copy only when read whole."""
        start = self._pos
        if size is None or size < 0:
            self._pos = self._view.nbytes
            return self._view[start:].tobytes()
        self._pos = min(start + size, self._view.nbytes)
        return self._view[start : self._pos]  # type: ignore[return-value]  # sent as is

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(memoryview(buffer)))
        n = len(chunk)
        memoryview(buffer).cast("B")[:n] = chunk
        return n


def upload(
    bucket: S3Bucket,
    pool: Executor,
    key: str,
    body: BinaryIO,
    content_type: str,
    *,
    if_match: str | None = None,
    **conditions: str,
) -> tuple[str | None, int]:
    """Store ``body`` at ``key``; (the ETag, the size).  ``conditions`` go on the request that commits.

    ``if_match``: replace only the object with this ETag (``IfMatch``, quoted
    as the store wants it).  A refused condition raises ``_Conflict``.  A
    body that fits in one part is one PutObject (its end is seen by reading
    one byte more).
    """
    first, second = read_head(body)
    if not second:
        if if_match is not None:
            return bucket._put_if_match(key, sendable(first), content_type, if_match).get("ETag"), len(first)
        return bucket._put(key, sendable(first), content_type, **conditions).get("ETag"), len(first)
    if if_match is not None:
        conditions["IfMatch"] = bucket._if_match_value(if_match)
    return multipart(bucket, pool, key, [first, second], body, content_type, conditions)


#: A body's head: ``bytes`` when it was in memory already, else a view of a part buffer.
Head = bytes | memoryview


def read_head(body: BinaryIO) -> tuple[Head, Head]:
    """The body's first part and its second, empty when the body fits in one PutObject.

    A body still arriving (not a ``BytesIO``) is read into part buffers, as
    every later part is: joined ``bytes`` of this size land in the malloc
    arena of the storage thread that read them, which keeps them (8 MiB a
    part, twice over while they are joined), and every storage thread
    in turn.  A view's buffer serves the upload's later parts.
    """
    first = _read_head_part(body, part_size(1))
    second = _read_head_part(body, part_size(2)) if len(first) == part_size(1) else b""
    return first, second


def _read_head_part(body: BinaryIO, size: int) -> Head:
    if isinstance(body, io.BytesIO):  # small bodies, read whole before the route: as they are
        return read_part(body, size)
    buffer = part_buffer(size)
    got = fill(body, buffer)
    return memoryview(buffer)[:got] if got else b""


def sendable(data: Head) -> bytes | BinaryIO:
    """A head as a PutObject body: ``bytes`` as they are, a view as a ``PartBody`` (no copy)."""
    return data if isinstance(data, bytes) else cast(BinaryIO, PartBody(data))


def multipart(
    bucket: S3Bucket,
    pool: Executor,
    key: str,
    head: list[Head],
    body: BinaryIO,
    content_type: str,
    conditions: dict[str, str],
) -> tuple[str | None, int]:
    token = secrets.token_hex(16)  # names this upload's object: see ``S3Bucket._put``
    try:
        created = bucket._s3(
            bucket.client.create_multipart_upload,
            Bucket=bucket.bucket,
            Key=key,
            ContentType=content_type,
            Metadata={WRITE_TOKEN: token},
            ChecksumAlgorithm="CRC32",
        )
    except ClientError as exc:
        raise StorageError(f"CreateMultipartUpload {key}: {exc}") from exc
    upload_id = created["UploadId"]

    def send(number: int, data: bytes | memoryview) -> dict[str, Any]:
        checksum = crc32(data)
        part = bucket._s3(
            bucket.client.upload_part,
            Bucket=bucket.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=PartBody(data),
            ChecksumCRC32=checksum,  # a header of its own: never botocore's aws-chunked trailer
        )
        return {"ETag": part["ETag"], "PartNumber": number, "ChecksumCRC32": checksum}

    in_flight: deque[tuple[Future[dict[str, Any]], mmap.mmap | None]] = deque()
    free: list[mmap.mmap] = []  # part buffers back from S3, reused: no allocation per part
    parts: list[dict[str, Any]] = []
    size = 0

    def settle_first() -> None:
        future, buffer = in_flight.popleft()
        parts.append(future.result())  # a failed part raises here
        if buffer is not None and len(buffer) == part_size(number):
            free.append(buffer)

    try:
        number = 1
        while True:
            want = part_size(number)
            while in_flight and in_flight[0][0].done():
                settle_first()
            buffer = None
            if head:
                data: bytes | memoryview = head.pop(0)
                got = len(data)
                if isinstance(data, memoryview) and isinstance(data.obj, mmap.mmap):
                    buffer = data.obj  # reused once this part is up, as any part buffer
            else:
                buffer = free.pop() if free else part_buffer(want)
                got = fill(body, buffer)
                data = memoryview(buffer)[:got] if got < want else memoryview(buffer)
            if not got:
                break
            while len(in_flight) >= PARTS_IN_FLIGHT:
                settle_first()
            in_flight.append((pool.submit(send, number, data), buffer))
            size += got
            number += 1
            del data  # the pool holds it only while it uploads
            if got < want:
                break  # the body ended (and was verified) inside this part
        parts.extend(f.result() for f, _ in list(in_flight))
        in_flight.clear()
        done = bucket._s3(
            bucket.client.complete_multipart_upload,
            Bucket=bucket.bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": parts},
            **conditions,
        )
        return cast(str | None, done.get("ETag")), size
    except BaseException as exc:
        for future, _ in in_flight:
            future.cancel()
        wait([f for f, _ in in_flight])  # a part still uploading would outlive the abort
        if isinstance(exc, ClientError) and exc.response.get("ResponseMetadata", {}).get("RetryAttempts"):
            # The completion was retried: S3 may have completed it already (NoSuchUpload, or 412).
            ours = bucket._written_by(key, token)
            if ours is not None:
                return cast(str | None, ours.get("ETag")), size
        abort(bucket, key, upload_id)
        if isinstance(exc, ClientError):
            if conditions and (_code(exc) in _CONFLICT or _code(exc) in _MISSING):
                raise _Conflict(key) from exc  # the completion's condition did not hold
            raise StorageError(f"multipart upload {key}: {exc}") from exc
        raise


def abort(bucket: S3Bucket, key: str, upload_id: str) -> None:
    """Needs s3:AbortMultipartUpload (beyond the seed's policy; README.rst names it).

    An abort that fails is remembered in ``bucket.failed_aborts`` and logged:
    the sweeper (``was_twisted/sweeper.py``) retries it on its next run.
    """
    try:
        bucket.client.abort_multipart_upload(Bucket=bucket.bucket, Key=key, UploadId=upload_id)
    except Exception as exc:  # noqa: BLE001 - the caller is already failing; the sweeper retries
        bucket.failed_aborts.add((key, upload_id))
        _log.warn(
            "s3: aborting the multipart upload of {key} failed ({error}); the sweeper retries it",
            key=key,
            error=exc,
        )
