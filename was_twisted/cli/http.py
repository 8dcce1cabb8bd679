"""One signed HTTP exchange with a WAS server, over the standard library (no client dependency)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .keys import KeyPair
from .signing import invocation_headers, root_capability

#: Seconds to wait for a server; a smoke test must not hang.
TIMEOUT = 30.0


class Unreachable(Exception):
    """The server could not be reached at all (refused, unresolvable, timed out)."""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        return json.loads(self.body)

    def problem(self) -> str:
        """What went wrong, from an ``application/problem+json`` body when there is one."""
        try:
            doc = self.json()
        except ValueError:
            return f"HTTP {self.status}"
        if not isinstance(doc, dict):
            return f"HTTP {self.status}"
        kind = str(doc.get("type", "")).rpartition("#")[2]
        detail = doc.get("detail") or doc.get("title") or ""
        return f"HTTP {self.status} {kind}: {detail}".rstrip(": ")


def space_url(url: str) -> str:
    """``https://host/space/S`` for any URL inside a space."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    if len(segments) < 3 or segments[1] != "space" or not segments[2]:
        raise ValueError(f"{url} is not inside a space (expected .../space/ID...).")
    return f"{parts.scheme}://{parts.netloc}/space/{segments[2]}"


def request(
    method: str,
    url: str,
    *,
    key: KeyPair | None = None,
    capability: dict[str, Any] | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send one request; signed by ``key`` (as the space controller, or invoking ``capability``)."""
    sent = dict(headers or {})
    if key is not None:
        invoked: str | dict[str, Any] = (
            capability if capability is not None else root_capability(space_url(url))
        )
        sent.update(
            invocation_headers(key, method, url, capability=invoked, body=body, content_type=content_type)
        )
    elif body is not None:
        sent["content-type"] = content_type or "application/octet-stream"
    sent.pop("host", None)  # urllib sends the URL's own, which is what was signed
    req = urllib.request.Request(url, data=body, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as response:  # noqa: S310 - the operator's URL
            return Reply(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
            )
    except urllib.error.HTTPError as error:
        with error:
            return Reply(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise Unreachable(f"{url}: {reason}") from None
