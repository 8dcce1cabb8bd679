"""The storage contract: records, errors, and the synchronous backend protocol.

Backends are plain synchronous code that knows nothing of Twisted or HTTP.
``threaded.py`` adapts any of them to the async contract the operations use.

Authorization rules live in ``auth/`` and ``operations.py``, but a blocking
backend should look a space up and act on it in one call (one thread-pool
hop).  So every write takes a ``guard``: a pure function that the backend
calls with the current space record (or ``None``) before it changes
anything, and that raises to refuse (a space write takes a ``build`` that
also returns the record to write).  The backend never decides who may act.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from typing import BinaryIO, Protocol
from urllib.parse import quote

#: Called with the stored space (``None`` when absent) before a write; raises to refuse.
Guard = Callable[["SpaceRecord | None"], None]

#: Called with the stored space (``None`` when absent); returns the record to write, or raises.
Builder = Callable[["SpaceRecord | None"], "SpaceRecord"]

#: Content type stored when a write does not say.
DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: Kinds of records kept beside a space's resources (never inside ``resources/``).
#: ``collections``: created collections by id; ``collection-meta``: their metadata objects by id;
#: ``metadata``: one per resource (named by its path) that has server fields or ``custom`` to keep.
RECORD_KINDS = ("policies", "revocations", "collections", "collection-meta", "metadata")

#: What a record's file or key name ends with (after ``quote(name, safe="")``).
RECORD_SUFFIX = ".json"


def listing_key(path: str) -> str:
    """The order every listing uses: the stored name's, ``quote(path, safe="")`` (ASCII, compared bytewise).

    It is S3's key order and the filesystem's file names, so a page resumes
    with S3 ``StartAfter`` and never needs the whole list; for ids of
    unreserved characters (uuids, ``a-z0-9._~-``) it is plain id order.
    """
    return quote(path, safe="")


def check_record(kind: str, name: str | None = None) -> None:
    """Refuse an unknown kind or an empty name: a caller's bug, so ``ValueError``, never a 4xx."""
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {RECORD_KINDS}")
    if name is not None and (not isinstance(name, str) or not name):
        raise ValueError(f"record name must be a non-empty string, not {name!r}")


def record_stem(name: str) -> str:
    """A record's file or key name before ``RECORD_SUFFIX``: ``quote(name, safe="")``, and more.

    A leading ``.`` or ``_`` is escaped too (``%2E``, ``%5F``), so no record is
    ever named like a dot-file (temp files, tombstones) or like a space's own
    ``_meta.json``.  Real names (``/...``, ``urn:...``) are untouched by this,
    and ``unquote`` still recovers every name.
    """
    stem = quote(name, safe="")
    if stem[:1] in (".", "_"):
        stem = f"%{ord(stem[0]):02X}" + stem[1:]
    return stem


def record_etag(data: bytes) -> str:
    """A record's strong ETag: a digest of its bytes, the same on every backend.

    Writers that need every write to change it (collection metadata) put
    something unique in each write.
    """
    return '"' + sha256(data).hexdigest()[:32] + '"'


@dataclass(frozen=True)
class Condition:
    """An HTTP precondition that a write must meet atomically with itself (RFC 9110 13.1).

    ``if_match``: the write happens only if the current ETag is one of these
    (strong comparison; ``("*",)`` means "exists").  ``if_none_match``:
    ``If-None-Match: *``, the write happens only if nothing is stored.  A
    backend raises ``PreconditionFailed`` (never writing) when it does not hold.
    """

    if_match: tuple[str, ...] | None = None
    if_none_match: bool = False

    def holds(self, current_etag: str | None) -> bool:
        """Whether a write may go ahead over ``current_etag`` (``None``: nothing stored)."""
        if self.if_none_match and current_etag is not None:
            return False
        if self.if_match is not None:
            if current_etag is None:
                return False
            return "*" in self.if_match or current_etag in self.if_match
        return True


