"""S3 trouble is 503 everywhere: the table in ``s3_faults.py``, case by case, on calls and on body reads.

In-process moto gives a real backend; the faults are injected by replacing
one client method, so each case names the exact exception botocore (or
urllib3, under a body read) would raise.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
import urllib3.exceptions
from botocore.exceptions import (
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
    SSLError,
)
from botocore.parsers import ResponseParserError
from botocore.response import StreamingBody
from twisted.internet import defer

from tests.unit.test_s3_backend import backend, create, s3  # noqa: F401 - the fixture
from tests.unit.test_storage_contract import allow
from was_twisted.errors import StorageFailure, Unavailable
from was_twisted.storage.base import StorageBusy, StorageError
from was_twisted.storage.s3_faults import S3Body, translate
from was_twisted.storage.threaded import SMALL_BODY, AsyncStorage, run_inline


def client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")


#: (exception, busy): every case the table names, and the ones it must not call busy.
CASES: list[tuple[BaseException, bool]] = [
    (IncompleteReadError(actual_bytes=10, expected_bytes=20), True),
    (ResponseStreamingError(error="Connection broken: IncompleteRead"), True),
    (ReadTimeoutError(endpoint_url="http://s3"), True),
    (ConnectTimeoutError(endpoint_url="http://s3"), True),
    (EndpointConnectionError(endpoint_url="http://s3"), True),
    (ConnectionClosedError(endpoint_url="http://s3"), True),
    (ProxyConnectionError(proxy_url="http://proxy"), True),
    (SSLError(endpoint_url="http://s3", error="handshake"), True),
    (ResponseParserError("Unable to parse response, invalid XML received"), True),
    (urllib3.exceptions.ProtocolError("Connection broken"), True),
    (urllib3.exceptions.ReadTimeoutError(None, "http://s3", "read timed out"), True),
    (ConnectionResetError(104, "Connection reset by peer"), True),
    (client_error("SlowDown", 503), True),
    (client_error("ServiceUnavailable", 503), True),
    (client_error("InternalError", 500), True),
    (client_error("BadGateway", 502), True),
    (client_error("RequestTimeout", 400), True),
    (NoCredentialsError(), False),
    (ParamValidationError(report="Invalid bucket name"), False),
]


def _id(case: tuple[BaseException, bool]) -> str:
    exc = case[0]
    if isinstance(exc, ClientError):
        return f"ClientError-{exc.response['Error']['Code']}"
    return type(exc).__name__


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_the_table(case: tuple[BaseException, bool]) -> None:
    """Each failure is S3 trouble (StorageBusy, 503) or not (StorageError, 500), as the table says."""
    exc, busy = case
    error = translate(exc)
    assert error is not None
    assert isinstance(error, StorageBusy) is busy
    assert isinstance(error, StorageError)


@pytest.mark.parametrize("code", ["NoSuchKey", "PreconditionFailed", "AccessDenied"])
def test_answers_whose_meaning_depends_on_the_call_are_left_to_it(code: str) -> None:
    assert translate(client_error(code, 404)) is None
    assert translate(ValueError("ours")) is None


def _fail(storage: AsyncStorage, coro: Any) -> Any:
    failures: list[Any] = []
    defer.ensureDeferred(coro).addErrback(failures.append)
    assert failures, "expected a failure"
    return failures[0]


@pytest.mark.parametrize("case", CASES, ids=[_id(c) for c in CASES])
def test_a_failing_call_reaches_the_edge_as_503_or_500(s3: Any, case: tuple[BaseException, bool]) -> None:  # noqa: F811
    """A GetObject raising the case: the operation fails with Unavailable (503) or StorageFailure (500)."""
    exc, busy = case
    b = backend()
    create(b, "s1")

    def broken(**_: Any) -> Any:
        raise exc

    b.client.get_object = broken
    storage = AsyncStorage(b, run_inline)
    failure = _fail(storage, storage.get_space("s1"))
    assert failure.check(Unavailable if busy else StorageFailure), failure


class _BreaksAfter(io.RawIOBase):
    """A raw HTTP body that gives ``good`` bytes, then raises ``exc`` (what urllib3 does when cut off)."""

    def __init__(self, good: bytes, exc: BaseException) -> None:
        self._good = io.BytesIO(good)
        self._exc = exc

    def read(self, amt: int | None = -1) -> bytes:
        data = self._good.read(amt)
        if data:
            return data
        raise self._exc


def _object(body: Any, size: int) -> dict[str, Any]:
    return {
        "Body": StreamingBody(body, size),
        "ContentLength": size,
        "ContentType": "application/octet-stream",
        "ETag": '"e"',
        "LastModified": datetime.datetime.now(datetime.UTC),
    }


BODY_FAULTS = {
    "truncated": lambda good: io.BytesIO(good),  # ends early: botocore's IncompleteReadError
    "reset": lambda good: _BreaksAfter(good, urllib3.exceptions.ProtocolError("Connection broken")),
    "stalled": lambda good: _BreaksAfter(good, urllib3.exceptions.ReadTimeoutError(None, "u", "timed out")),
}


@pytest.mark.parametrize("fault", sorted(BODY_FAULTS))
def test_a_cut_off_space_record_is_503(s3: Any, fault: str) -> None:  # noqa: F811
    """The space record's body cut off after GetObject returned: 503, not a parse error's 500."""
    b = backend()
    create(b, "s1")
    real = b.client.get_object

    def cut(**kwargs: Any) -> Any:
        whole = real(**kwargs)["Body"].read()
        return _object(BODY_FAULTS[fault](whole[: len(whole) // 2]), len(whole))

    b.client.get_object = cut
    storage = AsyncStorage(b, run_inline)
    assert _fail(storage, storage.get_space("s1")).check(Unavailable)


@pytest.mark.parametrize("size", [1000, SMALL_BODY * 4])
@pytest.mark.parametrize("fault", sorted(BODY_FAULTS))
def test_a_cut_off_resource_body_is_storage_busy(s3: Any, fault: str, size: int) -> None:  # noqa: F811
    """A small body (read in the opening call): 503; a large one: StorageBusy mid-stream (streaming.py)."""
    b = backend()
    create(b, "s1")
    data = bytes(range(256)) * (size // 256)
    b.write_resource("s1", "/x", io.BytesIO(data), "application/octet-stream", allow)
    real = b.client.get_object

    def cut(**kwargs: Any) -> Any:
        got = real(**kwargs)
        if not kwargs["Key"].endswith("%2Fx"):
            return got
        whole = got["Body"].read()
        return _object(BODY_FAULTS[fault](whole[: len(whole) // 2]), len(whole))

    b.client.get_object = cut
    storage = AsyncStorage(b, run_inline)
    if size <= SMALL_BODY:
        assert _fail(storage, storage.read_resource("s1", "/x", guard=None)).check(Unavailable)
        return
    opened: list[Any] = []
    defer.ensureDeferred(storage.read_resource("s1", "/x")).addCallback(opened.append)
    body = opened[0][2]

    async def drain() -> None:
        async for _ in body.chunks():
            pass

    assert _fail(storage, drain()).check(StorageBusy)


def test_s3_body_closes_quietly_and_reads_through() -> None:
    body = S3Body(StreamingBody(io.BytesIO(b"hello"), 5))
    with body as b:
        assert b.read(2) == b"he" and b.read() == b"llo"
