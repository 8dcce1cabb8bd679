"""Who asks, and may they?  The one entry point operations use for authorization.

``authenticate`` turns an Authorization header into an ``Invocation`` (or
raises ``InvalidAuthorization``); an ``Authorizer`` decides, for one of the
two profiles, whether that invocation may act on a space, and raises the
error the profile prescribes when not:

- ``spec``: private by default; any shortfall on a target answers exactly as
  an absent target does (``NotFound``), so nothing leaks.
- ``legacy``: the existing server's behaviour, for migrating operators:
  unsigned resource reads are public, no signature is 401, a valid signature
  by another DID is 403.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import ControllerMismatch, Forbidden, InvalidAuthorization, MissingAuthorization, NotFound
from ..storage.base import SpaceRecord
from .signatures import SignatureError, verify_authorization


@dataclass(frozen=True)
class Invocation:
    """A request's verified signer (``None`` when it carried no Authorization)."""

    signer: str | None


ANONYMOUS = Invocation(signer=None)


def authenticate(
    authorization: str | None,
    *,
    method: str,
    targets: Sequence[str],
    headers: Mapping[str, str],
    now: float,
    max_lifetime: int,
    skew: int,
) -> Invocation:
    """Verify the Authorization header, if any; a bad one is refused whatever the target."""
    if not authorization:
        return ANONYMOUS
    try:
        verified = verify_authorization(
            authorization,
            method=method,
            targets=targets,
            now=now,
            headers=headers,
            max_lifetime=max_lifetime,
            skew=skew,
        )
    except SignatureError as exc:
        raise InvalidAuthorization(str(exc)) from exc
    return Invocation(signer=verified.signer)


_NOT_FOUND = "Resource not found or insufficient authorization."


class Authorizer:
    """Authorization decisions for one profile; pure, so they can run in a pool thread as guards."""

    def __init__(self, profile: str) -> None:
        self.legacy = profile == "legacy"

    def require_controller(self, invocation: Invocation, space: SpaceRecord | None) -> None:
        """Only the stored controller may act on an existing space."""
        if self.legacy:
            if invocation.signer is None:
                raise MissingAuthorization("This request must be signed.")
            if space is None:
                raise NotFound(_NOT_FOUND)
            if invocation.signer != space.controller:
                raise Forbidden("The signer is not the controller of this space.")
            return
        if space is None or invocation.signer is None or invocation.signer != space.controller:
            raise NotFound(_NOT_FOUND)

    def require_read(self, invocation: Invocation, space: SpaceRecord | None) -> None:
        """Resource reads: the controller's, or anyone's in the legacy profile."""
        if self.legacy:
            if space is None:
                raise NotFound(_NOT_FOUND)
            return
        self.require_controller(invocation, space)

    def require_signed(self, invocation: Invocation) -> str:
        """Requests that name no existing target (creating a space) must be signed."""
        if invocation.signer is None:
            raise MissingAuthorization("This request must be signed.")
        return invocation.signer

    def require_space_write(
        self, invocation: Invocation, current: SpaceRecord | None, controller: str
    ) -> None:
        """Create: the body's controller must sign.  Update: the stored controller must sign.

        Checking updates against the stored controller, never the body's, is
        what stops anyone from taking over a space by naming themselves.
        """
        if current is None:
            if invocation.signer != controller:
                raise ControllerMismatch(
                    "A space must be created by its controller: the request is not signed by it.",
                    pointer="#/controller",
                )
            return
        self.require_controller(invocation, current)

    def require_delete_space(self, invocation: Invocation, current: SpaceRecord | None) -> None:
        """Deleting an absent space is a no-op for a signer in legacy; spec hides absence."""
        if self.legacy and current is None:
            self.require_signed(invocation)
            return
        self.require_controller(invocation, current)
