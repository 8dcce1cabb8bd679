"""``Range`` and ``If-Range`` on a resource GET (RFC 9110 14), and the headers of a partial response.

Only what a resumable download needs: one ``bytes=`` range (``first-last``,
``first-``, ``-suffix``).  Several ranges (a ``multipart/byteranges``
answer), another unit, or a malformed header: the whole body, 200, as
RFC 9110 14.2 allows a server that ignores ``Range``.
"""

from __future__ import annotations

import functools
import re
from email.utils import formatdate, parsedate_to_datetime

from ..storage.base import ByteRange

__all__ = ["content_range", "http_date", "if_range_holds", "parse_range"]

#: ``bytes=first-last``, ``bytes=first-``, ``bytes=-suffix``; 18 digits keep it below 10**18 bytes.
_RANGE = re.compile(r"bytes[ \t]*=[ \t]*(?:(\d{1,18})-(\d{1,18})?|-(\d{1,18}))[ \t]*", re.IGNORECASE)


def parse_range(header: str | None) -> ByteRange | None:
    """The one range a ``Range`` header asks for; ``None`` to send the whole body."""
    if not header:
        return None
    match = _RANGE.fullmatch(header)
    if match is None:
        return None
    first, last, suffix = match.groups()
    if suffix is not None:
        return ByteRange(suffix=int(suffix))
    start = int(first)
    end = None if last is None else int(last)
    if end is not None and end < start:
        return None  # invalid range-spec: the header is ignored (RFC 9110 14.1.1)
    return ByteRange(first=start, last=end)


def if_range_holds(header: str | None, etag: str | None, last_modified: float | None) -> bool:
    """Whether a ``Range`` may be honoured under ``If-Range`` (absent: yes).

    An entity tag must equal the current strong ETag; a date must equal
    ``Last-Modified`` to the second.  Anything else (weak tag, bad date):
    the whole body, which is always a correct answer.
    """
    if header is None:
        return True
    value = header.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not value.startswith("W/") and value == etag
    if last_modified is None:
        return False
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    return when.tzinfo is not None and int(when.timestamp()) == int(last_modified)


def content_range(span: tuple[int, int], size: int) -> bytes:
    """``Content-Range`` of a 206: ``bytes first-last/size``."""
    return b"bytes %d-%d/%d" % (span[0], span[1], size)


def http_date(timestamp: float) -> bytes:
    """An IMF-fixdate (``Last-Modified``), to the second."""
    return _http_date(int(timestamp))


@functools.lru_cache(maxsize=256)
def _http_date(seconds: int) -> bytes:
    """Cached: resources written in the same second share it, and are read again and again."""
    return formatdate(seconds, usegmt=True).encode("ascii")
