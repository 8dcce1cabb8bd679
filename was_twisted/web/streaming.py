"""Send a resource body to the client in chunks, honouring back-pressure.

Small bodies (already read into memory by the storage call) are returned
whole; larger ones are read a chunk at a time off the reactor (the next
chunk read while this one is written) and written only while the transport
wants more, so memory stays bounded whatever the object size or the
client's speed.

A stream never lies: the status line and ``Content-Length`` promise the
whole body.  When storage fails before the first byte is written, the
representation headers are taken back and the client gets a 503 (or 500)
problem document.  Once bytes are on the wire, nothing can be taken back:
the failure is logged with a request id and the connection closed, so
the client sees a response shorter than its ``Content-Length`` and the
connection closed, never an error document inside a body.
"""

from __future__ import annotations

import uuid
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.server import Request
from zope.interface import implementer

from ..errors import StorageFailure, Unavailable
from ..storage.base import StorageBusy, StorageError
from ..storage.threaded import SMALL_BODY, AsyncBody

log = Logger()

#: Chunks of a large body after the first (``AsyncBody.chunks`` reads the next while one is sent).
#: 4 MiB: about half the twistd CPU of 1 MiB chunks on a 1 GiB GET (bench/README.rst, "Large
#: objects"), at two or three chunks in memory per download (the one sent, the one read).
DOWNLOAD_CHUNK = 4 * 1024 * 1024

#: What a failed body's response must not keep when it turns into a problem document.
_REPRESENTATION = (b"content-length", b"content-range", b"content-type", b"etag", b"last-modified")


@implementer(IPushProducer)
class _Valve:
    """A push producer whose only job is to tell the writer when to wait."""

    def __init__(self) -> None:
        self.resumed: Deferred[None] | None = None
        self.stopped = False

    def pauseProducing(self) -> None:
        if self.resumed is None:
            self.resumed = Deferred()

    def resumeProducing(self) -> None:
        waiting, self.resumed = self.resumed, None
        if waiting is not None:
            waiting.callback(None)

    def stopProducing(self) -> None:
        self.stopped = True
        self.resumeProducing()


def _send_more_per_write(request: Request) -> None:
    """Let the TCP transport send a whole chunk per write call (Twisted's default is 128 KiB).

    Fewer reactor turns per MiB: what a large body's throughput is bound by on a busy machine.
    """
    transport: Any = request.channel.transport if request.channel is not None else None
    if transport is not None and getattr(transport, "SEND_LIMIT", DOWNLOAD_CHUNK) < DOWNLOAD_CHUNK:
        transport.SEND_LIMIT = DOWNLOAD_CHUNK


class _BodyFailed(Exception):  # noqa: N818 - a state of one response
    """The body could not be sent whole; ``cause`` says why (a storage error, a short body)."""

    def __init__(self, cause: BaseException | str) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def send_body(request: Request, body: AsyncBody, size: int) -> bytes:
    """Write ``body`` (``size`` bytes, as promised by ``Content-Length``) to ``request``.

    Returns what is left for the caller to return.  Raises a domain error
    (503, 500) when storage failed before a byte was written; aborts the
    connection when it failed after.
    """
    try:
        return await _send(request, body, size)
    except _BodyFailed as failed:
        if not request.startedWriting:
            raise _take_back(request, failed.cause) from None
        _abort(request, failed.cause, size)
        return b""
    finally:
        try:
            await body.close()
        except Exception:  # noqa: BLE001 - the answer is settled; a body that cannot close is storage's
            log.debug("closing a response body failed", log_failure=None)


async def _send(request: Request, body: AsyncBody, size: int) -> bytes:
    if size <= SMALL_BODY:
        data = await _read(body.read(size + 1))
        if len(data) != size:
            raise _BodyFailed(f"storage gave {len(data)} bytes of {size}")
        return data
    valve = _Valve()
    request.registerProducer(valve, True)
    lost: list[bool] = []
    request.notifyFinish().addErrback(lambda _: lost.append(True))
    chunks = body.chunks(size=DOWNLOAD_CHUNK)
    _send_more_per_write(request)
    sent = 0
    try:
        while True:
            chunk = await _read(anext(chunks, b""))
            if not chunk:
                break
            if sent + len(chunk) > size:
                raise _BodyFailed(f"storage gave more than {size} bytes")
            request.write(chunk)
            sent += len(chunk)
            if valve.resumed is not None:
                await valve.resumed
            if valve.stopped or lost:
                return b""
        if sent != size:
            raise _BodyFailed(f"storage gave {sent} bytes of {size}")
    finally:
        try:
            await chunks.aclose()
        finally:
            request.unregisterProducer()
    return b""


async def _read(pending: Any) -> bytes:
    """Await one read of the body; any failure (storage, a file's ``OSError``) becomes ``_BodyFailed``."""
    try:
        return bytes(await pending)
    except Exception as exc:
        raise _BodyFailed(exc) from exc


def _take_back(request: Request, cause: BaseException | str) -> Exception:
    """Nothing was sent: drop the headers that described the body; the error to answer with.

    Storage trouble is 503, another storage failure 500 ``storage-error``;
    anything else is raised as it was (500 ``internal-error``, logged).
    """
    for name in _REPRESENTATION:
        request.responseHeaders.removeHeader(name)
    if isinstance(cause, Exception) and not isinstance(cause, StorageError):
        return cause
    log.warn("a response body failed before its first byte: {cause}", cause=str(cause))
    if isinstance(cause, StorageError) and not isinstance(cause, StorageBusy):
        return StorageFailure("Storage failed.")
    return Unavailable("Storage is busy; retry shortly.", retry_after=1)


def _abort(request: Request, cause: BaseException | str, size: int) -> None:
    """Bytes are on the wire: log under a request id and close the connection, appending nothing."""
    request_id = uuid.uuid4().hex[:16]
    log.error(
        "request {request_id} {method} {uri}: the body failed after it started ({cause}); "
        "connection aborted short of its {size} bytes",
        request_id=request_id,
        method=request.method.decode("ascii", "replace"),
        uri=request.uri.decode("ascii", "replace")[:200],
        cause=str(cause),
        size=size,
    )
    channel: Any = request.channel
    if channel is not None:
        # Closed, not reset: what was sent (the head and part of the body) still reaches the
        # client, which then sees the body end short of its Content-Length.  A reset could make
        # the client's kernel drop even the head, leaving no answer at all.  Not persistent, so
        # finishing the request cannot resume reading a next request on this connection.
        channel.persistent = False
        channel.loseConnection()