def check_condition(condition: Condition | None, current_etag: str | None) -> None:
    """Raise ``PreconditionFailed`` unless ``condition`` is absent or holds over ``current_etag``."""
    if condition is not None and not condition.holds(current_etag):
        raise PreconditionFailed(f"precondition {condition} does not hold over {current_etag}")


@dataclass(frozen=True)
class SpaceRecord:
    """A space as stored.

    ``space_id`` is the id in the URL and storage key; ``id`` is the body's
    ``id`` as first written (the real clients send ``urn:uuid:`` + the path
    id, and the existing server stores and returns that).  ``extra`` keeps
    members of ``_meta.json`` we do not know, so a rewrite loses nothing.
    """

    space_id: str
    id: str
    controller: str
    name: str | None = None
    created_by: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)
    #: The stored record's strong ETag (quoted), filled by the backend that read or wrote it;
    #: ``put_space``'s ``build`` compares it with a ``Condition`` (space ``If-Match``).
    etag: str | None = field(default=None, compare=False)

    def to_json(self) -> dict[str, object]:
        """The ``_meta.json`` document (the existing server's members first)."""
        doc: dict[str, object] = dict(self.extra)
        doc["id"] = self.id
        doc["controller"] = self.controller
        if self.name is not None:
            doc["name"] = self.name
        if self.created_by is not None:
            doc["createdBy"] = self.created_by
        return doc

    @classmethod
    def from_json(cls, space_id: str, doc: dict[str, object]) -> SpaceRecord:
        """Read a ``_meta.json`` document; unknown members go to ``extra``."""
        known = {"id", "controller", "name", "createdBy"}
        name = doc.get("name")
        created_by = doc.get("createdBy")
        return cls(
            space_id=space_id,
            id=str(doc.get("id", space_id)),
            controller=str(doc["controller"]),
            name=name if isinstance(name, str) else None,
            created_by=created_by if isinstance(created_by, str) else None,
            extra={k: v for k, v in doc.items() if k not in known},
        )


@dataclass(frozen=True)
class ResourceInfo:
    """What is known of a stored resource without reading its bytes."""

    content_type: str
    size: int
    etag: str | None = None
    #: When the stored bytes last changed, in seconds since the epoch (``Last-Modified``).
    last_modified: float | None = None
    #: Set by ``write_resource`` only: whether the path held a resource just before this write
    #: (``None``: not known).  A creation is recorded as one; an overwrite keeps the record it has.
    #: About the write, not the resource: left out of equality (a read of the same bytes is equal).
    existed: bool | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ByteRange:
    """One ``bytes=`` range-spec (RFC 9110 14.1.2), not yet resolved against a size.

    ``first``/``last`` as sent (``last`` ``None``: to the end); a suffix range
    (``-n``, the last ``n`` bytes) has ``first`` ``None`` and ``suffix`` ``n``.
    """

    first: int | None = None
    last: int | None = None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int] | None:
        """The inclusive ``(first, last)`` byte positions this range selects of ``size`` bytes.

        ``None`` when it selects nothing (unsatisfiable: 416).  An empty
        representation has no bytes to select, so every range is unsatisfiable.
        """
        if size <= 0:
            return None
        if self.first is None:
            if not self.suffix:
                return None
            return max(0, size - self.suffix), size - 1
        if self.first >= size:
            return None
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return self.first, last


@dataclass(frozen=True)
class ResourceMeta:
    """What a resource's metadata is made of, read in one call without its bytes.

    ``modified``: when its bytes were last written (seconds since the epoch),
    if the store knows.  ``record``: its ``metadata`` record, if one exists.
    """

    info: ResourceInfo
    modified: float | None
    record: bytes | None


