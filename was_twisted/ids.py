"""Which space ids and resource paths we accept, and why.

Space ids are URL-safe (RFC 3986 unreserved characters), 1-128 long and do
not start with a dot, so they are safe as a directory name and an S3 key
segment.  Resource paths may hold any Unicode except control characters, up
to 1,024 UTF-8 bytes (S3's key limit, less room for the prefix), with no
empty, ``.`` or ``..`` segments: those are what clients and proxies rewrite.
"""

from __future__ import annotations

import re

from .errors import InvalidId

MAX_SPACE_ID = 128
MAX_PATH_BYTES = 1024

_SPACE_ID = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9._~-]{{0,{MAX_SPACE_ID - 1}}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What nearly every path is: printable ASCII segments, none empty, "." or "..", maybe a trailing "/".
_PLAIN_PATH = re.compile(r"(?:/(?!\.\.?(?:/|\Z))[\x20-\x2e\x30-\x7e]+)+/?")


def check_space_id(space_id: str) -> str:
    """The id, if URL-safe and bounded; else ``InvalidId``."""
    if not _SPACE_ID.fullmatch(space_id):
        raise InvalidId(
            f"A space id is 1 to {MAX_SPACE_ID} of A-Z a-z 0-9 . _ ~ - and does not start with a dot.",
            pointer="#/id",
        )
    return space_id


def check_resource_path(path: str) -> str:
    """``path`` (leading ``/``, decoded) if acceptable; a trailing ``/`` names a container."""
    if len(path) <= MAX_PATH_BYTES and path.isascii() and _PLAIN_PATH.fullmatch(path):
        return path  # one regex instead of the checks below (the same verdict for such paths)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidId(f"A resource path is at most {MAX_PATH_BYTES} bytes of UTF-8.")
    if _CONTROL.search(path):
        raise InvalidId("A resource path may not contain control characters.")
    segments = path[1:].split("/")
    if segments and segments[-1] == "":
        segments = segments[:-1]
    if any(seg in ("", ".", "..") for seg in segments):
        raise InvalidId("A resource path may not contain empty, '.' or '..' segments.")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidId("A resource path must be valid UTF-8 once percent-decoded.") from None
    return path
