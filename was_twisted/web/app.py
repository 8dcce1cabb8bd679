"""Klein routes: parse a request into plain values, call one operation, render its result.

Paths under ``/space/`` are taken from the raw request URI and decoded
exactly once here, so ``a%2Fb``, ``a%252Fb`` and ``é`` mean what the client
sent; the router only picks the branch.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from klein import Klein
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import HTTPException

from .. import __version__
from ..errors import (
    InvalidId,
    InvalidRequestBody,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RangeNotSatisfiable,
    ReservedId,
    Unavailable,
    UnsupportedOperation,
    WASError,
)
from ..ids import check_resource_path
from ..operations import (
    Call,
    Operations,
    PathKind,
    classify,
    is_collection_description,
    resource_url,
    space_url,
)
from ..operations.collection_model import is_json_type
from ..ready import READY, Readiness
from .bodypipe import BodyPipe
from .cors import cors_resource
from .fastpath import SpaceFastPath
from .guard import GuardResource
from .limits import BoundedRequest
from .openapi import document_bytes as openapi_document
from .preconditions import condition_from
from .problems import PROBLEM_JSON, internal_problem, problem_for
from .proxy import TrustedProxies, request_forwarded
from .ranges import content_range, http_date, if_range_holds, parse_range
from .streaming import send_body
from .upload import StreamSlots

JSON = b"application/json"
LINKSET_JSON = b"application/linkset+json"
SPACE_PREFIX = "/space/"
#: ``classify`` kinds served as resources when nothing else claims them (legacy keeps reserved names).
RESOURCE_KINDS = frozenset({"resource", "unsupported", "reserved"})


class HeaderView(Mapping[str, str]):
    """Request headers by lower-case name, decoded lazily (most are never looked at)."""

    def __init__(self, request: IRequest) -> None:
        self._headers = request.requestHeaders

    def __getitem__(self, name: str) -> str:
        value: str | None = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def get(self, name: str, default: Any = None) -> Any:
        """Without the ``KeyError`` ``Mapping.get`` raises and catches for each absent header."""
        # Asked by bytes name, so Twisted does not decode (it would raise on invalid UTF-8).
        values = self._headers.getRawHeaders(name.encode("latin-1"))
        if not values:
            return default
        return _text(values[0])

    def __iter__(self) -> Iterator[str]:
        for name, _ in self._headers.getAllRawHeaders():
            yield name.decode("latin-1").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self._headers.getAllRawHeaders())


def _text(value: bytes) -> str:
    """A header value as text: UTF-8 as clients sign it, else Latin-1 (any bytes, never an error)."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _decode_once(raw: str) -> str:
    try:
        return unquote(raw, errors="strict")
    except UnicodeDecodeError:
        raise InvalidId("The path is not valid UTF-8 once percent-decoded.") from None


def _call(request: IRequest, raw_path: str, query: str | None, decoded: str, origin: str = "") -> Call:
    """The request as operations see it, with the request-target forms a signature may cover.

    The decoded form is offered only when decoding made no ``?``: otherwise a
    signature for ``/a?b`` (resource ``a``, query ``b``) would also verify for
    ``/a%3Fb`` (the resource named ``a?b``).
    """
    method = request.method.decode("ascii")
    raw_with_query = raw_path if query is None else f"{raw_path}?{query}"
    targets = (raw_with_query, raw_path) if "?" in decoded else (raw_with_query, raw_path, decoded)
    content = request.content
    if isinstance(content, BodyPipe):
        has_body = True
    else:
        has_body = content is not None and content.seek(0, 2) > 0
        if content is not None:
            content.seek(0)
    return Call(
        method=method,
        targets=targets,
        headers=HeaderView(request),
        origin=origin or _base_url(request),
        has_body=has_body,
    )


def _split_uri(request: IRequest) -> tuple[str, str | None]:
    try:
        uri = request.uri.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidId("The request URI is not valid UTF-8.") from None
    path, sep, query = uri.partition("?")
    return path, (query if sep else None)


