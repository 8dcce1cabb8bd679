"""Access-control policy documents (the spec's #access-control-policies).

A policy is a JSON object with a ``type``; it sits at ``/policy`` of the
space, of a container (``/space/S/c/policy``) or of a resource
(``/space/S/c/r/policy``).  Policies only widen access, and only for reads:
``PublicCanRead`` lets anyone GET or HEAD, unsigned included; any other
type grants nothing (fail closed).  The most specific policy that exists
decides: resource, then container, then space.

Policies are stored under an *anchor*: ``/`` for the space, ``/c`` for a
container, ``/c/r`` for a resource.  An anchor governs itself and
everything under it, so a resource deeper than the spec's two levels falls
under the nearest anchor above it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..bodies import json_object
from ..errors import InvalidRequestBody

PUBLIC_CAN_READ = "PublicCanRead"
SPACE_ANCHOR = "/"
#: Anchors are at most this deep: ``/c/r/policy`` is the deepest policy address.
MAX_ANCHOR_DEPTH = 2
MAX_POLICY_BYTES = 16 * 1024


@dataclass(frozen=True)
class Policy:
    """A stored policy: its anchor and the document as the controller wrote it."""

    anchor: str
    document: dict[str, object]

    @property
    def types(self) -> tuple[str, ...]:
        kind = self.document.get("type")
        if isinstance(kind, str):
            return (kind,)
        if isinstance(kind, list):
            return tuple(k for k in kind if isinstance(k, str))
        return ()

    def grants_read(self) -> bool:
        """Only ``PublicCanRead`` grants anything, and only reads."""
        return PUBLIC_CAN_READ in self.types

    def to_bytes(self) -> bytes:
        return json.dumps(self.document, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, anchor: str, raw: bytes) -> Policy:
        """A stored policy; an unreadable one is kept as one that grants nothing."""
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = {}
        return cls(anchor, doc if isinstance(doc, dict) else {})


def parse_policy(anchor: str, body: bytes) -> Policy:
    """Validate a policy document sent by a controller: a JSON object with a string ``type``."""
    doc = json_object(body, limit=MAX_POLICY_BYTES, what="A policy")
    kind = doc.get("type")
    valid = (
        isinstance(kind, str)
        and kind
        or (isinstance(kind, list) and kind and all(isinstance(k, str) and k for k in kind))
    )
    if not valid:
        raise InvalidRequestBody("A policy needs a 'type': a string or a list of strings.", pointer="#/type")
    return Policy(anchor, doc)


def policy_anchor(path: str) -> str | None:
    """The anchor a path ending in ``/policy`` addresses, or ``None`` if it is a plain resource.

    ``/policy`` -> ``/`` (the space), ``/c/policy`` -> ``/c``, ``/c/r/policy``
    -> ``/c/r``; deeper ``policy`` names stay resources.
    """
    segments = path[1:].split("/")
    if segments[-1] != "policy" or len(segments) > MAX_ANCHOR_DEPTH + 1:
        return None
    parent = segments[:-1]
    return "/" + "/".join(parent) if parent else SPACE_ANCHOR


def anchors_for(path: str) -> list[str]:
    """Anchors whose policy may govern ``path``, most specific first (the space last).

    ``path`` is a resource path (``/c/r``), a container (``/c/``) or ``/``
    for the space itself.
    """
    segments = [s for s in path[1:].split("/") if s][:MAX_ANCHOR_DEPTH]
    found = ["/" + "/".join(segments[:n]) for n in range(len(segments), 0, -1)]
    found.append(SPACE_ANCHOR)
    return found


def most_specific(anchors: list[str], stored: dict[str, bytes]) -> Policy | None:
    """The policy of the first anchor (most specific) that has one."""
    for anchor in anchors:
        raw = stored.get(anchor)
        if raw is not None:
            return Policy.from_bytes(anchor, raw)
    return None
