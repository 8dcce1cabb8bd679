"""Deleting a space on S3 so readers see it whole or gone, through any crash; and finishing what a crash left.

A space's keys cannot vanish together on S3, so a delete first *marks*
the space deleted, then removes it key by key::

    1. PUT    {prefix}deleting/{space_id}      {"controller": ..., "etag": the record's ETag}
    2. DELETE {prefix}spaces/{space_id}/_meta.json   (IfMatch that ETag)
    3. LIST + DeleteObjects every key under {prefix}spaces/{space_id}/, page by page
    4. DELETE the controller index entry, LIST once more (writes that raced), DELETE the marker

From step 2 on the space answers 404, here and on the existing server (a
space is its ``_meta.json``; the marker lives outside ``spaces/``, where the
existing server never looks, so a bucket stays readable both ways).  A crash
leaves the marker: the sweeper (``was_twisted/sweeper.py``) finds every
pending delete with one LIST of ``{prefix}deleting/`` and finishes it, and
a create of the same id finishes it first, so old resources never come back
under a new space.  Readers pay nothing: they read ``_meta.json`` as before.

Finishing is idempotent, so two finishers (the sweeper, a create, the
delete itself) may run at once: before each batch a finisher checks that the
marker is still there, having listed the batch before that check, so a
finisher that lost the race never deletes a key written after the marker
went (the re-created space's).  A ``_meta.json`` found while finishing, with
another ETag than the one marked, is a space re-created by a server that
knows nothing of markers: it is left alone and only the marker goes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from botocore.exceptions import ClientError
from twisted.logger import Logger

from .base import Guard, SpaceRecord, StorageBusy, StorageError
from .s3_bucket import _CONFLICT, _MISSING, _code
from .s3_conditional import S3Conditional

log = Logger("was_twisted.storage.s3_delete")


class _Finished(Exception):
    """The marker is gone: another finisher completed this delete."""


class S3Deletes(S3Conditional):
    """``delete_space`` by mark-then-purge, and the finishing of pending deletes."""

    def _deleting_prefix(self) -> str:
        return f"{self.prefix}deleting/"

    def _deleting_key(self, space_id: str) -> str:
        self._space_prefix(space_id)  # refuses an unsafe id
        return self._deleting_prefix() + space_id

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Mark, unlink the record (404 from here on), then purge; True if the space existed."""
        for _ in range(5):
            current, etag = self._load_space(space_id, fresh=True)
            guard(current)
            if current is None:
                return False
            marker = json.dumps({"controller": current.controller, "etag": etag}).encode()
            self._put(self._deleting_key(space_id), marker, "application/json")
            if self._unlink_record(space_id, etag):
                self._purge(space_id, current.controller)
                return True
            # The record changed or went since we read it: decide again on what is there now.  The
            # marker stays (a concurrent delete may own it); a finisher drops it if the space lives.
        raise StorageBusy(f"space {space_id} kept changing under concurrent writes")

    def _unlink_record(self, space_id: str, etag: str | None) -> bool:
        """DeleteObject the record if its ETag is still ``etag``; False if S3 says it changed."""
        key = self._meta_key(space_id)
        conditions = {"IfMatch": self._if_match_value(etag)} if etag else {}
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=key, **conditions)
        except ClientError as exc:
            if _code(exc) in _CONFLICT or _code(exc) in _MISSING:
                return False
            raise StorageError(f"DeleteObject {key}: {exc}") from exc
        finally:
            self._forget_record(key)
        return True

    def _delete_object(self, key: str) -> None:
        try:
            self._s3(self.client.delete_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            raise StorageError(f"DeleteObject {key}: {exc}") from exc

    def _purge(self, space_id: str, controller: str, stop: Callable[[], bool] = lambda: False) -> int:
        """Steps 3 and 4; how many keys went.

        Stops quietly when another finisher got there first, and between
        batches when ``stop()`` (a sweep cut short by shutdown: the marker stays).
        """
        marker = self._deleting_key(space_id)
        deleted = 0

        def batch(keys: list[str]) -> None:
            # Listed before this check: while the marker stands, no re-created space's key exists.
            if stop() or self._head(marker) is None:
                raise _Finished(space_id)
            self._delete_keys(keys)

        try:
            for keys in self._space_pages(space_id):
                batch(keys)
                deleted += len(keys)
            batch([self._index_key(controller, space_id)])
            # Once more: a write that passed its guard before step 2 may have landed since.
            for keys in self._space_pages(space_id):
                batch(keys)
                deleted += len(keys)
        except _Finished:
            return deleted
        if stop():
            return deleted
        self._delete_object(marker)
        return deleted

    def _space_pages(self, space_id: str) -> Iterator[list[str]]:
        for page in self._list(self._space_prefix(space_id)):
            keys = [str(o["Key"]) for o in page.get("Contents", [])]
            if keys:
                yield keys

    # -- pending deletes (a crash's, or one still running) ------------------------

    def pending_deletes(self) -> list[tuple[str, float]]:
        """The marked spaces: (space id, when marked, seconds since the epoch)."""
        root = self._deleting_prefix()
        found: list[tuple[str, float]] = []
        for page in self._list(root):
            for obj in page.get("Contents", []):
                space_id = str(obj["Key"])[len(root) :]
                if space_id and "/" not in space_id and space_id not in (".", ".."):
                    found.append((space_id, obj["LastModified"].timestamp()))
        return found

    def finish_delete(self, space_id: str, stop: Callable[[], bool] = lambda: False) -> bool:
        """Finish a marked delete; False if there was none.

        A space re-created meanwhile by a server that knows no markers is kept.
        """
        obj = self._get(self._deleting_key(space_id))
        if obj is None:
            return False
        with obj["Body"] as body:
            raw = body.read()
        try:
            mark: dict[str, Any] = json.loads(raw)
            controller = str(mark["controller"])
            etag = mark.get("etag")
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"deleting/{space_id}: unreadable marker: {exc}") from exc
        head = self._head(self._meta_key(space_id))
        if head is not None:
            if etag is None or head.get("ETag") != etag or not self._unlink_record(space_id, etag):
                log.warn(
                    "s3: space {space_id} was re-created while its delete was pending; keeping it",
                    space_id=space_id,
                )
                self._delete_object(self._deleting_key(space_id))
                return True
        self._purge(space_id, controller, stop)
        return True

    def _finish_before_create(self, space_id: str, current: SpaceRecord | None) -> None:
        """On a create, finish a pending delete of the same id first: old resources must not come back."""
        if current is None:
            self.finish_delete(space_id)

    def _scan_space_ids(self) -> Iterator[str]:
        """Every id with a key under ``{prefix}spaces/``: one LIST per 1,000 (a delimiter listing)."""
        root = f"{self.prefix}spaces/"
        for page in self._list(root, delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                yield common["Prefix"][len(root) :].rstrip("/")

    def stale_index_entries(self, older_than: float) -> Iterator[tuple[str, str]]:
        """Index entries (quoted controller, space id) from before ``older_than`` of spaces with no key.

        A crash between writing the entry and the record of a create leaves
        one; two LISTs per 1,000, never a GET per space.
        """
        live = set(self._scan_space_ids())
        root = f"{self.prefix}controllers/"
        for page in self._list(root):
            for obj in page.get("Contents", []):
                quoted, slash, space_id = str(obj["Key"])[len(root) :].partition("/")
                old = obj["LastModified"].timestamp() < older_than
                if slash and space_id and space_id not in live and old:
                    yield quoted, space_id

    def drop_index_entry(self, quoted_controller: str, space_id: str) -> None:
        self._delete_keys([f"{self.prefix}controllers/{quoted_controller}/{space_id}"])

    # -- multipart uploads ------------------------------------------------------------

    def multipart_uploads(self) -> Iterator[tuple[str, str, float]]:
        """Every multipart upload under ``{prefix}spaces/``: (key, upload id, initiated)."""
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": f"{self.prefix}spaces/"}
        while True:
            try:
                page = self._s3(self.client.list_multipart_uploads, **kwargs)
            except ClientError as exc:
                raise StorageError(f"ListMultipartUploads: {exc}") from exc
            for upload in page.get("Uploads", []):
                yield str(upload["Key"]), str(upload["UploadId"]), upload["Initiated"].timestamp()
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker", "")
            kwargs["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    def abort_upload(self, key: str, upload_id: str) -> None:
        """AbortMultipartUpload; an upload already gone counts as aborted."""
        try:
            self._s3(self.client.abort_multipart_upload, Bucket=self.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchUpload", *_MISSING):
                raise StorageError(f"AbortMultipartUpload {key}: {exc}") from exc
