"""Request bodies that must be one JSON object: parsed once, the same way, with one clear error."""

from __future__ import annotations

import json

from .errors import InvalidRequestBody


def json_object(body: bytes, *, limit: int, what: str) -> dict[str, object]:
    """``body`` as a JSON object of at most ``limit`` bytes, else 400 ``invalid-request-body``.

    ``what`` names the document in the error ("A policy", "The space description").
    """
    if len(body) > limit:
        raise InvalidRequestBody(f"{what} is larger than {limit} bytes.")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestBody(f"{what} must be a JSON object.") from None
    if not isinstance(doc, dict):
        raise InvalidRequestBody(f"{what} must be a JSON object.")
    return doc
