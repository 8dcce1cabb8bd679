"""Large uploads: route the request on its headers, then let storage read the body as it arrives.

Twisted reads a whole body (into a temporary file past 100 kB) before it
routes a request.  For a body that is chunked or longer than
``STREAM_THRESHOLD``, ``StreamingRequest`` instead starts the route once
the headers are in, with a ``BodyPipe`` as ``request.content``: a resource
write hands it to the backend, which reads it in the storage pool after its
guard passed; other routes read it whole (bounded) on the reactor.  Smaller
bodies keep the one-hop path, read into memory (never a temporary file).

When the response is ready before the body ended (a refusal, a failure),
the rest is drained and dropped before the response finishes, so the
connection stays usable; a client that waits on ``Expect: 100-continue``
(it never got the 100) or a body over the limit gets the response and
``Connection: close`` instead of being read to its end.

This leans on two details of ``HTTPChannel`` (checked by the tests):
``gotLength`` is called with the request line in ``_command``/``_path``/
``_version``, and the channel answers ``Expect: 100-continue`` right after
``gotLength`` if the header is still there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, cast

from twisted.internet.interfaces import IDelayedCall, IReactorFromThreads, IReactorTime
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

from ..errors import PayloadTooLarge, Unavailable
from .bodypipe import BodyAborted, BodyPipe
from .limits import BoundedRequest

#: Bodies longer than this (or chunked) stream to storage; shorter ones are read whole first.
STREAM_THRESHOLD = 256 * 1024
#: What one read from the client's socket may take while a body streams (Twisted's default: 64 KiB).
STREAM_RECV = 256 * 1024

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class StreamingRequest(BoundedRequest):
    """A ``BoundedRequest`` that hands large resource bodies to the route as a ``BodyPipe``."""

    #: The body being streamed, or ``None`` when Twisted read it whole as usual.
    pipe: BodyPipe | None = None
    _line: tuple[bytes, bytes, bytes] | None = None
    _expect: Sequence[bytes] | None = None
    _begin: IDelayedCall | None = None
    _settled = False
    _drain = False
    _finish_when_drained = False

    def gotLength(self, length: int | None) -> None:
        channel = self.channel
        if length is not None and length <= STREAM_THRESHOLD or not isinstance(channel, HTTPChannel):
            super().gotLength(length)  # read whole, into memory
            return
        from twisted.internet import reactor  # the running one: importing this module installs none

        self._received = 0
        line = (channel._command, channel._path, channel._version)
        self._line = line
        transport: Any = self.transport
        if getattr(transport, "bufferSize", STREAM_RECV) < STREAM_RECV:
            # Fewer, larger reads: each costs a turn of the reactor and of the HTTP parser.
            transport.bufferSize = STREAM_RECV
        threads = cast(IReactorFromThreads, reactor)
        pipe = BodyPipe(threads, transport.pauseProducing, transport.resumeProducing, self._send_continue)
        self.pipe = pipe
        self.content = self.pipe
        # Twisted parses form bodies in requestReceived: a streamed body is for storage alone.
        self._parsePOSTFormSubmission = False
        if length is not None and length > self.max_upload:
            self.too_large = True
            self.pipe.fail(PayloadTooLarge(f"The body is larger than {self.max_upload} bytes."))
        # The channel answers 100-continue after this returns: we do it once storage asks for the body.
        self._expect = self.requestHeaders.getRawHeaders(b"expect")
        if self._expect:
            self.requestHeaders.removeHeader(b"expect")
        self.pipe.hold()
        clock = cast(IReactorTime, reactor)
        self._begin = clock.callLater(0, self._process_now)

    def _process_now(self) -> None:
        """Route the request now, on its headers (after ``allHeadersReceived`` finished)."""
        self._begin = None
        if self._expect:
            self.requestHeaders.setRawHeaders(b"expect", self._expect)
        assert self._line is not None
        super().requestReceived(*self._line)

    def _send_continue(self) -> None:
        """Storage asked for the body: tell a client waiting on ``Expect: 100-continue`` to send it."""
        expects = self._expect and self._expect[0].lower() == b"100-continue"
        if expects and self.clientproto == b"HTTP/1.1" and not self.startedWriting and not self._disconnected:
            transport: Any = self.transport
            transport.write(_CONTINUE)

    def handleContentChunk(self, data: bytes) -> None:
        pipe = self.pipe
        if pipe is None:
            super().handleContentChunk(data)
            return
        if pipe.discarding or self.too_large:
            return
        self._received += len(data)
        if self._received > self.max_upload:
            self.too_large = True
            pipe.fail(PayloadTooLarge(f"The body is larger than {self.max_upload} bytes."))
            return
        pipe.feed(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """The channel's "whole body received": for a streamed body, its end (the route already runs)."""
        pipe = self.pipe
        if pipe is None:
            super().requestReceived(command, path, version)
            return
        pipe.end()
        if self._begin is not None:
            self._begin.cancel()
            self._process_now()
        elif self._finish_when_drained:
            self._finish_when_drained = False
            super().finish()

    def _settle_body(self) -> None:
        """The response starts before the body ended: drain and drop the rest, or close after it."""
        self._settled = True
        pipe = self.pipe
        if pipe is None or pipe.ended:
            return
        withheld = bool(self._expect) and not pipe.started
        if withheld or self.too_large:
            self.setHeader(b"connection", b"close")
            self.channel.persistent = False
            pipe.discard(resume=False)
        else:
            self._drain = True
            pipe.discard(resume=True)

    def write(self, data: bytes) -> None:
        if not self._settled and not self.startedWriting:
            self._settle_body()
        super().write(data)

    def finish(self) -> None:
        if not self._settled and not self.startedWriting:
            self._settle_body()
        pipe = self.pipe
        if self._drain and pipe is not None and not pipe.ended and not self._disconnected:
            # The channel would read the rest of the body as the next request: finish at its end.
            self._finish_when_drained = True
            return
        super().finish()

    def connectionLost(self, reason: Failure) -> None:
        if self.pipe is not None:
            self.pipe.fail(BodyAborted("The client went away before the whole body arrived."))
        if self._begin is not None:
            self._begin.cancel()
            self._begin = None
        super().connectionLost(reason)


class StreamSlots:
    """At most ``limit`` bodies streaming into storage at once.

    Each holds a storage thread for as long as its client takes to send it:
    without a bound, a few slow uploads would leave no thread for anything else.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def hold(self, content: object) -> Iterator[None]:
        """A slot for ``content`` if it streams (else nothing to hold); 503 when none is free."""
        if not isinstance(content, BodyPipe):
            yield
            return
        if self.used >= self.limit:
            raise Unavailable("Too many uploads in progress; retry shortly.", retry_after=1)
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1


def request_factory(max_upload: int, stream: bool) -> Any:
    """The request class for ``Site.requestFactory``: streaming large bodies when there is a pool."""
    base = StreamingRequest if stream else BoundedRequest
    return type(base.__name__, (base,), {"max_upload": max_upload})
