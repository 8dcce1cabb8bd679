"""Resource metadata (#resource-metadata-data-model): ``GET|PUT /space/{s}/{c}/{r}/meta``.

A resource's metadata is its server fields and what a client set:

* ``contentType`` and ``size`` (always) and ``updatedAt`` come from the stored
  resource itself (what a HEAD sees), so they cost nothing to keep;
* ``createdAt`` and ``createdBy`` (the DID that signed the creating write,
  read-only), ``custom`` (replaced whole by a metadata PUT), ``epoch`` and
  ``writerId`` live in a ``metadata`` record beside the space's resources
  (never inside ``resources/``), written only when there is something to keep.

A plain content write does not read the record first: the backend reports
whether the write created the resource (``ResourceInfo.existed``; on S3 a
``HeadObject`` beside the space record lookup).  A creation then creates the
record (``createdAt``, ``createdBy``) only if none exists
(``Backend.create_resource_meta``, on S3 a ``PutObject`` with
``IfNoneMatch='*'``); an overwrite writes no record, keeping
``createdAt``/``createdBy``/``custom``.  Only a write that declares
``Key-Epoch``/``Writer-Id`` (or a form upload, which is authorized before its
body is looked into) reads the record first and rewrites it.
``epoch``/``writerId`` carry the ``contentEtag`` they were declared for: once
the content changes without declaring them again they are no longer served,
with no write needed to clear them.

A resource the existing server wrote has no record: its metadata is what the
resource itself says, and what we cannot know (``createdAt``, ``createdBy``)
is left out, never guessed, also after we overwrite it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from twisted.logger import Logger

from ..bodies import json_object
from ..errors import InvalidRequestBody, NotFound
from ..ids import check_resource_path, check_space_id
from ..storage.base import Backend, ResourceMeta, StorageError
from .base import Call, OperationsBase

#: A metadata PUT body (``custom`` and all) is at most this large.
MAX_META_BODY = 64 * 1024
#: ``Key-Epoch`` / ``Writer-Id`` / ``epoch`` / ``writerId`` values are at most this long.
MAX_LABEL = 256

_NOT_FOUND = "Resource not found or insufficient authorization."
_log = Logger("was_twisted.metadata")


def rfc3339(seconds: float) -> str:
    """``2026-06-10T09:12:00Z`` (whole seconds: what clients compare and sort on)."""
    return _rfc3339_whole(int(seconds))


@functools.lru_cache(maxsize=8)
def _rfc3339_whole(seconds: int) -> str:
    """Cached: every write in the same second asks for the same string."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record_of(raw: bytes | None) -> dict[str, object]:
    """A stored record as a dict; an unreadable one counts as none (its fields are then unknown)."""
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _encode(record: Mapping[str, object]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _current(record: dict[str, object], etag: str | None) -> dict[str, object]:
    """The record less its stamp, and less ``epoch``/``writerId`` declared for since-replaced content."""
    stamp = record.pop("contentEtag", None)
    if stamp is not None and etag is not None and stamp != etag:
        record.pop("epoch", None)
        record.pop("writerId", None)
    return record


def _stamp(record: dict[str, object], etag: str | None) -> None:
    """Tie ``epoch``/``writerId`` to the content they describe (``_current``)."""
    if etag is not None and ("epoch" in record or "writerId" in record):
        record["contentEtag"] = etag


def describe_meta(meta: ResourceMeta) -> dict[str, object]:
    """The spec's Metadata object: server fields, then what the record keeps."""
    record = _current(_record_of(meta.record), meta.info.etag)
    doc: dict[str, object] = {"contentType": meta.info.content_type, "size": meta.info.size}
    if isinstance(record.get("createdAt"), str):
        doc["createdAt"] = record["createdAt"]
    updated = [t for t in (record.get("updatedAt"),) if isinstance(t, str)]
    if meta.modified is not None:
        updated.append(rfc3339(meta.modified))
    if updated:
        doc["updatedAt"] = max(updated)  # RFC 3339 in UTC with Z: text order is time order
    for name in ("createdBy", "epoch", "writerId"):
        if isinstance(record.get(name), str):
            doc[name] = record[name]
    custom = record.get("custom")
    doc["custom"] = custom if isinstance(custom, dict) else {}
    return doc


def _label(value: object, name: str, pointer: str | None) -> str | None:
    """An ``epoch`` / ``writerId`` value: absent, or a non-empty string (else 400)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_LABEL or not value.isprintable():
        raise InvalidRequestBody(
            f"'{name}' must be a non-empty string of at most {MAX_LABEL} characters.", pointer=pointer
        )
    return value


@dataclass(frozen=True)
class Declared:
    """What a content write declares about itself in headers: ``Key-Epoch`` and ``Writer-Id``."""

    epoch: str | None = None
    writer_id: str | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Declared:
        """Read the headers; a present but empty or malformed one is 400 ``invalid-request-body``."""
        return cls(
            epoch=_label(headers.get("key-epoch"), "Key-Epoch", None),
            writer_id=_label(headers.get("writer-id"), "Writer-Id", None),
        )


def creation_record(signer: str | None, now: float) -> dict[str, object]:
    """What a new resource's record starts with."""
    record: dict[str, object] = {"createdAt": rfc3339(now)}
    if signer is not None:
        record["createdBy"] = signer
    return record


def record_after_write(
    before: ResourceMeta | None, declared: Declared, signer: str | None, now: float, etag: str | None
) -> bytes | None:
    """The record a content write that read ``before`` leaves (``None``: keep the stored one as it is).

    A new resource records its creation; an existing one keeps its creation
    and ``custom``.  ``epoch`` and ``writerId`` are what this write declared,
    stamped with the new content's ``etag``; a write that declares neither
    leaves the record alone (the stamp no longer matches: ``_current``).  A
    resource without a record (the existing server's) gets one only if the
    write declares something to keep.
    """
    if before is None:
        record = creation_record(signer, now)
    elif declared == Declared():
        return None
    else:
        record = _record_of(before.record)
    record.pop("epoch", None)
    record.pop("writerId", None)
    record.pop("contentEtag", None)
    if declared.epoch is not None:
        record["epoch"] = declared.epoch
    if declared.writer_id is not None:
        record["writerId"] = declared.writer_id
    _stamp(record, etag)
    return _encode(record)


def parse_meta_body(body: bytes) -> tuple[dict[str, object], str | None, bool, str | None]:
    """A metadata PUT: (``custom``, ``epoch``, whether it was given, ``writerId``); other members ignored."""
    doc = json_object(body, limit=MAX_META_BODY, what="A metadata document")
    custom = doc.get("custom", {})
    if not isinstance(custom, dict):
        raise InvalidRequestBody("'custom' must be a JSON object.", pointer="#/custom")
    name = custom.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequestBody("'custom.name' must be a string.", pointer="#/custom/name")
    tags = custom.get("tags")
    if tags is not None and not isinstance(tags, dict):
        raise InvalidRequestBody("'custom.tags' must be a JSON object.", pointer="#/custom/tags")
    for member in ("epoch", "writerId"):
        if member in doc and doc[member] is None:
            raise InvalidRequestBody(f"'{member}' must be a non-empty string.", pointer=f"#/{member}")
    epoch = _label(doc.get("epoch"), "epoch", "#/epoch")
    writer_id = _label(doc.get("writerId"), "writerId", "#/writerId")
    return custom, epoch, "epoch" in doc, writer_id


class MetadataOperations(OperationsBase):
    """Read and update a resource's metadata; authorized exactly as a read or write of the resource."""

    async def read_resource_meta(self, call: Call, space_id: str, path: str) -> dict[str, object]:
        """GET (or HEAD) ``{path}/meta``: as a resource GET (capabilities, then policies)."""
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call, lenient=self.legacy)
        backend = self.backend

        def read() -> ResourceMeta:
            space, meta = backend.read_resource_meta(space_id, path)
            self.read_guard(call, invocation, space_id, path)(space)
            if meta is None:
                raise NotFound(_NOT_FOUND)
            return meta

        return describe_meta(await self.storage.run(read))

    async def update_resource_meta(self, call: Call, space_id: str, path: str, body: bytes) -> None:
        """PUT ``{path}/meta``: as a resource PUT; replaces ``custom``, never creates (404)."""
        check_space_id(space_id)
        check_resource_path(path)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        custom, epoch, epoch_given, writer_id = parse_meta_body(body)
        backend = self.backend
        now = self.now()

        def update() -> None:
            revocations = self.revocations_for(space_id, invocation)
            space, meta = backend.read_resource_meta(space_id, path)
            self.decide(call, invocation, space_id, space, revocations=revocations)
            if meta is None:
                raise NotFound(_NOT_FOUND)
            record = _current(_record_of(meta.record), meta.info.etag)
            record["custom"] = custom
            record["updatedAt"] = rfc3339(now)
            if epoch_given:
                record.pop("epoch", None)
                if epoch is not None:
                    record["epoch"] = epoch
            record.pop("writerId", None)
            if writer_id is not None:
                record["writerId"] = writer_id
            _stamp(record, meta.info.etag)
            backend.put_resource_meta(space_id, path, _encode(record))

        await self.storage.run(update)


def after_write(
    backend: Backend,
    space_id: str,
    path: str,
    before: ResourceMeta | None,
    declared: Declared,
    signer: str | None,
    now: float,
    etag: str | None,
) -> None:
    """(In the write's storage call, after a write that read ``before``.) Record what it changed, if anything.

    The content is written by now: a record that cannot be written is logged,
    never turned into a failed write the client would retry.
    """
    record = record_after_write(before, declared, signer, now, etag)
    if record is None:
        return
    try:
        backend.put_resource_meta(space_id, path, record)
    except StorageError as exc:
        _log.warn("metadata of {space} {path} not recorded: {error}", space=space_id, path=path, error=exc)


def record_creation(backend: Backend, space_id: str, path: str, signer: str | None, now: float) -> None:
    """(In the write's storage call, after a plain write that created the resource.) Record the creation.

    Only if no record exists (S3's 412 otherwise): a writer racing this one
    may have recorded it first.  Failures are logged, as in ``after_write``.
    """
    try:
        backend.create_resource_meta(space_id, path, _encode(creation_record(signer, now)))
    except StorageError as exc:
        _log.warn("metadata of {space} {path} not recorded: {error}", space=space_id, path=path, error=exc)
