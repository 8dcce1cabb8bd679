"""Pagination (the spec's Pagination appendix): ``?limit=&cursor=`` in, ``next`` out.

One module for every list (spaces, collections, container listings):

* ``page_request(call)`` reads ``limit`` and ``cursor`` from the query.  A bad
  value is kept, not raised, so the operation raises it (``PageRequest.check``)
  only after authorization: an unauthorized caller gets the same 404 as ever.
* The cursor is a keyset: base64url (no padding) of ``{"v": 1, "after": id}``,
  the id of the last item sent.  Clients treat it as opaque; storage resumes
  after that id (S3 ``StartAfter``), so a page costs the same at any depth.
* ``page_of(rows, page, ...)`` cuts what storage returned (one more than the
  page, to know whether more follow) and builds ``next``: an absolute URL of
  the same list with the cursor and limit baked in, present exactly when more
  may follow.

The query string never changes the invocation target a capability must
cover: a capability for ``.../c/`` covers ``.../c/?limit=1&cursor=...`` (see
``auth.zcap.target_covers``), so one capability opens every page.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import parse_qs, urlencode

from ..errors import InvalidCursor, InvalidParameter, WASError
from .base import Call

#: Items in a page when the request names no ``limit``.
DEFAULT_LIMIT = 100
#: The largest page; a larger ``limit`` is clamped to it (one S3 LIST holds 1,000 keys).
MAX_LIMIT = 1000
#: A cursor longer than this is refused unread (ours are at most a few kB: an id and a version).
MAX_CURSOR = 8192
CURSOR_VERSION = 1

_CURSOR_CHARS = re.compile(r"[A-Za-z0-9_-]+")

T = TypeVar("T")


@dataclass(frozen=True)
class PageRequest:
    """The page a request asks for: ``limit`` items after ``after`` (``None``: from the start).

    ``error`` is a malformed ``limit`` or ``cursor``, raised by ``check``
    once the caller is known to be authorized.
    """

    limit: int = DEFAULT_LIMIT
    after: str | None = None
    error: WASError | None = None

    def check(self) -> None:
        """Raise the request's pagination error, if any (call only after authorization)."""
        if self.error is not None:
            raise self.error

    @property
    def fetch(self) -> int:
        """How many items to ask storage for: one more than the page, to know whether more follow."""
        return self.limit + 1


def encode_cursor(after: str) -> str:
    """The opaque cursor that resumes after the item ``after``."""
    raw = json.dumps({"v": CURSOR_VERSION, "after": after}, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode("utf-8")).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor resumes after; ``InvalidCursor`` for anything we did not make."""
    if len(cursor) > MAX_CURSOR or not _CURSOR_CHARS.fullmatch(cursor):
        raise InvalidCursor("The cursor is not one this server gave out.")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        doc = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        raise InvalidCursor("The cursor is not one this server gave out.") from None
    if not isinstance(doc, dict) or doc.get("v") != CURSOR_VERSION:
        raise InvalidCursor("The cursor is not one this server gave out (or is from another version).")
    after = doc.get("after")
    if not isinstance(after, str) or not after:
        raise InvalidCursor("The cursor is not one this server gave out.")
    return after


def _query(call: Call) -> str:
    return call.targets[0].partition("?")[2] if call.targets else ""


def page_request(call: Call, *, valid_after: Callable[[str], bool] | None = None) -> PageRequest:
    """Read ``limit`` and ``cursor``; never raises (see ``PageRequest.check``).

    ``valid_after`` tells a cursor's id that cannot name an item of this list
    (e.g. a path that is not a valid resource path), which is refused too.
    """
    try:
        params = parse_qs(_query(call), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        params = {}
    limit = DEFAULT_LIMIT
    error: WASError | None = None
    values = params.get("limit")
    if values is not None:
        if len(values) != 1 or not values[0].isdecimal() or len(values[0]) > 12 or int(values[0]) < 1:
            error = InvalidParameter(f"'limit' must be one positive integer (at most {MAX_LIMIT} are sent).")
        else:
            limit = min(int(values[0]), MAX_LIMIT)
    after: str | None = None
    cursors = params.get("cursor")
    if cursors is not None and error is None:
        try:
            if len(cursors) != 1:
                raise InvalidCursor("Send one cursor.")
            after = decode_cursor(cursors[0])
            if valid_after is not None and not valid_after(after):
                raise InvalidCursor("The cursor is not one this server gave out.")
        except InvalidCursor as exc:
            error = exc
            after = None
    return PageRequest(limit=limit, after=after, error=error)


def next_url(call: Call, page: PageRequest, last_id: str) -> str:
    """The absolute URL of the page after ``last_id``: the same list, cursor and limit baked in."""
    path = call.targets[0].partition("?")[0] if call.targets else "/"
    return call.base + path + "?" + urlencode({"limit": page.limit, "cursor": encode_cursor(last_id)})


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of items, and ``next`` when more may follow."""

    items: list[T]
    next: str | None

    def envelope(self, doc: dict[str, object], page: PageRequest, render: Callable[[T], object]) -> None:
        """Fill a list envelope: ``totalItems`` only when this page is the whole list, ``items``, ``next``.

        ``totalItems`` counts the whole list or is absent (the spec's rule);
        counting a large list would cost what paging saves, so a page that is
        not the whole list leaves it out.
        """
        if self.next is None and page.after is None:
            doc["totalItems"] = len(self.items)
        doc["items"] = [render(item) for item in self.items]
        if self.next is not None:
            doc["next"] = self.next


def page_of(rows: Sequence[T], page: PageRequest, call: Call, id_of: Callable[[T], str]) -> Page[T]:
    """Cut storage's ``rows`` (up to ``page.fetch`` of them) to the page and say whether more follow."""
    if len(rows) <= page.limit:
        return Page(list(rows), None)
    items = list(rows[: page.limit])
    return Page(items, next_url(call, page, id_of(items[-1])))
