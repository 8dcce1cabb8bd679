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
    BYTES_BODY,
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
    SPACE_ERRORS,
    SPACE_ID,
    WRITE_ERRORS,
    empty,
    error_refs,
    error_responses,
    header,
    json_answer,
    json_body,
    operation,
    path_item,
    problem_types,
    space_operation,
)
from .openapi_schemas import schemas

Json = dict[str, Any]


def _server_paths() -> Json:
    return {
        "/": path_item(
            "/",
            {
                "get": operation(
                    "getIndex", "A small description of the server.", {"200": json_answer("Index", "")}
                )
            },
        ),
        "/health": path_item(
            "/health",
            {
                "get": operation(
                    "getHealth", "Liveness.", {"200": json_answer("Status", "Alive."), **error_refs(500)}
                )
            },
        ),
        "/ready": path_item(
            "/ready",
            {
                "get": operation(
                    "getReady",
                    "Readiness for load balancers.",
                    {"200": json_answer("Status", "Ready."), **error_refs(500, 503)},
                )
            },
        ),
        "/openapi.json": path_item(
            "/openapi.json",
            {
                "get": operation(
                    "getOpenApi", "This document.", {"200": json_answer({"type": "object"}, "OpenAPI 3.1.")}
                )
            },
        ),
        "/spaces/": path_item(
            "/spaces/",
            {
                "get": space_operation(
                    "getSpaces",
                    "The signer's spaces, a page at a time (unsigned: an empty list).",
                    {"200": json_answer("Listing", "A page.")},
                    params=[LIMIT, CURSOR],
                ),
                "post": space_operation(
                    "postSpaces",
                    "Create a space with a generated id (or the body's `id`).",
                    {"201": json_answer("Space", "Created.", Location=H_LOCATION)},
                    WRITE_ERRORS,
                    requestBody=json_body("SpaceBody"),
                ),
            },
        ),
    }


def _document_ops(prefix: str, name: str, anchor: str) -> Json:
    """Policy and linkset of a space, collection or resource."""
    policy = {
        "get": space_operation(
            f"get{prefix}Policy",
            f"The policy of the {name} (controller only).",
            {"200": json_answer("Policy", "")},
        ),
        "put": space_operation(
            f"put{prefix}Policy",
            f"Set the policy of the {name}.",
            {"204": empty("Stored.")},
            WRITE_ERRORS,
            requestBody=json_body("Policy"),
        ),
        "delete": space_operation(
            f"delete{prefix}Policy", f"Remove the policy of the {name}.", {"204": empty("Gone.")}
        ),
    }
    linkset = {
        "get": space_operation(
            f"get{prefix}Linkset", f"The linkset of the {name}.", {"200": json_answer("Linkset", "", LINKSET)}
        )
    }
    return {"policy": policy, "linkset": linkset}


def _resource_ops(prefix: str, what: str, depth1: bool = False) -> Json:
    read = space_operation(
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
        "put": space_operation(
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
        "post": space_operation(
            f"post{prefix}",
            f"Store {what} (201); at a path ending in `/`, under a generated name.",
            {"201": empty("Stored.", Location=H_LOCATION, ETag=H_ETAG)},
            WRITE_ERRORS,
            params=conditions,
            requestBody=BYTES_BODY,
        ),
        "delete": space_operation(
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
    meta_get = space_operation(
        "getResourceMeta", "The resource's metadata.", {"200": json_answer("ResourceMeta", "")}
    )
    meta_put = space_operation(
        "putResourceMeta",
        "Replace `custom`, `epoch`, `writerId`.",
        {"204": empty("Stored.")},
        WRITE_ERRORS,
        requestBody=json_body("ResourceMeta"),
    )
    paths: Json = {
        space: {
            "get": space_operation(
                "getSpace", "The space's description.", {"200": json_answer("Space", "", ETag=H_ETAG)}
            ),
            "put": space_operation(
                "putSpace",
                "Create (201; 204 in `legacy`) or update (204) the space.",
                {
                    "201": json_answer("Space", "Created.", Location=H_LOCATION, ETag=H_ETAG),
                    "204": empty("Updated.", ETag=H_ETAG),
                },
                WRITE_ERRORS,
                params=[IF_MATCH, IF_NONE_MATCH_WRITE],
                requestBody=json_body("SpaceBody"),
            ),
            "delete": space_operation(
                "deleteSpace", "Delete the space and all it holds.", {"204": empty("Gone.")}
            ),
        },
        space + "/policy": sp["policy"],
        space + "/linkset": sp["linkset"],
        space + "/collections/": {
            "get": space_operation(
                "getCollections",
                "The space's collections.",
                {"200": json_answer("Listing", "")},
                params=[LIMIT, CURSOR],
            ),
            "post": space_operation(
                "postCollections",
                "Create a collection.",
                {"201": json_answer("Collection", "Created.", Location=H_LOCATION, ETag=H_ETAG)},
                WRITE_ERRORS,
                requestBody=json_body("CollectionBody"),
            ),
        },
        space + "/backends": {
            "get": space_operation(
                "getBackends", "The storage backends.", {"200": json_answer("Backends", "")}
            )
        },
        space + "/zcaps/revocations/": {
            "get": space_operation(
                "getRevocations",
                "The space's revocations (controller only).",
                {"200": json_answer("Revocations", "")},
            )
        },
        space + "/zcaps/revocations/{capability}": {
            "post": space_operation(
                "postRevocation",
                "Revoke a delegated capability (body: the capability).",
                {"204": empty("Revoked.")},
                WRITE_ERRORS,
                requestBody=json_body({"type": "object"}),
            )
        },
        space + "/{path}": _resource_ops("Depth1", "a collection or a single-segment resource", depth1=True),
        coll + "/": {
            "get": space_operation(
                "getContainer",
                "The listing of what is under the container (any depth), paginated.",
                {"200": json_answer("Listing", "A page.")},
                params=[LIMIT, CURSOR],
            ),
            "post": _resource_ops("Container", "a resource")["post"],
        },
        coll + "/meta": {
            "get": space_operation(
                "getCollectionMeta",
                "The collection's metadata.",
                {
                    "200": json_answer("CollectionMeta", "", ETag=H_ETAG),
                    "304": empty("Not modified.", ETag=H_ETAG),
                },
                params=[IF_NONE_MATCH_READ],
            ),
            "put": space_operation(
                "putCollectionMeta",
                "Replace `custom` and `epoch`.",
                {"204": empty("Stored.", ETag=H_ETAG)},
                WRITE_ERRORS,
                params=[IF_MATCH, IF_NONE_MATCH_WRITE],
                requestBody=json_body("CollectionMeta"),
            ),
        },
        coll + "/backend": {
            "get": space_operation(
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
        out[name] = path_item(name, ops, [*params[base], *extra])
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
