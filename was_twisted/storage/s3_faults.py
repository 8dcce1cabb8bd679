"""What counts as S3 trouble: one table from boto3's failures to the storage contract's errors.

S3 that is slow, throttling, erroring or cut off is *trouble*: a retry a
moment later may succeed, so the client is told 503 with ``Retry-After``
(``StorageBusy``).  A failure no retry will fix (no credentials, a request
we built wrong) is a ``StorageError`` (500 ``storage-error``).  The table
covers both the client calls (``S3Bucket._s3``) and the reads of an
object's body (``S3Body``), which run after the call returned and raise
botocore's and urllib3's errors on their own.
"""

from __future__ import annotations

import http.client
from typing import Any

import urllib3.exceptions
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ProxyConnectionError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from botocore.parsers import ResponseParserError

from .base import StorageBusy, StorageError

#: S3 error codes that mean "busy, retry later" (besides any 5xx status).
BUSY_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "ServiceUnavailable",
        "InternalError",
        "RequestLimitExceeded",
        "503",
        "500",
    }
)

#: Exceptions other than ``ClientError``, in order: the first class that matches decides.
#: ``True``: S3 trouble (503 + Retry-After); ``False``: a failure a retry will not fix (500).
TABLE: tuple[tuple[type[BaseException], bool], ...] = (
    (NoCredentialsError, False),  # configuration: the operator must act
    (ParamValidationError, False),  # a request we built wrong
    (IncompleteReadError, True),  # a body shorter than its Content-Length
    (ResponseStreamingError, True),  # the connection broke while a body was read
    (ReadTimeoutError, True),  # no byte for read_timeout seconds
    (ConnectTimeoutError, True),  # no connection within connect_timeout seconds
    (EndpointConnectionError, True),  # connection refused, DNS failure
    (ConnectionClosedError, True),  # S3 closed the connection before answering
    (ProxyConnectionError, True),  # the HTTP proxy in front of S3 failed
    (ResponseParserError, True),  # an answer cut off or garbled: not XML/JSON we can read
    (BotoCoreError, True),  # any other failure of the endpoint or the wire
    (urllib3.exceptions.HTTPError, True),  # a body read that botocore did not wrap
    (http.client.HTTPException, True),
    (OSError, True),  # a socket error surfacing raw
)


def _code(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_busy(exc: ClientError) -> bool:
    """An S3 error answer that means "retry later": throttling, a timeout of S3's own, any 5xx."""
    return _code(exc) in BUSY_CODES or _status(exc) >= 500


def translate(exc: BaseException) -> StorageError | None:
    """The storage error for ``exc``, or ``None`` when it is not a failure of S3 (the caller's to handle).

    A ``ClientError`` that is not S3 trouble (NoSuchKey, PreconditionFailed ...)
    is ``None`` too: its meaning depends on the call.
    """
    if isinstance(exc, ClientError):
        return StorageBusy(f"S3 {_code(exc)}: {exc}") if is_busy(exc) else None
    for cls, busy in TABLE:
        if isinstance(exc, cls):
            return (StorageBusy if busy else StorageError)(f"S3 {type(exc).__name__}: {exc}")
    return None


class S3Body:
    """An object's body (botocore's ``StreamingBody``) whose read failures are storage errors.

    The bytes are read after GetObject returned, often in another pool call:
    without this, a connection cut mid-body surfaced as botocore's or
    urllib3's own exception (a 500) instead of ``StorageBusy``.
    """

    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def read(self, amt: int | None = None) -> bytes:
        try:
            return bytes(self._raw.read(amt))
        except Exception as exc:
            error = translate(exc)
            if error is None:
                raise
            raise error from exc

    def close(self) -> None:
        try:
            self._raw.close()
        except Exception:  # noqa: BLE001 - closing a broken connection: nothing left to lose
            pass

    def __enter__(self) -> S3Body:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
