"""The lean S3 client (``s3_client.make_client``) answers what a stock boto3 client answers.

Handlers are switched off and pieces cached for CPU's sake; these tests pin
that nothing we read changes, on in-process moto.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from was_twisted.storage.s3_client import make_client

BUCKET = "was-client"


@pytest.fixture
def clients(mocked_aws: None) -> tuple[Any, Any]:
    stock = boto3.client(
        "s3",
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required", response_checksum_validation="when_required"
        ),
    )
    stock.create_bucket(Bucket=BUCKET)
    return make_client(4), stock


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    a, b = dict(a), dict(b)
    a.pop("ResponseMetadata"), b.pop("ResponseMetadata")
    body_a, body_b = a.pop("Body", None), b.pop("Body", None)
    if body_a is not None or body_b is not None:
        assert body_a is not None and body_b is not None and body_a.read() == body_b.read()
    assert a == b


def test_our_calls_answer_as_a_stock_client(clients: tuple[Any, Any]) -> None:
    ours, stock = clients
    put = ours.put_object(
        Bucket=BUCKET, Key="k", Body=b"hello", ContentType="text/plain", Metadata={"was-write": "t"}
    )
    assert put["ETag"] == stock.head_object(Bucket=BUCKET, Key="k")["ETag"]
    _same(ours.get_object(Bucket=BUCKET, Key="k"), stock.get_object(Bucket=BUCKET, Key="k"))
    _same(
        ours.get_object(Bucket=BUCKET, Key="k", Range="bytes=1-2"),
        stock.get_object(Bucket=BUCKET, Key="k", Range="bytes=1-2"),
    )
    _same(ours.head_object(Bucket=BUCKET, Key="k"), stock.head_object(Bucket=BUCKET, Key="k"))
    _same(ours.list_objects_v2(Bucket=BUCKET, Prefix=""), stock.list_objects_v2(Bucket=BUCKET, Prefix=""))
    for client in (ours, stock):
        with pytest.raises(ClientError) as refused:
            client.put_object(Bucket=BUCKET, Key="k", Body=b"again", IfNoneMatch="*")
        assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
        with pytest.raises(ClientError) as missing:
            client.get_object(Bucket=BUCKET, Key="absent")
        assert missing.value.response["Error"]["Code"] == "NoSuchKey"


def test_the_requests_carry_no_telemetry_but_a_user_agent(clients: tuple[Any, Any]) -> None:
    """The ``amz-sdk-*`` retry headers are gone (two fewer headers to sign); the User-Agent stays."""
    ours, _ = clients
    sent: list[Any] = []
    ours.meta.events.register("before-send.s3", lambda request, **_: sent.append(request))
    ours.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    ours.get_object(Bucket=BUCKET, Key="k")["Body"].read()
    assert len(sent) == 2
    for request in sent:
        names = {name.lower() for name in request.headers}
        assert not {"amz-sdk-invocation-id", "amz-sdk-request", "expect"} & names
        agent = request.headers["User-Agent"]
        assert "Botocore/" in (agent.decode() if isinstance(agent, bytes) else agent)
        assert "authorization" in names


def test_retries_still_happen(clients: tuple[Any, Any]) -> None:
    """A 503 from S3 is retried by botocore's standard mode (3 attempts), as before the trims."""
    ours, _ = clients
    attempts: list[int] = []

    class Raw:
        def stream(self) -> Any:
            return iter([b"<Error><Code>SlowDown</Code></Error>"])

    def throttle(request: Any, **_: Any) -> Any:
        from botocore.awsrequest import AWSResponse

        attempts.append(1)
        if len(attempts) < 3:
            return AWSResponse(request.url, 503, {}, Raw())
        return None

    ours.meta.events.register("before-send.s3", throttle)
    ours.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    assert len(attempts) == 3


def test_pools_are_kept_per_origin_and_a_closed_one_is_replaced() -> None:
    """``CachedPools``: one lookup per origin (path and query do not matter), bounded, never a closed pool."""
    from was_twisted.storage.s3_client import CachedPools

    class Pool:
        def __init__(self, origin: str) -> None:
            self.origin = origin
            self.pool: object | None = object()  # urllib3 sets it to None on close

    asked: list[str] = []

    def from_url(url: str, pool_kwargs: Any = None) -> Pool:
        asked.append(url)
        return Pool(url.split("/", 3)[2])

    pools = CachedPools(from_url, size=2)
    a = pools("http://127.0.0.1:9000/bucket/key?x=1")
    assert pools("http://127.0.0.1:9000/bucket/other") is a
    assert pools("http://127.0.0.1:9000?list-type=2") is a
    b = pools("https://s3.us-east-1.amazonaws.com/k")
    assert b is not a and b.origin == "s3.us-east-1.amazonaws.com" and len(asked) == 2
    a.pool = None  # closed by the manager
    fresh = pools("http://127.0.0.1:9000/bucket/key")
    assert fresh is not a and len(asked) == 3
    pools("http://other:1/k")  # a third origin: the cache (size 2) is cleared, not grown
    assert list(pools._pools) == ["http://other:1"]
    assert pools("http://127.0.0.1:9000/k", {"maxsize": 1}) is not fresh  # explicit kwargs: urllib3's way


def test_the_client_looks_its_pools_up_through_the_cache(clients: tuple[Any, Any]) -> None:
    """(In-process moto answers before any pool is used: tests/integration and the benchmarks use them.)"""
    from was_twisted.storage.s3_client import CachedPools

    ours, _ = clients
    assert isinstance(ours._endpoint.http_session._manager.connection_from_url, CachedPools)
