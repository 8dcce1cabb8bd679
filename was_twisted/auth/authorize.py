"""The one authorization decision: may this invocation do this action on this target?

Every operation asks ``authorize`` once.  The order is fixed: the signature
(already verified into an ``Invocation``), the body Digest (checked by the
operation before storage), then the capability (a plain controller
signature, a root zCap named by id, or a delegated chain, with revocations
consulted), then, for reads only, the most specific policy, then deny.

It is a pure function over values: the space record, the revocation
records of the chain's capabilities and a lazy policy lookup are handed in,
and time comes from the caller's clock.  What a "no" looks like depends on
the profile: ``spec`` answers exactly as an absent target (``NotFound``);
``legacy`` answers 401 unsigned, 403 for a valid signature by someone else.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from twisted.logger import Logger

from ..errors import ControllerMismatch, Forbidden, MissingAuthorization, NotFound
from ..storage.base import SpaceRecord
from .didkey import did_for
from .policy import Policy
from .zcap import CapabilityInvocation, VerifiedChain, ZcapError, root_target, target_covers

_NOT_FOUND = "Resource not found or insufficient authorization."
_log = Logger("was_twisted.auth")

#: What a lazy policy lookup returns: the most specific policy that exists, or ``None``.
PolicyLookup = Callable[[], "Policy | None"]


def action_for(method: str) -> str:
    """The zCap action a method needs: the upper-case method, HEAD authorized as GET."""
    upper = method.upper()
    return "GET" if upper == "HEAD" else upper


@dataclass(frozen=True)
class Invocation:
    """What a request proves about its sender, before any storage is consulted.

    ``signer`` is the DID of a verified HTTP signature (``None``: unsigned).
    ``zcap`` is the parsed ``Capability-Invocation`` header, if any; for a
    delegated one, ``chain`` is its verified chain, or ``chain_error`` says
    why it did not verify (decided later, so a bad chain answers exactly as
    any other shortfall does).
    """

    signer: str | None
    key_id: str | None = None
    covered: tuple[str, ...] = ()
    zcap: CapabilityInvocation | None = None
    chain: VerifiedChain | None = None
    chain_error: str | None = None


ANONYMOUS = Invocation(signer=None)


@dataclass(frozen=True)
class Target:
    """What is being acted on.

    ``url`` is the absolute invocation target (public origin, path as sent,
    query).  ``scope`` is the URL under which root capabilities of this
    controller live (the space URL; ``/spaces/`` for a create by POST).
    ``controller`` is the root of trust: the stored controller, or for a
    create the body's.  ``also_root`` adds DIDs whose signatures count as the
    controller's (revocation: every controller in the revoked chain).
    """

    url: str
    scope: str
    controller: str | None
    exists: bool = True
    creating: bool = False
    also_root: frozenset[str] = field(default_factory=frozenset)
    controller_only: bool = False


@dataclass(frozen=True)
class Grant:
    """Why a request is allowed: ``controller``, ``capability``, ``policy`` or ``public``."""

    by: str
    signer: str | None
    chain: VerifiedChain | None = None


@dataclass(frozen=True)
class Rules:
    """The deployment's rules: profile and clock tolerance."""

    legacy: bool
    skew: int = 300


