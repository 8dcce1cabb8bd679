"""``WAS_SPACE_CACHE_SECONDS``: the cache on a fake clock, and what it saves on S3 (in-process moto)."""

from __future__ import annotations

import io
from typing import Any

import boto3
import pytest

from tests.unit.test_storage_contract import allow
from was_twisted.config import ConfigError, settings_from_env
from was_twisted.storage.base import DEFAULT_CONTENT_TYPE, SpaceMissing, SpaceRecord
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.s3_client import CachedEndpoints
from was_twisted.storage.s3_upload import part_size
from was_twisted.storage.space_cache import SpaceCache

BUCKET = "was-cache"
ALICE = "did:key:z6MkAlice"
BOB = "did:key:z6MkBob"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the cache ---------------------------------------------------------------


def test_entries_expire_after_their_lifetime() -> None:
    clock = FakeClock()
    cache: SpaceCache[str] = SpaceCache(5, clock=clock)
    cache.put("s", "record", cache.generation)
    clock.now += 4.9
    assert cache.get("s") == "record"
    clock.now += 0.1
    assert cache.get("s") is None and len(cache) == 0


def test_the_number_of_entries_is_bounded_least_recently_used_first() -> None:
    cache: SpaceCache[int] = SpaceCache(60, max_entries=3, clock=FakeClock())
    for i in range(3):
        cache.put(f"s{i}", i, cache.generation)
    assert cache.get("s0") == 0  # used: s1 is now the oldest
    cache.put("s3", 3, cache.generation)
    assert len(cache) == 3
    assert cache.get("s1") is None and [cache.get(f"s{i}") for i in (0, 2, 3)] == [0, 2, 3]


def test_invalidate_forgets_and_a_load_that_raced_a_write_is_not_kept() -> None:
    cache: SpaceCache[str] = SpaceCache(60, clock=FakeClock())
    cache.put("s", "old", cache.generation)
    cache.invalidate("s")
    assert cache.get("s") is None
    before = cache.generation  # a load starts...
    cache.invalidate("s")  # ...a write of the record lands meanwhile...
    cache.put("s", "maybe old", before)  # ...so what the load read is not kept
    assert cache.get("s") is None


def test_bad_arguments_and_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        SpaceCache(0)
    with pytest.raises(ValueError):
        SpaceCache(5, max_entries=0)
    assert settings_from_env({}).space_cache_seconds == 0
    assert settings_from_env({"WAS_SPACE_CACHE_SECONDS": "5"}).space_cache_seconds == 5
    for bad in ("-1", "0.5", "soon", "301"):
        with pytest.raises(ConfigError, match="WAS_SPACE_CACHE_SECONDS"):
            settings_from_env({"WAS_SPACE_CACHE_SECONDS": bad})


# -- on S3 -------------------------------------------------------------------


@pytest.fixture
def s3(mocked_aws: None) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    return client


def cached_backend(clock: FakeClock, seconds: float = 5) -> S3Backend:
    b = S3Backend(BUCKET, "p/", threads=4, space_cache=SpaceCache(seconds, clock=clock))
    b.check()
    return b


def put_space(b: S3Backend, space_id: str, controller: str) -> None:
    def build(current: SpaceRecord | None) -> SpaceRecord:
        return SpaceRecord(space_id=space_id, id=f"urn:uuid:{space_id}", controller=controller)

    b.put_space(space_id, build)


def write(b: S3Backend, space_id: str, seen: list[str] | None = None) -> bool | None:
    """Write ``/r``; whether it existed before (``ResourceInfo.existed``)."""

    def guard(current: SpaceRecord | None) -> None:
        if seen is not None and current is not None:
            seen.append(current.controller)

    return b.write_resource(space_id, "/r", io.BytesIO(b"x"), "text/plain", guard).existed


