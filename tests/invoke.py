"""Test clients for zCap invocations: the headers @digitalbazaar/http-signature-zcap-invoke sends.

Signing follows Cavage draft-12 as that library does it (``(key-id) (created)
(expires) (request-target) host capability-invocation``, plus ``content-type
digest`` with a body); the JavaScript end-to-end tests drive the library
itself.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
from typing import Any
from urllib.parse import quote, urlsplit

from wallet_attached_storage_client import Ed25519Signer


def digest_header(body: bytes) -> str:
    """``mh=`` + multibase base64url of the SHA-256 multihash."""
    mh = b"\x12\x20" + hashlib.sha256(body).digest()
    return "mh=u" + base64.urlsafe_b64encode(mh).decode().rstrip("=")


def root_id(url: str) -> str:
    return "urn:zcap:root:" + quote(url, safe="-_.!~*'()")


def encode_capability(capability: dict[str, Any]) -> str:
    raw = gzip.compress(json.dumps(capability, separators=(",", ":")).encode(), mtime=0)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def invoke(
    signer: Ed25519Signer,
    method: str,
    url: str,
    *,
    capability: str | dict[str, Any] | None = None,
    action: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    digest: str | None = None,
    now: float | None = None,
    lifetime: int = 600,
    covered: list[str] | None = None,
    host: str | None = None,
) -> dict[str, str]:
    """Headers for a zCap invocation of ``url`` (absolute) by ``signer``."""
    parts = urlsplit(url)
    if capability is None:
        capability = root_id(url)
    if isinstance(capability, str):
        invocation = f'zcap id="{capability}"'
    else:
        invocation = f'zcap capability="{encode_capability(capability)}"'
    invocation += f',action="{action or method}"'
    headers = {"host": host or parts.netloc, "capability-invocation": invocation}
    if body is not None:
        headers["content-type"] = content_type or "application/json"
        headers["digest"] = digest if digest is not None else digest_header(body)
    created = int(now if now is not None else time.time())
    expires = created + lifetime
    names = covered or [
        "(key-id)",
        "(created)",
        "(expires)",
        "(request-target)",
        "host",
        "capability-invocation",
    ]
    if covered is None and body is not None:
        names += ["content-type", "digest"]
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = []
    for name in names:
        if name == "(key-id)":
            lines.append(f"(key-id): {signer.id}")
        elif name == "(created)":
            lines.append(f"(created): {created}")
        elif name == "(expires)":
            lines.append(f"(expires): {expires}")
        elif name == "(request-target)":
            lines.append(f"(request-target): {method.lower()} {target}")
        else:
            lines.append(f"{name}: {headers[name]}")
    signature = base64.urlsafe_b64encode(signer.sign("\n".join(lines).encode())).decode().rstrip("=")
    headers["authorization"] = (
        f'Signature keyId="{signer.id}",headers="{" ".join(names)}",signature="{signature}",'
        f'created="{created}",expires="{expires}"'
    )
    return headers