class _Shortfall(Exception):
    """Internal: the invocation does not cover the target; ``reason`` is for logs and creates."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def revoked_in(chain: VerifiedChain, revocations: Mapping[str, bytes]) -> bool:
    """Whether a capability of ``chain`` has a revocation recorded by its own delegator.

    Matching the delegator, not only the id, stops a delegate from revoking
    another branch's capability by minting one of its own under the same id.
    """
    for link in chain.delegations:
        raw = revocations.get(link.id)
        if raw is None:
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            return True  # unreadable: fail closed
        if not isinstance(record, dict) or record.get("delegator") in (None, link.delegator):
            return True
    return False


def _check_capability(
    invocation: Invocation,
    method: str,
    target: Target,
    now: float,
    skew: int,
    revocations: Mapping[str, bytes],
) -> Grant:
    """Grant by signature or capability, or raise ``_Shortfall``."""
    signer = invocation.signer
    if signer is None:
        raise _Shortfall("The request is not signed.")
    zcap = invocation.zcap
    if zcap is None:
        # A plain signature invokes the root capability of exactly this target (most requests:
        # nothing else is computed for them).
        if signer == target.controller or signer in target.also_root:
            return Grant("controller", signer)
        raise _Shortfall("The request is not signed by the controller.")
    root_signers = {target.controller, *target.also_root} - {None}
    # The invoked action is the method; a HEAD may name GET (or HEAD), a GET never HEAD.
    if zcap.action != method and not (method == "HEAD" and zcap.action == "GET"):
        raise _Shortfall(f"The capability is invoked for {zcap.action!r}, not {method!r}.")
    if zcap.root_id is not None:
        try:
            root_url = root_target(zcap.root_id)
        except ZcapError as exc:
            raise _Shortfall(str(exc)) from None
        if not (target_covers(target.scope, root_url) and target_covers(root_url, target.url)):
            raise _Shortfall("The root capability is not for this target.")
        if signer not in root_signers:
            raise _Shortfall("The root capability is invoked by someone who does not control it.")
        return Grant("controller", signer)
    if target.controller_only:
        raise _Shortfall("Only the controller may do this.")
    chain = invocation.chain
    if chain is None:
        raise _Shortfall(invocation.chain_error or "The capability does not verify.")
    if not target_covers(target.scope, chain.root_target):
        raise _Shortfall("The capability descends from a root of another target.")
    if chain.delegations[0].delegator != target.controller:
        raise _Shortfall("The capability was not delegated by the controller.")
    try:
        chain.check_time(now, skew)
    except ZcapError as exc:
        raise _Shortfall(str(exc)) from None
    tail = chain.tail
    if not target_covers(tail.invocation_target, target.url):
        raise _Shortfall("The capability is not for this target.")
    allowed = chain.allowed_actions()
    action = action_for(method)
    if allowed is not None and zcap.action not in allowed and action not in allowed:
        raise _Shortfall(f"The capability does not allow {zcap.action!r}.")
    if signer != did_for(tail.controller) and invocation.key_id != tail.controller:
        raise _Shortfall("The capability is invoked by a key its controller does not hold.")
    if revoked_in(chain, revocations):
        raise _Shortfall("The capability has been revoked.")
    return Grant("capability", signer, chain)


def authorize(
    invocation: Invocation,
    method: str,
    target: Target,
    rules: Rules,
    *,
    now: float,
    revocations: Mapping[str, bytes] | None = None,
    policy: PolicyLookup | None = None,
    public_by_default: bool = False,
) -> Grant:
    """Decide; raise the profile's error when the answer is no.

    ``policy`` is consulted only for reads and only when no capability
    covers the request; ``public_by_default`` (legacy resource reads) grants
    a read when no policy exists at all.  A create (``target.creating``)
    failing its controller check is 400 ``controller-mismatch`` in both
    profiles, with the reason.
    """
    if target.creating:
        try:
            return _check_capability(invocation, method, target, now, rules.skew, revocations or {})
        except _Shortfall as short:
            if invocation.signer is None:
                raise MissingAuthorization("This request must be signed.") from None
            raise ControllerMismatch(
                "A space must be created by its controller or under a capability it delegated: "
                + short.reason,
                pointer="#/controller",
            ) from None
    if target.exists and target.controller is not None:
        try:
            return _check_capability(invocation, method, target, now, rules.skew, revocations or {})
        except _Shortfall as short:
            # Clients only ever see "not found"; an operator asking why a signed request was
            # refused finds it here (unsigned ones are the common, uninteresting case).
            if invocation.signer is not None:
                _log.debug(
                    "{method} {url}: refused {signer}: {reason}",
                    method=method,
                    url=target.url,
                    signer=invocation.signer,
                    reason=short.reason,
                )
        if action_for(method) == "GET" and policy is not None:
            found = policy()
            if found is not None:
                if found.grants_read():
                    return Grant("policy", invocation.signer)
            elif public_by_default:
                return Grant("public", invocation.signer)
    if rules.legacy:
        if not target.exists:
            raise NotFound(_NOT_FOUND)
        if invocation.signer is None:
            raise MissingAuthorization("This request must be signed.")
        raise Forbidden("The signer is not authorized for this target.")
    raise NotFound(_NOT_FOUND)


def space_target(
    url: str,
    scope: str,
    space: SpaceRecord | None,
    *,
    also_root: frozenset[str] = frozenset(),
    controller_only: bool = False,
) -> Target:
    """The ``Target`` for an action on an existing (or absent) space or something in it."""
    return Target(
        url=url,
        scope=scope,
        controller=space.controller if space is not None else None,
        exists=space is not None,
        also_root=also_root,
        controller_only=controller_only,
    )
