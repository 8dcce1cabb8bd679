"""An in-memory backend: for tests and throwaway servers, where nothing must survive a restart."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, BinaryIO

from was_twisted.storage.base import (
    DEFAULT_CONTENT_TYPE,
    Backend,
    Builder,
    ByteRange,
    Condition,
    Guard,
    PreconditionFailed,
    ResourceInfo,
    ResourceMeta,
    SpaceMissing,
    SpaceRecord,
    StoredResource,
    check_condition,
    check_record,
    listing_key,
    record_etag,
)

__all__ = ["MemoryBackend"]

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class _Resource:
    """One stored resource; immutable so a reader holding it never sees a later write."""

    data: bytes
    content_type: str
    etag: str
    modified: float = field(default_factory=time.time)

    def info(self) -> ResourceInfo:
        return ResourceInfo(self.content_type, len(self.data), self.etag, self.modified)


def _read_all(body: BinaryIO) -> bytes:
    """The rest of ``body``: a small one (one chunk) without the copy into a buffer."""
    first = bytes(body.read(_CHUNK))
    if not first:
        return b""
    chunk = body.read(_CHUNK)
    if not chunk:
        return first
    buf = bytearray(first)
    while chunk:
        buf += chunk
        chunk = body.read(_CHUNK)
    return bytes(buf)


class MemoryBackend:
    """A ``Backend`` kept in dicts.

    One lock covers every mutation, so a guard and the write it allows are
    atomic.  Reads take the same lock only long enough to pick up immutable
    values, so a reader sees the old resource or the new one, never a mix.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[str, SpaceRecord] = {}
        self._resources: dict[str, dict[str, _Resource]] = {}
        #: space id -> kind -> name -> bytes (bytes are immutable, so readers need no copy).
        self._records: dict[str, dict[str, dict[str, bytes]]] = {}
        self._generation = 0

    def _next_etag(self) -> str:
        """A fresh strong etag; a counter changes on every write, whatever the bytes (lock held)."""
        self._generation += 1
        return f'"m{self._generation:x}"'

    def get_space(self, space_id: str) -> SpaceRecord | None:
        """The space, or ``None``."""
        with self._lock:
            return self._spaces.get(space_id)

    def put_space(self, space_id: str, build: Builder) -> tuple[bool, SpaceRecord]:
        """Write ``build(current)``; (created?, record).  Resources of a replaced space stay."""
        with self._lock:
            current = self._spaces.get(space_id)
            record = build(current)
            if record.space_id != space_id:
                raise ValueError(f"built record is for {record.space_id!r}, not {space_id!r}")
            record = dataclasses.replace(record, etag=self._next_etag())
            self._spaces[space_id] = record
            self._resources.setdefault(space_id, {})
            return current is None, record

    def delete_space(self, space_id: str, guard: Guard) -> bool:
        """Delete a space and its resources after ``guard(current)``; True if it existed."""
        with self._lock:
            current = self._spaces.get(space_id)
            guard(current)
            if current is None:
                return False
            del self._spaces[space_id]
            self._resources.pop(space_id, None)
            self._records.pop(space_id, None)
            return True

    def list_spaces(
        self, controller: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        """The ids of the spaces whose controller is ``controller``, sorted; a page of them."""
        with self._lock:
            ids = sorted(r.space_id for r in self._spaces.values() if r.controller == controller)
        if start_after is not None:
            ids = [sid for sid in ids if sid > start_after]
        return ids if limit is None else ids[:limit]

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True, byte_range: ByteRange | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        """The space and the resource (or the ``byte_range`` of it) as a fresh ``BytesIO``."""
        with self._lock:
            space = self._spaces.get(space_id)
            if space is None:
                return None, None
            res = self._resources.get(space_id, {}).get(path)
        if res is None:
            return space, None
        span = byte_range.resolve(len(res.data)) if byte_range is not None else None
        data = res.data if span is None else res.data[span[0] : span[1] + 1]
        return space, StoredResource(res.info(), io.BytesIO(data), span)

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
        """Store ``body`` after ``guard(space)`` and ``condition``, all under the one lock."""
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                raise SpaceMissing(f"space {space_id!r} does not exist")
            stored = self._resources.get(space_id, {})
            check_condition(condition, self._etag_of(stored.get(path)))
            data = _read_all(body)
            res = _Resource(data, content_type or DEFAULT_CONTENT_TYPE, self._next_etag(), time.time())
            existed = path in stored
            self._resources.setdefault(space_id, {})[path] = res
            return ResourceInfo(res.content_type, len(data), res.etag, res.modified, existed=existed)

    @staticmethod
    def _etag_of(res: _Resource | None) -> str | None:
        return None if res is None else res.etag

    def delete_resource(
        self, space_id: str, path: str, guard: Guard, *, condition: Condition | None = None
    ) -> bool:
        """Delete one resource after ``guard(space)`` and ``condition``; True if it existed."""
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                return False
            stored = self._resources.get(space_id, {})
            check_condition(condition, self._etag_of(stored.get(path)))
            return stored.pop(path, None) is not None

    def list_resources(
        self,
        space_id: str,
        prefix: str,
        guard: Guard,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ResourceInfo]]:
        """Resources under ``prefix`` in ``listing_key`` order, after ``guard(space)``; a page of them."""
        after = None if start_after is None else listing_key(start_after)
        with self._lock:
            guard(self._spaces.get(space_id))
            items = [
                (listing_key(p), p, r)
                for p, r in self._resources.get(space_id, {}).items()
                if p.startswith(prefix)
            ]
        if after is not None:
            items = [item for item in items if item[0] > after]
        items.sort(key=lambda item: item[0])
        if limit is not None:
            items = items[:limit]
        return [(p, r.info()) for _, p, r in items]

    def delete_resources(self, space_id: str, prefix: str, guard: Guard) -> int:
        """Delete every resource under ``prefix`` after ``guard(space)``, under the one lock."""
        if not prefix:
            raise ValueError("delete_resources needs a non-empty prefix")
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                return 0
            stored = self._resources.get(space_id, {})
            doomed = [p for p in stored if p.startswith(prefix)]
            for path in doomed:
                del stored[path]
            return len(doomed)

    # -- records -------------------------------------------------------------------

    def get_records(self, space_id: str, kind: str, names: Sequence[str]) -> dict[str, bytes]:
        """The named records that exist; {} if the space is absent.  No guard."""
        check_record(kind)
        for name in names:
            check_record(kind, name)
        with self._lock:
            if space_id not in self._spaces:
                return {}
            stored = self._records.get(space_id, {}).get(kind, {})
            return {name: stored[name] for name in names if name in stored}

    def put_record(
        self,
        space_id: str,
        kind: str,
        name: str,
        data: bytes,
        guard: Guard,
        condition: Condition | None = None,
    ) -> bool:
        """Store a record after ``guard(space)`` and ``condition``; True if it is new."""
        check_record(kind, name)
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                raise SpaceMissing(f"space {space_id!r} does not exist")
            stored = self._records.setdefault(space_id, {}).setdefault(kind, {})
            if condition is not None:
                current = stored.get(name)
                if not condition.holds(None if current is None else record_etag(current)):
                    raise PreconditionFailed(f"{kind}/{name}")
            created = name not in stored
            stored[name] = bytes(data)
            return created

    def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        """Delete a record after ``guard(space)``; True if it existed."""
        check_record(kind, name)
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                return False
            return self._records.get(space_id, {}).get(kind, {}).pop(name, None) is not None

    def list_records(self, space_id: str, kind: str, guard: Guard) -> list[tuple[str, bytes]]:
        """Every record of ``kind``, sorted by name, after ``guard(space)``; [] if the space is absent."""
        check_record(kind)
        with self._lock:
            space = self._spaces.get(space_id)
            guard(space)
            if space is None:
                return []
            items = list(self._records.get(space_id, {}).get(kind, {}).items())
        items.sort(key=lambda item: item[0])
        return items

    # -- resource metadata ---------------------------------------------------------

    def read_resource_meta(self, space_id: str, path: str) -> tuple[SpaceRecord | None, ResourceMeta | None]:
        """The space, and the resource's info, write time and metadata record (``None`` when absent)."""
        with self._lock:
            space = self._spaces.get(space_id)
            res = self._resources.get(space_id, {}).get(path) if space is not None else None
            record = self._records.get(space_id, {}).get("metadata", {}).get(path)
        if res is None:
            return space, None
        info = ResourceInfo(content_type=res.content_type, size=len(res.data), etag=res.etag)
        return space, ResourceMeta(info, res.modified, record)

    def put_resource_meta(self, space_id: str, path: str, data: bytes) -> None:
        """Replace the resource's metadata record; nothing if the space is gone."""
        with self._lock:
            if space_id in self._spaces:
                self._records.setdefault(space_id, {}).setdefault("metadata", {})[path] = bytes(data)

    def create_resource_meta(self, space_id: str, path: str, data: bytes) -> bool:
        """Add the record unless one exists (or the space is gone), under the lock."""
        with self._lock:
            if space_id not in self._spaces:
                return False
            records = self._records.setdefault(space_id, {}).setdefault("metadata", {})
            if path in records:
                return False
            records[path] = bytes(data)
            return True

    def delete_resource_meta(self, space_id: str, path: str) -> None:
        """Delete the resource's metadata record, if any."""
        with self._lock:
            self._records.get(space_id, {}).get("metadata", {}).pop(path, None)

    def ping(self) -> None:
        """Memory is always there."""

    def close(self) -> None:
        """Nothing to release."""


if TYPE_CHECKING:

    def _conforms(backend: MemoryBackend) -> Backend:
        """Let mypy check that the class meets the protocol."""
        return backend
