"""The shared pieces of the OpenAPI document: error answers, headers, parameters, security schemes."""

from __future__ import annotations

from typing import Any

from .problems import PROBLEMS, SPEC

Json = dict[str, Any]

PROBLEM = "application/problem+json"
LINKSET = "application/linkset+json"

#: Why each error status is answered, and the registry types it carries.
ERRORS: dict[int, str] = {
    400: "Bad input: an invalid id or path, body, cursor, `limit`, digest or precondition header, "
    "or malformed HTTP (`bad-request`: a bad `Host`, a repeated header). Any request may also get "
    "408 `request-timeout`, 414 `uri-too-long` or 431 `header-fields-too-large`.",
    401: "A signature is required here, or the one sent is malformed or does not verify.",
    403: "`legacy` profile: a valid signature by a DID that may not act here.",
    404: "Absent, or the caller may not know it exists (both answers are byte-identical).",
    405: "The method is not served at this address (`Allow` lists those that are).",
    409: "A reserved segment (`reserved-id`), a taken id (`id-conflict`) or an unsupported backend.",
    412: "A false `If-Match` / `If-None-Match`: nothing was written.",
    413: "The body is larger than `WAS_MAX_UPLOAD_BYTES`.",
    416: "The `Range` selects no byte (`Content-Range: bytes */size`).",
    500: "An unexpected failure, logged under the `requestId` of the problem document.",
    501: "A segment the spec reserves that this server does not serve (quotas, export, query...).",
    503: "Starting, draining, storage unreachable or busy: retry after `Retry-After` seconds.",
}


def problem_types() -> list[str]:
    kinds = sorted({p.kind for p in PROBLEMS.values()} | {"internal-error"})
    return [SPEC + kind for kind in kinds]


def header(description: str, schema: Json | None = None) -> Json:
    return {"description": description, "schema": schema or {"type": "string"}}


H_LOCATION = header("The absolute URL of what was created.")
H_ETAG = header("The strong entity tag of the representation (quoted).")
H_RETRY = header("Seconds to wait before retrying.", {"type": "string", "pattern": "^[0-9]+$"})


def _error(status: int) -> Json:
    """A reference to the shared answer for an error ``status``."""
    return {"$ref": f"#/components/responses/E{status}"}


def error_responses() -> Json:
    responses: Json = {}
    for status, why in ERRORS.items():
        answer: Json = {
            "description": why,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
        headers: Json = {}
        if status == 405:
            headers["Allow"] = header("The methods served at this address.")
        if status == 416:
            headers["Content-Range"] = header("`bytes */size`.")
        if status == 503:
            headers["Retry-After"] = H_RETRY
        if headers:
            answer["headers"] = headers
        responses[f"E{status}"] = answer
    return responses


def json_answer(
    schema: str | Json, description: str, media: str = "application/json", **headers: Json
) -> Json:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    answer: Json = {"description": description, "content": {media: {"schema": ref}}}
    if headers:
        answer["headers"] = headers
    return answer


def empty(description: str, **headers: Json) -> Json:
    answer: Json = {"description": description}
    if headers:
        answer["headers"] = headers
    return answer


def _param(name: str, where: str, description: str, schema: Json | None = None) -> Json:
    param: Json = {
        "name": name,
        "in": where,
        "description": description,
        "schema": schema or {"type": "string"},
    }
    if where == "path":
        param["required"] = True
    return param


SPACE_ID = _param(
    "space",
    "path",
    "The space id: 1-128 of `A-Z a-z 0-9 . _ ~ -`, not starting with a dot (else 400 `invalid-id`).",
    {"type": "string", "pattern": "^[A-Za-z0-9_~-][A-Za-z0-9._~-]{0,127}$"},
)
#: A path segment: no control characters (C0, DEL, C1), else 400 `invalid-id`; never `.` or `..`.
SEGMENT: Json = {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f/]+$", "not": {"enum": [".", ".."]}}
COLLECTION = _param(
    "collection", "path", "A collection id, or the first segment of a resource path.", SEGMENT
)
RESOURCE = _param(
    "resource",
    "path",
    "The rest of the resource path: any depth (its `/` are path separators), decoded exactly once; "
    "one segment under `/meta` (deeper, `meta` is a resource name).",
    {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]+$", "not": {"enum": [".", ".."]}},
)
PATH = _param(
    "path",
    "path",
    "A depth-1 name: a created collection or a single-segment resource (`/space/{space}/greeting.txt`).",
    SEGMENT,
)
CAPABILITY = _param("capability", "path", "The id of the delegated capability being revoked.", SEGMENT)
LIMIT = _param(
    "limit",
    "query",
    "At most this many items (100 when absent, clamped to 1000); not a positive integer: 400.",
    {"type": "string"},
)
CURSOR = _param(
    "cursor", "query", "The opaque cursor from a previous page's `next` (else 400 `invalid-cursor`)."
)
IF_MATCH = _param(
    "If-Match",
    "header",
    "Write only if the current ETag is one of these (or `*`: exists); malformed: 400.",
    {"type": "string", "pattern": '^(\\*|"[^"\\x00-\\x20\\x7f]*"( *, *"[^"\\x00-\\x20\\x7f]*")*)$'},
)
IF_NONE_MATCH_WRITE = _param(
    "If-None-Match", "header", "`*`: write only if nothing is there (anything else: 400).", {"enum": ["*"]}
)
IF_NONE_MATCH_READ = _param("If-None-Match", "header", "Answer 304 if the current ETag is one of these.")
RANGE = _param("Range", "header", "One `bytes=` range (206), else the whole body.")
IF_RANGE = _param("If-Range", "header", "Keep the `Range` only if this ETag or date is current.")
DIGEST = _param("Digest", "header", "`SHA-256=<base64>` of the body; checked as it arrives (400 if wrong).")
CONTENT_DIGEST = _param("Content-Digest", "header", "RFC 9530 digest of the body, checked like `Digest`.")

#: Signed or not: public reads (a `PublicCanRead` policy) need no signature, everything else does.
SIGNED: list[Json] = [
    {},
    {"httpSignature": []},
    {"httpSignature": [], "capabilityInvocation": []},
    {"messageSignature": []},
]
SECURITY_SCHEMES: Json = {
    "httpSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": (
            "draft-cavage HTTP Signatures as the WAS clients send them: "
            '`Signature keyId="did:key:...#...",headers="(key-id) (created) (expires) (request-target) '
            'host capability-invocation [content-type digest]",signature="..."`, signed with the Ed25519 '
            "key of a `did:key`. A body is covered through `Digest`. OpenAPI has no scheme type for "
            "signatures; this is an `apiKey` in name only."
        ),
    },
    "capabilityInvocation": {
        "type": "apiKey",
        "in": "header",
        "name": "Capability-Invocation",
        "description": (
            '`zcap id="urn:zcap:root:...",action="GET"`, or `zcap capability="<gzipped base64url>"` for a '
            "delegated capability; covered by the signature."
        ),
    },
    "messageSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "Signature-Input",
        "description": "RFC 9421 HTTP Message Signatures (`Signature-Input` and `Signature`), Ed25519.",
    },
}


