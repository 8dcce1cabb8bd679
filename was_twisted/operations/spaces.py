"""Space operations: create (PUT or POST /spaces/), read, update, delete, list."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from ..bodies import json_object
from ..errors import InvalidId, InvalidRequestBody, MissingAuthorization, SpaceExists
from ..ids import check_space_id
from ..storage.base import Condition, SpaceRecord, check_condition
from .base import Call, OperationsBase, space_url
from .pagination import page_of, page_request

MAX_SPACE_BODY = 64 * 1024
MAX_NAME = 256
SPACES_URL = "/spaces/"


@dataclass(frozen=True)
class SpaceBody:
    """A validated space create/update body."""

    id: str | None
    controller: str
    name: str | None


def describe_space(record: SpaceRecord) -> dict[str, object]:
    """The spec's Space description (``id`` as stored: the clients sent ``urn:uuid:``)."""
    url = space_url(record.space_id)
    doc: dict[str, object] = {
        "id": record.id,
        "url": url,
        "type": ["Space"],
        "controller": record.controller,
    }
    if record.name is not None:
        doc["name"] = record.name
    if record.created_by is not None:
        doc["createdBy"] = record.created_by
    doc["linkset"] = url + "/linkset"
    return doc


def parse_space_body(body: bytes, space_id: str | None) -> SpaceBody:
    """Validate ``{"id"?, "controller", "name"?}``; ``id`` must name ``space_id`` if given."""
    doc = json_object(body, limit=MAX_SPACE_BODY, what="The space description")
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


def _is_space_id(space_id: str) -> bool:
    """Whether a cursor's id could be a space's."""
    try:
        check_space_id(space_id)
    except InvalidId:
        return False
    return True


def _bare_id(body_id: str) -> str:
    """The path id a body ``id`` names (``urn:uuid:X`` -> ``X``)."""
    return body_id[9:] if body_id[:9].lower() == "urn:uuid:" else body_id


class SpaceOperations(OperationsBase):
    """The spec's Space operations."""

    def announces_creation(self, created: bool) -> bool:
        """Whether a space PUT that created answers as a creation (201 + Location).

        The spec profile does; legacy answers 204, as the existing server's
        clients expect.
        """
        return created and not self.legacy

    async def read_space(self, call: Call, space_id: str) -> tuple[dict[str, object], str | None]:
        """The space description and its ``ETag`` (for a later ``If-Match`` on ``PUT /space/{id}``)."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        backend = self.backend

        def read() -> SpaceRecord:
            revocations = self.revocations_for(space_id, invocation)
            record = backend.get_space(space_id)
            self.decide(
                call,
                invocation,
                space_id,
                record,
                revocations=revocations,
                policy=self.policy_lookup(space_id, "/"),
            )
            assert record is not None
            return record

        record = await self.storage.run(read)
        return describe_space(record), record.etag

    async def put_space(
        self, call: Call, space_id: str, body: bytes, condition: Condition | None = None
    ) -> tuple[bool, dict[str, object], str | None]:
        """Create or update; (created?, the description, its new ``ETag``).

        Updates are checked against the stored controller.  ``condition`` is
        checked after authorization, against the ETag of the record the
        backend hands ``build``, so it is atomic with the write.
        """
        check_space_id(space_id)
        invocation = await self.invocation(call)
        if invocation.signer is None:
            raise MissingAuthorization("This request must be signed.")
        await self.check_digest(call, body)
        wanted = parse_space_body(body, space_id)
        backend = self.backend

        def write() -> tuple[bool, SpaceRecord]:
            revocations = self.revocations_for(space_id, invocation)

            def build(current: SpaceRecord | None) -> SpaceRecord:
                if current is None:
                    self.decide_create(call, invocation, self.scope_of(call, space_id), wanted.controller)
                    check_condition(condition, None)
                    return SpaceRecord(
                        space_id=space_id,
                        id=wanted.id or space_id,
                        controller=wanted.controller,
                        name=wanted.name,
                        created_by=invocation.signer,
                    )
                self.decide(call, invocation, space_id, current, revocations=revocations)
                check_condition(condition, current.etag)
                return SpaceRecord(
                    space_id=space_id,
                    id=current.id,
                    controller=wanted.controller,
                    name=wanted.name,
                    created_by=current.created_by,
                    extra=current.extra,
                )

            return backend.put_space(space_id, build)

        created, record = await self.storage.run(write)
        return created, describe_space(record), record.etag

    async def create_space(self, call: Call, body: bytes) -> dict[str, object]:
        """POST /spaces/: a new space, its id the body's or a fresh UUID."""
        invocation = await self.invocation(call)
        if invocation.signer is None:
            raise MissingAuthorization("This request must be signed.")
        await self.check_digest(call, body)
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
        # Authorized before storage: the body's controller is the root of trust.
        self.decide_create(call, invocation, call.base + SPACES_URL, wanted.controller)

        def build(current: SpaceRecord | None) -> SpaceRecord:
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
        invocation = await self.invocation(call)
        backend = self.backend

        def delete() -> bool:
            revocations = self.revocations_for(space_id, invocation)

            def guard(current: SpaceRecord | None) -> None:
                if current is None and self.legacy:
                    if invocation.signer is None:
                        raise MissingAuthorization("This request must be signed.")
                    return  # legacy: deleting an absent space is a signer's no-op
                self.decide(call, invocation, space_id, current, revocations=revocations)

            return backend.delete_space(space_id, guard)

        await self.storage.run(delete)

    async def list_spaces(self, call: Call) -> dict[str, object]:
        """The signer's spaces, a page at a time; an unsigned caller controls none (200, empty)."""
        invocation = await self.invocation(call)
        page = page_request(call, valid_after=_is_space_id)
        page.check()  # after the signature: a bad cursor reveals nothing stored
        space_ids = (
            []
            if invocation.signer is None
            else await self.storage.list_spaces(invocation.signer, start_after=page.after, limit=page.fetch)
        )
        doc: dict[str, object] = {"url": SPACES_URL}
        page_of(space_ids, page, call, str).envelope(
            doc, page, lambda space_id: {"id": space_id, "url": space_url(space_id)}
        )
        return doc
