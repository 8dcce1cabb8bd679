"""Collections as values: ids, the description body a client sends, what we store and show.

A collection is a record beside the space's resources (kind ``collections``,
keyed by id), never a file or key inside ``resources/``; its metadata object
is another record (kind ``collection-meta``, same key).  Both are small JSON
documents; their ETag is ``record_etag`` of the stored bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..bodies import json_object
from ..errors import (
    InvalidId,
    InvalidRequestBody,
    ReservedId,
    UnsupportedBackend,
    UnsupportedEncryptionScheme,
)
from .base import resource_url, space_url
from .reserved import SPACE_RESERVED

COLLECTIONS = "collections"
COLLECTION_META = "collection-meta"
MAX_COLLECTION_BODY = 64 * 1024
MAX_META_BODY = 64 * 1024
MAX_NAME = 256
MAX_COLLECTION_ID = 128
DEFAULT_BACKEND = "default"

_COLLECTION_ID = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9._~-]{{0,{MAX_COLLECTION_ID - 1}}}")
_JSON_TYPE = re.compile(r"^\s*application/(?:[\w.+-]+\+)?json\s*(?:;.*)?$", re.IGNORECASE)

#: What each storage backend advertises as the space's one backend, ``default``.
_BACKEND_NAMES = {"filesystem": "Server Filesystem", "s3": "Amazon S3", "memory": "Server Memory"}
#: Feature tokens per storage backend: only what the server really does there (BE-2).
BACKEND_FEATURES: dict[str, tuple[str, ...]] = {
    "filesystem": ("conditional-writes",),
    "s3": ("conditional-writes",),
    "memory": ("conditional-writes",),
}


def check_collection_id(collection_id: str, pointer: str | None = None) -> str:
    """A URL-safe id (as a space id: 1-128 unreserved characters, no leading dot), not reserved."""
    if not _COLLECTION_ID.fullmatch(collection_id):
        raise InvalidId(
            f"A collection id is 1 to {MAX_COLLECTION_ID} of A-Z a-z 0-9 . _ ~ - "
            "and does not start with a dot.",
            pointer=pointer,
        )
    if collection_id in SPACE_RESERVED:
        raise ReservedId(f"{collection_id!r} is a reserved segment, not a collection id.", pointer=pointer)
    return collection_id


def collection_url(space_id: str, collection_id: str) -> str:
    return resource_url(space_id, "/" + collection_id)


def backend_description(storage_backend: str) -> dict[str, object]:
    """The space's one backend, ``default``, as the spec's Backend description."""
    doc: dict[str, object] = {
        "id": DEFAULT_BACKEND,
        "name": _BACKEND_NAMES.get(storage_backend, storage_backend),
        "managedBy": "server",
        "storageMode": ["blob", "document"],
        "persistence": "volatile" if storage_backend == "memory" else "durable",
    }
    features = BACKEND_FEATURES.get(storage_backend, ())
    if features:
        doc["features"] = list(features)
    return doc


def is_json_type(content_type: str | None) -> bool:
    return bool(content_type) and _JSON_TYPE.match(content_type or "") is not None


def _has_collection_type(value: object) -> bool:
    if isinstance(value, str):
        return value == "Collection"
    return isinstance(value, list) and "Collection" in value


def is_collection_description(body: bytes, content_type: str | None) -> bool:
    """Whether a PUT body at ``/space/S/c`` describes a collection: JSON whose ``type`` has ``Collection``.

    Anything else is a resource write, as the real clients mean it.
    """
    if not is_json_type(content_type) or len(body) > MAX_COLLECTION_BODY:
        return False
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return isinstance(doc, dict) and _has_collection_type(doc.get("type"))


@dataclass(frozen=True)
class CollectionBody:
    """A validated collection create/update body (the user-writable members)."""

    id: str | None
    name: str | None
    backend: str
    generator: str | None
    generator_origin: str | None


def _origin(value: object) -> str | None:
    """``value`` if it is the ASCII serialization of a web origin (scheme://host[:port])."""
    if not isinstance(value, str) or not value or not value.isascii():
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or "@" in parts.netloc:
        return None
    if value != f"{parts.scheme}://{parts.netloc}":
        return None  # a path (even "/"), query or fragment, or not lower-case scheme
    return value


def parse_collection_body(body: bytes, url_id: str | None, storage_backend: str) -> CollectionBody:
    """Validate a collection description; ``url_id`` (PUT) is the id the body's ``id`` must equal."""
    doc = json_object(body, limit=MAX_COLLECTION_BODY, what="The collection description")
    kind = doc.get("type")
    if kind is not None and not _has_collection_type(kind):
        raise InvalidRequestBody("'type' must include \"Collection\".", pointer="#/type")
    body_id = doc.get("id")
    if body_id is not None:
        if not isinstance(body_id, str):
            raise InvalidId("'id' must be a string.", pointer="#/id")
        check_collection_id(body_id, pointer="#/id")
        if url_id is not None and body_id != url_id:
            raise InvalidRequestBody(f"'id' must be {url_id!r}, the id in the URL.", pointer="#/id")
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise InvalidRequestBody(
            f"'name' must be a string of at most {MAX_NAME} characters.", pointer="#/name"
        )
    backend = doc.get("backend")
    backend_id = DEFAULT_BACKEND
    if backend is not None:
        if not isinstance(backend, dict) or not isinstance(backend.get("id"), str) or not backend["id"]:
            raise InvalidRequestBody("'backend' must be an object with a string 'id'.", pointer="#/backend")
        backend_id = backend["id"]
        if backend_id != DEFAULT_BACKEND:
            raise UnsupportedBackend(
                f"Backend {backend_id!r} is not among this space's backends (GET .../backends).",
                pointer="#/backend/id",
            )
    generator = doc.get("generator")
    if generator is not None and (
        not isinstance(generator, str) or not generator.startswith("did:") or len(generator) > 2048
    ):
        raise InvalidRequestBody("'generator' must be a DID.", pointer="#/generator")
    origin = doc.get("generatorOrigin")
    if origin is not None and _origin(origin) is None:
        raise InvalidRequestBody(
            "'generatorOrigin' must be a web origin such as https://app.example.com.",
            pointer="#/generatorOrigin",
        )
    if doc.get("encryption") is not None:
        raise UnsupportedEncryptionScheme(
            "This server does not enforce any encryption scheme, so it accepts no 'encryption' descriptor.",
            pointer="#/encryption",
        )
    return CollectionBody(
        id=body_id,
        name=name,
        backend=backend_id,
        generator=generator,
        generator_origin=origin if isinstance(origin, str) else None,
    )


def collection_record(
    collection_id: str,
    wanted: CollectionBody,
    current: Mapping[str, object] | None,
    signer: str | None,
    now: str,
) -> bytes:
    """The stored record: the body's members, plus ``createdBy``/``createdAt`` kept from creation."""
    doc: dict[str, object] = {"id": collection_id, "type": ["Collection"]}
    if wanted.name is not None:
        doc["name"] = wanted.name
    doc["backend"] = {"id": wanted.backend}
    if wanted.generator is not None:
        doc["generator"] = wanted.generator
    if wanted.generator_origin is not None:
        doc["generatorOrigin"] = wanted.generator_origin
    if current is None:
        if signer is not None:
            doc["createdBy"] = signer
        doc["createdAt"] = now
    else:
        for kept in ("createdBy", "createdAt"):
            if isinstance(current.get(kept), str):
                doc[kept] = current[kept]
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def load_record(raw: bytes | None) -> dict[str, object] | None:
    """A stored record as a dict; an unreadable one as an empty dict (it still exists)."""
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe_collection(space_id: str, collection_id: str, record: Mapping[str, object]) -> dict[str, object]:
    """The spec's Collection description: ``id, url, type, name?, createdBy?, ..., linkset, backend``."""
    url = collection_url(space_id, collection_id)
    doc: dict[str, object] = {"id": collection_id, "url": url, "type": ["Collection"]}
    for member in ("name", "createdBy", "generator", "generatorOrigin"):
        if isinstance(record.get(member), str):
            doc[member] = record[member]
    doc["linkset"] = url + "/linkset"
    backend = record.get("backend")
    backend_id = backend.get("id") if isinstance(backend, dict) else None
    doc["backend"] = {"id": backend_id if isinstance(backend_id, str) else DEFAULT_BACKEND}
    return doc


def list_item(space_id: str, collection_id: str, record: Mapping[str, object]) -> dict[str, object]:
    """A List Collections item: ``name`` defaults to the id (SP-12)."""
    name = record.get("name")
    return {
        "id": collection_id,
        "url": collection_url(space_id, collection_id),
        "name": name if isinstance(name, str) else collection_id,
    }


def collections_url(space_id: str) -> str:
    return space_url(space_id) + "/collections/"


@dataclass(frozen=True)
class MetaBody:
    """A validated collection metadata write: the only writable members."""

    custom: dict[str, object] | None
    epoch: str | None


def parse_meta_body(body: bytes) -> MetaBody:
    """``{"custom"?: {"name"?: str, "tags"?: {str: str}}, "epoch"?: str}``; other members ignored (COL-16)."""
    doc = json_object(body, limit=MAX_META_BODY, what="The metadata object")
    custom = doc.get("custom")
    if custom is not None:
        if not isinstance(custom, dict):
            raise InvalidRequestBody("'custom' must be a JSON object.", pointer="#/custom")
        name = custom.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidRequestBody("'custom.name' must be a string.", pointer="#/custom/name")
        tags = custom.get("tags")
        if tags is not None and (
            not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())
        ):
            raise InvalidRequestBody(
                "'custom.tags' must be an object of string values.", pointer="#/custom/tags"
            )
    epoch = doc.get("epoch")
    if epoch is not None and (not isinstance(epoch, str) or not epoch):
        raise InvalidRequestBody("'epoch' must be a non-empty string.", pointer="#/epoch")
    return MetaBody(custom=custom, epoch=epoch)


