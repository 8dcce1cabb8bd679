"""Records beside a space on S3 (``RECORD_KINDS``): ``{prefix}spaces/{id}/{kind}/{name}.json``.

A resource's metadata record is named by its path (``metadata/%2Fnotes%2Fa.txt.json``).
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote

from botocore.exceptions import ClientError

from .base import (
    DEFAULT_CONTENT_TYPE,
    RECORD_SUFFIX,
    Condition,
    Guard,
    KeyTooLong,
    PreconditionFailed,
    ResourceInfo,
    ResourceMeta,
    SpaceMissing,
    SpaceRecord,
    StorageError,
    check_record,
    record_etag,
    record_stem,
)
from .s3_bucket import S3Bucket, _Conflict


class S3Records(S3Bucket):
    """The records half of the ``Backend`` contract."""

    # -- records ---------------------------------------------------------------

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

    def put_record(
        self,
        space_id: str,
        kind: str,
        name: str,
        data: bytes,
        guard: Guard,
        condition: Condition | None = None,
    ) -> bool:
        """GET the space, PUT with ``IfNoneMatch='*'`` (again unconditionally if it exists), HEAD the space.

        The last HEAD closes a race with ``delete_space``: a record written
        after its final listing would outlive the space and apply to a later
        space of the same id, so it is taken back and the write fails.
        With a ``condition``, see ``_put_conditionally``.
        """
        check_record(kind, name)
        current, _ = self._load_space(space_id)
        guard(current)
        if current is None:
            raise SpaceMissing(space_id)
        key = self._record_key(space_id, kind, name)
        if condition is not None:
            created = self._put_conditionally(key, data, condition)
        else:
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

    def _put_conditionally(self, key: str, data: bytes, condition: Condition) -> bool:
        """GET the record, check ``condition`` on its bytes, then PUT only if S3 still has what we read.

        The PUT carries ``IfNoneMatch='*'`` (nothing was there) or ``IfMatch``
        (S3's ETag of what was read), so the check and the write are atomic
        across processes: a writer that slipped in between makes S3 refuse,
        and then the condition no longer holds either.  GET + PUT: 2 requests.
        """
        obj = self._get(key)
        if obj is None:
            stored, s3_etag = None, None
        else:
            with obj["Body"] as body:
                stored = body.read()
            s3_etag = str(obj.get("ETag", ""))
        if not condition.holds(None if stored is None else record_etag(stored)):
            raise PreconditionFailed(key)
        try:
            if s3_etag is None:
                self._put(key, data, "application/json", IfNoneMatch="*")
            else:
                self._put_if_match(key, data, "application/json", s3_etag)
        except _Conflict:
            raise PreconditionFailed(key) from None
        return s3_etag is None

    def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        """GET the space, then DeleteObject.  S3 does not say whether the key existed: True."""
        check_record(kind, name)
        return self._delete_guarded(space_id, guard, lambda: self._record_key(space_id, kind, name))

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

    # -- resource metadata -----------------------------------------------------

    def read_resource_meta(self, space_id: str, path: str) -> tuple[SpaceRecord | None, ResourceMeta | None]:
        """GET the space record, HEAD the object and GET its metadata record, side by side: one round trip."""
        try:
            key = self._resource_key(space_id, path)
            record_key = self._record_key(space_id, "metadata", path)
        except KeyTooLong:
            return self._load_space(space_id)[0], None
        space_future = self._record_later(space_id)
        record_future = self._side.submit(self._get_bytes, record_key)
        try:
            head = self._head(key)
        finally:
            space_future.exception(), record_future.exception()  # wait: none outlives this call
        space = space_future.result()[0]
        record = record_future.result()
        if space is None or head is None:
            return space, None
        info = ResourceInfo(
            content_type=str(head.get("ContentType") or DEFAULT_CONTENT_TYPE),
            size=int(head.get("ContentLength", 0)),
            etag=head.get("ETag"),
        )
        modified = head.get("LastModified")
        return space, ResourceMeta(info, modified.timestamp() if modified else None, record)

    def put_resource_meta(self, space_id: str, path: str, data: bytes) -> None:
        """One PutObject (no space lookup: the caller's operation has just made it)."""
        try:
            key = self._record_key(space_id, "metadata", path)
        except KeyTooLong:
            return  # such a path still serves its content type and size; it keeps no record
        self._put(key, data, "application/json")

    def create_resource_meta(self, space_id: str, path: str, data: bytes) -> bool:
        """One PutObject with ``IfNoneMatch='*'``: S3's 412 (a record exists) is False, not an error."""
        try:
            key = self._record_key(space_id, "metadata", path)
        except KeyTooLong:
            return False
        try:
            self._put(key, data, "application/json", IfNoneMatch="*")
        except _Conflict:
            return False
        return True

    def delete_resource_meta(self, space_id: str, path: str) -> None:
        """One DeleteObject."""
        try:
            key = self._record_key(space_id, "metadata", path)
        except KeyTooLong:
            return
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StorageError(f"DeleteObject {key}: {exc}") from exc
