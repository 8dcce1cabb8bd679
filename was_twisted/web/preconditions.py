"""``If-Match`` / ``If-None-Match`` on a write, parsed into the storage ``Condition`` (RFC 9110 13.1).

One entry point for every route that writes (resources, spaces, and any
later collection or metadata PUT)::

    condition = condition_from(request)      # None when neither header is sent
    await operations.write_...(..., condition=condition)

The operation authorizes first and hands the ``Condition`` to storage,
which evaluates it atomically with the write (412 ``precondition-failed``
when false).  A malformed header is 400 here, before anything is read or
stored: it describes the request, not any stored state.

On a write, ``If-None-Match`` must be ``*`` (create only if absent); a
list of ETags there is refused (400) rather than ignored, so no client
believes it is protected when it is not.  ``If-Match`` is ``*`` or one or
more entity tags, compared strongly (a weak ``W/"..."`` tag never matches).
"""

from __future__ import annotations

import re

from twisted.web.iweb import IRequest

from ..errors import InvalidRequestBody
from ..storage.base import Condition

__all__ = ["condition_from", "parse_condition", "parse_entity_tags"]

#: One entity-tag (RFC 9110 8.8.3): optional ``W/``, then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"')
#: Far beyond any real client; bounds the work a hostile header can cause.
MAX_TAGS = 64


def parse_entity_tags(value: str, header: str) -> tuple[str, ...]:
    """``*`` -> ``("*",)``; else the comma-separated entity tags as sent (quotes kept).

    ``InvalidRequestBody`` (400) for anything else: an empty list, an
    unquoted tag, ``*`` mixed with tags, more than ``MAX_TAGS``.
    """
    stripped = value.strip(" \t")
    if stripped == "*":
        return ("*",)
    tags: list[str] = []
    for item in stripped.split(","):
        item = item.strip(" \t")
        if not item:
            continue  # RFC 9110 5.6.1: empty list elements are allowed and ignored
        if not _ENTITY_TAG.fullmatch(item):
            raise InvalidRequestBody(f'{header} must be "*" or a list of quoted entity tags ("...").')
        tags.append(item)
    if not tags or len(tags) > MAX_TAGS:
        raise InvalidRequestBody(f"{header} must name between 1 and {MAX_TAGS} entity tags, or be *.")
    return tuple(tags)


def parse_condition(if_match: str | None, if_none_match: str | None) -> Condition | None:
    """The ``Condition`` the two header values state; ``None`` when both are absent."""
    if if_match is None and if_none_match is None:
        return None
    tags = None if if_match is None else parse_entity_tags(if_match, "If-Match")
    absent = False
    if if_none_match is not None:
        if parse_entity_tags(if_none_match, "If-None-Match") != ("*",):
            raise InvalidRequestBody('On a write, If-None-Match must be "*" (create only if absent).')
        absent = True
    return Condition(if_match=tags, if_none_match=absent)


def _joined(request: IRequest, name: bytes) -> str | None:
    """A header's field lines joined by commas (RFC 9110 5.3), or ``None`` when absent."""
    values = request.requestHeaders.getRawHeaders(name)
    if not values:
        return None
    return ",".join(v.decode("latin-1") if isinstance(v, bytes) else v for v in values)


def condition_from(request: IRequest) -> Condition | None:
    """The write precondition a request carries (``None``: unconditional); 400 when malformed."""
    return parse_condition(_joined(request, b"if-match"), _joined(request, b"if-none-match"))
