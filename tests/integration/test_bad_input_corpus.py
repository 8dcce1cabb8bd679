"""The bad-input corpus (``badinput_corpus.py``) against the real ``twistd -n was`` process (issue 9 item 6).

Every malformed request is sent over its own raw socket and must get a 4xx
``application/problem+json`` answer (or, for the few cases listed in
``CLOSED``, a closed connection with no answer); no 5xx, nothing left
unanswered, no traceback in the log; and afterwards the server is healthy:
``GET /health`` is 200 and a signed PUT reads back.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from collections import Counter
from pathlib import Path

import pytest
from wallet_attached_storage_client import Ed25519Signer

from .badinput_corpus import CASES, CLOSED, Target, request, signed
from .processes import WasProcess

pytestmark = pytest.mark.integration

#: Seconds a case may take to be answered (or closed).
TIMEOUT = 10.0
_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")


def exchange(port: int, data: bytes, half_close: bool = False) -> bytes | None:
    """Send ``data`` on a fresh connection: the first final response, ``b""`` if closed, else ``None``."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused early: the answer may still be there to read
        received = b""
        while True:
            response = _complete(received)
            if response is not None:
                return response
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                return received
            if not chunk:
                return received
            received += chunk


def _complete(received: bytes) -> bytes | None:
    """The first final (non-1xx) response in ``received`` once all of it has arrived."""
    while True:
        head, sep, rest = received.partition(b"\r\n\r\n")
        if not sep:
            return None
        if re.match(rb"HTTP/1\.[01] 1\d\d ", head):
            received = rest
            continue
        if re.match(rb"HTTP/1\.[01] (204|304) ", head):
            return head + sep
        match = _LENGTH.search(head)
        if match is None or len(rest) < int(match.group(1)):
            return None
        return head + sep + rest[: int(match.group(1))]


def parse(response: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.fixture
def server(tmp_path: Path) -> WasProcess:
    env = {
        "WAS_STORAGE_BACKEND": "filesystem",
        "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"),
        "WAS_MAX_UPLOAD_BYTES": str(1 << 20),
        "WAS_ACCESS_LOG": "off",
    }
    process = WasProcess(env, tmp_path / "twistd.log").start()
    yield process  # type: ignore[misc]
    process.stop()


def provision(port: int, host: str) -> Target:
    signer = Ed25519Signer()
    target = Target(host=host, space=str(uuid.uuid4()), signer=signer)
    body = json.dumps({"controller": signer.controller}).encode()
    response = exchange(
        port, signed("PUT", "/space/{s}", [(b"Content-Type", b"application/json")], body)(target)
    )
    assert response is not None and parse(response)[0] == 201, response
    return target


def test_corpus_is_large_and_named_uniquely() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert len(CASES) >= 200
    assert len(CLOSED) <= 5


def test_every_bad_request_gets_a_4xx_problem(server: WasProcess, tmp_path: Path) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    target = provision(port, f"127.0.0.1:{port}")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    for case in CASES:
        response = exchange(port, case.build(target), half_close=case.closed)
        if response is None:
            failures.append(f"{case.name}: no answer within {TIMEOUT} s")
            continue
        if case.closed:
            if response != b"":
                failures.append(f"{case.name}: expected a closed connection, got {response[:80]!r}")
            continue
        if not response:
            failures.append(f"{case.name}: closed without an answer")
            continue
        status, headers, body = parse(response)
        statuses[status] += 1
        if not 400 <= status < 500:
            failures.append(f"{case.name}: {status} {body[:200]!r}")
            continue
        if headers.get(b"content-type") != b"application/problem+json":
            failures.append(f"{case.name}: {status} as {headers.get(b'content-type')!r}: {body[:100]!r}")
            continue
        doc = json.loads(body)
        if not (isinstance(doc.get("type"), str) and doc.get("title") and doc.get("status") == status):
            failures.append(f"{case.name}: {status} problem document incomplete: {doc}")
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    print(
        f"\nbad-input corpus: {len(CASES)} cases, {len(CLOSED)} closed by design, "
        f"statuses {dict(sorted(statuses.items()))}, 5xx: {server_errors}"
    )
    assert not failures, "\n".join(failures)
    assert server_errors == 0

    # Still healthy: /health, and a signed write reads back byte for byte.
    response = exchange(port, request(b"GET", b"/health")(target))
    assert response is not None and parse(response)[0] == 200
    data = bytes(range(256))
    response = exchange(
        port, signed("PUT", "/space/{s}/after", [(b"Content-Type", b"application/x-test")], data)(target)
    )
    assert response is not None and parse(response)[0] == 204, response
    response = exchange(port, signed("GET", "/space/{s}/after")(target))
    assert response is not None
    status, headers, body = parse(response)
    assert (status, headers[b"content-type"], body) == (200, b"application/x-test", data)
    log = (tmp_path / "twistd.log").read_text(errors="replace")
    assert "Traceback" not in log and "internal-error" not in log, log[-3000:]
