"""The HTTP channel: Twisted's own refusals answered as problem documents, 414 and 431 included.

``HTTPChannel`` refuses what it cannot parse (request line, header syntax,
``Content-Length``, chunking, too many headers) by writing a bare
``400 Bad Request`` and closing, and closes without a word when a line is
longer than ``MAX_LENGTH``.  ``ProblemChannel`` answers each of these with
``application/problem+json`` and the status that says why: 414 for a
request line over ``MAX_LENGTH``, 431 for a header line over it, a header
block over ``totalHeadersSize`` or more than ``maxHeaders`` fields, 400
``invalid-id`` for a request target that is not ASCII (UTF-8 must be
percent-encoded), 400 ``invalid-request-body`` for a body that is not
framed as it says, 400 ``bad-request`` for the rest; and a request begun
but not finished within the idle timeout gets 408 before the close.

The connection is closed after the answer (the rest of the stream cannot
be trusted to start a request), gently: the write side first, then the
rest of what the client sends is read and dropped for up to ``LINGER``
seconds, so its unread bytes do not make the kernel reset the connection
before the client has read the answer.

A request head that arrives whole in one read (nearly every request from a
real client) is parsed in one pass (``_head_at_once``): one split into lines,
the same checks and the same channel state as Twisted's line-by-line parse,
then Twisted's own end-of-headers steps.  Anything it is not sure of -- a
continuation line, ``Transfer-Encoding``, a repeated or non-numeric
``Content-Length``, a name or value Twisted would refuse, a head near a
limit, a head split over reads -- goes the line-by-line way instead, so
every refusal above still comes from one place.

It overrides a few of ``HTTPChannel``'s private methods (named below);
``tests/unit/test_protocol.py`` checks every case, so a Twisted that renames
them fails there rather than silently answering plain 400s again.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IDelayedCall, ISSLTransport, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, _IdentityTransferDecoder, _parseRequestLine
from twisted.web.http_headers import InvalidHeaderName, _nameEncoder
from twisted.web.iweb import INonQueuedRequestFactory
from twisted.web.server import Request

from ..errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    InvalidId,
    InvalidRequestBody,
    MethodNotAllowed,
    PayloadTooLarge,
    RequestTimeout,
    UriTooLong,
    WASError,
)
from .problems import PROBLEM_JSON, problem_for

#: Seconds the read side stays open after a refusal, dropping what the client still sends.
LINGER = 2.0

#: Reason phrases Twisted's table lacks.
_REASONS = {431: b"Request Header Fields Too Large"}

_TARGET = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+ (\S+) HTTP/[0-9.]+")


def _request_line_error(line: bytes) -> WASError:
    """Why a request line Twisted will refuse is wrong (only used if it does refuse it)."""
    match = _TARGET.fullmatch(line)
    if match is not None and not match.group(1).isascii():
        return InvalidId("The request target must be ASCII: percent-encode its UTF-8 bytes.")
    return BadRequest("The request line must be METHOD, target and HTTP/1.0 or HTTP/1.1.")


def problem_response(error: WASError) -> bytes:
    """A complete HTTP/1.1 response for ``error``, closing the connection."""
    status, body, extra = problem_for(error)
    lines = [
        b"HTTP/1.1 %d %s" % (status, _REASONS.get(status) or RESPONSES.get(status, b"Error")),
        b"Content-Type: " + PROBLEM_JSON,
        b"Content-Length: %d" % len(body),
        b"Connection: close",
        *(name + b": " + value for name, value in extra.items()),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _half_closable(transport: object) -> bool:
    """Plain TCP: its write side closes alone (TLS would need a close_notify, so it closes whole)."""
    return ITCPTransport.providedBy(transport) and not ISSLTransport.providedBy(transport)


class ProblemChannel(HTTPChannel):
    """An ``HTTPChannel`` whose own refusals are problem documents (see the module docstring)."""

    #: The step of parsing under way (what a refusal from Twisted is about); errors are built only then.
    _phase = "line"
    _request_line = b""
    #: The answer has been sent: everything the client sends from now on is dropped.
    _refused = False
    _linger: IDelayedCall | None = None

    #: ``(transport, secure)``: the adapter lookup behind ``isSecure`` once per connection, not per request.
    _secure: tuple[object, bool] | None = None

    def isSecure(self) -> bool:
        known, transport = self._secure, self.transport
        if known is None or known[0] is not transport:
            known = self._secure = (transport, bool(super().isSecure()))
        return known[1]

    def _awaiting_request_line(self) -> bool:
        # ``_command`` exists from a parsed request line until the request's body is complete.
        return not hasattr(self, "_command")

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        if self._head_at_once(data):
            return
        super().dataReceived(data)

    def _head_at_once(self, data: bytes) -> bool:
        """Take a whole, plain request head in one pass; ``False`` (nothing changed): parse it line by line.

        The state left is what ``HTTPChannel.lineReceived`` leaves after the
        empty line ends the head; what follows the head goes through
        ``LineReceiver``'s loop as it would have.
        """
        if (
            self._busyReceiving
            or not self.line_mode
            or self._buffer
            or self.paused
            or self._handlingRequest
            or not self.persistent
            or self._HTTPChannel__first_line != 1  # type: ignore[has-type]
        ):
            return False
        end = data.find(b"\r\n\r\n")
        if end <= 0 or end > self.MAX_LENGTH or end > self.totalHeadersSize:
            return False
        head = data[:end]
        breaks = head.count(b"\r\n")
        if breaks > self.maxHeaders or b"\x00" in head:
            return False
        if head.count(b"\r") != breaks or head.count(b"\n") != breaks:
            return False  # a lone CR or LF: refused line by line
        lines = head.split(b"\r\n")
        try:
            command, target, version = _parseRequestLine(lines[0])
        except ValueError:
            return False
        fields: list[tuple[bytes, bytes]] = []
        length = 0
        encode = _nameEncoder.encode
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or line[0] in b" \t":
                return False
            try:
                name = encode(name)
            except InvalidHeaderName:
                return False
            value = value.strip(b" \t")
            if name == b"Content-Length":
                if length or not value.isdigit():
                    return False  # repeated or malformed: refused line by line
                length = int(value) or -1
            elif name == b"Transfer-Encoding":
                return False
            fields.append((name, value))
        # The head is plain: from here on, exactly what the line-by-line parse does.
        self.resetTimeout()
        factory: Any = self.requestFactory
        queued = not INonQueuedRequestFactory.providedBy(factory)
        request = factory(self, len(self.requests)) if queued else factory(self)
        self.requests.append(request)
        self._HTTPChannel__first_line = 0
        self._command, self._path, self._version = command, target, version
        self._phase, self._request_line = "header", lines[0]
        headers = request.requestHeaders
        for name, value in fields:
            headers.addRawHeader(name, value)
        self._receivedHeaderCount = len(fields)
        self._receivedHeaderSize = end - 2 * len(fields)
        if length > 0:
            self.length = length
            self._transferDecoder = _IdentityTransferDecoder(
                length, request.handleContentChunk, self._finishRequestBody
            )
        self._buffer = data[end + 4 :]
        self._busyReceiving = True
        try:
            self.allHeadersReceived()
            if self.length == 0:
                self.allContentReceived()
            else:
                self.setRawMode()
        finally:
            self._busyReceiving = False
        transport: Any = self.transport
        if self._buffer and not (transport is not None and transport.disconnecting) and not self._refused:
            # The body, or the next request (not through dataReceived: the timeout was reset above).
            LineReceiver.dataReceived(self, b"")
        return True

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        first = self._awaiting_request_line()
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            limit = self.totalHeadersSize
            self.refuse(
                UriTooLong(f"The request line is longer than {limit} bytes.")
                if first
                else HeaderFieldsTooLarge(f"The request header block is larger than {limit} bytes.")
            )
            return
        if first:
            self._phase, self._request_line = "line", line
        else:
            self._phase = "header"
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        if self._awaiting_request_line():
            self.refuse(UriTooLong(f"The request line is longer than {self.MAX_LENGTH} bytes."))
        else:
            self.refuse(HeaderFieldsTooLarge(f"A header line is longer than {self.MAX_LENGTH} bytes."))

    def headerReceived(self, line: bytes) -> bool:
        if self._refused:
            return False
        if self._receivedHeaderCount >= self.maxHeaders:
            self.refuse(HeaderFieldsTooLarge(f"The request has more than {self.maxHeaders} header fields."))
            return False
        self._phase = "header"
        ok: bool = super().headerReceived(line)
        return ok

    def _maybeChooseTransferDecoder(self, header: bytes, data: bytes) -> bool:
        self._phase = "framing"
        ok: bool = super()._maybeChooseTransferDecoder(header, data)
        return ok

    def rawDataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        self._phase = "chunk"
        super().rawDataReceived(data)
        self._refuse_oversized_chunk()

    def _refuse_oversized_chunk(self) -> None:
        """A chunk announced larger than the upload limit: 413 now, not after waiting for its bytes.

        (Twisted's chunk decoder takes any size; without this a signed upload would wait for
        2**160 bytes that never come.)
        """
        decoder = self._transferDecoder
        if self._refused or decoder is None or getattr(decoder, "state", None) != "BODY" or not self.requests:
            return
        limit = getattr(self.requests[-1], "max_upload", None)
        if isinstance(limit, int) and getattr(decoder, "length", 0) > limit:
            self.refuse(PayloadTooLarge(f"The body is larger than {limit} bytes."))

    def allContentReceived(self) -> None:
        # Twisted may still refuse a form body it parses itself (multipart/form-data on POST).
        self._phase = "form"
        super().allContentReceived()

    def timeoutConnection(self) -> None:
        """Idle for ``timeOut`` seconds: 408 if a request was started and never finished, else just close."""
        request = self.requests[-1] if self.requests else None
        if request is not None and not self._handlingRequest and not request.startedWriting:
            self.refuse(RequestTimeout(f"The request was not completed within {self.timeOut} seconds."))
            return
        super().timeoutConnection()

    def _respondToBadRequestAndDisconnect(self) -> None:
        self.refuse(self._refusal())

    def _refusal(self) -> WASError:
        """The error Twisted's refusal stands for, from the step of parsing it happened in."""
        phase = self._phase
        if phase == "line":
            return _request_line_error(self._request_line)
        if phase == "header":
            return BadRequest(
                "A header line must be a field name, a colon and a value without NUL, CR or LF."
            )
        if phase == "framing":
            return InvalidRequestBody(
                "Content-Length must be one decimal number, Transfer-Encoding only chunked, not both."
            )
        if phase == "chunk":
            return InvalidRequestBody("The chunked body is malformed.")
        return InvalidRequestBody("The form body is malformed.")

    def refuse(self, error: WASError) -> None:
        """Answer ``error`` as a problem document, then close gently (once; later calls do nothing)."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        self.persistent = False
        self.setTimeout(None)
        transport: Any = self.transport
        transport.write(problem_response(error))
        # A request already routed on its headers (a streamed body) must not answer too.
        pending, self.requests = self.requests, []
        for request in pending:
            request.connectionLost(Failure(ConnectionDone("The request was refused.")))
        network: Any = self._networkProducer
        network.unregisterProducer()
        if _half_closable(transport):
            transport.resumeProducing()  # keep reading (and dropping) what the client still sends
            transport.loseWriteConnection()
            self._linger = self.callLater(LINGER, self._close)
        else:
            transport.loseConnection()

    def _close(self) -> None:
        self._linger = None
        if self.transport is not None:
            self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        self._linger = None
        super().connectionLost(reason)


class AsteriskRequest(Request):
    """A ``Request`` whose ``*`` target (RFC 9110 7.1: for ``OPTIONS`` only) is refused as a problem.

    Twisted answers ``GET *`` with a bare 405 of its own.
    """

    def _handleStar(self) -> None:
        if self.method == b"OPTIONS":
            super()._handleStar()
            return
        status, body, extra = problem_for(MethodNotAllowed(("OPTIONS",)))
        self.setResponseCode(status)
        self.setHeader(b"content-type", PROBLEM_JSON)
        self.setHeader(b"content-length", b"%d" % len(body))
        for name, value in extra.items():
            self.setHeader(name, value)
        self.write(body)
        self.finish()
