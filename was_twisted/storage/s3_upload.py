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

A part is dropped once uploaded.  Memory per upload: at most
``PARTS_IN_FLIGHT + 1`` parts (and, while one is joined, its pieces).  Parts are
``PART_SIZE`` for the first 1,000 (8 GiB), then double every 1,000, so the
10,000-part limit of S3 is reached only past 8 TiB.
"""

from __future__ import annotations

import secrets
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
    first = read_part(body, part_size(1))
    second = read_part(body, part_size(2)) if len(first) == part_size(1) else b""
    if not second:
        if if_match is not None:
            return bucket._put_if_match(key, first, content_type, if_match).get("ETag"), len(first)
        return bucket._put(key, first, content_type, **conditions).get("ETag"), len(first)
    if if_match is not None:
        conditions["IfMatch"] = bucket._if_match_value(if_match)
    return _multipart(bucket, pool, key, [first, second], body, content_type, conditions)


def _multipart(
    bucket: S3Bucket,
    pool: Executor,
    key: str,
    head: list[bytes],
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
        )
    except ClientError as exc:
        raise StorageError(f"CreateMultipartUpload {key}: {exc}") from exc
    upload_id = created["UploadId"]

    def send(number: int, data: bytes) -> dict[str, Any]:
        part = bucket._s3(
            bucket.client.upload_part,
            Bucket=bucket.bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"ETag": part["ETag"], "PartNumber": number}

    in_flight: deque[Future[dict[str, Any]]] = deque()
    parts: list[dict[str, Any]] = []
    size = 0
    try:
        number = 1
        while True:
            want = part_size(number)
            data = head.pop(0) if head else read_part(body, want)
            if not data:
                break
            while in_flight and (in_flight[0].done() or len(in_flight) >= PARTS_IN_FLIGHT):
                parts.append(in_flight.popleft().result())  # a failed part raises here
            in_flight.append(pool.submit(send, number, data))
            size += len(data)
            number += 1
            short = len(data) < want
            del data  # the pool holds it only while it uploads
            if short:
                break  # the body ended (and was verified) inside this part
        parts.extend(f.result() for f in list(in_flight))
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
        for future in in_flight:
            future.cancel()
        wait(in_flight)  # a part still uploading would outlive the abort
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
