"""S3 storage: the existing server's bucket layout, plus an index of spaces by controller.

Plain synchronous boto3, no Twisted: ``threaded.py`` runs it in the pool.
The layout is the seed's, unchanged, so buckets are shared both ways with
the existing server::

    {prefix}spaces/{space_id}/_meta.json                     {"id": ..., "controller": ...}
    {prefix}spaces/{space_id}/resources/{quote(path, safe="")}  bytes, native ContentType

and beside it, ours only::

    {prefix}spaces/{space_id}/policies/{quote(name, safe="")}.json     one policy document
    {prefix}spaces/{space_id}/revocations/{quote(name, safe="")}.json  one zCap revocation
    {prefix}spaces/{space_id}/collections/{id}.json                    one created collection
    {prefix}spaces/{space_id}/collection-meta/{id}.json                its metadata object
    {prefix}spaces/{space_id}/metadata/{quote(path, safe="")}.json     one resource's metadata
    {prefix}controllers/{quote(controller, safe="")}/{space_id}  empty: "controller has space"
    {prefix}controllers/.indexed                               the index is complete

(``base.record_stem`` also escapes a leading ``.`` or ``_``, so no record
key ends in ``/_meta.json``.)  The existing server lists a space's whole
prefix to delete it, so it deletes our records too.

The index makes "list my spaces" one LIST request per 1,000 spaces.  It is
written before the space record on create and transfer, and the old entry
removed after, so a crash in between leaves an entry too many (a listed id
that answers 404, or that the old controller no longer controls), never a
space missing from its controller's list.  ``reindex`` repairs both ways.

Nothing is cached across requests except "the index is complete", which
never becomes false: several servers on one bucket and prefix behave as one.
The opt-in exception is ``WAS_SPACE_CACHE_SECONDS`` (``space_cache.py``):
space records kept a few seconds, at the cost stated in README.rst.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from typing import BinaryIO, cast
from urllib.parse import quote, unquote

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .base import (
    DEFAULT_CONTENT_TYPE,
    Builder,
    ByteRange,
    Condition,
    Guard,
    KeyTooLong,
    ResourceInfo,
    SpaceMissing,
    SpaceRecord,
    StorageBusy,
    StorageError,
    StoredResource,
)
from .s3_bucket import (
    DELETE_BATCH,
    MAX_KEY_BYTES,
    MULTIPART_THRESHOLD,
    PART_SIZE,
    REINDEX_GRACE_SECONDS,
    S3SetupError,
    S3Timeouts,
    _code,
    _Conflict,
    _parse_timestamp,
    make_client,
)
from .s3_conditional import _total_size
from .s3_delete import S3Deletes
from .s3_upload import upload

__all__ = [
    "DELETE_BATCH",
    "MAX_KEY_BYTES",
    "MULTIPART_THRESHOLD",
    "PART_SIZE",
    "REINDEX_GRACE_SECONDS",
    "S3Backend",
    "S3SetupError",
    "S3Timeouts",
    "_parse_timestamp",
    "make_client",
]

#: Guards the lazy creation of a backend's part pool.
_PART_POOL_LOCK = threading.Lock()


class S3Backend(S3Deletes):
    """The ``Backend`` contract over one bucket and key prefix."""

    # -- start-up -------------------------------------------------------------

    def check(self) -> None:
        """Fail fast, in one sentence, when the bucket cannot be used; learn whether the index is complete."""
        try:
            self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}spaces/", MaxKeys=1)
            self.indexed = self._head(self._marker_key) is not None
        except NoCredentialsError:
            raise S3SetupError(
                "No AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                "a shared credentials file, or an instance or task role."
            ) from None
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise S3SetupError(f"WAS_STORAGE_BUCKET {self.bucket!r} does not exist.") from None
            if code in ("AccessDenied", "403"):
                raise S3SetupError(
                    f"S3 denied s3:ListBucket on WAS_STORAGE_BUCKET {self.bucket!r}; "
                    "check the IAM policy in README.rst."
                ) from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise S3SetupError(f"S3 refused the AWS credentials ({code}).") from None
            raise S3SetupError(f"S3 bucket {self.bucket!r} cannot be used: {code}.") from None
        except (BotoCoreError, StorageError) as exc:
            raise S3SetupError(f"S3 cannot be reached: {exc}.") from None

    # -- spaces ----------------------------------------------------------------

    def get_space(self, space_id: str) -> SpaceRecord | None:
        return self._load_space(space_id)[0]

    def put_space(self, space_id: str, build: Builder) -> tuple[bool, SpaceRecord]:
        """Create with ``IfNoneMatch='*'``, update with ``IfMatch``: concurrent writers never overwrite.

        A create first finishes a pending delete of the same id (``s3_delete.py``).
        """
        for _ in range(5):
            current, etag = self._load_space(space_id, fresh=True)
            self._finish_before_create(space_id, current)
            record = build(current)
            if record.space_id != space_id:
                raise ValueError("build returned a record for another space")
            body = json.dumps(record.to_json()).encode()
            moved = current is None or current.controller != record.controller
            if moved:
                self._put(self._index_key(record.controller, space_id), b"", "application/octet-stream")
            try:
                if current is None:
                    done = self._put(self._meta_key(space_id), body, "application/json", IfNoneMatch="*")
                else:
                    assert etag is not None
                    done = self._put_if_match(self._meta_key(space_id), body, "application/json", etag)
            except _Conflict:
                if moved:
                    self._drop_index_unless_current(record.controller, space_id)
                continue
            if current is not None and moved:
                self._delete_keys([self._index_key(current.controller, space_id)])
            return current is None, dataclasses.replace(record, etag=done.get("ETag"))
        raise StorageBusy(f"space {space_id} kept changing under concurrent writes")

    def _drop_index_unless_current(self, controller: str, space_id: str) -> None:
        now, _ = self._load_space(space_id, fresh=True)
        if now is None or now.controller != controller:
            self._delete_keys([self._index_key(controller, space_id)])

    def list_spaces(
        self, controller: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """One LIST per page from the index (``StartAfter``); a scan of every space until it is complete."""
        if not self.indexed:
            ids = sorted(sid for sid, record in self._scan_spaces() if record.controller == controller)
            if start_after is not None:
                ids = [sid for sid in ids if sid > start_after]
            return ids if limit is None else ids[:limit]
        prefix = self._index_prefix(controller)
        after = None if start_after is None else prefix + start_after
        return [key[len(prefix) :] for key in self._keys(prefix, after, limit)]

    def _keys(self, prefix: str, start_after: str | None, limit: int | None) -> list[str]:
        """Up to ``limit`` keys under ``prefix`` after ``start_after``: one LIST when ``limit`` <= 1,000.

        S3 may send a short page and say more follow; then the next is asked
        for, so a short answer always means the end.
        """
        found: list[str] = []
        max_keys = None if limit is None else min(limit, 1000)
        if limit == 0:
            return found
        for page in self._list(prefix, start_after=start_after, max_keys=max_keys):
            found.extend(str(o["Key"]) for o in page.get("Contents", []))
            if limit is not None and len(found) >= limit:
                return found[:limit]
        return found

    def _scan_spaces(self) -> list[tuple[str, SpaceRecord]]:
        """Every space's record (GETs run side by side): the existing server's O(n) way."""
        ids = [sid for sid in self._scan_space_ids() if sid and sid not in (".", "..")]

        def load(space_id: str) -> SpaceRecord | None:
            try:
                return self._load_space(space_id)[0]
            except StorageError:
                return None

        records = list(self._side.map(load, ids))
        return [(sid, rec) for sid, rec in zip(ids, records, strict=True) if rec is not None]

    def reindex(self, now: float | None = None) -> tuple[int, int]:
        """Make the index match the space records; returns (entries added, entries removed).

        Run at start-up when the index is not known to be complete (a bucket
        written by the existing server), and by ``python -m was_twisted.admin
        reindex`` after a crash.  Entries younger than a grace period are left
        alone: their space may be in the middle of being created.
        """
        now = time.time() if now is None else now
        wanted = {(rec.controller, sid) for sid, rec in self._scan_spaces()}
        have: dict[tuple[str, str], float] = {}
        root = f"{self.prefix}controllers/"
        for page in self._list(root):
            for obj in page.get("Contents", []):
                rest = obj["Key"][len(root) :]
                quoted, slash, space_id = rest.partition("/")
                if slash and space_id:
                    have[(unquote(quoted), space_id)] = obj["LastModified"].timestamp()
        added = wanted - set(have)
        for controller, space_id in sorted(added):
            self._put(self._index_key(controller, space_id), b"", "application/octet-stream")
        stale = [
            k for k, modified in have.items() if k not in wanted and now - modified > REINDEX_GRACE_SECONDS
        ]
        self._delete_keys([self._index_key(c, s) for c, s in stale])
        self._put(self._marker_key, b"", "application/octet-stream")
        self.indexed = True
        return len(added), len(stale)

    # -- resources -------------------------------------------------------------

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True, byte_range: ByteRange | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The record and the object (or, for a HEAD, its HeadObject) side by side: one round trip.

        A ``byte_range`` goes to GetObject as ``Range``: only the slice crosses the network.
        """
        record_future = self._record_later(space_id)
        span: tuple[int, int] | None = None
        try:
            key = self._resource_key(space_id, path)
            if not with_body:
                obj = self._head(key)
            elif byte_range is None:
                obj = self._get(key)
            else:
                obj, span = self._get_range(key, byte_range)
        except KeyTooLong:
            obj = None
        except BaseException:
            record_future.result()
            raise
        space = record_future.result()[0]
        if obj is None:
            return space, None
        modified = obj.get("LastModified")
        info = ResourceInfo(
            content_type=str(obj.get("ContentType") or DEFAULT_CONTENT_TYPE),
            size=_total_size(obj) if span is not None else int(obj.get("ContentLength", 0)),
            etag=obj.get("ETag"),
            last_modified=modified.timestamp() if modified is not None else None,
        )
        body = cast(BinaryIO, obj["Body"]) if "Body" in obj and with_body else io.BytesIO()
        return space, StoredResource(info, body, span)

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
        """GET the record and HEAD the key side by side, then one PUT (or a multipart upload).

        The HEAD says whether the write creates (``ResourceInfo.existed``), so
        that only a creation writes a metadata record; it is used only once
        ``guard`` passed.  A ``condition`` is checked against that same HEAD
        and rides on the request that commits (``IfNoneMatch='*'``,
        ``IfMatch``), see ``_write_conditional``.  The body is read only after
        ``guard`` passed; it may still be arriving (``s3_upload.py``).

        With the record cached (``WAS_SPACE_CACHE_SECONDS``) there is no GET
        to hide the HEAD behind: a plain write then tries to create first
        (``_write_creating_first``), one S3 request fewer for a new path.
        """
        cached = self.space_cache.get(space_id) if self.space_cache is not None else None
        if cached is not None and condition is None:
            guard(cached[0])
            content_type = content_type or DEFAULT_CONTENT_TYPE
            # _resource_key raises KeyTooLong, after the guard as below.
            etag, size, existed = self._write_creating_first(
                self._resource_key(space_id, path), body, content_type
            )
            return ResourceInfo(content_type=content_type, size=size, etag=etag, existed=existed)
        try:
            key: str | None = self._resource_key(space_id, path)
        except KeyTooLong:
            key = None  # raised after the guard, as before
        head_future = self._side.submit(self._head, key) if key is not None else None
        try:
            current, _ = self._load_space(space_id)
            guard(current)
        except BaseException:
            if head_future is not None:
                wait((head_future,))  # its own failure must not replace the guard's answer
            raise
        head = head_future.result() if head_future is not None else None
        if current is None:
            raise SpaceMissing(space_id)
        if key is None:
            key = self._resource_key(space_id, path)  # raises KeyTooLong
        content_type = content_type or DEFAULT_CONTENT_TYPE
        if condition is not None:
            etag, size = self._write_conditional(key, body, content_type, condition, head)
        else:
            etag, size = upload(self, self._part_pool(), key, body, content_type)
        return ResourceInfo(content_type=content_type, size=size, etag=etag, existed=head is not None)

    def _part_pool(self) -> ThreadPoolExecutor:
        """The threads that upload parts of large bodies (not the storage pool: it reads the body)."""
        with _PART_POOL_LOCK:
            pool: ThreadPoolExecutor | None = getattr(self, "_parts", None)
            if pool is None:
                pool = self._parts = ThreadPoolExecutor(max_workers=8, thread_name_prefix="was-s3-part")
            return pool

    def delete_resource(
        self, space_id: str, path: str, guard: Guard, *, condition: Condition | None = None
    ) -> bool:
        """GET the record, then DeleteObject.  S3 does not say whether the key existed: True.

        With a ``condition``: the record and a HeadObject side by side, the
        condition checked against the ETag seen, then ``DeleteObject`` with
        ``IfMatch`` that ETag: atomic where the store honours it (AWS S3,
        moto); Ceph RGW 16 ignores it, leaving the window between the HEAD
        and the DELETE (README.rst).
        """
        if condition is None:
            return self._delete_guarded(space_id, guard, lambda: self._resource_key(space_id, path))
        return self._delete_conditional(space_id, path, guard, condition)

    def list_resources(
        self,
        space_id: str,
        prefix: str,
        guard: Guard,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ResourceInfo]]:
        """The space record and one ListObjectsV2 (``StartAfter``, ``MaxKeys``) side by side.

        The content type is left empty (LIST does not carry it).  Keys are
        ``quote(path, safe="")``, so S3's key order is ``listing_key`` order.
        """
        record_future = self._record_later(space_id)
        root = self._resources_prefix(space_id)
        after = None if start_after is None else root + quote(start_after, safe="")
        try:
            found: list[tuple[str, ResourceInfo]] = []
            for page in self._list(
                root + quote(prefix, safe=""),
                start_after=after,
                max_keys=None if limit is None else min(max(limit, 1), 1000),
            ):
                for obj in page.get("Contents", []):
                    path = unquote(obj["Key"][len(root) :])
                    found.append(
                        (path, ResourceInfo(content_type="", size=int(obj["Size"]), etag=obj.get("ETag")))
                    )
                if limit is not None and len(found) >= limit:
                    break
        finally:
            current, _ = record_future.result()
        guard(current)
        if current is None:
            return []
        return found if limit is None else found[:limit]

    def delete_resources(self, space_id: str, prefix: str, guard: Guard) -> int:
        """GET the record, then LIST the prefix page by page, one DeleteObjects per page (<= 1,000 keys)."""
        if not prefix.startswith("/"):
            raise ValueError(f"prefix must start with '/': {prefix!r}")
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return 0
        deleted = 0
        for page in self._list(self._resources_prefix(space_id) + quote(prefix, safe="")):
            keys = [str(o["Key"]) for o in page.get("Contents", [])]
            if keys:
                self._delete_keys(keys)
                deleted += len(keys)
        return deleted

    def ping(self) -> None:
        """One ListObjectsV2 of at most one key under the prefix: what ``check`` needs, nothing more."""
        try:
            self._s3(
                self.client.list_objects_v2, Bucket=self.bucket, Prefix=f"{self.prefix}spaces/", MaxKeys=1
            )
        except ClientError as exc:
            raise StorageError(f"ListObjectsV2 {self.prefix}spaces/: {_code(exc)}") from exc

    def close(self) -> None:
        self._side.shutdown(wait=False)
        parts: ThreadPoolExecutor | None = getattr(self, "_parts", None)
        if parts is not None:
            parts.shutdown(wait=False)
        self.client.close()
