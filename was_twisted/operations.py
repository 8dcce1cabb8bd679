"""The WAS spec's operations, one ``async def`` each: the spec's rules live here.

The HTTP edge hands each operation plain values (a ``Call`` and the decoded
ids); the operation authenticates, validates, asks ``auth/`` for a decision
and calls storage.  Decisions that depend on the stored space run as guards
inside the storage call, so a blocking backend looks up and acts in one hop.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTime

from .auth.policy import Authorizer, Invocation, authenticate
from .config import Settings
from .errors import InvalidId, InvalidRequestBody, NotFound, SpaceExists
from .ids import check_resource_path, check_space_id
from .storage.base import DEFAULT_CONTENT_TYPE, ResourceInfo, SpaceRecord
from .storage.threaded import AsyncBody, AsyncStorage

MAX_SPACE_BODY = 64 * 1024
MAX_NAME = 256


@dataclass(frozen=True)
class Call:
    """What the operations need of an HTTP request, as plain values.

    ``targets`` are the request-target forms a signature may cover: the path
    as sent with its query, without it, and once percent-decoded (the Python
    client signs the decoded path, the JS client the encoded one).
    """

    method: str
    targets: tuple[str, ...]
    headers: Mapping[str, str]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass(frozen=True)
class SpaceBody:
    """A validated space create/update body."""

    id: str | None
    controller: str
    name: str | None


def space_url(space_id: str) -> str:
    return f"/space/{space_id}"


def resource_url(space_id: str, path: str) -> str:
    """The URL path of a resource, percent-encoded once (the inverse of the edge's decoding)."""
    return space_url(space_id) + quote(path, safe="/")


def describe_space(record: SpaceRecord) -> dict[str, object]:
    """The spec's Space description (``id`` as stored: the clients sent ``urn:uuid:``)."""
    doc: dict[str, object] = {
        "id": record.id,
        "url": space_url(record.space_id),
        "type": ["Space"],
        "controller": record.controller,
    }
    if record.name is not None:
        doc["name"] = record.name
    if record.created_by is not None:
        doc["createdBy"] = record.created_by
    return doc


def parse_space_body(body: bytes, space_id: str | None) -> SpaceBody:
    """Validate ``{"id"?, "controller", "name"?}``; ``id`` must name ``space_id`` if given."""
    if len(body) > MAX_SPACE_BODY:
        raise InvalidRequestBody("The space description is too large.")
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequestBody("The body must be a JSON object.") from None
    if not isinstance(doc, dict):
        raise InvalidRequestBody("The body must be a JSON object.")
    controller = doc.get("controller")
    if not isinstance(controller, str) or not controller.startswith("did:") or len(controller) > 2048:
        raise InvalidRequestBody("'controller' must be a DID.", pointer="#/controller")
    controller = controller.split("#", 1)[0]
    body_id = doc.get("id")
    if body_id is not None:
        if not isinstance(body_id, str):
            raise InvalidRequestBody("'id' must be a string.", pointer="#/id")
        if space_id is not None and not _names_space(body_id, space_id):
            raise InvalidRequestBody(
                f"'id' must be {space_id!r} or 'urn:uuid:{space_id}', the id in the URL.", pointer="#/id"
            )
    name = doc.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > MAX_NAME):
        raise InvalidRequestBody(
            f"'name' must be a string of at most {MAX_NAME} characters.", pointer="#/name"
        )
    return SpaceBody(id=body_id, controller=controller, name=name)


def _names_space(body_id: str, space_id: str) -> bool:
    if body_id == space_id:
        return True
    prefix, rest = body_id[:9], body_id[9:]
    return prefix.lower() == "urn:uuid:" and rest.lower() == space_id.lower()


def _bare_id(body_id: str) -> str:
    """The path id a body ``id`` names (``urn:uuid:X`` -> ``X``)."""
    return body_id[9:] if body_id[:9].lower() == "urn:uuid:" else body_id


def _listed(space_id: str, prefix: str, path: str, info: ResourceInfo) -> dict[str, object]:
    """A container listing item; ``contentType`` only where the store lists it (not S3)."""
    item: dict[str, object] = {
        "id": path[len(prefix) :],
        "url": resource_url(space_id, path),
        "size": info.size,
    }
    if info.content_type:
        item["contentType"] = info.content_type
    return item


