"""Signed requests and delegated capabilities, on the wire formats the spec's wallets use.

Requests are zCap invocations as ``@digitalbazaar/http-signature-zcap-invoke``
sends them: a Cavage signature over ``(key-id) (created) (expires)
(request-target) host capability-invocation`` (and ``content-type digest``
with a body), the body's ``Digest`` as a SHA-256 multihash.  Delegations are
``Ed25519Signature2020`` proofs over the RDFC-1.0 canonical form, as ezcap
makes them, canonicalized offline with the server's own bundled contexts.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import base58

from ..auth import jsonld
from .keys import KeyPair

ZCAP_CONTEXT = ["https://w3id.org/zcap/v1", "https://w3id.org/security/suites/ed25519-2020/v1"]
ROOT_PREFIX = "urn:zcap:root:"
#: Seconds a request's signature is valid for: short, since each request is signed afresh.
LIFETIME = 300


def root_capability(url: str) -> str:
    """The root capability id of a target (its space URL covers everything in the space)."""
    return ROOT_PREFIX + quote(url, safe="-_.!~*'()")


def digest_of(body: bytes) -> str:
    """``Digest: mh=u…``: multibase base64url of the SHA-256 multihash."""
    multihash = b"\x12\x20" + hashlib.sha256(body).digest()
    return "mh=u" + base64.urlsafe_b64encode(multihash).decode().rstrip("=")


def encode_capability(capability: dict[str, Any]) -> str:
    """A delegated capability as it travels in ``Capability-Invocation``: base64url(gzip(JSON))."""
    raw = gzip.compress(json.dumps(capability, separators=(",", ":")).encode(), mtime=0)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invocation_headers(
    key: KeyPair,
    method: str,
    url: str,
    *,
    capability: str | dict[str, Any],
    body: bytes | None = None,
    content_type: str | None = None,
    now: float | None = None,
) -> dict[str, str]:
    """Headers invoking ``capability`` (a root id, or a delegated capability) on ``url``."""
    parts = urlsplit(url)
    if isinstance(capability, str):
        invocation = f'zcap id="{capability}",action="{method}"'
    else:
        invocation = f'zcap capability="{encode_capability(capability)}",action="{method}"'
    headers = {"host": parts.netloc, "capability-invocation": invocation}
    names = ["(key-id)", "(created)", "(expires)", "(request-target)", "host", "capability-invocation"]
    if body is not None:
        headers["content-type"] = content_type or "application/octet-stream"
        headers["digest"] = digest_of(body)
        names += ["content-type", "digest"]
    created = int(time.time() if now is None else now)
    expires = created + LIFETIME
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    pseudo = {
        "(key-id)": key.key_id,
        "(created)": str(created),
        "(expires)": str(expires),
        "(request-target)": f"{method.lower()} {target}",
    }
    lines = [f"{name}: {pseudo[name] if name in pseudo else headers[name]}" for name in names]
    signature = base64.urlsafe_b64encode(key.sign("\n".join(lines).encode())).decode().rstrip("=")
    headers["authorization"] = (
        f'Signature keyId="{key.key_id}",headers="{" ".join(names)}",signature="{signature}",'
        f'created="{created}",expires="{expires}"'
    )
    return headers


def _iso(when: float) -> str:
    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def delegate(
    key: KeyPair,
    parent: str | dict[str, Any],
    target: str,
    controller: str,
    *,
    expires: float,
    actions: Sequence[str] | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """A capability for ``controller`` to invoke ``target``, delegated by ``key`` from ``parent``.

    ``parent`` is a root capability id (``key`` must then be the space
    controller) or a capability delegated to ``key``.  ``actions`` ``None``:
    every action the parent allows.  A capability never outlives its
    parent, so ``expires`` is cut to the parent's.
    """
    if isinstance(parent, str):
        parent_id, chain = parent, [parent]
    else:
        ancestors = parent["proof"]["capabilityChain"]
        parent_id = parent["id"]
        chain = [a if isinstance(a, str) else a["id"] for a in ancestors] + [parent]
        parent_expires = datetime.fromisoformat(str(parent["expires"]).replace("Z", "+00:00"))
        expires = min(expires, parent_expires.timestamp())
    capability: dict[str, Any] = {
        "@context": list(ZCAP_CONTEXT),
        "id": f"urn:uuid:{uuid.uuid4()}",
        "controller": controller,
        "parentCapability": parent_id,
        "invocationTarget": target,
        "expires": _iso(expires),
    }
    if actions:
        capability["allowedAction"] = list(actions)
    proof: dict[str, Any] = {
        "type": "Ed25519Signature2020",
        "created": _iso(time.time() if now is None else now),
        "verificationMethod": key.key_id,
        "proofPurpose": "capabilityDelegation",
        "capabilityChain": chain,
    }
    options = {"@context": capability["@context"], **proof}
    data = (
        hashlib.sha256(jsonld.canonicalize(options).encode()).digest()
        + hashlib.sha256(jsonld.canonicalize(capability).encode()).digest()
    )
    proof["proofValue"] = "z" + base58.b58encode(key.sign(data)).decode()
    capability["proof"] = proof
    return capability
