"""Who is asking: turn a request's signature headers into an ``Invocation``.

Two signature formats: Cavage draft-12 (``Authorization: Signature ...``,
what both WAS clients and the Digital Bazaar zCap libraries send) and RFC
9421 (``Signature-Input`` / ``Signature``).  A ``Capability-Invocation``
header makes it a zCap invocation, which must sign more than a plain
request does: ``host`` and ``capability-invocation`` always, and the body's
type and digest whenever it has a ``Content-Type`` (so a captured
invocation cannot carry another body or be aimed at another server).

A malformed or invalid signature is refused here, whatever the target
(``InvalidAuthorization``); a delegated capability is only parsed here and
verified by the operation (it may need a thread).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..errors import InvalidAuthorization, RepeatedAuthorization
from .authorize import ANONYMOUS, Invocation
from .rfc9421 import verify_message_signature
from .signatures import RepeatedParameter, SignatureError, VerifiedSignature, verify_authorization
from .zcap import CapabilityInvocation, ZcapError, parse_capability_invocation


@dataclass(frozen=True)
class SignedRequest:
    """The parts of a request a signature may cover, as plain values.

    ``targets`` are the ``(request-target)`` spellings a Cavage signature may
    cover; ``url`` is the absolute invocation target; ``host`` the authority
    a zCap invocation must have signed.
    """

    method: str
    targets: tuple[str, ...]
    url: str
    host: str
    headers: Mapping[str, str]
    has_body: bool


def _header_list(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    return value if value else None


def _verify_signature(
    req: SignedRequest, now: float, max_lifetime: int, skew: int, invoking: bool
) -> VerifiedSignature | None:
    """The verified signature, ``None`` when there is none; ``SignatureError`` when bad."""
    authorization = _header_list(req.headers, "authorization")
    signature_input = _header_list(req.headers, "signature-input")
    if signature_input is not None:
        if authorization is not None and authorization.lower().startswith("signature "):
            raise SignatureError("Send one signature: a Cavage Authorization header or RFC 9421, not both.")
        signature = _header_list(req.headers, "signature")
        if signature is None:
            raise SignatureError("Signature-Input needs a Signature header.")
        return verify_message_signature(
            signature_input=signature_input,
            signature=signature,
            method=req.method,
            target_uri=req.url,
            headers=req.headers,
            has_body=req.has_body,
            invocation=invoking,
            now=now,
            max_lifetime=max_lifetime,
            skew=skew,
        )
    if authorization is None:
        return None
    return verify_authorization(
        authorization,
        method=req.method,
        targets=req.targets,
        now=now,
        headers=req.headers,
        max_lifetime=max_lifetime,
        skew=skew,
    )


def _require_covered(verified: VerifiedSignature, headers: Mapping[str, str], host: str) -> None:
    """A zCap invocation signs host, the invocation and (with a body type) the type and digest."""
    covered = set(verified.covered)
    needs: list[Sequence[str]] = [("host", "@authority", "@target-uri"), ("capability-invocation",)]
    if headers.get("content-type"):
        needs.append(("content-type",))
        needs.append(("digest", "content-digest"))
    for options in needs:
        if not covered.intersection(options):
            raise SignatureError(f"A capability invocation must sign {' or '.join(options)}.")
    # @authority and @target-uri are derived from our own origin; a signed Host header must name it.
    if "host" in covered and headers.get("host", "").lower() != host.lower():
        raise SignatureError("The signed host is not this server's.")


def authenticate(
    req: SignedRequest, *, now: float, max_lifetime: int, skew: int, lenient: bool = False
) -> Invocation:
    """Verify the signature and parse any capability invocation.

    ``lenient`` (legacy reads, which the existing server served unsigned)
    treats a bad signature as none instead of refusing the request.
    """
    raw_invocation = _header_list(req.headers, "capability-invocation")
    try:
        zcap: CapabilityInvocation | None = (
            parse_capability_invocation(raw_invocation) if raw_invocation is not None else None
        )
        verified = _verify_signature(req, now, max_lifetime, skew, zcap is not None)
        if verified is None:
            if zcap is not None:
                raise SignatureError("A capability invocation must be signed.")
            return ANONYMOUS
        if zcap is not None:
            _require_covered(verified, req.headers, req.host)
    except RepeatedParameter as exc:
        # Hostile rather than merely wrong: refused (400) even where a bad signature counts as none.
        raise RepeatedAuthorization(str(exc)) from exc
    except (SignatureError, ZcapError) as exc:
        if lenient:
            return ANONYMOUS
        raise InvalidAuthorization(str(exc)) from exc
    return Invocation(signer=verified.signer, key_id=verified.key_id, covered=verified.covered, zcap=zcap)
