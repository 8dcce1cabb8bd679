"""An opt-in, bounded, short-lived cache of space records (``WAS_SPACE_CACHE_SECONDS``).

Every resource request needs its space's record (who controls it) before
it may touch the resource: on S3 that is a GetObject of ``_meta.json``, the
first of a write's two round trips.  Kept here for a few seconds, a write
is one round trip and a read one S3 call instead of two.

The cost is consistency between servers: a record changed or deleted by
*another* process (another server or worker on the same bucket) is seen
here only once its entry expires, at most ``seconds`` later.  This process's
own writes and deletes of a record drop its entry at once.  Absent spaces
are never cached, so a space created elsewhere is seen at once.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["DEFAULT_MAX_ENTRIES", "SpaceCache"]

V = TypeVar("V")

#: Entries kept at most (least recently used dropped first): a few MiB of records.
DEFAULT_MAX_ENTRIES = 10_000


class SpaceCache(Generic[V]):
    """``space_id -> value`` for ``seconds`` after it was stored; thread-safe (storage threads share it)."""

    def __init__(
        self,
        seconds: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if seconds <= 0:
            raise ValueError("a space cache needs a positive lifetime")
        if max_entries < 1:
            raise ValueError("a space cache needs room for at least one entry")
        self.seconds = seconds
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Read before loading a record, passed to ``put``: a record written meanwhile is not kept."""
        return self._generation

    def get(self, space_id: str) -> V | None:
        """The value stored less than ``seconds`` ago, else ``None`` (and the stale entry is dropped)."""
        with self._lock:
            entry = self._entries.get(space_id)
            if entry is None:
                return None
            if self._clock() >= entry[0]:
                del self._entries[space_id]
                return None
            self._entries.move_to_end(space_id)
            return entry[1]

    def put(self, space_id: str, value: V, generation: int) -> None:
        """Remember ``value`` for ``seconds``; the least recently used entry goes when full.

        Nothing is kept if any record was invalidated since ``generation`` was
        read: the value may predate that write (loads and writes run in
        different storage threads).
        """
        with self._lock:
            if generation != self._generation:
                return
            self._entries[space_id] = (self._clock() + self.seconds, value)
            self._entries.move_to_end(space_id)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self, space_id: str) -> None:
        """Forget ``space_id`` (its record was just written or deleted here)."""
        with self._lock:
            self._generation += 1
            self._entries.pop(space_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
