"""Bound what one request may upload, without holding or spooling the excess.

Twisted reads a whole body before the resource sees it, into memory or (past
100 kB) a temporary file; here always into memory, never ``/tmp`` (large
bodies stream instead: ``upload.py``; the memory backend keeps them in
memory anyway).  ``BoundedRequest`` counts the bytes as they arrive: past
the limit it stops keeping them (the rest is read and dropped, so the
connection stays usable), and the route answers 413 ``payload-too-large``.
"""

from __future__ import annotations

import io
from typing import Any

from twisted.web.server import Request


class _Discard(io.BytesIO):
    """A content file that keeps nothing: the body was too large to be kept."""

    def write(self, data: Any) -> int:
        return len(data)


class BoundedRequest(Request):
    """A ``Request`` that refuses to keep a body larger than ``max_upload`` bytes."""

    max_upload = 1 << 30
    too_large = False

    def gotLength(self, length: int | None) -> None:
        self._received = 0
        if length is not None and length > self.max_upload:
            self.too_large = True
            self.content = _Discard()
            return
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        if self.too_large:
            return
        self._received += len(data)
        if self._received > self.max_upload:
            # A chunked body that grew past the limit: drop what was kept.
            self.too_large = True
            if self.content is not None:
                self.content.close()
            self.content = _Discard()
            return
        super().handleContentChunk(data)


def bounded_request_factory(max_upload: int) -> type[BoundedRequest]:
    """A request class with this limit, for ``Site.requestFactory``."""
    return type("BoundedRequest", (BoundedRequest,), {"max_upload": max_upload})
