"""``multipart/form-data`` resource writes (#content-types-and-representations, RES-4).

A browser form uploads a file as ``multipart/form-data``: the resource is
that form's one file part, stored under the part's own ``Content-Type``.
Zero or several file parts (a part is a file part when its
``Content-Disposition`` names a ``filename``) are 400 ``invalid-request-body``;
other fields are ignored.

Parsing uses ``multipart`` (the well-kept, dependency-free parser behind
Bottle and treq), streaming: the form is parsed as storage reads the file
part (``FilePart``), so the part goes to storage as it arrives, like any
other body, and nothing of it is held whole or written to a temporary file.
What follows the part is parsed when storage reads past its end: a second
file part or a malformed form then fails that read, and a failed read
aborts the write (the backends keep the old bytes or nothing).  Headers and
part counts are bounded; the body itself by ``WAS_MAX_UPLOAD_BYTES`` at the
edge.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import BinaryIO, TypeAlias, cast

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from ..errors import InvalidRequestBody
from ..storage.base import DEFAULT_CONTENT_TYPE

FORM_DATA = "multipart/form-data"
#: Parts (fields and files) a form may have: forms uploading a resource have a few.
MAX_PARTS = 64
#: How much of the form is asked of the body per read.
CHUNK = 64 * 1024
_ONE_FILE = "A multipart/form-data write must have exactly one file part."

_Event: TypeAlias = "MultipartSegment | bytes | bytearray | None"


def is_form_data(content_type: str | None) -> bool:
    """Whether a write's ``Content-Type`` is ``multipart/form-data`` (any parameters, any case)."""
    return bool(content_type) and parse_options_header(content_type or "")[0] == FORM_DATA


def _malformed(exc: MultipartError) -> InvalidRequestBody:
    return InvalidRequestBody(f"The multipart/form-data body is malformed: {exc}")


class FilePart(io.RawIOBase):
    """The bytes of a form's one file part, parsed out of the form as they are read.

    Its end is reported only once the rest of the form was parsed and found
    to hold no other file part, so storage never commits a form it would refuse.
    """

    def __init__(self, events: Iterator[_Event], read: Callable[[int], bytes]) -> None:
        super().__init__()
        self._events = events
        self._read = read
        self._pending = memoryview(b"")
        self._in_part = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            if not self._in_part:
                return 0
            self._pending = memoryview(self._next_data())
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _next_data(self) -> bytes | bytearray:
        """The part's next bytes; at its end, the rest of the form is checked and ``b""`` returned."""
        try:
            event = next(self._events)
            if event is None:
                self._in_part = False
                _check_rest(self._events)
                # The parser stops at the closing boundary: the body is read to its very end (an
                # epilogue is ignored), so that what checks a streamed body at its end (its Digest) runs.
                while self._read(CHUNK):
                    pass
                return b""
            if isinstance(event, MultipartSegment):  # the parser ends a segment (None) first
                raise InvalidRequestBody("The multipart/form-data body is malformed.")
            return event
        except StopIteration:
            raise InvalidRequestBody("The multipart/form-data body ends inside its file part.") from None
        except MultipartError as exc:
            raise _malformed(exc) from None

    def close(self) -> None:
        close = getattr(self._events, "close", None)
        if close is not None:
            close()
        super().close()


def _check_rest(events: Iterator[_Event]) -> None:
    """Parse what follows the file part: fields are ignored, another file part is refused."""
    for event in events:
        if isinstance(event, MultipartSegment) and event.filename is not None:
            raise InvalidRequestBody(_ONE_FILE)


def file_part(body: BinaryIO, content_type: str) -> tuple[BinaryIO, str]:
    """The form's one file part, to be read as it arrives, and its type; 400 for any other form.

    Fields before the file part are parsed (and ignored) here; the part and
    what follows it are parsed as the returned stream is read, which raises
    ``InvalidRequestBody`` if the form turns out to be refused.  The caller
    closes it.
    """
    options = parse_options_header(content_type)[1]
    boundary = options.get("boundary")
    if not boundary:
        raise InvalidRequestBody("A multipart/form-data body needs a boundary parameter.")
    parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS)
    events = cast(Iterator[_Event], parser.parse_blocking(body.read, CHUNK))
    try:
        for event in events:
            if isinstance(event, MultipartSegment) and event.filename is not None:
                part_type = event.header("Content-Type") or DEFAULT_CONTENT_TYPE
                return cast(BinaryIO, io.BufferedReader(FilePart(events, body.read), CHUNK)), part_type
    except MultipartError as exc:
        raise _malformed(exc) from None
    raise InvalidRequestBody(_ONE_FILE)
