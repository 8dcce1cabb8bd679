"""Conditional writes and ranged reads on S3: what the store evaluates itself, and what it cannot.

Probed on the stores we test (``tests/integration``): ``PutObject`` honours
``IfNoneMatch='*'`` and ``IfMatch`` on AWS S3, moto and Ceph RGW 16 (which
wants the ETag unquoted, see ``S3Bucket._put_if_match``).
``CompleteMultipartUpload`` honours both on AWS S3, only ``IfNoneMatch`` on
moto, neither on Ceph RGW 16; ``DeleteObject`` honours ``IfMatch`` on AWS
S3 and moto, not on Ceph RGW 16.  So a conditional write is checked first
and carried by the request that commits, and a conditional delete checks
first (README.rst says what is atomic where).
"""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any, BinaryIO, cast

from botocore.exceptions import ClientError

from .base import ByteRange, Condition, Guard, KeyTooLong, PreconditionFailed, StorageError, check_condition
from .s3_bucket import _CONFLICT, _MISSING, _code, _Conflict
from .s3_faults import S3Body
from .s3_records import S3Records
from .s3_upload import multipart, read_head, sendable, upload


def _total_size(obj: dict[str, Any]) -> int:
    """The whole object's size from a ranged GetObject's ``ContentRange`` (``bytes a-b/total``)."""
    total = str(obj.get("ContentRange") or "").rpartition("/")[2]
    return int(total) if total.isdigit() else int(obj.get("ContentLength", 0))


class S3Conditional(S3Records):
    """Ranged GETs, conditional PUTs and DELETEs over the bucket's plumbing."""

    def _part_pool(self) -> Executor:
        """The threads that upload the parts of a large body (``S3Backend`` has them)."""
        raise NotImplementedError

    def _get_range(
        self, key: str, byte_range: ByteRange
    ) -> tuple[dict[str, Any] | None, tuple[int, int] | None]:
        """GetObject of one range: the object and the span S3 sent (``None``: it sent the whole object).

        An unsatisfiable range (S3's 416) comes back as a HeadObject: the
        metadata without a body, for the caller's 416.
        """
        first, last, suffix = byte_range.first, byte_range.last, byte_range.suffix
        spec = f"bytes=-{suffix}" if first is None else f"bytes={first}-{'' if last is None else last}"
        try:
            obj = self._s3(self.client.get_object, Bucket=self.bucket, Key=key, Range=spec)
        except ClientError as exc:
            if _code(exc) in ("InvalidRange", "416"):
                return self._head(key), None
            if _code(exc) in _MISSING:
                return None, None
            raise StorageError(f"GetObject {key}: {exc}") from exc
        obj["Body"] = S3Body(obj["Body"])
        sent = str(obj.get("ContentRange") or "")
        positions, _, _ = sent.removeprefix("bytes ").partition("/")
        start, dash, end = positions.partition("-")
        if not dash:
            return cast(dict[str, Any], obj), None
        return cast(dict[str, Any], obj), (int(start), int(end))

    def _write_conditional(
        self, key: str, body: BinaryIO, content_type: str, condition: Condition, head: dict[str, Any] | None
    ) -> tuple[str | None, int]:
        """A conditional write: checked against ``head`` (the caller's HeadObject), then by the commit.

        The HEAD answers a false precondition before a byte of the body is
        read.  The condition then rides on the request that commits: the one
        PutObject of a body up to one part (``s3_upload``), which every store
        we test evaluates atomically (Ceph RGW 16 wants the ETag unquoted, see
        ``_put_if_match``); or, for a larger body still arriving, on
        ``CompleteMultipartUpload``, which honours ``If-Match`` only on AWS S3
        (moto: ``If-None-Match`` only; Ceph RGW 16: neither), leaving elsewhere
        the window of one upload after the HEAD (README.rst).
        """
        if condition.if_none_match and condition.if_match is not None:
            raise PreconditionFailed("If-Match and If-None-Match: * cannot both hold")
        current = str(head["ETag"]) if head is not None and head.get("ETag") else None
        check_condition(condition, current)
        try:
            if condition.if_none_match:
                return upload(self, self._part_pool(), key, body, content_type, IfNoneMatch="*")
            assert current is not None  # an If-Match held, so something is stored
            return upload(self, self._part_pool(), key, body, content_type, if_match=current)
        except _Conflict as exc:
            raise PreconditionFailed(str(exc)) from exc

    def _write_creating_first(
        self, key: str, body: BinaryIO, content_type: str
    ) -> tuple[str | None, int, bool]:
        """A plain write with no HEAD: (the ETag, the size, whether ``key`` existed).

        A body up to one part is sent with ``IfNoneMatch='*'``: stored, it was
        a creation (one request); refused (S3's 412), the key existed and the
        same bytes go again unconditionally (two, as HEAD + PUT were).  The
        store decides atomically, so of racing creators exactly one is told it
        created.  A larger body is a multipart upload, whose condition Ceph RGW
        ignores: it is preceded by a HEAD, as without the cache.
        """
        first, second = read_head(body)
        if not second:
            try:
                return (
                    self._put(key, sendable(first), content_type, IfNoneMatch="*").get("ETag"),
                    len(first),
                    False,
                )
            except _Conflict:
                return self._put(key, sendable(first), content_type).get("ETag"), len(first), True
        existed = self._head(key) is not None
        etag, size = multipart(self, self._part_pool(), key, [first, second], body, content_type, {})
        return etag, size, existed

    def _delete_conditional(self, space_id: str, path: str, guard: Guard, condition: Condition) -> bool:
        """``delete_resource`` with a ``condition``: see ``S3Backend.delete_resource``."""
        try:
            key: str | None = self._resource_key(space_id, path)
        except KeyTooLong:
            key = None
        head_future = self._side.submit(self._head, key) if key is not None else None
        try:
            current, _ = self._load_space(space_id)
            guard(current)
        finally:
            head = head_future.result() if head_future is not None else None
        if current is None:
            check_condition(condition, None)
            return False
        etag = str(head["ETag"]) if head is not None and head.get("ETag") else None
        check_condition(condition, etag)
        if key is None or etag is None:
            return False
        try:
            self._s3(
                self.client.delete_object, Bucket=self.bucket, Key=key, IfMatch=self._if_match_value(etag)
            )
        except ClientError as exc:
            if _code(exc) in _CONFLICT or _code(exc) in _MISSING:
                raise PreconditionFailed(key) from exc
            raise StorageError(f"DeleteObject {key}: {exc}") from exc
        return True
