"""S3 storage: the existing server's bucket layout, plus an index of spaces by controller.

Plain synchronous boto3, no Twisted: ``threaded.py`` runs it in the pool.
The layout is the seed's, unchanged, so buckets are shared both ways with
the existing server::

    {prefix}spaces/{space_id}/_meta.json                     {"id": ..., "controller": ...}
    {prefix}spaces/{space_id}/resources/{quote(path, safe="")}  bytes, native ContentType

and beside it, ours only::

    {prefix}spaces/{space_id}/policies/{quote(name, safe="")}.json     one policy document
    {prefix}spaces/{space_id}/revocations/{quote(name, safe="")}.json  one zCap revocation
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
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO, TypeVar, cast
from urllib.parse import quote, unquote

import boto3
import botocore.session
import botocore.utils
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .base import (
    DEFAULT_CONTENT_TYPE,
    RECORD_KINDS,
    RECORD_SUFFIX,
    Builder,
    Guard,
    KeyTooLong,
    ResourceInfo,
    SpaceMissing,
    SpaceRecord,
    StorageBusy,
    StorageError,
    StoredResource,
    check_record,
    record_stem,
)

T = TypeVar("T")

#: S3's limit on a key's length, in UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: Bodies above this go up as a multipart upload, in parts of this size.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024
#: DeleteObjects takes at most this many keys.
DELETE_BATCH = 1000
#: Index entries younger than this are never removed by ``reindex``: their space may be being created.
REINDEX_GRACE_SECONDS = 300

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_BUSY = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "RequestLimitExceeded",
    "503",
    "500",
}


class S3SetupError(Exception):
    """The bucket cannot be used: one sentence an operator can act on."""


def make_client(pool_size: int) -> Any:
    """One S3 client per process, with explicit timeouts and retries.

    Credentials and a custom endpoint come only through boto3's own chain
    (``AWS_*`` variables, shared files, instance or task roles, SSO;
    ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``).  Checksums are sent
    only when S3 requires them, so S3-compatible servers that predate
    flexible checksums (Ceph, older MinIO) work too.
    """
    config = Config(
        connect_timeout=5,
        read_timeout=30,
        retries={"mode": "standard", "max_attempts": 4},
        max_pool_connections=max(10, 2 * pool_size + 2),
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    core = botocore.session.get_session()
    core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_parse_timestamp)
    return boto3.session.Session(botocore_session=core).client("s3", config=config)


def _parse_timestamp(value: str) -> datetime:
    """S3's two timestamp forms (RFC 7231 headers, ISO 8601 in XML) without dateutil.

    botocore's default parser costs ~0.25 ms of CPU a request, about 15% of
    a GetObject: worth it on a server bound by one core.
    """
    try:
        return parsedate_to_datetime(value)
    except (TypeError, ValueError):
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return cast(datetime, botocore.utils.parse_timestamp(value))


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class _Conflict(Exception):
    """A conditional write lost to another writer."""


class S3Backend:
    """The ``Backend`` contract over one bucket and key prefix."""

    def __init__(self, bucket: str, prefix: str = "", *, threads: int = 16, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.client = client if client is not None else make_client(threads)
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self.client.meta.events.register("before-call.s3", self._count_call)
        self._side = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="was-s3-side")
        self._if_match_unquoted = False
        self.indexed = False

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

    def _delete_rank(self, space_id: str, key: str) -> int:
        """Where a key of the space falls in a delete: resources, anything else, records, the space record."""
        rest = key[len(self._space_prefix(space_id)) :]
        top, slash, _ = rest.partition("/")
        if not slash:
            return len(RECORD_KINDS) + 2 if rest == "_meta.json" else 1
        if top == "resources":
            return 0
        if top in RECORD_KINDS:
            return 2 + RECORD_KINDS.index(top)
        return 1

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
        except ClientError as exc:
            code = _code(exc)
            if code in _BUSY or _status(exc) >= 500:
                raise StorageBusy(f"S3 {code}: {exc}") from exc
            raise
        except NoCredentialsError as exc:
            raise StorageError(f"no AWS credentials: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageBusy(f"S3 unreachable: {exc}") from exc

    def _get(self, key: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._s3(self.client.get_object, Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"GetObject {key}: {exc}") from exc

    def _put(self, key: str, body: bytes | BinaryIO, content_type: str, **conditions: str) -> dict[str, Any]:
        try:
            return cast(
                dict[str, Any],
                self._s3(
                    self.client.put_object,
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType=content_type,
                    **conditions,
                ),
            )
        except ClientError as exc:
            if _code(exc) in _CONFLICT:
                raise _Conflict(key) from exc
            raise StorageError(f"PutObject {key}: {exc}") from exc

    def _put_if_match(self, key: str, body: bytes, content_type: str, etag: str) -> None:
        """Replace ``key`` only if unchanged since read (compare-and-swap).

        S3 compares the ETag as returned, quotes included; Ceph RGW 16 wants
        it without quotes.  A 412 on an object whose ETag has not changed
        means the latter, and we remember it.
        """
        value = etag.strip('"') if self._if_match_unquoted else etag
        try:
            self._put(key, body, content_type, IfMatch=value)
            return
        except _Conflict:
            if self._if_match_unquoted:
                raise
            head = self._head(key)
            if head is None or head.get("ETag") != etag:
                raise
        self._if_match_unquoted = True
        self._put(key, body, content_type, IfMatch=etag.strip('"'))

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            return cast(dict[str, Any], self._s3(self.client.head_object, Bucket=self.bucket, Key=key))
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise StorageError(f"HeadObject {key}: {exc}") from exc

    def _list(self, prefix: str, delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        """Pages of ListObjectsV2 (up to 1,000 keys each)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
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

    def _load_space(self, space_id: str) -> tuple[SpaceRecord | None, str | None]:
        """The space record and its ETag (for compare-and-swap), or (None, None)."""
        obj = self._get(self._meta_key(space_id))
        if obj is None:
            return None, None
        with obj["Body"] as body:
            raw = body.read()
        try:
            doc = json.loads(raw)
            return SpaceRecord.from_json(space_id, doc), str(obj.get("ETag", ""))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"space {space_id}: unreadable _meta.json: {exc}") from exc

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
        """Create with ``IfNoneMatch='*'``, update with ``IfMatch``: concurrent writers never overwrite."""
        for _ in range(5):
            current, etag = self._load_space(space_id)
            record = build(current)
            if record.space_id != space_id:
                raise ValueError("build returned a record for another space")
            body = json.dumps(record.to_json()).encode()
            moved = current is None or current.controller != record.controller
            if moved:
                self._put(self._index_key(record.controller, space_id), b"", "application/octet-stream")
            try:
                if current is None:
                    self._put(self._meta_key(space_id), body, "application/json", IfNoneMatch="*")
                else:
                    assert etag is not None
                    self._put_if_match(self._meta_key(space_id), body, "application/json", etag)
            except _Conflict:
                if moved:
                    self._drop_index_unless_current(record.controller, space_id)
                continue
            if current is not None and moved:
                self._delete_keys([self._index_key(current.controller, space_id)])
            return current is None, record
        raise StorageBusy(f"space {space_id} kept changing under concurrent writes")

    def _drop_index_unless_current(self, controller: str, space_id: str) -> None:
        now, _ = self._load_space(space_id)
        if now is None or now.controller != controller:
            self._delete_keys([self._index_key(controller, space_id)])

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Resources, then policies, then revocations, then the record and index entry.

        Each group's DeleteObjects calls finish before the next group's begin,
        so a crash leaves a space that still exists, to delete again, and
        never resources whose policies or revocations are already gone.
        """
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return False
        meta_key = self._meta_key(space_id)
        # Resources may be millions: delete them page by page, never all in memory.
        for page in self._list(self._resources_prefix(space_id)):
            keys = [o["Key"] for o in page.get("Contents", [])]
            if keys:
                self._delete_keys(keys)
        # What is left is small: records, keys we do not know, and writes that raced the pass above.
        self._delete_in_order(space_id, (k for k in self._space_keys(space_id) if k != meta_key))
        self._delete_keys([meta_key, self._index_key(current.controller, space_id)])
        # A write that raced the listing would be orphaned under a later space of this id.
        self._delete_in_order(space_id, self._space_keys(space_id))
        return True

    def _space_keys(self, space_id: str) -> Iterator[str]:
        for page in self._list(self._space_prefix(space_id)):
            for obj in page.get("Contents", []):
                yield str(obj["Key"])

    def _delete_in_order(self, space_id: str, keys: Iterable[str]) -> None:
        """Delete ``keys`` group by group in ``_delete_rank`` order; no batch mixes two groups."""
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(self._delete_rank(space_id, key), []).append(key)
        for rank in sorted(groups):
            self._delete_keys(groups[rank])

    def list_spaces(self, controller: str) -> list[str]:
        """One LIST per 1,000 spaces from the index; a scan of every space until it is complete."""
        if not self.indexed:
            return sorted(sid for sid, record in self._scan_spaces() if record.controller == controller)
        prefix = self._index_prefix(controller)
        found: list[str] = []
        for page in self._list(prefix):
            found.extend(o["Key"][len(prefix) :] for o in page.get("Contents", []))
        return sorted(found)

    def _scan_space_ids(self) -> Iterator[str]:
        root = f"{self.prefix}spaces/"
        for page in self._list(root, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"][len(root) :].rstrip("/")

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
        self, space_id: str, path: str, with_body: bool = True
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The record and the object (or, for a HEAD, its HeadObject) side by side: one round trip."""
        record_future = self._side.submit(self._load_space, space_id)
        try:
            key = self._resource_key(space_id, path)
            obj = self._get(key) if with_body else self._head(key)
        except KeyTooLong:
            obj = None
        except BaseException:
            record_future.result()
            raise
        space = record_future.result()[0]
        if obj is None:
            return space, None
        info = ResourceInfo(
            content_type=str(obj.get("ContentType") or DEFAULT_CONTENT_TYPE),
            size=int(obj.get("ContentLength", 0)),
            etag=obj.get("ETag"),
        )
        body = cast(BinaryIO, obj["Body"]) if with_body else io.BytesIO()
        return space, StoredResource(info, body)

    def write_resource(
        self, space_id: str, path: str, body: BinaryIO, content_type: str, guard: Guard
    ) -> ResourceInfo:
        """GET the record, then one PUT (or a multipart upload for a large body): nothing redundant."""
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            raise SpaceMissing(space_id)
        key = self._resource_key(space_id, path)
        content_type = content_type or DEFAULT_CONTENT_TYPE
        body.seek(0, 2)
        size = body.tell()
        body.seek(0)
        if size > MULTIPART_THRESHOLD:
            etag = self._multipart(key, body, content_type)
        else:
            etag = self._put(key, body, content_type).get("ETag")
        return ResourceInfo(content_type=content_type, size=size, etag=etag)

    def _multipart(self, key: str, body: BinaryIO, content_type: str) -> str | None:
        """Upload in parts; abort on any failure so no partial object ever becomes visible."""
        try:
            upload = self._s3(
                self.client.create_multipart_upload, Bucket=self.bucket, Key=key, ContentType=content_type
            )
        except ClientError as exc:
            raise StorageError(f"CreateMultipartUpload {key}: {exc}") from exc
        upload_id = upload["UploadId"]
        try:
            parts = []
            number = 1
            while chunk := body.read(PART_SIZE):
                part = self._s3(
                    self.client.upload_part,
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                )
                parts.append({"ETag": part["ETag"], "PartNumber": number})
                number += 1
            done = self._s3(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )
            return cast(str | None, done.get("ETag"))
        except ClientError as exc:
            self._abort(key, upload_id)
            raise StorageError(f"multipart upload {key}: {exc}") from exc
        except BaseException:
            self._abort(key, upload_id)
            raise

    def _abort(self, key: str, upload_id: str) -> None:
        """Needs s3:AbortMultipartUpload (beyond the seed's policy; README.rst names it)."""
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (ClientError, BotoCoreError):
            pass

    def delete_resource(self, space_id: str, path: str, guard: Guard) -> bool:
        """GET the record, then DeleteObject.  S3 does not say whether the key existed: True."""
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return False
        try:
            key = self._resource_key(space_id, path)
        except KeyTooLong:
            return False
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StorageError(f"DeleteObject {key}: {exc}") from exc
        return True

    def list_resources(self, space_id: str, prefix: str, guard: Guard) -> list[tuple[str, ResourceInfo]]:
        """Paths under ``prefix`` from LIST alone; the content type is left empty (LIST does not carry it)."""
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return []
        root = self._resources_prefix(space_id)
        found: list[tuple[str, ResourceInfo]] = []
        for page in self._list(root + quote(prefix, safe="")):
            for obj in page.get("Contents", []):
                path = unquote(obj["Key"][len(root) :])
                found.append(
                    (path, ResourceInfo(content_type="", size=int(obj["Size"]), etag=obj.get("ETag")))
                )
        found.sort(key=lambda item: item[0])
        return found

    # -- records ---------------------------------------------------------------

    def _get_bytes(self, key: str) -> bytes | None:
        obj = self._get(key)
        if obj is None:
            return None
        with obj["Body"] as body:
            return cast(bytes, body.read())

    def get_records(self, space_id: str, kind: str, names: Sequence[str]) -> dict[str, bytes]:
        """HEAD the space record and GET every named record, all side by side: one round trip.

        A name too long for a key cannot have been stored, so it is absent.
        """
        check_record(kind)
        wanted: dict[str, str] = {}
        for name in names:
            try:
                wanted.setdefault(name, self._record_key(space_id, kind, name))
            except KeyTooLong:
                continue
        if not wanted:
            self._space_prefix(space_id)  # still refuse an unsafe id
            return {}
        exists = self._side.submit(self._head, self._meta_key(space_id))
        fetched = [(name, self._side.submit(self._get_bytes, key)) for name, key in wanted.items()]
        # Wait for every call before raising, so none outlives this one.
        results: dict[str, bytes] = {}
        failure: BaseException | None = None
        for name, future in fetched:
            try:
                data = future.result()
            except BaseException as exc:  # re-raised below, once the others are done
                failure = failure or exc
                continue
            if data is not None:
                results[name] = data
        if exists.result() is None:
            return {}
        if failure is not None:
            raise failure
        return results

    def put_record(self, space_id: str, kind: str, name: str, data: bytes, guard: Guard) -> bool:
        """GET the space, PUT with ``IfNoneMatch='*'`` (again unconditionally if it exists), HEAD the space.

        The last HEAD closes a race with ``delete_space``: a record written
        after its final listing would outlive the space and apply to a later
        space of the same id, so it is taken back and the write fails.
        """
        check_record(kind, name)
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            raise SpaceMissing(space_id)
        key = self._record_key(space_id, kind, name)
        try:
            self._put(key, data, "application/json", IfNoneMatch="*")
            created = True
        except _Conflict:
            self._put(key, data, "application/json")
            created = False
        if self._head(self._meta_key(space_id)) is None:
            self._delete_keys([key])
            raise SpaceMissing(f"space {space_id!r} was deleted")
        return created

    def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        """GET the space, then DeleteObject.  S3 does not say whether the key existed: True."""
        check_record(kind, name)
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return False
        try:
            key = self._record_key(space_id, kind, name)
        except KeyTooLong:
            return False
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StorageError(f"DeleteObject {key}: {exc}") from exc
        return True

    def list_records(self, space_id: str, kind: str, guard: Guard) -> list[tuple[str, bytes]]:
        """GET the space, LIST the kind's prefix, then GET every record side by side."""
        root = self._records_prefix(space_id, kind)
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            return []
        keys: list[tuple[str, str]] = []
        for page in self._list(root):
            for obj in page.get("Contents", []):
                rest = str(obj["Key"])[len(root) :]
                if not rest.endswith(RECORD_SUFFIX) or "/" in rest:
                    continue
                name = unquote(rest[: -len(RECORD_SUFFIX)])
                if name and record_stem(name) + RECORD_SUFFIX == rest:
                    keys.append((name, str(obj["Key"])))
        datas = list(self._side.map(self._get_bytes, [key for _, key in keys]))
        found = [(name, data) for (name, _), data in zip(keys, datas, strict=True) if data is not None]
        found.sort(key=lambda item: item[0])
        return found

    def close(self) -> None:
        self._side.shutdown(wait=False)
        self.client.close()
