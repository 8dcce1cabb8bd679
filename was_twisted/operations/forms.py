"""``multipart/form-data`` resource writes (#content-types-and-representations, RES-4).

A browser form uploads a file as ``multipart/form-data``: the resource is
that form's one file part, stored under the part's own ``Content-Type``.
Zero or several file parts (a part is a file part when its
``Content-Disposition`` names a ``filename``) are 400 ``invalid-request-body``;
other fields are ignored.

Parsing uses ``multipart`` (the well-kept, dependency-free parser behind
Bottle and treq), streaming: the body (already bounded by
``WAS_MAX_UPLOAD_BYTES`` at the edge) is read in 64 KiB chunks and the file
part copied out once, in memory up to ``SPOOL_BYTES`` and beyond that to a
temporary file, so memory stays bounded whatever the part's size.  Headers
and part counts are bounded too.
"""

from __future__ import annotations

import tempfile
from typing import IO, BinaryIO, cast

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from ..errors import InvalidRequestBody
from ..storage.base import DEFAULT_CONTENT_TYPE

FORM_DATA = "multipart/form-data"
#: A file part up to this size is kept in memory; a larger one in a temporary file.
SPOOL_BYTES = 1024 * 1024
#: Parts (fields and files) a form may have: forms uploading a resource have a few.
MAX_PARTS = 64
CHUNK = 64 * 1024
_ONE_FILE = "A multipart/form-data write must have exactly one file part."


def is_form_data(content_type: str | None) -> bool:
    """Whether a write's ``Content-Type`` is ``multipart/form-data`` (any parameters, any case)."""
    return bool(content_type) and parse_options_header(content_type or "")[0] == FORM_DATA


def file_part(body: BinaryIO, content_type: str) -> tuple[BinaryIO, str]:
    """The form's one file part (positioned at its start) and its type; 400 for any other form.

    The caller closes the returned file.  ``body`` is read to its end.
    """
    options = parse_options_header(content_type)[1]
    boundary = options.get("boundary")
    if not boundary:
        raise InvalidRequestBody("A multipart/form-data body needs a boundary parameter.")
    out = cast(IO[bytes], tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))
    files = 0
    part_type: str | None = None
    in_file = False
    try:
        parser = PushMultipartParser(boundary, max_segment_count=MAX_PARTS)
        for event in parser.parse_blocking(body.read, CHUNK):
            if isinstance(event, MultipartSegment):
                in_file = event.filename is not None
                if in_file:
                    files += 1
                    if files > 1:
                        raise InvalidRequestBody(_ONE_FILE)
                    part_type = event.header("Content-Type") or DEFAULT_CONTENT_TYPE
            elif event is None:
                in_file = False
            elif in_file:
                out.write(event)
        if files == 0:
            raise InvalidRequestBody(_ONE_FILE)
    except MultipartError as exc:
        out.close()
        raise InvalidRequestBody(f"The multipart/form-data body is malformed: {exc}") from None
    except BaseException:
        out.close()
        raise
    out.seek(0)
    assert part_type is not None
    return cast(BinaryIO, out), part_type
