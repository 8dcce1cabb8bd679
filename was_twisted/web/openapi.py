"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /openapi.json``.

Built from a few helpers rather than kept as one long JSON file: most
operations share their error answers, headers and security, and one place
for each keeps them consistent.  ``tests/unit/test_openapi.py`` checks it
against what the routes really answer; ``tests/integration/test_openapi_e2e.py``
runs schemathesis over it against the real process.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from .. import __version__
from .openapi_parts import (
    CAPABILITY,
    COLLECTION,
    CONTENT_DIGEST,
    CURSOR,
    DIGEST,
    H_ETAG,
    H_LOCATION,
    IF_MATCH,
    IF_NONE_MATCH_READ,
    IF_NONE_MATCH_WRITE,
    IF_RANGE,
    LIMIT,
    LINKSET,
    PATH,
    RANGE,
    RESOURCE,
    SECURITY_SCHEMES,
    SIGNED,
    SPACE_ERRORS,
    SPACE_ID,
    WRITE_ERRORS,
    empty,
    error_refs,
    error_responses,
    header,
    json_answer,
    problem_types,
)
from .openapi_schemas import schemas

Json = dict[str, Any]


def _head(get: Json) -> Json:
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


def _op(op_id: str, summary: str, responses: Json, params: list[Json] | None = None, **extra: Any) -> Json:
    op: Json = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    op.update(extra)
    return op


def _space_op(
    op_id: str, summary: str, answers: Json, errors: tuple[int, ...] = SPACE_ERRORS, **kw: Any
) -> Json:
    return _op(op_id, summary, {**answers, **error_refs(*errors)}, security=SIGNED, **kw)


def _json_body(schema: str | Json, required: bool = True) -> Json:
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


def _preflight() -> Json:
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


def _path(name: str, ops: Json, params: list[Json] | None = None) -> Json:
    item: Json = dict(ops)
    if "get" in ops and "head" not in ops:
        item["head"] = _head(ops["get"])
    preflight = _preflight()
    preflight["operationId"] = "preflight" + "".join(
        part.strip("{}").title().replace(".", "").replace("-", "") for part in name.split("/")
    )
    item["options"] = preflight
    if params:
        item["parameters"] = params
    return item


def _server_paths() -> Json:
    return {
        "/": _path(
            "/",
            {"get": _op("getIndex", "A small description of the server.", {"200": json_answer("Index", "")})},
        ),
        "/health": _path(
            "/health",
            {
                "get": _op(
                    "getHealth", "Liveness.", {"200": json_answer("Status", "Alive."), **error_refs(500)}
                )
            },
        ),
        "/ready": _path(
            "/ready",
            {
                "get": _op(
                    "getReady",
                    "Readiness for load balancers.",
                    {"200": json_answer("Status", "Ready."), **error_refs(500, 503)},
                )
            },
        ),
        "/openapi.json": _path(
            "/openapi.json",
            {
                "get": _op(
                    "getOpenApi", "This document.", {"200": json_answer({"type": "object"}, "OpenAPI 3.1.")}
                )
            },
        ),
        "/spaces/": _path(
            "/spaces/",
            {
                "get": _space_op(
                    "getSpaces",
                    "The signer's spaces, a page at a time (unsigned: an empty list).",
                    {"200": json_answer("Listing", "A page.")},
                    params=[LIMIT, CURSOR],
                ),
                "post": _space_op(
                    "postSpaces",
                    "Create a space with a generated id (or the body's `id`).",
                    {"201": json_answer("Space", "Created.", Location=H_LOCATION)},
                    WRITE_ERRORS,
                    requestBody=_json_body("SpaceBody"),
                ),
            },
        ),
    }


def _document_ops(prefix: str, name: str, anchor: str) -> Json:
    """Policy and linkset of a space, collection or resource."""
    policy = {
        "get": _space_op(
            f"get{prefix}Policy",
            f"The policy of the {name} (controller only).",
            {"200": json_answer("Policy", "")},
        ),
        "put": _space_op(
            f"put{prefix}Policy",
            f"Set the policy of the {name}.",
            {"204": empty("Stored.")},
            WRITE_ERRORS,
            requestBody=_json_body("Policy"),
        ),
        "delete": _space_op(
            f"delete{prefix}Policy", f"Remove the policy of the {name}.", {"204": empty("Gone.")}
        ),
    }
    linkset = {
        "get": _space_op(
            f"get{prefix}Linkset", f"The linkset of the {name}.", {"200": json_answer("Linkset", "", LINKSET)}
        )
    }
    return {"policy": policy, "linkset": linkset}


