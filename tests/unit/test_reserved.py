"""``classify``: what each path under a space addresses, reserved segments at their spec depth only."""

from __future__ import annotations

import pytest

from was_twisted.operations import PathKind, classify

CASES = [
    ("/greeting.txt", "collection", "greeting.txt"),
    ("/c", "collection", "c"),
    ("/c/", "resource", "/c/"),
    ("/c/r", "resource", "/c/r"),
    ("/c/r/s/t", "resource", "/c/r/s/t"),
    ("/collections/", "collections", ""),
    ("/collections", "reserved", "collections"),
    ("/collections/x", "reserved", "collections"),
    ("/backends", "backends", ""),
    ("/backends/", "reserved", "backends"),
    ("/quotas", "unsupported", "quotas"),
    ("/export", "unsupported", "export"),
    ("/import", "unsupported", "import"),
    ("/query", "unsupported", "query"),
    ("/zcaps", "reserved", "zcaps"),
    ("/export/x", "reserved", "export"),
    ("/c/meta", "collection-meta", "c"),
    ("/c/backend", "collection-backend", "c"),
    ("/c/query", "unsupported", "query"),
    ("/c/quota", "unsupported", "quota"),
    ("/c/r/meta", "resource-meta", "/c/r"),
    ("/c/r/meta/", "resource", "/c/r/meta/"),
    ("/c/meta/", "resource", "/c/meta/"),
    ("/c/r/s/meta", "resource", "/c/r/s/meta"),
    ("/c/r/backend", "resource", "/c/r/backend"),
    ("/c/r/query", "resource", "/c/r/query"),
    ("/c/export", "resource", "/c/export"),
    ("/linkset", "linkset", "/"),
    ("/c/linkset", "linkset", "/c"),
    ("/policy", "policy", "/"),
    ("/c/policy", "policy", "/c"),
    ("/c/r/policy", "policy", "/c/r"),
    ("/zcaps/revocations/", "revocations", ""),
    ("/zcaps/revocations/urn:x", "revocation", "urn:x"),
]


@pytest.mark.parametrize(("path", "kind", "name"), CASES)
def test_classify(path: str, kind: str, name: str) -> None:
    assert classify(path) == PathKind(kind, name)
