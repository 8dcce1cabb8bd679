"""Resource operations: read (GET/HEAD), write (PUT/POST), delete, and container listings."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from ..errors import NotFound, WASError
from ..ids import check_resource_path, check_space_id
from ..storage.base import DEFAULT_CONTENT_TYPE, ByteRange, Condition, ResourceInfo, SpaceRecord
from ..storage.threaded import AsyncBody
from .base import Call, OperationsBase, resource_url
from .collection_model import COLLECTIONS, describe_collection, load_record
from .forms import file_part, is_form_data
from .metadata import Declared, after_write, record_creation
from .pagination import page_of, page_request


def _listed(space_id: str, prefix: str, path: str, info: ResourceInfo) -> dict[str, object]:
    """A container listing item; ``contentType`` only where the store lists it (not S3)."""
    item: dict[str, object] = {
        "id": path[len(prefix) :],
        "url": resource_url(space_id, path),
        "size": info.size,
    }
    if info.content_type:
        item["contentType"] = info.content_type
    return item


@dataclass(frozen=True)
class RangedRead:
    """A GET's outcome: metadata, the ``(first, last)`` span the body holds (``None``: all of it).

    ``unsatisfiable``: a ``Range`` applied and selects no byte (416; the body is then empty).
    """

    info: ResourceInfo
    span: tuple[int, int] | None
    body: AsyncBody
    unsatisfiable: bool = False


class ResourceOperations(OperationsBase):
    """The spec's Resource operations, at any depth under a space."""

    async def read_resource(
        self, call: Call, space_id: str, path: str, with_body: bool = True
    ) -> tuple[ResourceInfo, AsyncBody]:
        """GET (or, ``with_body=False``, HEAD) a resource: its metadata and body.

        A capability is checked first; failing that, the most specific
        policy (legacy: public when there is none).
        """
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call, lenient=self.legacy)

        guard = self.read_guard(call, invocation, space_id, path)
        _, info, body = await self.storage.read_resource(space_id, path, with_body, guard)
        if info is None or body is None:
            raise NotFound("Resource not found or insufficient authorization.")
        return info, body

    async def read_resource_range(
        self,
        call: Call,
        space_id: str,
        path: str,
        byte_range: ByteRange | None,
        range_applies: Callable[[ResourceInfo], bool] = lambda info: True,
    ) -> RangedRead:
        """GET ``byte_range`` of a resource (``None``: all of it), authorized as ``read_resource``.

        ``range_applies`` is ``If-Range``: when it says no, the whole body is
        read instead (a second read, only in that rare case).  An
        unsatisfiable range is told in the result, not raised, so the caller
        can still answer ``If-None-Match`` first (RFC 9110 13.2.2).
        """
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call, lenient=self.legacy)

        guard = self.read_guard(call, invocation, space_id, path)
        _, stored, body = await self.storage.read_resource_range(space_id, path, byte_range, guard)
        if stored is None or body is None:
            raise NotFound("Resource not found or insufficient authorization.")
        if byte_range is None:
            return RangedRead(stored.info, None, body)
        satisfiable = byte_range.resolve(stored.info.size) is not None
        if range_applies(stored.info):
            return RangedRead(stored.info, stored.span, body, unsatisfiable=not satisfiable)
        if stored.span is None and satisfiable:
            return RangedRead(stored.info, None, body)  # the whole body was read anyway
        await body.close()
        _, stored, body = await self.storage.read_resource_range(space_id, path, None, guard)
        if stored is None or body is None:
            raise NotFound("Resource not found or insufficient authorization.")
        return RangedRead(stored.info, None, body)

    async def write_resource(
        self,
        call: Call,
        space_id: str,
        path: str,
        body: BinaryIO,
        content_type: str | None,
        condition: Condition | None = None,
    ) -> ResourceInfo:
        """PUT: store the body; ``condition`` (``If-Match`` / ``If-None-Match: *``) after authorization."""
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        declared = Declared.from_headers(call.headers)
        backend = self.backend
        conditional = {} if condition is None else {"condition": condition}
        now = self.now()

        form = is_form_data(content_type)
        # A plain write reads no record first: the backend says whether it created the resource
        # (ResourceInfo.existed), and only a creation gets a record.  Declared Key-Epoch/Writer-Id
        # rewrite the record, and a form is authorized before its body is looked into: those read
        # the resource's metadata first.
        blind = declared == Declared() and not form

        def write() -> ResourceInfo:
            revocations = self.revocations_for(space_id, invocation)
            before = None
            if not blind:
                space, before = backend.read_resource_meta(space_id, path)
                self.decide(call, invocation, space_id, space, revocations=revocations)
            data, stored_type = body, content_type or DEFAULT_CONTENT_TYPE
            if form:  # authorized first: only then is the body looked into
                body.seek(0)
                data, stored_type = file_part(body, stored_type)
            try:
                info = backend.write_resource(
                    space_id,
                    path,
                    data,
                    stored_type,
                    lambda space: self.decide(call, invocation, space_id, space, revocations=revocations),
                    **conditional,
                )
            finally:
                if data is not body:
                    data.close()
            if blind:
                # An overwrite keeps the record it has (or, the existing server's, none: its
                # creation is unknown, never guessed); not knowing is treated the same.
                if info.existed is False:
                    record_creation(backend, space_id, path, invocation.signer, now)
            else:
                after_write(backend, space_id, path, before, declared, invocation.signer, now, info.etag)
            return info

        return await self.storage.run(write)

    async def post_resource(
        self,
        call: Call,
        space_id: str,
        path: str,
        body: BinaryIO,
        content_type: str | None,
        condition: Condition | None = None,
    ) -> tuple[str, ResourceInfo]:
        """POST: to ``.../`` a new resource with a fresh name under it, else write at ``path``.

        Returns the path written and what was stored (its new ETag).
        ``condition`` applies to a write at an exact path.
        """
        if path.endswith("/"):
            path = path + str(uuid.uuid4())
        info = await self.write_resource(call, space_id, path, body, content_type, condition)
        return path, info

    async def delete_resource(
        self, call: Call, space_id: str, path: str, condition: Condition | None = None
    ) -> None:
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call)
        backend = self.backend
        conditional = {} if condition is None else {"condition": condition}

        def delete() -> bool:
            revocations = self.revocations_for(space_id, invocation)
            deleted = backend.delete_resource(
                space_id,
                path,
                lambda space: self.decide(call, invocation, space_id, space, revocations=revocations),
                **conditional,
            )
            if deleted:  # the metadata goes with it (after: a crash between leaves a record never served)
                backend.delete_resource_meta(space_id, path)
            return deleted

        await self.storage.run(delete)

    async def list_container(self, call: Call, space_id: str, prefix: str) -> dict[str, object] | None:
        """A page of the resources under ``prefix`` (a path ending in ``/``), at any depth.

        A created collection's listing (``/c/``) also carries its ``id`` and
        ``name``, with ``url`` its description's; an implicit container's
        ``url`` is the listing's own.

        ``None`` when a resource is stored at exactly ``prefix`` (a client of
        the existing server may have written one): the caller serves it.
        A bad ``limit`` or ``cursor`` is refused only once the caller is authorized.
        """
        check_space_id(space_id)
        check_resource_path(prefix)
        invocation = await self.invocation(call)
        page = page_request(call, valid_after=lambda after: _is_path(prefix + after))
        backend = self.backend

        # A container one level down may be a created collection: its listing then names it.
        collection_id = prefix[1:-1] if prefix.count("/") == 2 else None

        def listing() -> tuple[list[tuple[str, ResourceInfo]], bytes | None]:
            seen: list[SpaceRecord | None] = []
            if page.error is None:
                entries = backend.list_resources(
                    space_id,
                    prefix,
                    seen.append,
                    start_after=None if page.after is None else prefix + page.after,
                    limit=page.fetch,
                )
            else:
                entries = []
                seen.append(backend.get_space(space_id))
            # A read: decided after it, where policies may be looked up without the backend's lock.
            self.decide(
                call,
                invocation,
                space_id,
                seen[0] if seen else None,
                revocations=self.revocations_for(space_id, invocation),
                policy=self.policy_lookup(space_id, prefix),
            )
            page.check()
            if collection_id is None or (page.after is None and entries and entries[0][0] == prefix):
                return entries, None
            records = backend.get_records(space_id, COLLECTIONS, [collection_id])
            return entries, records.get(collection_id)

        entries, record = await self.storage.run(listing)
        if page.after is None and entries and entries[0][0] == prefix:
            return None
        doc: dict[str, object] = {"url": resource_url(space_id, prefix), "type": ["Collection"]}
        if collection_id is not None and record is not None:
            described = describe_collection(space_id, collection_id, load_record(record) or {})
            doc = {
                "id": collection_id,
                "url": described["url"],
                "name": described.get("name", collection_id),
                "type": ["Collection"],
            }
        page_of(entries, page, call, lambda entry: entry[0][len(prefix) :]).envelope(
            doc, page, lambda entry: _listed(space_id, prefix, *entry)
        )
        return doc


def _is_path(path: str) -> bool:
    """Whether ``path`` could be a stored resource's (a cursor naming anything else is not ours)."""
    try:
        check_resource_path(path)
    except WASError:
        return False
    return True
