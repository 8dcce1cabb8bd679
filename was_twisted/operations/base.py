"""What every operation shares: the request as plain values, URLs, and the path to a decision.

An operation authenticates (signature, then any delegated chain, verified
off the reactor when it is not cached), checks the body's Digest, and asks
``authorize`` for one decision.  Decisions that depend on stored state run
inside the storage call (one thread-pool hop): writes as guards, reads
right after the read, with the lookups (revocations, policies) they need.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable
from urllib.parse import quote

from twisted.internet.interfaces import IReactorTime

from ..auth.authenticate import SignedRequest, authenticate
from ..auth.authorize import Invocation, Rules, Target, authorize, space_target
from ..auth.chains import ChainVerifier
from ..auth.digest import DigestCheck, DigestError, body_digests, check_file
from ..auth.policy import Policy, anchors_for, most_specific
from ..auth.zcap import ZcapError
from ..config import Settings
from ..errors import InvalidDigest
from ..storage.base import Backend, SpaceRecord
from ..storage.threaded import AsyncStorage, Runner, run_inline

#: Bodies up to this size are hashed on the reactor; larger ones in the storage pool.
INLINE_DIGEST = 256 * 1024


@runtime_checkable
class StreamedBody(Protocol):
    """A body still arriving (``web/bodypipe.py``): checked as storage reads it, refused at its end."""

    def check_at_end(self, check: DigestCheck) -> None: ...


@dataclass(frozen=True)
class Call:
    """What the operations need of an HTTP request, as plain values.

    ``targets`` are the request-target forms a signature may cover: the path
    as sent with its query, without it, and once percent-decoded (the Python
    client signs the decoded path, the JS client the encoded one).
    ``origin`` is the public origin (``WAS_PUBLIC_URL``, else the request's
    scheme and Host); ``targets[0]`` after it is the invocation target.
    """

    method: str
    targets: tuple[str, ...]
    headers: Mapping[str, str]
    origin: str = ""
    #: The request carries a body (the edge knows; PUT and POST always count as having one).
    has_body: bool = False

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def base(self) -> str:
        return self.origin or "http://" + self.headers.get("host", "localhost")

    @property
    def url(self) -> str:
        """The absolute invocation target: origin, path as sent, query."""
        return self.base + self.targets[0]


def space_url(space_id: str) -> str:
    return f"/space/{space_id}"


def resource_url(space_id: str, path: str) -> str:
    """The URL path of a resource, percent-encoded once (the inverse of the edge's decoding)."""
    return space_url(space_id) + quote(path, safe="/")


class OperationsBase:
    """Authentication, Digest and the one decision, over an ``AsyncStorage``."""

    def __init__(
        self,
        storage: AsyncStorage,
        settings: Settings,
        clock: IReactorTime,
        verify_runner: Runner = run_inline,
        verifier: ChainVerifier | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.rules = Rules(legacy=settings.profile == "legacy", skew=settings.clock_skew)
        self.verifier = verifier or ChainVerifier()
        self._verify_runner = verify_runner
        self._clock = clock

    @property
    def legacy(self) -> bool:
        return self.rules.legacy

    @property
    def backend(self) -> Backend:
        return self.storage.backend

    def now(self) -> float:
        return self._clock.seconds()

    # -- who asks ------------------------------------------------------------

    async def invocation(self, call: Call, lenient: bool = False) -> Invocation:
        """The verified signer and capability of a request (a bad signature is refused here)."""
        base = call.base
        signed = SignedRequest(
            method=call.method,
            targets=call.targets,
            url=call.url,
            host=base.partition("://")[2],
            headers=call.headers,
            has_body=call.has_body or call.method in ("PUT", "POST"),
        )
        invocation = authenticate(
            signed,
            now=self.now(),
            max_lifetime=self.settings.max_signature_lifetime,
            skew=self.settings.clock_skew,
            lenient=lenient,
        )
        zcap = invocation.zcap
        if zcap is None or zcap.capability is None:
            return invocation
        encoded = zcap.capability
        chain = self.verifier.cached(encoded)
        error: str | None = None
        if chain is None:
            try:
                # Canonicalizing costs milliseconds: off the reactor when there is a pool.
                chain = await self._verify_runner(self.verifier.verify, encoded)
            except ZcapError as exc:
                error = str(exc)
        return Invocation(
            signer=invocation.signer,
            key_id=invocation.key_id,
            covered=invocation.covered,
            zcap=zcap,
            chain=chain,
            chain_error=error,
        )

    # -- the body ------------------------------------------------------------

    async def check_digest(self, call: Call, body: BinaryIO | bytes) -> None:
        """A ``Digest`` / ``Content-Digest`` the body does not match is refused before storage commits.

        A zCap invocation with a body type must carry one (its signature
        covers it); ``WAS_REQUIRE_DIGEST=on`` demands one on every body.
        """
        try:
            digests = body_digests(call.headers)
        except DigestError as exc:
            raise InvalidDigest(str(exc)) from None
        if not digests:
            invoking = "capability-invocation" in call.headers and call.headers.get("content-type")
            if self.settings.require_digest or invoking:
                raise InvalidDigest("This request needs a Digest header for its body.")
            return
        if isinstance(body, StreamedBody):
            # Hashed in the storage thread as it streams; a mismatch fails the read, so nothing is kept.
            body.check_at_end(DigestCheck(digests))
            return
        stream: BinaryIO = io.BytesIO(body) if isinstance(body, bytes) else body
        size = _size_of(stream)
        try:
            if size <= INLINE_DIGEST:
                check_file(digests, stream)
            else:
                await self.storage.run(check_file, digests, stream)
        except DigestError as exc:
            raise InvalidDigest(str(exc)) from None

    # -- the decision --------------------------------------------------------

    def revocations_for(self, space_id: str, invocation: Invocation) -> dict[str, bytes]:
        """(In a storage call.) The revocation records of the invoked chain's capabilities."""
        chain = invocation.chain
        if chain is None:
            return {}
        return self.backend.get_records(space_id, "revocations", [d.id for d in chain.delegations])

    def policy_lookup(self, space_id: str, path: str) -> Callable[[], Policy | None]:
        """(In a storage call.) A lazy lookup of the most specific policy governing ``path``."""

        def lookup() -> Policy | None:
            anchors = anchors_for(path)
            return most_specific(anchors, self.backend.get_records(space_id, "policies", anchors))

        return lookup

    def scope_of(self, call: Call, space_id: str) -> str:
        return call.base + space_url(space_id)

    def decide(
        self,
        call: Call,
        invocation: Invocation,
        space_id: str,
        space: SpaceRecord | None,
        *,
        revocations: Mapping[str, bytes] | None = None,
        policy: Callable[[], Policy | None] | None = None,
        public_by_default: bool = False,
        also_root: frozenset[str] = frozenset(),
        controller_only: bool = False,
    ) -> None:
        """``authorize`` for an action on space ``space_id`` (or something in it); raises when no."""
        authorize(
            invocation,
            call.method.upper(),
            space_target(
                call.url,
                self.scope_of(call, space_id),
                space,
                also_root=also_root,
                controller_only=controller_only,
            ),
            self.rules,
            now=self.now(),
            revocations=revocations,
            policy=policy,
            public_by_default=public_by_default,
        )

    def read_guard(
        self, call: Call, invocation: Invocation, space_id: str, path: str
    ) -> Callable[[SpaceRecord | None], None]:
        """(In a storage call.) A read's decision: a capability, else the most specific policy."""

        def guard(space: SpaceRecord | None) -> None:
            self.decide(
                call,
                invocation,
                space_id,
                space,
                revocations=self.revocations_for(space_id, invocation),
                policy=self.policy_lookup(space_id, path),
                public_by_default=self.legacy,
            )

        return guard

    def decide_create(self, call: Call, invocation: Invocation, scope: str, controller: str) -> None:
        """``authorize`` for creating a space: the body's controller is the root of trust."""
        authorize(
            invocation,
            call.method.upper(),
            Target(url=call.url, scope=scope, controller=controller, exists=False, creating=True),
            self.rules,
            now=self.now(),
        )


def _size_of(stream: BinaryIO) -> int:
    try:
        pos = stream.tell()
        stream.seek(0, 2)
        end = stream.tell()
        stream.seek(pos)
        return end
    except (OSError, ValueError):
        return INLINE_DIGEST + 1
