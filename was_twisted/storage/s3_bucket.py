"""The S3 plumbing under the backend: the client, the key layout, and boto3 calls as storage errors.

``S3Bucket`` knows keys and how to call S3 (conditional puts, batched
deletes, listings page by page, calls counted by operation); the backend
(``s3.py``) and its records (``s3_records.py``) build on it.  Failures come
out as the storage contract's errors, by the table in ``s3_faults.py``: S3 trouble as ``StorageBusy``.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote

from botocore.exceptions import ClientError

from .base import (
    RECORD_SUFFIX,
    Guard,
    KeyTooLong,
    SpaceRecord,
    StorageError,
    check_record,
    record_stem,
)
from .s3_client import S3Timeouts as S3Timeouts
from .s3_client import make_client as make_client
from .s3_client import parse_timestamp
from .s3_faults import S3Body, translate
from .s3_faults import _code as _code  # the callers' name for it
from .space_cache import SpaceCache

T = TypeVar("T")

#: Under its old name: ``s3.py`` and its tests import it from here.
_parse_timestamp = parse_timestamp

#: S3's limit on a key's length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: Bodies above this go up as a multipart upload, in parts of ``PART_SIZE`` (``s3_upload.py``).
PART_SIZE = 8 * 1024 * 1024
MULTIPART_THRESHOLD = PART_SIZE
#: DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000
#: Object metadata (``x-amz-meta-was-write``) naming the conditional write that stored a version.
WRITE_TOKEN = "was-write"
#: Index entries younger than this are never removed by ``reindex``: their space may be being created.
REINDEX_GRACE_SECONDS = 300

_META_SUFFIX = "/_meta.json"
_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3SetupError(Exception):
    """The bucket cannot be used: one sentence an operator can act on."""


class _Conflict(Exception):
    """A conditional write lost to another writer."""


class S3Bucket:
    """One bucket and key prefix: where each key lives, and every S3 call the backend makes."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        threads: int = 16,
        client: Any = None,
        timeouts: S3Timeouts | None = None,
        space_cache: SpaceCache[tuple[SpaceRecord, str | None]] | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        #: ``WAS_SPACE_CACHE_SECONDS`` (``space_cache.py``): records kept briefly; ``None``: off.
        self.space_cache = space_cache
        self.client = client if client is not None else make_client(threads, timeouts)
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self.client.meta.events.register("before-call.s3", self._count_call)
        self._side = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="was-s3-side")
        self._if_match_unquoted = False
        self.indexed = False
        #: Multipart uploads (key, upload id) whose abort failed: the sweeper retries them, any age.
        self.failed_aborts: set[tuple[str, str]] = set()

    # -- keys ---------------------------------------------------------------

    def _space_prefix(self, space_id: str) -> str:
        if not space_id or "/" in space_id or space_id in (".", ".."):
            raise ValueError(f"unsafe space id {space_id!r}")
        return f"{self.prefix}spaces/{space_id}/"

    def _meta_key(self, space_id: str) -> str:
        return self._space_prefix(space_id) + "_meta.json"

    def _resources_prefix(self, space_id: str) -> str:
        return self._space_prefix(space_id) + "resources/"

    def _resource_key(self, space_id: str, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError(f"resource path must start with '/': {path!r}")
        key = self._resources_prefix(space_id) + quote(path, safe="")
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise KeyTooLong(f"key of {len(key.encode('utf-8'))} bytes")
        return key

    def _records_prefix(self, space_id: str, kind: str) -> str:
        check_record(kind)
        return self._space_prefix(space_id) + kind + "/"

    def _record_key(self, space_id: str, kind: str, name: str) -> str:
        check_record(kind, name)
        key = self._records_prefix(space_id, kind) + record_stem(name) + RECORD_SUFFIX
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise KeyTooLong(f"key of {len(key.encode('utf-8'))} bytes")
        return key

    def _index_prefix(self, controller: str) -> str:
        return f"{self.prefix}controllers/{quote(controller, safe='')}/"

    def _index_key(self, controller: str, space_id: str) -> str:
        return self._index_prefix(controller) + space_id

    @property
    def _marker_key(self) -> str:
        return f"{self.prefix}controllers/.indexed"

    # -- plumbing -------------------------------------------------------------

    def _count_call(self, model: Any, **_: Any) -> None:
        with self._calls_lock:
            self.calls[model.name] += 1

    def _s3(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call boto3, turning its failures into the storage contract's errors."""
        try:
            return f(*args, **kwargs)
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    def _get(self, key: str, **kwargs: str) -> dict[str, Any] | None:
        try:
            obj = cast(
                dict[str, Any], self._s3(self.client.get_object, Bucket=self.bucket, Key=key, **kwargs)
            )
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"GetObject {key}: {exc}") from exc
        obj["Body"] = S3Body(obj["Body"])
        return obj

    def _put(self, key: str, body: bytes | BinaryIO, content_type: str, **conditions: str) -> dict[str, Any]:
        """PutObject; with ``conditions``, a refused one raises ``_Conflict`` unless the write was ours.

        A conditional write carries a token of its own (``x-amz-meta-was-write``).
        When S3 stored it but the answer was lost, botocore's retry meets the
        object it just wrote and gets 412: the token read back says the write
        happened, so a create is still reported as a create.  Only a 412 after
        a retry is checked (one HeadObject): a first attempt refused was surely
        not stored.  The token is object metadata, invisible to readers of the
        body (the existing server).
        """
        token = secrets.token_hex(16) if conditions else None
        extra: dict[str, Any] = {"Metadata": {WRITE_TOKEN: token}} if token is not None else {}
        try:
            return cast(
                dict[str, Any],
                self._s3(
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType=content_type,
                    **extra,
                    **conditions,
                ),
            )
        except ClientError as exc:
            if _code(exc) in _CONFLICT or ("IfMatch" in conditions and _code(exc) in _MISSING):
                retried = exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)
                ours = self._written_by(key, token) if token is not None and retried else None
                if ours is not None:
                    return ours
                raise _Conflict(key) from exc  # If-Match on an absent key: NoSuchKey (AWS, moto)
            raise StorageError(f"PutObject {key}: {exc}") from exc
        finally:
            self._forget_record(key)

    def _written_by(self, key: str, token: str) -> dict[str, Any] | None:
        """The HeadObject of ``key`` if the version stored is the one written with ``token``."""
        head = self._head(key)
        if head is not None and (head.get("Metadata") or {}).get(WRITE_TOKEN) == token:
            return head
        return None

    def _if_match_value(self, etag: str) -> str:
        """``etag`` as this store wants it in ``If-Match`` (see ``_put_if_match``)."""
        return etag.strip('"') if self._if_match_unquoted else etag

    def _put_if_match(self, key: str, body: bytes | BinaryIO, content_type: str, etag: str) -> dict[str, Any]:
        """Replace ``key`` only if unchanged since read (compare-and-swap); the PutObject response.

        S3 compares the ETag as returned, quotes included; Ceph RGW 16 wants
        it without quotes.  A 412 on an object whose ETag has not changed
        means the latter, and we remember it.
        """
        try:
            return self._put(key, body, content_type, IfMatch=self._if_match_value(etag))
        except _Conflict:
            if self._if_match_unquoted:
                raise
            head = self._head(key)
            if head is None or head.get("ETag") != etag:
                raise
        self._if_match_unquoted = True
        if not isinstance(body, bytes):
            body.seek(0)
        return self._put(key, body, content_type, IfMatch=etag.strip('"'))

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._s3(self.client.head_object, Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"HeadObject {key}: {exc}") from exc

    def _list(
        self,
        prefix: str,
        delimiter: str | None = None,
        *,
        start_after: str | None = None,
        max_keys: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Pages of ListObjectsV2 (up to 1,000 keys each, or ``max_keys``), from after ``start_after``."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        if max_keys is not None:
            kwargs["MaxKeys"] = max_keys
        while True:
            try:
                page = cast(dict[str, Any], self._s3(self.client.list_objects_v2, **kwargs))
            except ClientError as exc:
                raise StorageError(f"ListObjectsV2 {prefix}: {exc}") from exc
            yield page
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def _delete_keys(self, keys: list[str]) -> None:
        """DeleteObjects in batches of at most 1,000; any per-key error fails the whole call."""
        for key in keys:
            self._forget_record(key)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            try:
                result = self._s3(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
            except ClientError as exc:
                raise StorageError(f"DeleteObjects: {exc}") from exc
            errors = result.get("Errors") or []
            if errors:
                raise StorageError(f"DeleteObjects failed for {len(errors)} keys, e.g. {errors[0]}")

    def _delete_guarded(self, space_id: str, guard: Guard, key: Callable[[], str]) -> bool:
        """GET the space record, ``guard`` it, then DeleteObject ``key()``; False only when surely absent.

        S3 does not say whether a deleted key existed; a key too long to store never did.
        """
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return False
        try:
            name = key()
        except KeyTooLong:
            return False
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=name)
        except ClientError as exc:
            raise StorageError(f"DeleteObject {name}: {exc}") from exc
        return True

    def _load_space(self, space_id: str, fresh: bool = False) -> tuple[SpaceRecord | None, str | None]:
        """The space record (its ``etag`` set) and its ETag (for compare-and-swap), or (None, None).

        From the space cache when it is on, unless ``fresh`` (a write of the record itself
        compares and swaps, and must start from what S3 holds now).
        """
        cache = self.space_cache
        generation = 0
        if cache is not None:
            if not fresh:
                hit = cache.get(space_id)
                if hit is not None:
                    return hit
            generation = cache.generation
        obj = self._get(self._meta_key(space_id))
        if obj is None:
            return None, None
        with obj["Body"] as body:
            raw = body.read()
        try:
            doc = json.loads(raw)
            etag = str(obj.get("ETag", ""))
            record = dataclasses.replace(SpaceRecord.from_json(space_id, doc), etag=etag or None)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"space {space_id}: unreadable _meta.json: {exc}") from exc
        if cache is not None:
            cache.put(space_id, (record, etag), generation)
        return record, etag

    def _record_later(self, space_id: str) -> Future[tuple[SpaceRecord | None, str | None]]:
        """``_load_space`` in a side thread, to run beside another call; a cached record at once."""
        if self.space_cache is not None:
            hit = self.space_cache.get(space_id)
            if hit is not None:
                done: Future[tuple[SpaceRecord | None, str | None]] = Future()
                done.set_result(hit)
                return done
        return self._side.submit(self._load_space, space_id)

    def _forget_record(self, key: str) -> None:
        """After a write or delete of ``key``: if it is a space record, drop its cached copy."""
        if self.space_cache is None or not key.endswith(_META_SUFFIX):
            return
        spaces = f"{self.prefix}spaces/"
        if key.startswith(spaces):
            self.space_cache.invalidate(key[len(spaces) : -len(_META_SUFFIX)])

    def _get_bytes(self, key: str) -> bytes | None:
        obj = self._get(key)
        if obj is None:
            return None
        with obj["Body"] as body:
            return cast(bytes, body.read())
