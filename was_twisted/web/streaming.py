"""Send a resource body to the client in chunks, honouring back-pressure.

Small bodies (already read into memory by the storage call) are returned
whole; larger ones are read a chunk at a time off the reactor (the next
chunk read while this one is written) and written only while the transport
wants more, so memory stays bounded whatever the object size or the
client's speed.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

from ..storage.threaded import SMALL_BODY, STREAM_CHUNK, AsyncBody


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
    if transport is not None and getattr(transport, "SEND_LIMIT", STREAM_CHUNK) < STREAM_CHUNK:
        transport.SEND_LIMIT = STREAM_CHUNK


async def send_body(request: Request, body: AsyncBody, size: int) -> bytes:
    """Write ``body`` to ``request``; returns what is left for the caller to return."""
    try:
        if size <= SMALL_BODY:
            return await body.read(size + 1)
        valve = _Valve()
        request.registerProducer(valve, True)
        lost: list[bool] = []
        request.notifyFinish().addErrback(lambda _: lost.append(True))
        chunks = body.chunks()
        _send_more_per_write(request)
        try:
            async for chunk in chunks:
                request.write(chunk)
                if valve.resumed is not None:
                    await valve.resumed
                if valve.stopped or lost:
                    break
        finally:
            await chunks.aclose()
            request.unregisterProducer()
        return b""
    finally:
        await body.close()
