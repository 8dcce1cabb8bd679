"""The WAS spec's operations, one ``async def`` each: the spec's rules live here.

Split by resource kind: ``spaces``, ``collections`` (with their metadata
and the space's backends), ``resources``, ``metadata`` (of resources),
``sharing`` (policies, linksets, revocations), over ``base`` (the request
as values and the one
authorization decision).  ``classify`` says which kind a path under a space
addresses (the spec's reserved segments).
"""

from __future__ import annotations

from .base import Call, resource_url, space_url
from .collection_model import is_collection_description
from .collections import CollectionOperations
from .metadata import MetadataOperations
from .reserved import PathKind, classify
from .resources import ResourceOperations
from .sharing import SharingOperations
from .spaces import SpaceBody, SpaceOperations, describe_space, parse_space_body


class Operations(
    SpaceOperations, CollectionOperations, ResourceOperations, MetadataOperations, SharingOperations
):
    """Every operation, over one storage and one set of settings."""


__all__ = [
    "Call",
    "Operations",
    "PathKind",
    "SpaceBody",
    "classify",
    "is_collection_description",
    "describe_space",
    "parse_space_body",
    "resource_url",
    "space_url",
]
