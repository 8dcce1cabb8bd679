"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the documents the API sends and accepts.

Open (extra members allowed) where the spec lets a server or client add
members, so a newer server's answers still conform.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

_STRING = {"type": "string"}
_DID = {"type": "string", "pattern": "^did:[a-z0-9]+:[A-Za-z0-9._:%-]+$"}
_BACKEND_REF = {
    "type": "object",
    "properties": {"id": {"type": "string", "minLength": 1}},
    "required": ["id"],
    "description": "A backend of the space (`GET .../backends`); only `default` exists.",
}
_EPOCH = {"type": "string", "minLength": 1, "maxLength": 256}
_URL = {"type": "string", "description": "A URL, absolute or relative to the server."}


def _object(properties: Json, required: tuple[str, ...] = (), **extra: Any) -> Json:
    schema: Json = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def schemas(problem_types: list[str]) -> Json:
    """Every named schema of ``components/schemas``."""
    item = _object({"id": _STRING, "url": _URL, "name": _STRING}, ("url",))
    return {
        "Problem": _object(
            {
                "type": {"type": "string", "enum": problem_types},
                "title": _STRING,
                "status": {"type": "integer"},
                "detail": _STRING,
                "requestId": _STRING,
                "errors": {
                    "type": "array",
                    "items": _object({"detail": _STRING, "pointer": _STRING}),
                },
            },
            ("type", "title", "status"),
            description="RFC 9457 problem details; `type` is from the spec's registry (or ours, documented).",
        ),
        "Index": _object(
            {"name": _STRING, "version": _STRING, "spec": _STRING, "profile": {"enum": ["spec", "legacy"]}},
            ("name", "version"),
        ),
        "Status": _object({"status": {"enum": ["ok", "ready"]}}, ("status",)),
        "SpaceBody": _object(
            {"id": _STRING, "controller": _DID, "name": _STRING, "type": {}},
            description="`id` is the path's id or `urn:uuid:` + it; `controller` is a DID (the signer's).",
        ),
        "Space": _object(
            {
                "id": _STRING,
                "url": _URL,
                "type": {"type": "array", "items": _STRING},
                "controller": _STRING,
                "name": _STRING,
                "createdBy": _STRING,
                "linkset": _URL,
            },
            ("id", "controller"),
        ),
        "Listing": _object(
            {
                "url": _URL,
                "id": _STRING,
                "name": _STRING,
                "totalItems": {"type": "integer", "minimum": 0},
                "items": {"type": "array", "items": item},
                "next": {
                    "type": "string",
                    "description": "Absolute URL of the next page; absent on the last.",
                },
            },
            ("items",),
        ),
        "CollectionBody": _object(
            {
                "id": _STRING,
                "type": {},
                "name": _STRING,
                "backend": _BACKEND_REF,
                "generator": _DID,
                "generatorOrigin": _STRING,
            }
        ),
        "Collection": _object(
            {
                "id": _STRING,
                "url": _URL,
                "type": {},
                "name": _STRING,
                "createdBy": _STRING,
                "linkset": _URL,
                "backend": _BACKEND_REF,
            },
            ("id", "url"),
        ),
        "CollectionMeta": _object(
            {
                "createdAt": _STRING,
                "updatedAt": _STRING,
                "createdBy": _STRING,
                "epoch": _STRING,
                "custom": {"type": "object"},
            }
        ),
        "ResourceMeta": _object(
            {
                "contentType": _STRING,
                "size": {"type": "integer", "minimum": 0},
                "updatedAt": _STRING,
                "createdAt": _STRING,
                "createdBy": _STRING,
                "custom": {"type": "object"},
                "epoch": _EPOCH,
                "writerId": _EPOCH,
            }
        ),
        "Backend": _object(
            {
                "id": _STRING,
                "name": _STRING,
                "managedBy": _STRING,
                "storageMode": {"type": "array", "items": _STRING},
                "persistence": _STRING,
                "features": {"type": "array", "items": _STRING},
            },
            ("id",),
        ),
        "Backends": {"type": "array", "items": {"$ref": "#/components/schemas/Backend"}},
        "Policy": _object(
            {"type": {"anyOf": [_STRING, {"type": "array", "items": _STRING}]}},
            ("type",),
            description='`{"type": "PublicCanRead"}`.',
        ),
        "Linkset": _object({"linkset": {"type": "array", "items": {"type": "object"}}}, ("linkset",)),
        "Revocations": _object({"url": _URL, "totalItems": {"type": "integer"}, "items": {"type": "array"}}),
    }