def test_a_cached_create_is_one_s3_request_an_overwrite_two_and_a_read_one(s3: Any) -> None:
    """Counted by the client's before-call hook: PutObject ``If-None-Match: *`` first, no HeadObject.

    A create is that one PutObject; an overwrite is refused by it (412) and sent again
    unconditionally (two, as HEAD + PUT were); a read is the GetObject alone.
    """
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    assert b.get_space("s1") is not None  # now cached
    b.calls.clear()
    assert write(b, "s1") is False
    assert b.calls == {"PutObject": 1}
    b.calls.clear()
    for _ in range(3):
        assert write(b, "s1") is True
    assert b.calls == {"PutObject": 6}
    b.calls.clear()
    submitted: list[Any] = []
    submit = b._side.submit
    b._side.submit = lambda f, *a: submitted.append(f) or submit(f, *a)  # type: ignore[method-assign]
    _, res = b.read_resource("s1", "/r")
    assert res is not None and res.body.read() == b"x" and res.info.content_type == "text/plain"
    assert b.calls == {"GetObject": 1}
    assert submitted == []  # the cached record needs no side thread


def test_a_cached_write_stores_what_an_uncached_one_does(s3: Any) -> None:
    """Bytes, content type and ETag as S3 has them; an overwrite replaces the bytes; no extra keys."""
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    b.get_space("s1")
    info = b.write_resource("s1", "/a b", io.BytesIO(b"one"), "text/plain", lambda _: None)
    raw = s3.get_object(Bucket=BUCKET, Key="p/spaces/s1/resources/%2Fa%20b")
    assert (raw["Body"].read(), raw["ContentType"], raw["ETag"]) == (b"one", "text/plain", info.etag)
    again = b.write_resource("s1", "/a b", io.BytesIO(b"two"), "", lambda _: None)
    raw = s3.get_object(Bucket=BUCKET, Key="p/spaces/s1/resources/%2Fa%20b")
    assert (raw["Body"].read(), raw["ContentType"], raw["ETag"]) == (b"two", DEFAULT_CONTENT_TYPE, again.etag)
    assert (info.existed, again.existed, again.size) == (False, True, 3)
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="p/spaces/s1/")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["p/spaces/s1/_meta.json", "p/spaces/s1/resources/%2Fa%20b"]


def test_a_cached_write_refused_by_its_guard_sends_nothing_and_reads_no_body(s3: Any) -> None:
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    b.get_space("s1")
    b.calls.clear()
    body = io.BytesIO(b"secret")

    def refuse(current: SpaceRecord | None) -> None:
        raise PermissionError("no")

    with pytest.raises(PermissionError):
        b.write_resource("s1", "/r", body, "text/plain", refuse)
    assert b.calls == {} and body.tell() == 0


def test_a_cached_write_of_a_key_created_elsewhere_says_it_existed(s3: Any) -> None:
    """Another server (no cache) created the path after this one cached the record: S3's 412 says so."""
    clock = FakeClock()
    here = cached_backend(clock)
    there = S3Backend(BUCKET, "p/", threads=4)
    put_space(here, "s1", ALICE)
    here.get_space("s1")
    assert (
        there.write_resource("s1", "/r", io.BytesIO(b"theirs"), "text/plain", lambda _: None).existed is False
    )
    assert write(here, "s1") is True
    assert s3.get_object(Bucket=BUCKET, Key="p/spaces/s1/resources/%2Fr")["Body"].read() == b"x"


def test_a_cached_write_of_a_large_body_heads_first_and_goes_multipart(s3: Any) -> None:
    """Multipart completion ignores If-None-Match on Ceph RGW: a body over one part is HEADed first."""
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    b.get_space("s1")
    data = b"m" * (part_size(1) + 5)
    for existed in (False, True):
        b.calls.clear()
        info = b.write_resource("s1", "/big", io.BytesIO(data), "video/mp4", lambda _: None)
        assert (info.existed, info.size) == (existed, len(data))
        assert (
            b.calls["HeadObject"] == 1
            and b.calls["CreateMultipartUpload"] == 1
            and b.calls["UploadPart"] == 2
        )
    _, res = b.read_resource("s1", "/big")
    assert res is not None and res.body.read() == data


def test_without_the_cache_a_write_is_three_requests(s3: Any) -> None:
    b = S3Backend(BUCKET, "p/", threads=4)
    b.check()
    put_space(b, "s1", ALICE)
    write(b, "s1")
    b.calls.clear()
    write(b, "s1")
    assert b.calls == {"GetObject": 1, "HeadObject": 1, "PutObject": 1}


