"""zCap values and rules that need no cryptography: the invocation header, root ids, targets.

A delegated capability travels in the ``Capability-Invocation`` header as
base64url(gzip(JSON)); its proof embeds its parent, whose proof embeds its
parent, back to a root capability that is named only by id.
``chains.ChainVerifier`` verifies such a chain into a ``VerifiedChain``
(everything that does not depend on the clock); the caller then checks time
(``VerifiedChain.check_time``), the root (is it this space's, was its first
link signed by the space controller?) and the invocation itself (action,
target, HTTP signature).

What a delegated zcap from ezcap 4 (``ZcapClient.delegate`` with
``Ed25519Signature2020``) contains, and so all ``chains`` accepts:

- capability: ``@context`` (exactly ``[zcap/v1, ed25519-2020/v1]``), ``id``, ``controller``,
  ``parentCapability``, ``invocationTarget``, ``expires``, optional ``allowedAction``
  (ezcap omits it when delegating every action), ``proof``;
- proof (one object, not an array): ``type``, ``created``, ``verificationMethod``,
  ``proofPurpose``, ``capabilityChain``, ``proofValue``.

pyld silently drops members a context does not define, and would then verify a
signature over less than the document says, so any other member is refused.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = [
    "MAX_CHAIN_LENGTH",
    "ROOT_PREFIX",
    "CapabilityInvocation",
    "Delegation",
    "VerifiedChain",
    "ZcapError",
    "parse_capability_invocation",
    "root_id_for",
    "root_target",
    "target_covers",
]

ROOT_PREFIX = "urn:zcap:root:"
MAX_CHAIN_LENGTH = 10  # capabilities in a chain, root and tail included (as @digitalbazaar/zcap counts)

MAX_ENCODED = 64 * 1024
_MAX_HEADER = MAX_ENCODED + 1024


# An absolute IRI as pyld keeps it: a scheme, then no whitespace, controls or characters N-Quads
# cannot carry.  "_:" (a blank node label, renamed by canonicalization) has no scheme and fails.
ACTION_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]{1,64}")  # an HTTP token, as methods are
_PERCENT_ESCAPES = re.compile(r"[^%]*(?:%[0-9A-Fa-f]{2}[^%]*)*")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}")
_HEADER_PARAM = re.compile(r'([A-Za-z]+)="([^"\\]*)"[ \t]*')
_HEADER_SEPARATOR = re.compile(r",[ \t]*")


_MAX_IRI = 4096
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[^\x00-\x20<>\"{}|\\^`\x7f]*")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


class ZcapError(ValueError):
    """A capability or invocation is refused; the message is one sentence safe to show a client."""


# ---------------------------------------------------------------- header


@dataclass(frozen=True)
class CapabilityInvocation:
    """The parsed ``Capability-Invocation`` header."""

    action: str
    root_id: str | None  # the id= form
    capability: str | None  # the raw capability= value (base64url gzip JSON), undecoded


#: Header values up to this long are remembered: a client sends the same one on every request.
_CACHED_HEADER = 8 * 1024


def parse_capability_invocation(value: str) -> CapabilityInvocation:
    """Parse ``zcap id="…",action="…"`` or ``zcap capability="…",action="…"``, strictly."""
    if len(value) <= _CACHED_HEADER:
        return _parse_remembered(value)
    return _parse_invocation(value)


def _parse_invocation(value: str) -> CapabilityInvocation:
    if len(value) > _MAX_HEADER:
        raise ZcapError("The Capability-Invocation header is too long.")
    scheme, space, rest = value.strip(" \t").partition(" ")
    if scheme.lower() != "zcap" or not space:
        raise ZcapError('The Capability-Invocation header must start with "zcap ".')
    params: dict[str, str] = {}
    position = 0
    rest = rest.lstrip(" \t")
    while True:
        match = _HEADER_PARAM.match(rest, position)
        if match is None:
            raise ZcapError("The Capability-Invocation header is malformed.")
        name = match.group(1).lower()
        if name in params:
            raise ZcapError("The Capability-Invocation header repeats a parameter.")
        params[name] = match.group(2)
        position = match.end()
        if position == len(rest):
            break
        separator = _HEADER_SEPARATOR.match(rest, position)
        if separator is None:
            raise ZcapError("The Capability-Invocation header is malformed.")
        position = separator.end()
    if set(params) - {"id", "capability", "action"}:
        raise ZcapError("The Capability-Invocation header has an unknown parameter.")
    action = params.get("action")
    if action is None:
        raise ZcapError("The Capability-Invocation header has no action.")
    if not ACTION_TOKEN.fullmatch(action):
        raise ZcapError("The Capability-Invocation action is not a valid action name.")
    root_id = params.get("id")
    capability = params.get("capability")
    if (root_id is None) == (capability is None):
        raise ZcapError("The Capability-Invocation header must carry exactly one of id and capability.")
    if root_id is not None:
        root_target(root_id)  # only a root capability may be invoked by id
    if capability is not None and not is_encoded_capability(capability):
        raise ZcapError("The Capability-Invocation capability is not base64url of at most 64 KiB.")
    return CapabilityInvocation(action=action, root_id=root_id, capability=capability)


# Failures raise, and are not remembered; the cache is bounded to 512 values of at most 8 KiB.
_parse_remembered = functools.lru_cache(maxsize=512)(_parse_invocation)


def is_encoded_capability(value: str) -> bool:
    return 0 < len(value) <= MAX_ENCODED and _B64URL.fullmatch(value) is not None


# ---------------------------------------------------------------- root ids and targets


def root_id_for(url: str) -> str:
    """The root zCap id of a URL: the prefix and JavaScript's ``encodeURIComponent(url)``."""
    try:
        return ROOT_PREFIX + quote(url, safe="-_.!~*'()")
    except UnicodeEncodeError:
        raise ZcapError("The URL cannot be encoded as a root capability id.") from None