@dataclass
class StoredResource:
    """An open resource: its metadata and a readable binary body.

    The caller must close ``body``; bytes are read in chunks, never whole.
    ``span`` is the inclusive ``(first, last)`` slice ``body`` holds when a
    ``ByteRange`` was asked for and satisfiable (``None``: the whole body,
    or, when the range was unsatisfiable, possibly nothing: the caller
    checks ``ByteRange.resolve(info.size)``).
    """

    info: ResourceInfo
    body: BinaryIO
    span: tuple[int, int] | None = None

    @property
    def length(self) -> int:
        """How many bytes ``body`` holds."""
        return self.info.size if self.span is None else self.span[1] - self.span[0] + 1


class PreconditionFailed(Exception):  # noqa: N818 - named as the spec's error type
    """A write's ``Condition`` did not hold; nothing was written (not a storage fault: no 5xx)."""


class StorageError(Exception):
    """Storage failed; the message is for the log, not the client."""


class SpaceMissing(StorageError):
    """A resource write into a space that does not exist (and the guard let it through)."""


class KeyTooLong(StorageError):
    """The backend cannot store a key this long (e.g. a file name over 255 bytes)."""


class StorageBusy(StorageError):
    """Storage throttled us or is briefly down: the client should retry."""


class Backend(Protocol):
    """A synchronous storage backend.  Every method may block.

    Resource ``path`` is the decoded path under the space with a leading
    ``/`` (``/notes/a.txt``), as the existing server keys it.
    """

    def get_space(self, space_id: str) -> SpaceRecord | None:
        """The space, or ``None``."""
        ...

    def put_space(self, space_id: str, build: Builder) -> tuple[bool, SpaceRecord]:
        """Create or replace a space with ``build(current)``; (created?, the record written).

        ``build`` raises to refuse (``PreconditionFailed`` when a ``Condition``
        on ``current.etag`` does not hold).  The record returned carries its
        new ``etag``.  Calling it and writing its record are atomic with
        respect to other writers of the same space in this process (and,
        where the store allows, across processes).
        """
        ...

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Delete a space, its resources and its records after ``guard(current)``; True if it existed.

        Atomic to readers: the space is gone (``get_space`` is ``None``) before
        any resource or record goes, and stays gone through a crash; what a
        crash leaves is invisible and the sweeper (``was_twisted/sweeper.py``)
        removes it.  Filesystem: one rename away; S3: a marker, then the record
        (``s3_delete.py``); memory: one step.
        """
        ...

    def list_spaces(
        self, controller: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """The ids of the spaces whose controller is ``controller``, sorted.

        A page: only ids after ``start_after``, at most ``limit`` of them (the
        caller asks for one more than it shows, to know whether more follow).
        """
        ...

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True, byte_range: ByteRange | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The space and the open resource (each ``None`` when absent), in one call.

        ``with_body=False`` (a HEAD) lets a backend skip fetching the bytes: the
        body it returns may then be empty, but the metadata is the real one.
        ``byte_range``: fetch only that slice (``StoredResource.span``); the
        metadata still describes the whole representation.
        """
        ...

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
        """Store ``body`` (read to its end) after ``guard(space)`` passes.

        Raises ``SpaceMissing`` if the space is absent and the guard allowed it,
        ``PreconditionFailed`` (nothing written) if ``condition`` does not hold
        for the stored ETag, checked after the guard and atomically with the write.
        A reader sees the old bytes or the new ones, never a mix.  The returned
        info's ``existed`` says whether a resource was there just before (a
        look taken with the write, not a promise against a racing writer).
        """
        ...

    def delete_resource(
        self, space_id: str, path: str, guard: Guard, *, condition: Condition | None = None
    ) -> bool:
        """Delete one resource after ``guard(space)``; False if it certainly did not exist.

        ``condition`` as for ``write_resource``.
        (S3 does not say whether a deleted key existed: it answers True.)
        """
        ...

    def list_resources(
        self,
        space_id: str,
        prefix: str,
        guard: Guard,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ResourceInfo]]:
        """Resources whose path starts with ``prefix``, in ``listing_key`` order, after ``guard(space)``.

        A page: only paths whose key is after ``start_after``'s, at most
        ``limit`` of them, in memory bounded by ``limit`` (S3: one
        ListObjectsV2 for up to 1,000).  ``content_type`` is empty where the
        store cannot list it cheaply (S3).
        """
        ...

    def delete_resources(self, space_id: str, prefix: str, guard: Guard) -> int:
        """Delete every resource whose path starts with ``prefix`` after ``guard(space)``; how many.

        ``prefix`` is a container (``/c/``), never empty.  Batched (S3: one
        DeleteObjects per 1,000 keys, page by page, never all keys in memory);
        a write racing the delete may survive it.  0 if the space is absent.
        """
        ...

    # Records beside a space (policies, zCap revocations): small documents keyed by name.
    # ``name`` is any non-empty string (an anchor path, a capability id); ``kind`` is one of
    # ``RECORD_KINDS`` (``ValueError`` otherwise).  ``delete_space`` removes them with the
    # space, only once the space reads as absent, so no resource outlives its policies visibly.

    def get_records(self, space_id: str, kind: str, names: Sequence[str]) -> dict[str, bytes]:
        """The records of ``kind`` among ``names`` that exist (absent ones left out); {} if no such space.

        No guard: authorization reads these to decide, so they cannot be guarded by it.
        """
        ...

    def put_record(
        self,
        space_id: str,
        kind: str,
        name: str,
        data: bytes,
        guard: Guard,
        condition: Condition | None = None,
    ) -> bool:
        """Store one record after ``guard(space)``; True if it did not exist before.

        Raises ``SpaceMissing`` if the space is absent and the guard allowed it,
        ``KeyTooLong`` if the name does not fit the store.  A reader sees the
        old bytes or the new ones, never a mix.  ``condition`` (checked after
        the guard, against ``record_etag`` of the stored bytes, atomically
        with the write) raises ``PreconditionFailed`` when it does not hold.
        """
        ...

    def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        """Delete one record after ``guard(space)``; False if it certainly did not exist (S3: True)."""
        ...

    def list_records(self, space_id: str, kind: str, guard: Guard) -> list[tuple[str, bytes]]:
        """Every record of ``kind``, sorted by name, after ``guard(space)``; [] if the space is absent.

        Meant for some thousands of records at most: they come back whole, in memory.
        """
        ...

    # A resource's metadata: its info and its ``metadata`` record (named by the resource path).
    # The record is written and deleted only by an operation that has just authorized the
    # request in the same call (a content write, a delete, a metadata update), so these take
    # no guard.  A record whose resource is gone is never served, and a new resource at its
    # path replaces it.

    def read_resource_meta(self, space_id: str, path: str) -> tuple[SpaceRecord | None, ResourceMeta | None]:
        """The space and the resource's metadata (each ``None`` when absent), side by side where possible."""
        ...

    def put_resource_meta(self, space_id: str, path: str, data: bytes) -> None:
        """Replace a resource's metadata record (whole or not at all); nothing if the space is gone."""
        ...

    def create_resource_meta(self, space_id: str, path: str, data: bytes) -> bool:
        """Write a resource's metadata record only if it has none: True if written, False if one exists.

        Atomic on each backend (S3: ``PutObject`` with ``IfNoneMatch='*'``), so a
        content write can record its creation after the fact without first
        reading what was there: an overwrite finds the record and keeps it.
        False too (nothing written) if the space is gone or the name cannot fit.
        """
        ...

    def delete_resource_meta(self, space_id: str, path: str) -> None:
        """Delete a resource's metadata record, if any."""
        ...

    def ping(self) -> None:
        """Raise ``StorageError`` if storage cannot serve requests now: one cheap call, for ``/ready``."""
        ...

    def close(self) -> None:
        """Release connections or handles."""
        ...
