"""Which paths under a space are the spec's reserved addresses, and which are resources.

Reserved segments count only at their spec depth (``/policy``,
``/c/policy``, ``/c/r/policy``; ``/linkset``, ``/c/linkset``), so a
resource named ``policy`` deeper down stays a resource.  Everything under
``/zcaps/revocations/`` is the revocation endpoint (the JavaScript stack's
address; not in the spec's registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth.policy import SPACE_ANCHOR, policy_anchor

REVOCATIONS = "/zcaps/revocations/"


@dataclass(frozen=True)
class PathKind:
    """``kind``: resource, resource-meta, policy, linkset, revocation(s); ``name``: its anchor, id or path."""

    kind: str
    name: str


def classify(path: str) -> PathKind:
    """What a decoded path under a space addresses."""
    if path.startswith(REVOCATIONS):
        rest = path[len(REVOCATIONS) :]
        return PathKind("revocations", "") if rest == "" else PathKind("revocation", rest)
    anchor = policy_anchor(path)
    if anchor is not None:
        return PathKind("policy", anchor)
    segments = path[1:].split("/")
    if len(segments) == 3 and segments[2] == "meta":
        return PathKind("resource-meta", "/" + "/".join(segments[:2]))
    if segments[-1] == "linkset" and len(segments) <= 2:
        return PathKind("linkset", "/" + segments[0] if len(segments) == 2 else SPACE_ANCHOR)
    return PathKind("resource", path)