def meta_record(wanted: MetaBody, current: Mapping[str, object] | None, now: str, nonce: str) -> bytes:
    """The stored metadata: ``createdAt`` kept from the first write; ``nonce`` makes each ETag new."""
    created = current.get("createdAt") if current is not None else None
    doc: dict[str, object] = {
        "createdAt": created if isinstance(created, str) else now,
        "updatedAt": now,
        "write": nonce,
    }
    if wanted.custom is not None:
        doc["custom"] = wanted.custom
    if wanted.epoch is not None:
        doc["epoch"] = wanted.epoch
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def describe_meta(collection: Mapping[str, object], meta: Mapping[str, object] | None) -> dict[str, object]:
    """The metadata object: its own timestamps, the collection's ``createdBy``, ``custom``, ``epoch``."""
    doc: dict[str, object] = {}
    if meta is not None:
        for member in ("createdAt", "updatedAt"):
            if isinstance(meta.get(member), str):
                doc[member] = meta[member]
    if isinstance(collection.get("createdBy"), str):
        doc["createdBy"] = collection["createdBy"]
    if meta is not None:
        if isinstance(meta.get("epoch"), str):
            doc["epoch"] = meta["epoch"]
        if isinstance(meta.get("custom"), dict):
            doc["custom"] = meta["custom"]
    return doc