def _json(request: IRequest, doc: object, status: int = 200, content_type: bytes = JSON) -> bytes:
    body = json.dumps(doc, separators=(",", ":")).encode()
    request.setResponseCode(status)
    request.setHeader(b"content-type", content_type)
    request.setHeader(b"content-length", b"%d" % len(body))
    return body


def _empty(request: IRequest, status: int = 204) -> bytes:
    request.setResponseCode(status)
    if status != 204:
        request.setHeader(b"content-length", b"0")
    return b""


def _read_json_body(request: IRequest, limit: int = 64 * 1024) -> bytes:
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read(limit + 1)
    if len(data) > limit:
        raise InvalidRequestBody("The body is too large.")
    return data


async def _read_streamed_body(request: IRequest, limit: int = 1024 * 1024) -> None:
    """A route that reads its body on the reactor gets a streamed one (``web/upload.py``) whole.

    At most ``limit + 1`` bytes are kept: past ``limit`` the body is refused anyway.
    """
    if isinstance(request.content, BodyPipe):
        request.content = io.BytesIO(await request.content.collect(limit))


def _refuse_oversized(request: IRequest) -> None:
    """413 for a body ``BoundedRequest`` did not keep (it was over ``WAS_MAX_UPLOAD_BYTES``)."""
    if isinstance(request, BoundedRequest) and request.too_large:
        raise PayloadTooLarge(f"The body is larger than {request.max_upload} bytes.")


def _not_modified(request: IRequest, etag: str | None) -> bool:
    """Whether ``If-None-Match`` names the current ETag (or ``*``): answer 304, send no body."""
    header = request.getHeader(b"if-none-match")
    if not header or not etag:
        return False
    tags = {tag.strip().removeprefix("W/") for tag in header.decode("latin-1").split(",")}
    return "*" in tags or etag in tags