def _resource_ops(prefix: str, what: str, depth1: bool = False) -> Json:
    read = _space_op(
        f"get{prefix}",
        f"Read {what}: its bytes as stored, or a listing or description where the path names one.",
        {
            "200": {
                "description": "The bytes and their type, a listing, or a collection description.",
                "headers": {
                    "ETag": H_ETAG,
                    "Last-Modified": header("HTTP date."),
                    "Accept-Ranges": header("`bytes`."),
                },
                "content": {"*/*": {"schema": {}}},
            },
            "206": {
                "description": "The slice the `Range` asked for.",
                "headers": {"ETag": H_ETAG, "Content-Range": header("`bytes first-last/size`.")},
                "content": {"*/*": {"schema": {}}},
            },
            "304": empty("`If-None-Match` names the current ETag.", ETag=H_ETAG),
        },
        (*SPACE_ERRORS, 416),
        params=[RANGE, IF_RANGE, IF_NONE_MATCH_READ],
    )
    conditions = [IF_MATCH, IF_NONE_MATCH_WRITE, DIGEST, CONTENT_DIGEST]
    return {
        "get": read,
        "put": _space_op(
            f"put{prefix}",
            f"Store {what}"
            + (": a collection description creates (201) or updates a collection." if depth1 else "."),
            {
                **(
                    {
                        "201": json_answer(
                            "Collection", "A collection was created.", Location=H_LOCATION, ETag=H_ETAG
                        )
                    }
                    if depth1
                    else {}
                ),
                "204": empty("Stored.", ETag=H_ETAG),
            },
            WRITE_ERRORS,
            params=conditions,
            requestBody=BYTES_BODY,
        ),
        "post": _space_op(
            f"post{prefix}",
            f"Store {what} (201); at a path ending in `/`, under a generated name.",
            {"201": empty("Stored.", Location=H_LOCATION, ETag=H_ETAG)},
            WRITE_ERRORS,
            params=conditions,
            requestBody=BYTES_BODY,
        ),
        "delete": _space_op(
            f"delete{prefix}",
            f"Delete {what} (204 also when absent); a created collection with all it holds.",
            {"204": empty("Gone.")},
            (*SPACE_ERRORS, 412),
            params=[IF_MATCH],
        ),
    }


