"""The HTTP side of the metrics: route templates, a timing wrapper, and the ``/metrics`` page.

The wrapper sits around the whole application (in ``service.py``), so it sees
every answer, CORS preflights and errors included, without the app knowing.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from twisted.web.resource import IResource, Resource, getChildForRequest
from twisted.web.server import Request, Site

from ..metrics import CONTENT_TYPE, Metrics

SPACE_PREFIX = b"/space/"
#: Methods kept as they are in labels; anything else a client sends counts as ``other``.
METHODS = {m: m.decode() for m in (b"GET", b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS", b"PATCH")}
_FIXED = {
    b"/": "/",
    b"/health": "/health",
    b"/ready": "/ready",
    b"/openapi.json": "/openapi.json",
    b"/spaces": "/spaces/",
    b"/spaces/": "/spaces/",
}
PROBLEM_JSON = b"application/problem+json"


def route_template(path: bytes) -> str:
    """The route template for a raw request path: never a raw path, id or DID (bounded labels)."""
    fixed = _FIXED.get(path)
    if fixed is not None:
        return fixed
    if not path.startswith(SPACE_PREFIX):
        return "other"
    _, slash, rest = path[len(SPACE_PREFIX) :].partition(b"/")
    if not slash:
        return "/space/{id}"
    if not rest:
        return "/space/{id}/"
    return "/space/{id}/{path}/" if rest.endswith(b"/") else "/space/{id}/{path}"


def _request_size(request: Request) -> int:
    """Body bytes received: Content-Length, else the size of what was buffered (chunked uploads)."""
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            return max(int(length), 0)
        except ValueError:
            return 0
    content = request.content
    if content is None:
        return 0
    here = content.tell()
    size: int = content.seek(0, 2)
    content.seek(here)
    return size


class TimedResource(Resource):
    """Wraps the application: counts and times each request when it finishes.

    It hooks the request's own ``finish`` rather than ``notifyFinish`` (a Deferred costs about
    3 us); a request whose client went away before the answer was finished is not counted.
    """

    isLeaf = True

    def __init__(self, wrapped: IResource, metrics: Metrics) -> None:
        super().__init__()
        self.wrapped = wrapped
        self.http = metrics.http

    def render(self, request: Request) -> Any:
        started = perf_counter()
        finish = request.finish
        http = self.http

        def finished() -> None:
            finish()
            code = request.code
            http.observe(
                route_template(request.path),
                METHODS.get(request.method, "other"),
                str(code),
                perf_counter() - started,
                _request_size(request),
                request.sentLength,
            )
            if code >= 400:
                ctype = request.responseHeaders.getRawHeaders(b"content-type")
                if ctype and ctype[0].startswith(PROBLEM_JSON):
                    http.problem(str(code))

        request.finish = finished  # type: ignore[method-assign]
        return getChildForRequest(self.wrapped, request).render(request)


class MetricsPage(Resource):
    """``/metrics`` (GET or HEAD): the registry in Prometheus's text format; every other path is 404."""

    isLeaf = True

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render(self, request: Request) -> bytes:
        if request.path != b"/metrics":
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Not found: metrics are at /metrics.\n"
        if request.method not in (b"GET", b"HEAD"):
            request.setResponseCode(405)
            request.setHeader(b"allow", b"GET, HEAD")
            return b""
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        request.setHeader(b"cache-control", b"no-store")
        return self.metrics.exposition()


class MetricsSite(Site):
    """The metrics listener's site (its own port, so ``/metrics`` never shares the API's)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(MetricsPage(metrics), timeout=60)
        self.displayTracebacks = False

    def log(self, request: Any) -> None:
        """Scrapes are not access-logged (one every few seconds would drown the API's lines)."""