def _header(request: IRequest, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")


def _set_etag(request: IRequest, etag: str | None) -> None:
    if etag:
        request.setHeader(b"etag", etag.encode("latin-1"))


def _base_url(request: IRequest, trusted: TrustedProxies | None = None) -> str:
    """The request's scheme and Host; from a trusted proxy, the ones its forwarded headers name."""
    raw_host = request.getHeader(b"host")
    host = raw_host.decode("latin-1") if raw_host else ""
    scheme = "https" if request.isSecure() else "http"
    if trusted:
        seen = request_forwarded(request, trusted)
        host = seen.host or host
        scheme = seen.proto or scheme
    return f"{scheme}://{host}" if host else ""


def _problem(request: IRequest, error: WASError) -> bytes:
    status, body, headers = problem_for(error)
    request.setResponseCode(status)
    request.setHeader(b"content-type", PROBLEM_JSON)
    request.setHeader(b"content-length", b"%d" % len(body))
    for name, value in headers.items():
        request.setHeader(name, value)
    return body


class WASApp:
    """The WAS HTTP API over one ``Operations``."""

    app = Klein()
    log = Logger()

    def __init__(self, operations: Operations, backend_name: str, readiness: Readiness | None = None) -> None:
        self.operations = operations
        self.backend_name = backend_name
        self.public_url = operations.settings.public_url
        self.trusted = TrustedProxies(operations.settings.trusted_proxies)
        #: ``None``: always ready (an in-process app with no service tree around it).
        self.readiness = readiness
        #: Streamed uploads each hold a storage thread: leave half the threads for the rest.
        self.uploads = StreamSlots(max(1, operations.settings.threads // 2))

    def _origin(self, request: IRequest) -> str:
        """Where clients reach us: ``WAS_PUBLIC_URL``, else the scheme and Host (a trusted proxy's)."""
        return self.public_url or _base_url(request, self.trusted)

    def resource(self) -> IResource:
        """Klein's resource behind the guard (``guard.py``) and CORS: refusals carry CORS too.

        ``/space/...`` skips Klein's dispatch (``web/fastpath.py``): it is most requests.
        """
        routes = SpaceFastPath(self, self.app.resource())
        return cors_resource(GuardResource(routes), self.operations.settings.cors_origins)

    # -- errors --------------------------------------------------------------

    @app.handle_errors(WASError)
    def _domain_error(self, request: IRequest, failure: Failure) -> bytes:
        assert isinstance(failure.value, WASError)
        return _problem(request, failure.value)

    @app.handle_errors(HTTPException)
    def _routing_error(self, request: IRequest, failure: Failure) -> bytes:
        return _problem(request, NotFound())

    @app.handle_errors(Exception)
    def _unexpected(self, request: IRequest, failure: Failure) -> bytes:
        request_id = uuid.uuid4().hex[:16]
        self.log.failure(
            "request {request_id} {method} {uri} failed",
            failure,
            request_id=request_id,
            method=request.method.decode("ascii", "replace"),
            uri=request.uri.decode("ascii", "replace")[:200],
        )
        body = internal_problem(request_id)
        request.setResponseCode(500)
        request.setHeader(b"content-type", PROBLEM_JSON)
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    # -- server --------------------------------------------------------------

    @app.route("/")
    def index(self, request: IRequest) -> bytes:
        self._only(request, ("GET", "HEAD"))
        return _json(
            request,
            {
                "name": "was-twisted",
                "version": __version__,
                "spec": "https://wallet.storage/spec",
                "profile": self.operations.settings.profile,
                "links": {"spaces": "/spaces/", "health": "/health", "ready": "/ready"},
            },
        )

    @app.route("/health")
    def health(self, request: IRequest) -> bytes:
        self._only(request, ("GET", "HEAD"))
        return _json(request, {"status": "ok"})

    @app.route("/ready")
    async def ready(self, request: IRequest) -> bytes:
        """Readiness for load balancers: 200, or 503 with why while starting, draining or storage is down."""
        self._only(request, ("GET", "HEAD"))
        verdict = READY if self.readiness is None else await self.readiness.check()
        request.setHeader(b"cache-control", b"no-store")
        if not verdict.ready:
            raise Unavailable(verdict.reason, retry_after=1)
        return _json(request, {"status": "ready"})

    @app.route("/openapi.json")
    def openapi(self, request: IRequest) -> bytes:
        """The OpenAPI 3.1 description of this API (``web/openapi.py``); public, like ``/``."""
        self._only(request, ("GET", "HEAD"))
        body = openapi_document()
        request.setHeader(b"content-type", JSON)
        request.setHeader(b"content-length", b"%d" % len(body))
        return body

    @app.route("/<path:anything>")
    def unknown(self, request: IRequest, anything: str) -> bytes:
        raise NotFound()

    def _only(self, request: IRequest, allowed: tuple[str, ...]) -> str:
        method: str = request.method.decode("ascii")
        if method not in allowed:
            raise MethodNotAllowed(allowed)
        return method

    # -- spaces repository ---------------------------------------------------

    @app.route("/spaces", strict_slashes=False)
    async def spaces(self, request: IRequest) -> bytes:
        method = self._only(request, ("GET", "HEAD", "POST"))
        _refuse_oversized(request)
        await _read_streamed_body(request)
        raw_path, query = _split_uri(request)
        call = _call(request, raw_path, query, _decode_once(raw_path), self._origin(request))
        if method == "POST":
            doc = await self.operations.create_space(call, _read_json_body(request))
            url = str(doc["url"])
            request.setHeader(b"location", (call.base + url).encode())
            request.setHeader(b"cache-control", b"no-store")
            return _json(request, doc, 201)
        return _json(request, await self.operations.list_spaces(call))

    # -- spaces and resources ------------------------------------------------

    @app.route(SPACE_PREFIX, branch=True)
    async def space_tree(self, request: IRequest) -> Any:
        _refuse_oversized(request)
        raw_path, query = _split_uri(request)
        if not raw_path.startswith(SPACE_PREFIX):
            raise NotFound()
        call = _call(request, raw_path, query, _decode_once(raw_path), self._origin(request))
        raw_space, slash, raw_rest = raw_path[len(SPACE_PREFIX) :].partition("/")
        space_id = _decode_once(raw_space)
        if not slash:
            await _read_streamed_body(request)
            return await self._space(request, call, space_id)
        return await self._resource(request, call, space_id, "/" + _decode_once(raw_rest))

    async def _space(self, request: IRequest, call: Call, space_id: str) -> bytes:
        method = self._only(request, ("GET", "HEAD", "PUT", "DELETE"))
        ops = self.operations
        if method in ("GET", "HEAD"):
            doc, etag = await ops.read_space(call, space_id)
            _set_etag(request, etag)
            return _json(request, doc)
        if method == "DELETE":
            await ops.delete_space(call, space_id)
            return _empty(request)
        condition = condition_from(request)
        created, doc, etag = await ops.put_space(call, space_id, _read_json_body(request), condition)
        _set_etag(request, etag)
        if ops.announces_creation(created):
            request.setHeader(b"location", (call.base + space_url(space_id)).encode())
            return _json(request, doc, 201)
        return _empty(request)

    async def _resource(self, request: IRequest, call: Call, space_id: str, path: str) -> Any:
        check_resource_path(path)
        kind = classify(path)
        if kind.kind not in ("resource", "collection"):
            await _read_streamed_body(request)  # JSON documents, read whole (a depth-1 name may stream)
        if kind.kind != "resource" or self.operations.settings.strict_collections:
            answered = await self._collections(request, call, space_id, path, kind)
            if answered is not None:
                return answered
        if kind.kind == "policy":
            return await self._policy(request, call, space_id, kind.name)
        if kind.kind == "linkset":
            if request.method in (b"PUT", b"POST", b"DELETE"):
                raise ReservedId("'linkset' is reserved here: it is the linkset of what it is under.")
            self._only(request, ("GET", "HEAD"))
            doc = await self.operations.read_linkset(call, space_id, kind.name)
            return _json(request, doc, content_type=LINKSET_JSON)
        if kind.kind == "resource-meta":
            return await self._resource_meta(request, call, space_id, kind.name)
        if kind.kind == "revocations":
            self._only(request, ("GET", "HEAD"))
            return _json(request, await self.operations.list_revocations(call, space_id))
        if kind.kind == "revocation":
            self._only(request, ("POST",))
            assert request.content is not None
            request.content.seek(0)
            await self.operations.revoke(call, space_id, kind.name, request.content)
            return _empty(request)
        method = self._only(request, ("GET", "HEAD", "PUT", "POST", "DELETE"))
        ops = self.operations
        if method in ("GET", "HEAD"):
            if path.endswith("/"):
                listing = await ops.list_container(call, space_id, path)
                if listing is not None:
                    return _json(request, listing)
            try:
                return await self._read_resource(request, call, space_id, path, method)
            except NotFound:
                if kind.kind != "collection":
                    raise
            # No resource of this name: a created collection's description, else the same 404.
            doc, etag = await ops.read_collection(call, space_id, kind.name)
            request.setHeader(b"etag", etag.encode("latin-1"))
            return _json(request, doc)
        condition = condition_from(request)
        if method == "DELETE":
            await ops.delete_resource(call, space_id, path, condition)
            return _empty(request)
        content_type = request.getHeader(b"content-type")
        ct = content_type.decode("latin-1") if content_type else None
        assert request.content is not None
        request.content.seek(0)
        with self.uploads.hold(request.content):
            if method == "PUT":
                info = await ops.write_resource(call, space_id, path, request.content, ct, condition)
                _set_etag(request, info.etag)
                return _empty(request)
            written, info = await ops.post_resource(call, space_id, path, request.content, ct, condition)
        _set_etag(request, info.etag)
        request.setHeader(b"location", (call.base + resource_url(space_id, written)).encode())
        request.setHeader(b"cache-control", b"no-store")
        return _empty(request, 201)

    async def _read_resource(
        self, request: IRequest, call: Call, space_id: str, path: str, method: str
    ) -> bytes:
        """GET or HEAD of a resource: ``ETag``, ``Last-Modified``, 304, and a single ``Range`` (206/416).

        HEAD ignores ``Range`` (RFC 9110 14.2: range handling is defined for GET only).
        """
        ops = self.operations
        if method == "HEAD":
            info, body = await ops.read_resource(call, space_id, path, with_body=False)
            span: tuple[int, int] | None = None
            unsatisfiable = False
        else:
            byte_range = parse_range(_header(request, b"range"))
            if_range = _header(request, b"if-range")
            read = await ops.read_resource_range(
                call,
                space_id,
                path,
                byte_range,
                lambda info: if_range_holds(if_range, info.etag, info.last_modified),
            )
            info, span, body, unsatisfiable = read.info, read.span, read.body, read.unsatisfiable
        request.setHeader(b"accept-ranges", b"bytes")
        _set_etag(request, info.etag)
        if info.last_modified is not None:
            request.setHeader(b"last-modified", http_date(info.last_modified))
        if _not_modified(request, info.etag):
            await body.close()
            request.setResponseCode(304)
            return b""
        if unsatisfiable:
            await body.close()
            raise RangeNotSatisfiable(info.size)
        request.setHeader(b"content-type", info.content_type.encode("latin-1"))
        length = info.size
        if span is not None:
            length = span[1] - span[0] + 1
            request.setResponseCode(206)
            request.setHeader(b"content-range", content_range(span, info.size))
        request.setHeader(b"content-length", b"%d" % length)
        if method == "HEAD":
            await body.close()
            return b""
        assert isinstance(request, Request)
        return await send_body(request, body, length)

    async def _resource_meta(self, request: IRequest, call: Call, space_id: str, path: str) -> bytes:
        """``/space/{s}/{c}/{r}/meta``: GET/HEAD as a read of the resource, PUT as a write; no DELETE."""
        method = self._only(request, ("GET", "HEAD", "PUT"))
        if method == "PUT":
            await self.operations.update_resource_meta(call, space_id, path, _read_json_body(request))
            return _empty(request)
        return _json(request, await self.operations.read_resource_meta(call, space_id, path))

    async def _policy(self, request: IRequest, call: Call, space_id: str, anchor: str) -> bytes:
        method = self._only(request, ("GET", "HEAD", "PUT", "DELETE"))
        ops = self.operations
        if method in ("GET", "HEAD"):
            return _json(request, await ops.read_policy(call, space_id, anchor))
        if method == "DELETE":
            await ops.delete_policy(call, space_id, anchor)
            return _empty(request)
        await ops.put_policy(call, space_id, anchor, _read_json_body(request))
        return _empty(request)

    # -- collections, their metadata, backends, reserved segments ------------

    async def _collections(
        self, request: IRequest, call: Call, space_id: str, path: str, kind: PathKind
    ) -> bytes | None:
        """Answer what ``classify`` says is a collection address; ``None``: serve it as a resource."""
        method: str = request.method.decode("ascii")
        ops = self.operations
        writing = method in ("PUT", "POST", "DELETE")
        spec = not ops.legacy
        if kind.kind == "collections":
            if method in ("GET", "HEAD"):
                return _json(request, await ops.list_collections(call, space_id))
            if method == "POST":
                doc, etag = await ops.create_collection(call, space_id, _read_json_body(request))
                request.setHeader(b"location", (call.base + str(doc["url"])).encode())
                request.setHeader(b"cache-control", b"no-store")
                request.setHeader(b"etag", etag.encode("latin-1"))
                return _json(request, doc, 201)
            return self._reserved(request, kind) if spec else None
        if kind.kind == "backends":
            if method in ("GET", "HEAD"):
                return _json(request, await ops.list_backends(call, space_id))
            return self._reserved(request, kind) if spec else None
        if kind.kind == "collection-meta":
            if method in ("GET", "HEAD"):
                doc, meta_etag = await ops.read_collection_meta(call, space_id, kind.name)
                if meta_etag is not None:
                    request.setHeader(b"etag", meta_etag.encode("latin-1"))
                    if _not_modified(request, meta_etag):
                        request.setResponseCode(304)
                        return b""
                return _json(request, doc)
            if method == "PUT":
                condition = condition_from(request)
                body = _read_json_body(request)
                etag = await ops.put_collection_meta(call, space_id, kind.name, body, condition)
                request.setHeader(b"etag", etag.encode("latin-1"))
                return _empty(request)
            return self._reserved(request, kind)
        if kind.kind == "collection-backend":
            if method in ("GET", "HEAD"):
                return _json(request, await ops.read_collection_backend(call, space_id, kind.name))
            return self._reserved(request, kind)
        if kind.kind == "resource-meta":
            return None  # served by _resource_meta
        if kind.kind == "unsupported" and spec:
            if method in ("PUT", "DELETE"):
                return self._reserved(request, kind)
            raise UnsupportedOperation(
                f"'{kind.name}' is reserved by the spec; this server does not serve it."
            )
        if kind.kind == "reserved" and spec and writing:
            return self._reserved(request, kind)
        if kind.kind == "collection":
            return await self._collection(request, call, space_id, kind.name, method)
        if ops.settings.strict_collections and kind.kind in RESOURCE_KINDS:
            if method in ("PUT", "POST") and "/" in path[1:]:
                # A resource write under /{c}/: into a created collection only.
                await ops.require_collection(call, space_id, path)
        return None

    async def _collection(
        self, request: IRequest, call: Call, space_id: str, collection_id: str, method: str
    ) -> bytes | None:
        """``/space/S/c``: a collection PUT if the body describes one, a collection DELETE if one exists."""
        ops = self.operations
        if method == "PUT":
            content_type = request.getHeader(b"content-type")
            ct = content_type.decode("latin-1") if content_type else None
            if isinstance(request.content, BodyPipe):
                # A large or chunked body: a collection description only if JSON of unknown length.
                if not is_json_type(ct) or request.getHeader(b"content-length") is not None:
                    return None
                await _read_streamed_body(request)
            body = _peek_body(request)
            if body is None or not is_collection_description(body, ct):
                return None
            condition = condition_from(request)
            created, doc, etag = await ops.put_collection(call, space_id, collection_id, body, condition)
            request.setHeader(b"etag", etag.encode("latin-1"))
            if created:
                request.setHeader(b"location", (call.base + str(doc["url"])).encode())
                return _json(request, doc, 201)
            return _empty(request)
        if method == "DELETE" and await ops.delete_collection(call, space_id, collection_id):
            return _empty(request)
        return None

    def _reserved(self, request: IRequest, kind: PathKind) -> bytes:
        """A method the spec gives no meaning at a reserved segment: never a resource (409 reserved-id)."""
        name = kind.name if kind.kind in ("reserved", "unsupported") else kind.kind.rpartition("-")[2]
        raise ReservedId(f"'{name}' is a reserved segment here; nothing is stored under it.")


def _peek_body(request: IRequest, limit: int = 64 * 1024) -> bytes | None:
    """The body if it is small enough to be a JSON description (``None`` if larger); left rewound."""
    content = request.content
    if content is None:
        return b""
    size = content.seek(0, 2)
    content.seek(0)
    if size > limit:
        return None
    data: bytes = content.read()
    content.seek(0)
    return data