def test_a_controller_change_here_is_seen_at_once(s3: Any) -> None:
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    seen: list[str] = []
    write(b, "s1", seen)
    put_space(b, "s1", BOB)  # loads the record fresh (compare-and-swap), then forgets it
    write(b, "s1", seen)
    assert seen == [ALICE, BOB]


def test_a_delete_here_is_seen_at_once(s3: Any) -> None:
    b = cached_backend(FakeClock())
    put_space(b, "s1", ALICE)
    write(b, "s1")
    assert b.delete_space("s1", allow)
    with pytest.raises(SpaceMissing):
        write(b, "s1")


def test_a_change_on_another_server_is_seen_when_the_entry_expires(s3: Any) -> None:
    """The documented cost: another server's controller change or delete waits out the lifetime."""
    clock = FakeClock()
    here, there = cached_backend(clock), cached_backend(clock)
    put_space(here, "s1", ALICE)
    seen: list[str] = []
    write(here, "s1", seen)
    put_space(there, "s1", BOB)
    write(here, "s1", seen)
    clock.now += 5
    write(here, "s1", seen)
    assert seen == [ALICE, ALICE, BOB]
    assert there.delete_space("s1", allow)
    write(here, "s1")  # within the lifetime: still accepted (README.rst, "Storage")
    clock.now += 5
    with pytest.raises(SpaceMissing):
        write(here, "s1")


def test_absent_spaces_are_not_cached(s3: Any) -> None:
    """A space created elsewhere is usable here at once."""
    clock = FakeClock()
    here, there = cached_backend(clock), cached_backend(clock)
    with pytest.raises(SpaceMissing):
        write(here, "s2")
    put_space(there, "s2", ALICE)
    write(here, "s2")


# -- the client ----------------------------------------------------------------


def test_the_client_resolves_each_endpoint_once_and_sends_no_expect_header(s3: Any) -> None:
    b = cached_backend(FakeClock())
    sent: list[Any] = []
    b.client.meta.events.register("before-send.s3", lambda request, **_: sent.append(request))
    endpoints = b.client._ruleset_resolver.construct_endpoint
    assert isinstance(endpoints, CachedEndpoints)
    put_space(b, "s1", ALICE)
    before = endpoints.misses
    for _ in range(5):
        write(b, "s1")
        b.read_resource("s1", "/r")
    assert endpoints.misses == before  # PutObject and GetObject were resolved before
    puts = [r for r in sent if r.method == "PUT"]
    assert puts and all("Expect" not in r.headers for r in puts)


def test_the_headers_first_parser_reads_what_botocores_does(s3: Any) -> None:
    """Every response our calls get parses to the same dict as with botocore's own parser."""
    from botocore.parsers import RestXMLParser

    from was_twisted.storage.s3_client import HeadersFirstParser, parse_timestamp

    b = cached_backend(FakeClock())
    raw: list[tuple[Any, Any]] = []

    def keep(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
        raw.append((http_response, model))

    b.client.meta.events.register("after-call.s3", keep)
    put_space(b, "s1", ALICE)
    b.client.put_object(Bucket=BUCKET, Key="m", Body=b"xyz", ContentType="text/plain", Metadata={"a": "1"})
    b.client.get_object(Bucket=BUCKET, Key="m", Range="bytes=0-1")
    b.client.head_object(Bucket=BUCKET, Key="m")
    b.client.list_objects_v2(Bucket=BUCKET, Prefix="p/")
    assert len(raw) >= 5
    for http_response, model in raw:
        response = {
            "status_code": http_response.status_code,
            "headers": http_response.headers,
            "body": http_response.content,
        }
        ours = HeadersFirstParser(timestamp_parser=parse_timestamp).parse(response, model.output_shape)
        theirs = RestXMLParser(timestamp_parser=parse_timestamp).parse(response, model.output_shape)
        ours.pop("ResponseMetadata", None), theirs.pop("ResponseMetadata", None)
        assert ours == theirs, model.name
        if model.name == "HeadObject":
            assert ours["Metadata"] == {"a": "1"} and ours["ContentLength"] == 3
            assert ours["ContentType"] == "text/plain" and ours["ETag"] and ours["LastModified"]
    assert any(model.name == "GetObject" for _, model in raw)