class Operations:
    """One method per spec operation, over an ``AsyncStorage``."""

    def __init__(self, storage: AsyncStorage, settings: Settings, clock: IReactorTime) -> None:
        self.storage = storage
        self.settings = settings
        self.authorizer = Authorizer(settings.profile)
        self._clock = clock

    @property
    def legacy(self) -> bool:
        return self.authorizer.legacy

    def announces_creation(self, created: bool) -> bool:
        """Whether a space PUT that created answers as a creation (201 + Location).

        The spec profile does; legacy answers 204, as the existing server's
        clients expect.
        """
        return created and not self.legacy

    def authenticate(self, call: Call) -> Invocation:
        return authenticate(
            call.authorization,
            method=call.method,
            targets=call.targets,
            headers=call.headers,
            now=self._clock.seconds(),
            max_lifetime=self.settings.max_signature_lifetime,
            skew=self.settings.clock_skew,
        )

    # -- spaces ------------------------------------------------------------

    async def read_space(self, call: Call, space_id: str) -> dict[str, object]:
        check_space_id(space_id)
        invocation = self.authenticate(call)
        if self.legacy:
            self.authorizer.require_signed(invocation)
        record = await self.storage.get_space(space_id)
        self.authorizer.require_controller(invocation, record)
        assert record is not None
        return describe_space(record)

    async def put_space(self, call: Call, space_id: str, body: bytes) -> tuple[bool, dict[str, object]]:
        """Create or update; updates are checked against the stored controller."""
        check_space_id(space_id)
        invocation = self.authenticate(call)
        signer = self.authorizer.require_signed(invocation)
        wanted = parse_space_body(body, space_id)

        def build(current: SpaceRecord | None) -> SpaceRecord:
            self.authorizer.require_space_write(invocation, current, wanted.controller)
            if current is None:
                return SpaceRecord(
                    space_id=space_id,
                    id=wanted.id or space_id,
                    controller=wanted.controller,
                    name=wanted.name,
                    created_by=signer,
                )
            return SpaceRecord(
                space_id=space_id,
                id=current.id,
                controller=wanted.controller,
                name=wanted.name,
                created_by=current.created_by,
                extra=current.extra,
            )

        created, record = await self.storage.put_space(space_id, build)
        return created, describe_space(record)

    async def create_space(self, call: Call, body: bytes) -> dict[str, object]:
        """POST /spaces/: a new space, its id the body's or a fresh UUID."""
        invocation = self.authenticate(call)
        self.authorizer.require_signed(invocation)
        wanted = parse_space_body(body, None)
        if wanted.id is not None:
            space_id = _bare_id(wanted.id)
            try:
                check_space_id(space_id)
            except InvalidId as exc:
                raise InvalidRequestBody(exc.detail, pointer="#/id") from None
            stored_id = wanted.id
        else:
            space_id = str(uuid.uuid4())
            stored_id = f"urn:uuid:{space_id}"

        def build(current: SpaceRecord | None) -> SpaceRecord:
            self.authorizer.require_space_write(invocation, None, wanted.controller)
            if current is not None:
                raise SpaceExists("A space with this id already exists.", pointer="#/id")
            return SpaceRecord(
                space_id=space_id,
                id=stored_id,
                controller=wanted.controller,
                name=wanted.name,
                created_by=invocation.signer,
            )

        _, record = await self.storage.put_space(space_id, build)
        return describe_space(record)

    async def delete_space(self, call: Call, space_id: str) -> None:
        check_space_id(space_id)
        invocation = self.authenticate(call)
        await self.storage.delete_space(
            space_id, lambda current: self.authorizer.require_delete_space(invocation, current)
        )

    async def list_spaces(self, call: Call) -> dict[str, object]:
        """The signer's spaces; an unsigned caller controls none (200, empty)."""
        invocation = self.authenticate(call)
        space_ids = [] if invocation.signer is None else await self.storage.list_spaces(invocation.signer)
        return {
            "url": "/spaces/",
            "totalItems": len(space_ids),
            "items": [{"id": space_id, "url": space_url(space_id)} for space_id in space_ids],
        }

    # -- resources ---------------------------------------------------------

    async def read_resource(
        self, call: Call, space_id: str, path: str, with_body: bool = True
    ) -> tuple[ResourceInfo, AsyncBody]:
        """GET (or, ``with_body=False``, HEAD) a resource: its metadata and body."""
        check_space_id(space_id)
        check_resource_path(path)
        invocation = self.authenticate(call) if not self.legacy else None
        space, info, body = await self.storage.read_resource(space_id, path, with_body)
        try:
            self.authorizer.require_read(invocation or Invocation(None), space)
        except Exception:
            if body is not None:
                await body.close()
            raise
        if info is None or body is None:
            raise NotFound("Resource not found or insufficient authorization.")
        return info, body

    async def write_resource(
        self, call: Call, space_id: str, path: str, body: BinaryIO, content_type: str | None
    ) -> ResourceInfo:
        check_space_id(space_id)
        check_resource_path(path)
        invocation = self.authenticate(call)
        return await self.storage.write_resource(
            space_id,
            path,
            body,
            content_type or DEFAULT_CONTENT_TYPE,
            lambda space: self.authorizer.require_controller(invocation, space),
        )

    async def post_resource(
        self, call: Call, space_id: str, path: str, body: BinaryIO, content_type: str | None
    ) -> str:
        """POST: to ``.../`` a new resource with a fresh name under it, else write at ``path``.

        Returns the path written.
        """
        if path.endswith("/"):
            path = path + str(uuid.uuid4())
        await self.write_resource(call, space_id, path, body, content_type)
        return path

    async def delete_resource(self, call: Call, space_id: str, path: str) -> None:
        check_space_id(space_id)
        check_resource_path(path)
        invocation = self.authenticate(call)
        await self.storage.delete_resource(
            space_id, path, lambda space: self.authorizer.require_controller(invocation, space)
        )

    async def list_container(self, call: Call, space_id: str, prefix: str) -> dict[str, object] | None:
        """The resources under ``prefix`` (a path ending in ``/``), at any depth.

        ``None`` when a resource is stored at exactly ``prefix`` (a client of
        the existing server may have written one): the caller serves it.
        """
        check_space_id(space_id)
        check_resource_path(prefix)
        invocation = self.authenticate(call)
        entries = await self.storage.list_resources(
            space_id, prefix, lambda space: self.authorizer.require_controller(invocation, space)
        )
        if entries and entries[0][0] == prefix:
            return None
        return {
            "url": resource_url(space_id, prefix),
            "type": ["Collection"],
            "totalItems": len(entries),
            "items": [_listed(space_id, prefix, path, info) for path, info in entries],
        }
