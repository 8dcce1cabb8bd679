"""The S3 servers other integration tests start: moto's server and Ceph's RADOS Gateway."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from .s3servers import S3Server, ceph_available

pytestmark = pytest.mark.integration


@pytest.fixture(params=["moto_server", "ceph_server"])
def s3(request: pytest.FixtureRequest) -> S3Server:
    """Each S3 server of the session (tests/integration/conftest.py starts them once)."""
    server: S3Server = request.getfixturevalue(request.param)
    return server


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    return exc.value.response["Error"]["Code"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_ceph_installed() -> None:
    """Ceph's binaries are on PATH (a failure under CI=true, a skip elsewhere)."""
    if not ceph_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Ceph binaries are missing although CI=true: .ci/install-s3-servers should have run")
        pytest.skip("Ceph (radosgw, ceph-mon, ceph-osd, ...) is not installed; run .ci/install-s3-servers")


def test_put_get_content_type(s3: S3Server) -> None:
    """An object put with a ContentType reads back with the same bytes and type."""
    client = s3.client()
    bucket = s3.create_bucket()
    client.put_object(Bucket=bucket, Key="a/b.json", Body=b'{"x": 1}', ContentType="application/json")
    got = client.get_object(Bucket=bucket, Key="a/b.json")
    assert got["Body"].read() == b'{"x": 1}'
    assert got["ContentType"] == "application/json"
    with pytest.raises(ClientError) as missing:
        client.get_object(Bucket=bucket, Key="a/none")
    assert error_of(missing) == ("NoSuchKey", 404)


def test_if_none_match_star(s3: S3Server) -> None:
    """A put with IfNoneMatch='*' succeeds once, then fails with 412 PreconditionFailed."""
    client = s3.client()
    bucket = s3.create_bucket()
    client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as second:
        client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")
    assert error_of(second) == ("PreconditionFailed", 412)
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"first"


def test_list_objects_v2_prefix(s3: S3Server) -> None:
    """ListObjectsV2 with a prefix returns only the keys under it."""
    client = s3.client()
    bucket = s3.create_bucket()
    for key in ("space1/a", "space1/b", "space10/c", "space2/d"):
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="space1/")
    assert [o["Key"] for o in listed["Contents"]] == ["space1/a", "space1/b"]


def test_ceph_refuses_wrong_secret(ceph_server: S3Server) -> None:
    """RGW checks signatures: a wrong secret gets 403 SignatureDoesNotMatch."""
    bucket = ceph_server.create_bucket()
    with pytest.raises(ClientError) as refused:
        ceph_server.client(secret_key="not-" + ceph_server.secret_key).list_objects_v2(Bucket=bucket)
    assert error_of(refused) == ("SignatureDoesNotMatch", 403)


def test_env_points_boto3_at_server(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain boto3 client configured only by env() (as our server is) reaches the server."""
    import boto3
    from botocore.config import Config

    bucket = s3.create_bucket()
    s3.client().put_object(Bucket=bucket, Key="k", Body=b"v")
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in s3.env().items():
        monkeypatch.setenv(name, value)
    client = boto3.session.Session().client("s3", config=Config(s3={"addressing_style": "path"}))
    assert client.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