@functools.lru_cache(maxsize=1024)
def root_target(root_id: str) -> str:
    """The URL a root zCap id names (percent-decoded, as ``decodeURIComponent`` would)."""
    if not root_id.startswith(ROOT_PREFIX):
        raise ZcapError("The capability id is not a root capability id.")
    if not is_iri(root_id):
        raise ZcapError("The root capability id is not a valid URI.")
    encoded = root_id[len(ROOT_PREFIX) :]
    if not _PERCENT_ESCAPES.fullmatch(encoded):
        raise ZcapError("The root capability id has a malformed percent escape.")
    try:
        target = unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        raise ZcapError("The root capability id does not decode to UTF-8.") from None
    if not is_iri(target):
        raise ZcapError("The root capability id does not name an absolute URL.")
    return target


def is_iri(value: str) -> bool:
    """An absolute IRI of bounded length, without surrogates."""
    return len(value) <= _MAX_IRI and _IRI.fullmatch(value) is not None and not _SURROGATES.search(value)


def target_covers(target: str, url: str) -> bool:
    """Whether a capability for ``target`` may act on ``url`` (hierarchical, never a bare prefix).

    Covered: ``url == target``; ``target + "/…"``; ``target + "?…"``; and, when ``target``
    ends in "/", anything starting with it.  A path below the target that has "." or ".."
    segments (also percent-encoded, or split by backslashes) is never covered: a server that
    normalizes it would act outside the target.
    """
    if url == target:
        return True
    if target.endswith("/") and url.startswith(target):
        rest = url[len(target) :]
    elif url.startswith(target + "/"):
        rest = url[len(target) + 1 :]
    elif url.startswith(target + "?"):
        return True
    else:
        return False
    path = re.split(r"[?#]", rest, maxsplit=1)[0]
    segments = re.split(r"[/\\]", unquote(path))
    return not any(segment in (".", "..") for segment in segments)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Delegation:
    """One verified delegated capability of a chain."""

    id: str
    controller: str  # the delegate (a DID as written in the zcap)
    delegator: str  # DID (no fragment) of the key that signed this zcap's proof
    parent: str  # parentCapability id
    invocation_target: str
    allowed_actions: frozenset[str] | None  # None = whatever the parent allows (inherit)
    expires: float  # unix seconds
    created: float  # proof.created, unix seconds


@dataclass(frozen=True)
class VerifiedChain:
    """A delegation chain whose signatures and clock-free rules have been checked."""

    root_id: str
    root_target: str
    delegations: tuple[Delegation, ...]  # first delegate of the root ... tail (the invoked capability) last

    @property
    def tail(self) -> Delegation:
        return self.delegations[-1]

    def allowed_actions(self) -> frozenset[str] | None:
        """The actions the tail may invoke (None: every action)."""
        allowed: frozenset[str] | None = None
        for delegation in self.delegations:
            if delegation.allowed_actions is not None:
                allowed = (
                    delegation.allowed_actions if allowed is None else allowed & delegation.allowed_actions
                )
        return allowed

    def check_time(self, now: float, skew: int) -> None:
        """Refuse the chain if any link has expired or was delegated in the future (beyond ``skew``)."""
        for delegation in self.delegations:
            if delegation.expires + skew < now:
                raise ZcapError("A capability in the delegation chain has expired.")
            if delegation.created - skew > now:
                raise ZcapError("A capability in the delegation chain was delegated in the future.")
