"""Collection operations: create (POST .../collections/, PUT /space/S/c), read, delete, list;
collection metadata (``/space/S/c/meta``); the space's backends.

A depth-1 name is a collection only once one was created; until then
``/space/S/c/...`` is an implicit container, as with the existing server
(``WAS_STRICT_COLLECTIONS=on``: resource writes there need the collection).

Every operation authorizes first, in the same storage call as what it
reads or writes (one pool hop): an unauthorized caller sees the 404 an
absent target gets, never a 409 ``id-conflict`` or a 412.  Reads decide
before they look anything up, so a policy lookup never runs inside a
backend's lock.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

from ..auth.authorize import Invocation
from ..errors import IdConflict, NotFound
from ..errors import PreconditionFailed as PreconditionFailedError
from ..ids import check_space_id
from ..storage.base import Condition, PreconditionFailed, SpaceRecord, StorageBusy, record_etag
from .base import Call, OperationsBase
from .collection_model import (
    COLLECTION_META,
    COLLECTIONS,
    backend_description,
    check_collection_id,
    collection_record,
    collections_url,
    describe_collection,
    describe_meta,
    list_item,
    load_record,
    meta_record,
    parse_collection_body,
    parse_meta_body,
)
from .pagination import page_of, page_request

#: Optimistic retries of a read-modify-write that lost to a concurrent writer (no client condition).
_RETRIES = 5

Guard = Callable[[SpaceRecord | None], None]


def _absent() -> NotFound:
    return NotFound("Resource not found or insufficient authorization.")


class CollectionOperations(OperationsBase):
    """The spec's Collection, Collection Metadata and Backends operations."""

    def _timestamp(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now()))

    def _write_guard(self, call: Call, invocation: Invocation, space_id: str) -> Guard:
        """(In a storage call.) The decision for a write, with the chain's revocations looked up once."""
        revocations = self.revocations_for(space_id, invocation)
        return lambda space: self.decide(call, invocation, space_id, space, revocations=revocations)

    def _decide_read(self, call: Call, invocation: Invocation, space_id: str, path: str) -> SpaceRecord:
        """(In a storage call.) A read decided like a listing of ``path``: capability, else policy."""
        space = self.backend.get_space(space_id)
        self.decide(
            call,
            invocation,
            space_id,
            space,
            revocations=self.revocations_for(space_id, invocation),
            policy=self.policy_lookup(space_id, path),
        )
        if space is None:
            raise _absent()
        return space

    def _collection(self, space_id: str, collection_id: str) -> dict[str, object] | None:
        return load_record(
            self.backend.get_records(space_id, COLLECTIONS, [collection_id]).get(collection_id)
        )

    # -- create, update ------------------------------------------------------

    async def create_collection(
        self, call: Call, space_id: str, body: bytes
    ) -> tuple[dict[str, object], str]:
        """POST /space/S/collections/: a new collection (the body's id or a fresh one); its description, ETag.

        An id already taken is 409 ``id-conflict``, told only to a caller
        authorized to create there.
        """
        check_space_id(space_id)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        wanted = parse_collection_body(body, None, self.settings.backend)
        collection_id = wanted.id or str(uuid.uuid4())
        backend = self.backend

        def create() -> bytes:
            guard = self._write_guard(call, invocation, space_id)
            guard(backend.get_space(space_id))
            if self._collection(space_id, collection_id) is not None:
                raise IdConflict("A collection with this id already exists.", pointer="#/id")
            record = collection_record(collection_id, wanted, None, invocation.signer, self._timestamp())
            # Metadata left by an earlier collection of this id (a write that raced its delete).
            backend.delete_record(space_id, COLLECTION_META, collection_id, guard)
            try:
                backend.put_record(
                    space_id, COLLECTIONS, collection_id, record, guard, Condition(if_none_match=True)
                )
            except PreconditionFailed:
                raise IdConflict("A collection with this id already exists.", pointer="#/id") from None
            return record

        record = await self.storage.run(create)
        return describe_collection(space_id, collection_id, json.loads(record)), record_etag(record)

    async def put_collection(
        self, call: Call, space_id: str, collection_id: str, body: bytes, condition: Condition | None
    ) -> tuple[bool, dict[str, object], str]:
        """PUT /space/S/c with a collection description: create or update; (created?, description, ETag).

        ``createdBy`` and ``createdAt`` survive updates.  ``If-Match`` /
        ``If-None-Match: *`` are checked against the stored description,
        atomically with the write (412 with nothing written).
        """
        check_space_id(space_id)
        check_collection_id(collection_id)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        wanted = parse_collection_body(body, collection_id, self.settings.backend)
        backend = self.backend

        def write() -> tuple[bool, bytes]:
            guard = self._write_guard(call, invocation, space_id)
            guard(backend.get_space(space_id))
            for _ in range(_RETRIES):
                raw = backend.get_records(space_id, COLLECTIONS, [collection_id]).get(collection_id)
                etag = None if raw is None else record_etag(raw)
                if condition is not None and not condition.holds(etag):
                    raise PreconditionFailedError("The precondition did not hold; nothing was written.")
                record = collection_record(
                    collection_id, wanted, load_record(raw), invocation.signer, self._timestamp()
                )
                if raw is None:
                    backend.delete_record(space_id, COLLECTION_META, collection_id, guard)
                # The write happens only over what was read: concurrent updates never interleave.
                unchanged = Condition(if_none_match=True) if etag is None else Condition(if_match=(etag,))
                try:
                    backend.put_record(space_id, COLLECTIONS, collection_id, record, guard, unchanged)
                except PreconditionFailed:
                    if condition is not None:
                        raise
                    continue
                return raw is None, record
            raise StorageBusy(f"collection {collection_id} kept changing under concurrent writes")

        created, record = await self.storage.run(write)
        return created, describe_collection(space_id, collection_id, json.loads(record)), record_etag(record)

    # -- read, delete, list --------------------------------------------------

    async def read_collection(
        self, call: Call, space_id: str, collection_id: str
    ) -> tuple[dict[str, object], str]:
        """GET /space/S/c when ``c`` was created: its description and ETag; else 404.

        Reached after a resource read of ``/c`` found nothing, so a legacy
        request is authenticated as leniently as that read was.
        """
        check_space_id(space_id)
        invocation = await self.invocation(call, lenient=self.legacy)
        backend = self.backend

        def read() -> bytes | None:
            if self.legacy:
                # legacy tells an absent target apart anyway (401/403 only for existing ones).
                space = backend.get_space(space_id)
                if space is None or self._collection(space_id, collection_id) is None:
                    return None
            self._decide_read(call, invocation, space_id, "/" + collection_id + "/")
            return backend.get_records(space_id, COLLECTIONS, [collection_id]).get(collection_id)

        raw = await self.storage.run(read)
        if raw is None:
            raise _absent()  # absent is not a storage refusal (metrics)
        return describe_collection(space_id, collection_id, load_record(raw) or {}), record_etag(raw)

    async def delete_collection(self, call: Call, space_id: str, collection_id: str) -> bool:
        """DELETE /space/S/c: the collection, every resource under ``/c/``, its policies and metadata.

        False (nothing done) when no collection ``c`` was created: the caller
        then deletes the resource ``/c``, as for any single-segment name.
        Resources go first, records last, so an interrupted delete leaves a
        collection that still exists and can be deleted again.
        """
        check_space_id(space_id)
        invocation = await self.invocation(call)
        backend = self.backend
        prefix = "/" + collection_id + "/"

        def delete() -> bool:
            guard = self._write_guard(call, invocation, space_id)
            space = backend.get_space(space_id)
            guard(space)
            if space is None or self._collection(space_id, collection_id) is None:
                return False
            backend.delete_resources(space_id, prefix, guard)
            # Their metadata records too: a resource made later at the same path is a new one.
            for name, _ in backend.list_records(space_id, "metadata", guard):
                if name.startswith(prefix):
                    backend.delete_resource_meta(space_id, name)
            for anchor, _ in backend.list_records(space_id, "policies", guard):
                if anchor == prefix[:-1] or anchor.startswith(prefix):
                    backend.delete_record(space_id, "policies", anchor, guard)
            backend.delete_record(space_id, COLLECTION_META, collection_id, guard)
            backend.delete_record(space_id, COLLECTIONS, collection_id, guard)
            return True

        return await self.storage.run(delete)

    async def list_collections(self, call: Call, space_id: str) -> dict[str, object]:
        """GET /space/S/collections/: ``{url, totalItems?, items: [{id, url, name}], next?}``, a page.

        Collection records are few and come back whole, so the page is cut
        here (ids ascending); ``limit`` and ``cursor`` as for every list.
        """
        check_space_id(space_id)
        invocation = await self.invocation(call)
        page = page_request(call)
        backend = self.backend

        def listing() -> list[tuple[str, bytes]]:
            self._decide_read(call, invocation, space_id, "/")
            page.check()
            return backend.list_records(space_id, COLLECTIONS, lambda space: None)

        records = await self.storage.run(listing)
        if page.after is not None:
            records = [(cid, raw) for cid, raw in records if cid > page.after]
        rows = records[: page.fetch]
        doc: dict[str, object] = {"url": collections_url(space_id)}
        page_of(rows, page, call, lambda row: row[0]).envelope(
            doc, page, lambda row: list_item(space_id, row[0], load_record(row[1]) or {})
        )
        return doc

    async def require_collection(self, call: Call, space_id: str, path: str) -> None:
        """``WAS_STRICT_COLLECTIONS``: a resource write under ``/c/`` needs collection ``c`` (else 404).

        Authorized first, as a write, so the 404 tells nothing new.
        """
        check_space_id(space_id)
        collection_id = path[1:].split("/", 1)[0]
        invocation = await self.invocation(call)
        backend = self.backend

        def check() -> None:
            self._write_guard(call, invocation, space_id)(backend.get_space(space_id))
            if self._collection(space_id, collection_id) is None:
                raise NotFound("No collection of this id was created (WAS_STRICT_COLLECTIONS is on).")

        await self.storage.run(check)

    # -- metadata ------------------------------------------------------------

    async def read_collection_meta(
        self, call: Call, space_id: str, collection_id: str
    ) -> tuple[dict[str, object], str | None]:
        """GET /space/S/c/meta: the metadata object, and its ETag once it has been written."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        backend = self.backend

        def read() -> tuple[dict[str, object], bytes | None]:
            self._decide_read(call, invocation, space_id, "/" + collection_id + "/")
            collection = self._collection(space_id, collection_id)
            if collection is None:
                raise _absent()
            meta = backend.get_records(space_id, COLLECTION_META, [collection_id]).get(collection_id)
            return collection, meta

        collection, meta = await self.storage.run(read)
        etag = None if meta is None else record_etag(meta)
        return describe_meta(collection, load_record(meta)), etag

    async def put_collection_meta(
        self, call: Call, space_id: str, collection_id: str, body: bytes, condition: Condition | None
    ) -> str:
        """PUT /space/S/c/meta: replace ``custom`` and ``epoch``; the new ETag.  Never creates (404)."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        wanted = parse_meta_body(body)
        backend = self.backend

        def write() -> bytes:
            guard = self._write_guard(call, invocation, space_id)
            guard(backend.get_space(space_id))
            if self._collection(space_id, collection_id) is None:
                raise _absent()
            for _ in range(_RETRIES):
                raw = backend.get_records(space_id, COLLECTION_META, [collection_id]).get(collection_id)
                etag = None if raw is None else record_etag(raw)
                if condition is not None and not condition.holds(etag):
                    raise PreconditionFailedError("The precondition did not hold; nothing was written.")
                record = meta_record(wanted, load_record(raw), self._timestamp(), uuid.uuid4().hex)
                unchanged = Condition(if_none_match=True) if etag is None else Condition(if_match=(etag,))
                try:
                    backend.put_record(space_id, COLLECTION_META, collection_id, record, guard, unchanged)
                except PreconditionFailed:
                    if condition is not None:
                        raise
                    continue
                return record
            raise StorageBusy(f"metadata of collection {collection_id} kept changing under concurrent writes")

        return record_etag(await self.storage.run(write))

    # -- backends ------------------------------------------------------------

    async def list_backends(self, call: Call, space_id: str) -> list[dict[str, object]]:
        """GET /space/S/backends: a bare array (the spec's one list that is not an envelope)."""
        check_space_id(space_id)
        invocation = await self.invocation(call)

        def read() -> None:
            self._decide_read(call, invocation, space_id, "/")

        await self.storage.run(read)
        return [backend_description(self.settings.backend)]

    async def read_collection_backend(
        self, call: Call, space_id: str, collection_id: str
    ) -> dict[str, object]:
        """GET /space/S/c/backend: the backend the collection selected (always ``default`` here)."""
        check_space_id(space_id)
        invocation = await self.invocation(call)

        def read() -> None:
            self._decide_read(call, invocation, space_id, "/" + collection_id + "/")
            if self._collection(space_id, collection_id) is None:
                raise _absent()

        await self.storage.run(read)
        return backend_description(self.settings.backend)
