"""Sharing: policy documents, linksets, and zCap revocations.

Policies (``GET|PUT|DELETE .../policy``) and the revocation list are the
controller's alone: a delegated capability never reaches them.  A
revocation (``POST /space/S/zcaps/revocations/{id}`` with the capability as
its body, as the Digital Bazaar stack sends it) is allowed to the space
controller and to every controller in that capability's chain.
"""

from __future__ import annotations

import json
import time
from typing import BinaryIO

from ..auth.didkey import did_for
from ..auth.policy import SPACE_ANCHOR, parse_policy
from ..auth.zcap import VerifiedChain, ZcapError, target_covers
from ..bodies import json_object
from ..errors import InvalidRequestBody, NotFound
from ..ids import check_space_id
from ..storage.base import SpaceRecord
from .base import Call, OperationsBase, resource_url, space_url

POLICY_REL = "https://wallet.storage/spec#policy"
MAX_REVOCATION_BODY = 256 * 1024
REVOCATIONS_PATH = "/zcaps/revocations/"


def linkset(space_id: str, anchor: str) -> dict[str, object]:
    """The RFC 9264 linkset of a space (``/``) or a container: where its policy lives."""
    base = space_url(space_id) if anchor == SPACE_ANCHOR else resource_url(space_id, anchor)
    return {
        "linkset": [{"anchor": base, POLICY_REL: [{"href": base + "/policy", "type": "application/json"}]}]
    }


def _chain_controllers(chain: VerifiedChain) -> frozenset[str]:
    """Everyone who delegated in the chain, and the tail's delegate."""
    found = {d.delegator for d in chain.delegations}
    found.update(did_for(d.controller) for d in chain.delegations)
    return frozenset(found)


class SharingOperations(OperationsBase):
    """Policies, linksets and revocations."""

    # -- policies ------------------------------------------------------------

    async def read_policy(self, call: Call, space_id: str, anchor: str) -> dict[str, object]:
        check_space_id(space_id)
        invocation = await self.invocation(call)
        backend = self.backend

        def read() -> bytes | None:
            space = backend.get_space(space_id)
            self.decide(call, invocation, space_id, space, controller_only=True)
            return backend.get_records(space_id, "policies", [anchor]).get(anchor)

        raw = await self.storage.run(read)
        if raw is None:
            raise NotFound("Resource not found or insufficient authorization.")
        doc = json.loads(raw)
        return doc if isinstance(doc, dict) else {}

    async def put_policy(self, call: Call, space_id: str, anchor: str, body: bytes) -> bool:
        """Store a policy document; True when there was none."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        await self.check_digest(call, body)
        policy = parse_policy(anchor, body)
        return await self.storage.put_record(
            space_id,
            "policies",
            anchor,
            policy.to_bytes(),
            lambda space: self.decide(call, invocation, space_id, space, controller_only=True),
        )

    async def delete_policy(self, call: Call, space_id: str, anchor: str) -> None:
        check_space_id(space_id)
        invocation = await self.invocation(call)
        await self.storage.delete_record(
            space_id,
            "policies",
            anchor,
            lambda space: self.decide(call, invocation, space_id, space, controller_only=True),
        )

    async def read_linkset(self, call: Call, space_id: str, anchor: str) -> dict[str, object]:
        """A linkset is read like what it describes (capability, else policy)."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        backend = self.backend

        def read() -> None:
            self.decide(
                call,
                invocation,
                space_id,
                backend.get_space(space_id),
                revocations=self.revocations_for(space_id, invocation),
                policy=self.policy_lookup(space_id, anchor if anchor == SPACE_ANCHOR else anchor + "/"),
            )

        await self.storage.run(read)
        return linkset(space_id, anchor)

    # -- revocations ---------------------------------------------------------

    async def revoke(self, call: Call, space_id: str, revocation_id: str, body: BinaryIO | bytes) -> bool:
        """Record that a capability of this space is revoked; True if it was not already."""
        check_space_id(space_id)
        invocation = await self.invocation(call)
        raw = body if isinstance(body, bytes) else body.read(MAX_REVOCATION_BODY + 1)
        await self.check_digest(call, raw)
        capability = json_object(raw, limit=MAX_REVOCATION_BODY, what="The capability to revoke")
        if capability.get("id") != revocation_id:
            raise InvalidRequestBody(
                "The capability's id must be the revocation id in the URL.", pointer="#/id"
            )
        try:
            chain = await self._verify_runner(self.verifier.verify_document, capability)
        except ZcapError as exc:
            raise InvalidRequestBody(f"The capability does not verify: {exc}") from None
        scope = self.scope_of(call, space_id)
        tail = chain.tail
        record = json.dumps(
            {
                "id": tail.id,
                "delegator": tail.delegator,
                "revokedBy": invocation.signer,
                "revokedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now())),
                "capability": capability,
            },
            separators=(",", ":"),
        ).encode()

        def guard(space: SpaceRecord | None) -> None:
            ours = (
                space is not None
                and target_covers(scope, chain.root_target)
                and chain.delegations[0].delegator == space.controller
            )
            extra = _chain_controllers(chain) if ours else frozenset()
            self.decide(
                call, invocation, space_id, space if ours else None, also_root=extra, controller_only=True
            )

        return await self.storage.put_record(space_id, "revocations", tail.id, record, guard)

    async def list_revocations(self, call: Call, space_id: str) -> dict[str, object]:
        check_space_id(space_id)
        invocation = await self.invocation(call)
        records = await self.storage.list_records(
            space_id,
            "revocations",
            lambda space: self.decide(call, invocation, space_id, space, controller_only=True),
        )
        items = []
        for _, raw in records:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            if isinstance(doc, dict):
                items.append({k: doc.get(k) for k in ("id", "delegator", "revokedBy", "revokedAt")})
        url = space_url(space_id) + REVOCATIONS_PATH
        return {"url": url, "totalItems": len(items), "items": items}
