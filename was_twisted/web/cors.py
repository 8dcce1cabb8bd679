"""CORS for browser wallets: a thin resource in front of Klein's.

Requests are authorized by signatures, never by cookies or other ambient
credentials, so by default any origin may call and
``Access-Control-Allow-Credentials`` is never sent.  The headers are set
before Klein renders, so error handlers' problem documents keep them; a
preflight (any ``OPTIONS``) is answered here and never reaches the API,
whose routes would refuse it unsigned.  Header values are computed once:
this runs on every request.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

ANY = "*"

ALLOW_METHODS = b"GET, HEAD, PUT, POST, DELETE, OPTIONS"
#: What wallets send: both signature schemes, zCaps, digests, conditional and range requests.
ALLOW_HEADERS = (
    b"Authorization, Capability-Invocation, Digest, Content-Digest, Content-Type, If-Match, "
    b"If-None-Match, Range, Signature, Signature-Input, Key-Epoch, Writer-Id, Accept"
)
#: Chromium caps a preflight's cache at 7200 s; Firefox allows a day.
MAX_AGE = b"7200"
#: Response headers a page may read beyond the CORS-safelisted ones.
EXPOSE_HEADERS = b"Location, ETag, Link, Content-Range, Content-Length, Retry-After"

_ALLOW_ORIGIN = b"access-control-allow-origin"
_EXPOSE = b"access-control-expose-headers"
_VARY = b"vary"
_ORIGIN = b"origin"
_PREFLIGHT_ONLY = (
    (b"access-control-allow-methods", [ALLOW_METHODS]),
    (b"access-control-allow-headers", [ALLOW_HEADERS]),
    (b"access-control-max-age", [MAX_AGE]),
)


class CORSResource(Resource):
    """Adds CORS headers to every response of ``wrapped`` and answers preflights itself.

    ``origins`` is ``("*",)`` for any origin, else the exact origins allowed
    (``https://wallet.example``), whose ``Origin`` is then reflected with
    ``Vary: Origin``; any other origin gets no ``Access-Control-*`` header.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource, origins: Iterable[str]) -> None:
        super().__init__()
        self.wrapped = wrapped
        allowed = tuple(origins)
        self.any_origin = allowed == (ANY,)
        self.allowed = frozenset(o.encode("ascii") for o in allowed if o != ANY)

    def render(self, request: IRequest) -> bytes | int:
        headers = request.responseHeaders
        if self.any_origin:
            origin: bytes | None = b"*"
        else:
            headers.setRawHeaders(_VARY, [b"Origin"])
            sent = request.requestHeaders.getRawHeaders(_ORIGIN)
            origin = sent[0] if sent and sent[0] in self.allowed else None
        if request.method == b"OPTIONS":
            if origin is not None:
                headers.setRawHeaders(_ALLOW_ORIGIN, [origin])
                for name, value in _PREFLIGHT_ONLY:
                    headers.setRawHeaders(name, value)
            request.setResponseCode(204)
            return b""
        if origin is not None:
            headers.setRawHeaders(_ALLOW_ORIGIN, [origin])
            headers.setRawHeaders(_EXPOSE, [EXPOSE_HEADERS])
        result: bytes | int = self.wrapped.render(request)
        return result


def cors_resource(wrapped: IResource, origins: tuple[str, ...]) -> IResource:
    """``wrapped`` behind CORS; unchanged when ``origins`` is empty (``WAS_CORS_ORIGINS=off``)."""
    if not origins:
        return wrapped
    return CORSResource(wrapped, origins)