def error_refs(*statuses: int) -> Json:
    return {str(status): _error(status) for status in statuses}


#: What any request into a space can be answered, whatever the operation.
SPACE_ERRORS = (400, 401, 403, 404, 409, 500, 501, 503)
WRITE_ERRORS = (*SPACE_ERRORS, 412, 413)


def head_of(get: Json) -> Json:
    """HEAD: GET's answers and headers without a body."""
    op: Json = {key: value for key, value in get.items() if key != "responses"}
    op["operationId"] = "head" + op["operationId"][3:]
    op["summary"] = "HEAD: " + op["summary"]
    op["responses"] = {
        status: {key: value for key, value in answer.items() if key != "content"}
        for status, answer in get["responses"].items()
        if status not in ("206", "416")  # HEAD ignores Range (RFC 9110 14.2)
    }
    return op


def operation(
    op_id: str, summary: str, responses: Json, params: list[Json] | None = None, **extra: Any
) -> Json:
    op: Json = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    op.update(extra)
    return op


def space_operation(
    op_id: str, summary: str, answers: Json, errors: tuple[int, ...] = SPACE_ERRORS, **kw: Any
) -> Json:
    return operation(op_id, summary, {**answers, **error_refs(*errors)}, security=SIGNED, **kw)


def json_body(schema: str | Json, required: bool = True) -> Json:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"required": required, "content": {"application/json": {"schema": ref}}}


BYTES_BODY: Json = {
    "required": False,
    "description": "The bytes to store, under their `Content-Type` (none: `application/octet-stream`); "
    "`multipart/form-data` stores the form's one file part.",
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "text/plain": {"schema": {"type": "string"}},
        "application/json": {"schema": {}},
    },
}


def preflight() -> Json:
    return {
        "operationId": None,
        "summary": "CORS preflight: never needs a signature.",
        "security": [{}],
        "responses": {
            "204": empty(
                "The allowed methods and headers, and their max age (with `WAS_CORS_ORIGINS` on).",
                **{
                    "Access-Control-Allow-Methods": header("`GET, HEAD, PUT, POST, DELETE, OPTIONS`."),
                    "Access-Control-Allow-Headers": header("The request headers wallets send."),
                    "Access-Control-Max-Age": header("`7200`."),
                },
            )
        },
    }


def path_item(name: str, ops: Json, params: list[Json] | None = None) -> Json:
    """A path's operations, with HEAD beside GET and the CORS preflight."""
    item: Json = dict(ops)
    if "get" in ops and "head" not in ops:
        item["head"] = head_of(ops["get"])
    options = preflight()
    options["operationId"] = "preflight" + "".join(
        part.strip("{}").title().replace(".", "").replace("-", "") for part in name.split("/")
    )
    item["options"] = options
    if params:
        item["parameters"] = params
    return item
