"""Request bodies that must be one JSON object: parsed once, the same way, with one clear error.

A body is hostile input: besides being JSON (strictly: no ``NaN``, no
member named twice), it must nest at most
``MAX_DEPTH`` deep (a deeply nested document costs recursion wherever it is
later copied or serialized) and hold only strings that can be stored as
UTF-8 (``"\\ud800"`` decodes to a lone surrogate, which no encoder accepts).
"""

from __future__ import annotations

import json
import re

from .errors import InvalidRequestBody

#: Arrays and objects nested deeper than this are refused (a chain of 10 capabilities nests about 40).
MAX_DEPTH = 64

_SURROGATE = re.compile("[\ud800-\udfff]")


def json_object(body: bytes, *, limit: int, what: str) -> dict[str, object]:
    """``body`` as a JSON object of at most ``limit`` bytes, else 400 ``invalid-request-body``.

    ``what`` names the document in the error ("A policy", "The space description").
    """
    if len(body) > limit:
        raise InvalidRequestBody(f"{what} is larger than {limit} bytes.")
    try:
        doc = json.loads(body, parse_constant=_refuse_constant, object_pairs_hook=_unique_members)
    except _DuplicateMember as exc:
        raise InvalidRequestBody(f"{what} has the member {exc.name!r} more than once.") from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequestBody(f"{what} must be a JSON object.") from None
    if not isinstance(doc, dict):
        raise InvalidRequestBody(f"{what} must be a JSON object.")
    check_json_value(doc, what)
    return doc


class _DuplicateMember(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_constant(name: str) -> object:
    """``NaN`` and ``Infinity`` are not JSON (RFC 8259); Python's parser would accept them."""
    raise ValueError(name)


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """An object whose member names are unique: with two, which one counts is anyone's guess."""
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _DuplicateMember(name)
            seen.add(name)
    return doc


def _pointer(path: list[str | int]) -> str:
    """A JSON pointer (RFC 6901) in URI fragment form, as the spec's ``errors[].pointer`` has it."""
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "#/" + "/".join(parts) if path else "#"


def check_json_value(doc: object, what: str) -> None:
    """Refuse ``doc`` if it nests deeper than ``MAX_DEPTH`` or holds a string UTF-8 cannot carry.

    Walked with an explicit stack (never recursion), so the check itself cannot overflow.
    """
    stack: list[tuple[object, list[str | int]]] = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                raise InvalidRequestBody(
                    f"{what} holds a string that is not valid Unicode (a lone surrogate).",
                    pointer=_pointer(path),
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            raise InvalidRequestBody(f"{what} nests deeper than {MAX_DEPTH} levels.", pointer=_pointer(path))
        if isinstance(value, dict):
            for key, member in value.items():
                if _SURROGATE.search(key):
                    raise InvalidRequestBody(
                        f"{what} has a member name that is not valid Unicode (a lone surrogate).",
                        pointer=_pointer(path),
                    )
                stack.append((member, [*path, key]))
        else:
            stack.extend((item, [*path, index]) for index, item in enumerate(value))
