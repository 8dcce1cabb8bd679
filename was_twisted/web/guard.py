"""Refuse malformed requests before any route sees them: every refusal a problem document.

Klein would answer a path that percent-decodes to invalid UTF-8 with a
``text/html`` 400, and routes would otherwise meet a forged ``Host`` in the
``Location`` they build, or pick the first of two ``Authorization`` headers
while a proxy in front picked the last.  ``GuardResource`` sits in front of
the router (behind CORS, so its refusals keep the CORS headers) and checks,
in one pass over the headers and then the path, what no route should have to:

- ``Host`` (RFC 9112 3.2): required on HTTP/1.1, never repeated, and a
  host name or IP literal with an optional port (400 ``bad-request``);
- the path: it must percent-decode to UTF-8 (strict: overlong forms and
  encoded surrogates are invalid UTF-8), else 400 ``invalid-id``;
- headers that must appear once: the authorization headers (400
  ``invalid-authorization-header``) and a few others (400 ``bad-request``);
- ``Content-Type``: visible ASCII, as every media type is (a stored type
  is sent back as a header and handed to S3).

None of these depends on stored state, so refusing them before
authorization reveals nothing.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import unquote_to_bytes

from twisted.web.http_headers import Headers
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from ..errors import BadRequest, InvalidId, RepeatedAuthorization, WASError
from .problems import PROBLEM_JSON, problem_for

#: Headers a signature or capability invocation is read from: one of each, or none.
AUTHORIZATION_HEADERS = frozenset(
    {
        b"authorization",
        b"signature-input",
        b"signature",
        b"capability-invocation",
        b"digest",
        b"content-digest",
    }
)
#: Other headers read as one value, where two would leave the meaning to whoever reads first.
SINGLE_HEADERS = frozenset({b"content-type", b"range", b"if-range", b"key-epoch", b"writer-id"})

_LABELS = re.compile(rb"[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*\.?")
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[^\[\]:]+)(?::([0-9]{1,5}))?")
_VISIBLE = re.compile(rb"[\x20-\x7e\t]*")


def check_host(values: list[bytes] | None, version: bytes) -> None:
    """``BadRequest`` unless the request has one well-formed ``Host`` (or none, before HTTP/1.1)."""
    if not values:
        if version == b"HTTP/1.1":
            raise BadRequest("An HTTP/1.1 request must have a Host header.")
        return
    if len(values) > 1:
        raise BadRequest("The request has more than one Host header.")
    if not _valid_host(values[0]):
        raise BadRequest("The Host header is not a host name or IP address with an optional port.")


@functools.lru_cache(maxsize=256)
def _valid_host(value: bytes) -> bool:
    """Remembered: clients send the same few values on every request."""
    match = _HOST.fullmatch(value)
    if match is None or int(match.group(2) or 0) > 65535:
        return False
    host = match.group(1)
    if host.startswith(b"["):
        try:
            ipaddress.IPv6Address(host[1:-1].decode("ascii"))
        except ValueError:
            return False
        return True
    return len(host) <= 253 and _LABELS.fullmatch(host) is not None


def check_path(uri: bytes) -> None:
    """``InvalidId`` unless the path (before ``?``) percent-decodes to valid UTF-8."""
    path = uri.partition(b"?")[0]
    if b"%" not in path:
        return  # Twisted admits only printable ASCII in a request target
    try:
        unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidId("The path is not valid UTF-8 once percent-decoded.") from None


def check_headers(headers: Headers, version: bytes) -> None:
    """``Host``, repeated single-valued headers and ``Content-Type``, in one pass over the headers."""
    host: list[bytes] | None = None
    for name, values in headers.getAllRawHeaders():
        # Names are lowered only where they matter: a repeated field, and the few of a Host's or
        # Content-Type's length (most requests repeat nothing and carry five or six fields).
        if len(values) == 1 and len(name) not in (4, 12):
            continue
        lowered = name.lower()
        if lowered == b"host":
            host = list(values)
            continue
        if len(values) > 1:
            if lowered in AUTHORIZATION_HEADERS:
                raise RepeatedAuthorization(f"The request has more than one {name.decode()} header.")
            if lowered in SINGLE_HEADERS:
                raise BadRequest(f"The request has more than one {name.decode()} header.")
        if lowered == b"content-type" and not _visible(values[0]):
            raise BadRequest("The Content-Type header must be visible ASCII.")
    check_host(host, version)


@functools.lru_cache(maxsize=256)
def _visible(value: bytes) -> bool:
    return _VISIBLE.fullmatch(value) is not None


def check_request(request: IRequest) -> None:
    """Every check of the module docstring: the headers (``Host`` among them), then the path."""
    version: bytes = getattr(request, "clientproto", b"HTTP/1.1")  # Twisted's Request has it; IRequest not
    check_headers(request.requestHeaders, version)
    check_path(request.uri)


def refuse(request: IRequest, error: WASError) -> bytes:
    """Write ``error`` as a problem document (the body to return from ``render``)."""
    status, body, extra = problem_for(error)
    request.setResponseCode(status)
    request.setHeader(b"content-type", PROBLEM_JSON)
    request.setHeader(b"content-length", b"%d" % len(body))
    for name, value in extra.items():
        request.setHeader(name, value)
    return body


class GuardResource(Resource):
    """Refuses what ``check_request`` refuses; passes everything else to ``wrapped``."""

    isLeaf = True

    def __init__(self, wrapped: IResource) -> None:
        super().__init__()
        self.wrapped = wrapped

    def render(self, request: IRequest) -> bytes | int:
        try:
            check_request(request)
        except WASError as error:
            return refuse(request, error)
        result: bytes | int = self.wrapped.render(request)
        return result
