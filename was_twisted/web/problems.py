"""One table from domain error to ``application/problem+json`` (RFC 9457, the spec's registry)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import (
    BadRequest,
    ControllerMismatch,
    Forbidden,
    HeaderFieldsTooLarge,
    IdConflict,
    InvalidAuthorization,
    InvalidCursor,
    InvalidDigest,
    InvalidId,
    InvalidParameter,
    InvalidRequestBody,
    MethodNotAllowed,
    MissingAuthorization,
    MissingContentType,
    NotFound,
    PayloadTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
    RepeatedAuthorization,
    RequestTimeout,
    ReservedId,
    SpaceExists,
    StorageFailure,
    Unavailable,
    UnsupportedBackend,
    UnsupportedEncryptionScheme,
    UnsupportedOperation,
    UriTooLong,
    WASError,
)

SPEC = "https://wallet.storage/spec#"
PROBLEM_JSON = b"application/problem+json"


@dataclass(frozen=True)
class Problem:
    """A problem kind: status, registry ``type`` anchor and title."""

    status: int
    kind: str
    title: str


PROBLEMS: dict[type[WASError], Problem] = {
    NotFound: Problem(404, "not-found", "Resource not found or insufficient authorization."),
    InvalidId: Problem(400, "invalid-id", "Invalid id."),
    InvalidRequestBody: Problem(400, "invalid-request-body", "Invalid request body."),
    ControllerMismatch: Problem(400, "controller-mismatch", "Invalid Create Space request."),
    MissingAuthorization: Problem(401, "missing-authorization", "Authorization required."),
    InvalidAuthorization: Problem(401, "invalid-authorization-header", "Invalid Authorization header."),
    InvalidDigest: Problem(400, "invalid-authorization-header", "Invalid Authorization header."),
    RepeatedAuthorization: Problem(400, "invalid-authorization-header", "Invalid Authorization header."),
    ReservedId: Problem(409, "reserved-id", "Reserved id."),
    UnsupportedEncryptionScheme: Problem(
        400, "unsupported-encryption-scheme", "Unsupported encryption scheme."
    ),
    Forbidden: Problem(403, "forbidden", "Forbidden."),
    SpaceExists: Problem(409, "id-conflict", "A Space with this id already exists."),
    IdConflict: Problem(409, "id-conflict", "An item with this id already exists."),
    PreconditionFailed: Problem(412, "precondition-failed", "The resource was modified by another write."),
    InvalidCursor: Problem(400, "invalid-cursor", "Invalid cursor."),
    # Not in the spec's registry (it has no type for a bad query parameter): our documented extension.
    InvalidParameter: Problem(400, "invalid-parameter", "Invalid query parameter."),
    # Not in the spec's registry (it defines no Range errors): our documented extension.
    RangeNotSatisfiable: Problem(416, "range-not-satisfiable", "Range not satisfiable."),
    MissingContentType: Problem(400, "missing-content-type", "Content-Type is required."),
    UnsupportedBackend: Problem(409, "unsupported-backend", "Unsupported backend id."),
    UnsupportedOperation: Problem(501, "unsupported-operation", "Operation not supported."),
    PayloadTooLarge: Problem(413, "payload-too-large", "Upload exceeds the maximum upload size."),
    MethodNotAllowed: Problem(405, "unsupported-operation", "Method not allowed."),
    # Not in the spec's registry (it assumes well-formed HTTP): our documented extensions.
    BadRequest: Problem(400, "bad-request", "Malformed HTTP request."),
    UriTooLong: Problem(414, "uri-too-long", "Request line too long."),
    HeaderFieldsTooLarge: Problem(431, "header-fields-too-large", "Request header fields too large."),
    RequestTimeout: Problem(408, "request-timeout", "Request not completed in time."),
    Unavailable: Problem(503, "storage-error", "Service temporarily unavailable."),
    StorageFailure: Problem(500, "storage-error", "Storage error."),
}
INTERNAL = Problem(500, "internal-error", "Internal server error.")


def _render(problem: Problem, extra: dict[str, object]) -> bytes:
    doc: dict[str, object] = {"type": SPEC + problem.kind, "title": problem.title, "status": problem.status}
    doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()


#: The one not-found body, whatever the cause, so absent and forbidden are byte-identical.
NOT_FOUND_BODY = _render(PROBLEMS[NotFound], {})


def problem_for(error: WASError) -> tuple[int, bytes, dict[bytes, bytes]]:
    """Status, body and extra headers for a domain error."""
    problem = next(p for cls, p in PROBLEMS.items() if isinstance(error, cls))
    if isinstance(error, NotFound):
        return problem.status, NOT_FOUND_BODY, {}
    extra: dict[str, object] = {}
    headers: dict[bytes, bytes] = {}
    if error.detail and not isinstance(error, StorageFailure):
        extra["detail"] = error.detail
        if error.pointer:
            extra["errors"] = [{"detail": error.detail, "pointer": error.pointer}]
    if isinstance(error, Unavailable):
        headers[b"retry-after"] = str(error.retry_after).encode()
    if isinstance(error, RangeNotSatisfiable):
        headers[b"content-range"] = b"bytes */%d" % error.size
    if isinstance(error, MethodNotAllowed):
        headers[b"allow"] = ", ".join(error.allowed).encode()
    return problem.status, _render(problem, extra), headers


def internal_problem(request_id: str) -> bytes:
    """The 500 body: no traceback, only the id under which the failure was logged."""
    return _render(
        INTERNAL,
        {"detail": f"Request {request_id} failed; the server log has the details.", "requestId": request_id},
    )