def _space_paths() -> Json:
    space = "/space/{space}"
    coll = space + "/{collection}"
    res = coll + "/{resource}"
    sp = _document_ops("Space", "space", space)
    cp = _document_ops("Collection", "collection", coll)
    rp = _document_ops("Resource", "resource", res)
    meta_get = _space_op(
        "getResourceMeta", "The resource's metadata.", {"200": json_answer("ResourceMeta", "")}
    )
    meta_put = _space_op(
        "putResourceMeta",
        "Replace `custom`, `epoch`, `writerId`.",
        {"204": empty("Stored.")},
        WRITE_ERRORS,
        requestBody=_json_body("ResourceMeta"),
    )
    paths: Json = {
        space: {
            "get": _space_op(
                "getSpace", "The space's description.", {"200": json_answer("Space", "", ETag=H_ETAG)}
            ),
            "put": _space_op(
                "putSpace",
                "Create (201; 204 in `legacy`) or update (204) the space.",
                {
                    "201": json_answer("Space", "Created.", Location=H_LOCATION, ETag=H_ETAG),
                    "204": empty("Updated.", ETag=H_ETAG),
                },
                WRITE_ERRORS,
                params=[IF_MATCH, IF_NONE_MATCH_WRITE],
                requestBody=_json_body("SpaceBody"),
            ),
            "delete": _space_op("deleteSpace", "Delete the space and all it holds.", {"204": empty("Gone.")}),
        },
        space + "/policy": sp["policy"],
        space + "/linkset": sp["linkset"],
        space + "/collections/": {
            "get": _space_op(
                "getCollections",
                "The space's collections.",
                {"200": json_answer("Listing", "")},
                params=[LIMIT, CURSOR],
            ),
            "post": _space_op(
                "postCollections",
                "Create a collection.",
                {"201": json_answer("Collection", "Created.", Location=H_LOCATION, ETag=H_ETAG)},
                WRITE_ERRORS,
                requestBody=_json_body("CollectionBody"),
            ),
        },
        space + "/backends": {
            "get": _space_op("getBackends", "The storage backends.", {"200": json_answer("Backends", "")})
        },
        space + "/zcaps/revocations/": {
            "get": _space_op(
                "getRevocations",
                "The space's revocations (controller only).",
                {"200": json_answer("Revocations", "")},
            )
        },
        space + "/zcaps/revocations/{capability}": {
            "post": _space_op(
                "postRevocation",
                "Revoke a delegated capability (body: the capability).",
                {"204": empty("Revoked.")},
                WRITE_ERRORS,
                requestBody=_json_body({"type": "object"}),
            )
        },
        space + "/{path}": _resource_ops("Depth1", "a collection or a single-segment resource", depth1=True),
        coll + "/": {
            "get": _space_op(
                "getContainer",
                "The listing of what is under the container (any depth), paginated.",
                {"200": json_answer("Listing", "A page.")},
                params=[LIMIT, CURSOR],
            ),
            "post": _resource_ops("Container", "a resource")["post"],
        },
        coll + "/meta": {
            "get": _space_op(
                "getCollectionMeta",
                "The collection's metadata.",
                {
                    "200": json_answer("CollectionMeta", "", ETag=H_ETAG),
                    "304": empty("Not modified.", ETag=H_ETAG),
                },
                params=[IF_NONE_MATCH_READ],
            ),
            "put": _space_op(
                "putCollectionMeta",
                "Replace `custom` and `epoch`.",
                {"204": empty("Stored.", ETag=H_ETAG)},
                WRITE_ERRORS,
                params=[IF_MATCH, IF_NONE_MATCH_WRITE],
                requestBody=_json_body("CollectionMeta"),
            ),
        },
        coll + "/backend": {
            "get": _space_op(
                "getCollectionBackend",
                "The backend the collection selected.",
                {"200": json_answer("Backend", "")},
            )
        },
        coll + "/policy": cp["policy"],
        coll + "/linkset": cp["linkset"],
        res: _resource_ops("Resource", "a resource"),
        res + "/meta": {"get": meta_get, "put": meta_put},
        res + "/policy": rp["policy"],
    }
    params = {space: [SPACE_ID], coll: [SPACE_ID, COLLECTION], res: [SPACE_ID, COLLECTION, RESOURCE]}
    out: Json = {}
    for name, ops in paths.items():
        base = max((p for p in params if name.startswith(p)), key=len)
        extra = [PATH] if name.endswith("{path}") else [CAPABILITY] if name.endswith("{capability}") else []
        out[name] = _path(name, ops, [*params[base], *extra])
    return out


@cache
def document() -> Json:
    """The whole OpenAPI 3.1 document (built once)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wallet Attached Storage (was-twisted)",
            "version": __version__,
            "summary": "The W3C CCG Wallet Attached Storage API, as this server serves it.",
            "description": (
                "Every answer carries the CORS headers (`WAS_CORS_ORIGINS`) and every `OPTIONS` is a "
                "preflight answered 204. Errors are `application/problem+json` with the spec's registry "
                "`type`. A path parameter whose value names a reserved segment (`policy`, `linkset`, "
                "`meta`, `quotas`...) is answered by that endpoint's rules, hence the shared error list. "
                "A method not listed for a path is answered 405 with `Allow` (409 `reserved-id` at a "
                "reserved segment)."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "paths": {**_server_paths(), **_space_paths()},
        "components": {
            "schemas": schemas(problem_types()),
            "responses": error_responses(),
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


@cache
def document_bytes() -> bytes:
    """The document as served."""
    return json.dumps(document(), separators=(",", ":")).encode()
