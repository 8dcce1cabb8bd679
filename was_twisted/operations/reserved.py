"""Which paths under a space are the spec's reserved addresses, and which are resources.

Reserved segments count only at their spec depth (the Reserved Path Segment
Registry): ``/X`` for the space-level names, ``/c/X`` for the
collection-level ones, ``/c/r/meta`` and ``/c/r/policy`` below a resource.
A resource named ``policy`` or ``meta`` deeper down stays a resource.
Everything under ``/zcaps/revocations/`` is the revocation endpoint (the
JavaScript stack's address; not in the spec's registry).

``classify`` knows only the shape of a path; what a kind means for each
method and profile is the HTTP edge's (``web/app.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..auth.policy import SPACE_ANCHOR, policy_anchor

REVOCATIONS = "/zcaps/revocations/"

#: Space-level reserved segments: ``/space/S/X`` is never a collection (or resource) id.
#: ``zcaps`` is not in the registry: the JavaScript stack's revocations live under it.
SPACE_RESERVED = frozenset(
    {"linkset", "policy", "collections", "backends", "quotas", "export", "import", "query", "zcaps"}
)
#: Collection-level reserved segments: ``/space/S/c/X`` is never a resource id.
COLLECTION_RESERVED = frozenset({"linkset", "policy", "meta", "backend", "query", "quota"})
#: Reserved addresses the spec defines an operation for that this server does not implement (501).
UNSUPPORTED_SPACE = frozenset({"quotas", "export", "import", "query"})
UNSUPPORTED_COLLECTION = frozenset({"query", "quota"})


@dataclass(frozen=True)
class PathKind:
    """What a path addresses, and ``name``: its anchor, id or path.

    ``kind`` is one of: ``resource`` (the path); ``collection`` (a depth-1
    name without a trailing slash, which is a collection only if one was
    created, else a resource: the id); ``collections`` (``/collections/``);
    ``backends``; ``collection-meta`` and ``collection-backend`` (the
    collection id); ``resource-meta`` (the resource path); ``policy`` (its
    anchor); ``linkset`` (its anchor); ``revocation`` (the capability id) and
    ``revocations``; ``unsupported`` (a reserved endpoint this server does
    not implement: the segment); ``reserved`` (a path no resource may take
    in the ``spec`` profile, under a space-level reserved name: that name).
    """

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
    if segments[-1] == "linkset" and len(segments) <= 2:
        return PathKind("linkset", "/" + segments[0] if len(segments) == 2 else SPACE_ANCHOR)
    first = segments[0]
    if first == "collections" and segments[1:] == [""]:
        return PathKind("collections", "")
    if first in SPACE_RESERVED:
        if segments == ["backends"]:
            return PathKind("backends", "")
        if first in UNSUPPORTED_SPACE and len(segments) == 1:
            return PathKind("unsupported", first)
        return PathKind("reserved", first)
    if len(segments) == 1:
        return PathKind("collection", first)
    if len(segments) == 2:
        last = segments[1]
        if last == "meta":
            return PathKind("collection-meta", first)
        if last == "backend":
            return PathKind("collection-backend", first)
        if last in UNSUPPORTED_COLLECTION:
            return PathKind("unsupported", last)
    if len(segments) == 3 and segments[2] == "meta":
        return PathKind("resource-meta", "/" + "/".join(segments[:2]))
    return PathKind("resource", path)
