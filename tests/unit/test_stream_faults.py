"""Streams never lie: a body that fails after its first byte aborts the connection; before it, 503.

A real ``Site`` on a loopback port and a raw-socket client, so what is
checked is exactly what crosses the wire: the status line, the promised
``Content-Length``, the bytes that came, and whether the connection closed.
"""

from __future__ import annotations

import io
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import sign
from tests.unit.test_storage_contract import allow
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.service import WASSite
from was_twisted.storage.base import ByteRange, SpaceRecord, StorageBusy, StorageError, StoredResource
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import SMALL_BODY, AsyncStorage
from was_twisted.web.app import WASApp

MIB = 1024 * 1024
DATA = bytes(range(256)) * (MIB // 256)


class FailingBody(io.RawIOBase):
    """Gives ``good`` bytes, then raises ``error`` (or, with ``error=None``, ends early)."""

    def __init__(self, data: bytes, good: int, error: BaseException | None) -> None:
        self._data = io.BytesIO(data[:good])
        self._error = error

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self._data.read(size)
        if chunk or self._error is None:
            return chunk
        raise self._error


class FaultyBackend(MemoryBackend):
    """Memory storage whose resource bodies fail after ``good`` bytes (``None``: never)."""

    good: int | None = None
    error: BaseException | None = StorageBusy("S3 IncompleteReadError")

    def read_resource(
        self, space_id: str, path: str, with_body: bool = True, byte_range: ByteRange | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None]:
        space, res = super().read_resource(space_id, path, with_body, byte_range)
        if res is None or self.good is None or not with_body:
            return space, res
        data = res.body.read()
        body: Any = FailingBody(data, self.good, self.error)
        return space, StoredResource(res.info, body, res.span)


def run(f: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """Not ``run_inline``: body reads go through the runner, as with a pool."""
    return defer.maybeDeferred(f, *args)


@pytest.fixture
def served(alice: Any) -> Iterator[tuple[FaultyBackend, int]]:
    backend = FaultyBackend()
    backend.put_space(
        "s1", lambda _: SpaceRecord(space_id="s1", id="urn:uuid:s1", controller=alice.controller)
    )
    backend.write_resource("s1", "/big", io.BytesIO(DATA), "application/octet-stream", allow)
    backend.write_resource("s1", "/small", io.BytesIO(DATA[:1000]), "text/plain", allow)
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(backend, run), Settings(backend="memory"), reactor)  # type: ignore[arg-type]
    site = WASSite(WASApp(ops, "memory").resource(), access_log=False)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
    yield backend, port.getHost().port
    port.stopListening()


def fetch(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes, bool]:
    """Send ``request``; the status line, headers, body bytes received, and whether the server closed.

    Reads until the connection closes or ``Content-Length`` bytes came and 2 s pass with nothing more.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(request)
        raw = b""
        while b"\r\n\r\n" not in raw:
            got = conn.recv(65536)
            if not got:
                break
            raw += got
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = {
            k.decode().lower(): v.decode().strip() for k, _, v in (ln.partition(b":") for ln in lines[1:])
        }
        length = int(headers.get("content-length", "0"))
        closed = False
        conn.settimeout(2)
        try:
            while True:
                got = conn.recv(65536)
                if not got:
                    closed = True
                    break
                body += got
                if len(body) > length:
                    break
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
        return lines[0], headers, body, closed


def get(signer: Ed25519Signer, path: str, extra: str = "") -> bytes:
    auth = sign(signer, "GET", path)["authorization"]
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n{extra}\r\n".encode()


@pytest.mark.parametrize("good", [SMALL_BODY + 1, MIB // 2, MIB - 1])
@pytest_twisted.ensureDeferred
async def test_a_body_failing_mid_stream_aborts_the_connection(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer, good: int
) -> None:
    """200 and Content-Length 1 MiB, then fewer bytes (all of them right) and the connection closed."""
    backend, port = served
    backend.good = good
    status, headers, body, closed = await deferToThread(fetch, port, get(alice, "/space/s1/big"))
    assert status == b"HTTP/1.1 200 OK" and headers["content-length"] == str(MIB)
    assert closed and len(body) < MIB
    assert body == DATA[: len(body)]  # never an error document in the body


@pytest_twisted.ensureDeferred
async def test_a_range_failing_mid_stream_aborts_the_connection(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer
) -> None:
    backend, port = served
    backend.good = SMALL_BODY + 10
    request = get(alice, "/space/s1/big", "Range: bytes=1000-\r\n")
    status, headers, body, closed = await deferToThread(fetch, port, request)
    assert status == b"HTTP/1.1 206 Partial Content" and headers["content-length"] == str(MIB - 1000)
    assert closed and len(body) < MIB - 1000 and body == DATA[1000 : 1000 + len(body)]


@pytest.mark.parametrize("error", [None, StorageBusy("S3 ReadTimeoutError"), OSError(5, "EIO")])
@pytest_twisted.ensureDeferred
async def test_a_short_or_broken_body_never_leaves_the_client_waiting(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer, error: BaseException | None
) -> None:
    """A body that just ends early, or fails with a non-storage error, is cut off all the same."""
    backend, port = served
    backend.good, backend.error = MIB // 2, error
    _, headers, body, closed = await deferToThread(fetch, port, get(alice, "/space/s1/big"))
    assert headers["content-length"] == str(MIB) and closed and body == DATA[: len(body)]


@pytest.mark.parametrize(
    ("path", "extra"),
    [("/space/s1/big", ""), ("/space/s1/small", ""), ("/space/s1/big", "Range: bytes=10-\r\n")],
)
@pytest_twisted.ensureDeferred
async def test_a_body_failing_before_its_first_byte_is_503(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer, path: str, extra: str
) -> None:
    """Nothing sent yet: a 503 problem with Retry-After, and none of the body's headers (nor a 206's)."""
    backend, port = served
    backend.good = 0
    status, headers, body, closed = await deferToThread(fetch, port, get(alice, path, extra))
    assert status == b"HTTP/1.1 503 Service Unavailable", (status, body)
    assert headers["content-type"] == "application/problem+json" and headers["retry-after"] == "1"
    assert "etag" not in headers and "last-modified" not in headers and "content-range" not in headers
    assert len(body) == int(headers["content-length"]) and b"storage-error" in body and not closed


@pytest_twisted.ensureDeferred
async def test_a_storage_failure_before_the_first_byte_is_500_storage_error(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer
) -> None:
    backend, port = served
    backend.good, backend.error = 0, StorageError("not busy: broken")
    status, headers, body, _ = await deferToThread(fetch, port, get(alice, "/space/s1/big"))
    assert status.startswith(b"HTTP/1.1 500") and b"storage-error" in body and "retry-after" not in headers


@pytest_twisted.ensureDeferred
async def test_the_connection_serves_again_after_a_503(
    served: tuple[FaultyBackend, int], alice: Ed25519Signer
) -> None:
    """The whole body when storage is well again (the fault was the body's, not the server's)."""
    backend, port = served
    backend.good = None
    status, headers, body, _ = await deferToThread(fetch, port, get(alice, "/space/s1/big"))
    assert status == b"HTTP/1.1 200 OK" and body == DATA
