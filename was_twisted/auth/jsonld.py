"""Offline JSON-LD canonicalization (RDFC-1.0 / URDNA2015) for zCap proofs.

Signatures over JSON-LD are signatures over its canonical N-Quads, so verifying
one means expanding the document's ``@context``.  A verifier that fetched
contexts would let a client make the server open connections and would trust
whatever the network served; here the two contexts zCaps use are bundled and
every other URL is refused, so canonicalization never leaves the process.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from importlib import resources
from typing import Any

from pyld import jsonld as _pyld
from pyld.context_resolver import ContextResolver

__all__ = [
    "BUNDLED_CONTEXTS",
    "ED25519_2020_CONTEXT_URL",
    "ZCAP_CONTEXT_URL",
    "CanonicalizationError",
    "canonicalize",
    "load_document",
]

ZCAP_CONTEXT_URL = "https://w3id.org/zcap/v1"
ED25519_2020_CONTEXT_URL = "https://w3id.org/security/suites/ed25519-2020/v1"

_FILES = {
    ZCAP_CONTEXT_URL: "zcap-v1.jsonld",
    ED25519_2020_CONTEXT_URL: "ed25519-signature-2020-v1.jsonld",
}


class CanonicalizationError(ValueError):
    """A document could not be canonicalized offline (unknown context, bad JSON-LD)."""


def _read_bundled() -> dict[str, dict[str, Any]]:
    folder = resources.files("was_twisted.auth").joinpath("contexts")
    loaded: dict[str, dict[str, Any]] = {}
    for url, name in _FILES.items():
        document = json.loads(folder.joinpath(name).read_text(encoding="utf-8"))
        if not isinstance(document, dict) or "@context" not in document:
            raise RuntimeError(f"bundled JSON-LD context {name} is not a context document")
        loaded[url] = document
    return loaded


#: The only contexts canonicalization may use, read once from the package data.
BUNDLED_CONTEXTS: Mapping[str, Mapping[str, Any]] = _read_bundled()


def load_document(url: str, options: object = None) -> dict[str, Any]:
    """pyld document loader: serve a bundled context, refuse any other URL without fetching it.

    Returns a fresh copy each time because pyld may rewrite parts of what it loads.
    """
    document = BUNDLED_CONTEXTS.get(url)
    if document is None:
        raise CanonicalizationError("The JSON-LD context is not one this server knows.")
    return {
        "contextUrl": None,
        "documentUrl": url,
        "contentType": "application/ld+json",
        "document": copy.deepcopy(dict(document)),
        # "static" lets pyld's context resolver keep the processed context between calls.
        "tag": "static",
    }


# pyld's module-level context cache is keyed by URL and shared with any other pyld user in
# the process; ours is private (so nothing else can plant a context under our URLs) and
# per thread (pyld's caches are not thread-safe).  It stays small: only the two URLs and the
# scoped contexts inside them ever reach it.
_local = threading.local()


def _resolver() -> ContextResolver:
    cache = getattr(_local, "contexts", None)
    if cache is None:
        cache = _local.contexts = {}
    return ContextResolver(cache, load_document)


def canonicalize(document: Mapping[str, Any]) -> str:
    """Return the RDFC-1.0 (URDNA2015) canonical N-Quads of a JSON-LD document, offline."""
    options = {
        "algorithm": "URDNA2015",
        "format": "application/n-quads",
        "documentLoader": load_document,
        # No base IRI, as jsonld-signatures canonicalizes: pyld would otherwise resolve a relative
        # IRI against http://example.org/base/ and sign a value the document never said.
        "base": None,
        "contextResolver": _resolver(),
    }
    try:
        result = _pyld.normalize(dict(document), options)
    except Exception:  # pyld raises JsonLdError, but a hostile document is no place to trust that
        raise CanonicalizationError("The JSON-LD document could not be canonicalized.") from None
    if not isinstance(result, str):
        raise CanonicalizationError("The JSON-LD document could not be canonicalized.")
    return result
