"""Pagination: the cursor, storage pages on every backend, and ``?limit=&cursor=`` over the API."""

from __future__ import annotations

import base64
import io
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import pytest_twisted
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.invoke import invoke, root_id
from tests.unit.test_delegation_routes import CASES, ORIGIN, holder, setup_space, shared, signer  # noqa: F401
from tests.unit.test_metadata import any_api  # noqa: F401
from tests.unit.test_routes import body_of, provision
from tests.unit.test_storage_contract import ALICE, BOB, allow, backend, put, space, with_space  # noqa: F401
from was_twisted.errors import InvalidCursor, InvalidParameter
from was_twisted.operations import Call
from was_twisted.operations.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    decode_cursor,
    encode_cursor,
    page_request,
)
from was_twisted.storage.base import Backend, listing_key
from was_twisted.storage.s3 import S3Backend

SPEC = "https://wallet.storage/spec#"


def call(query: str | None) -> Call:
    target = "/spaces/" + ("" if query is None else "?" + query)
    return Call(method="GET", targets=(target, "/spaces/"), headers={}, origin="https://was.example")


# -- the cursor and the query --------------------------------------------------------------------------


@pytest.mark.parametrize("after", ["a", "notes/é ü.txt", "x" * 1000, "?&=#/%2F"])
def test_cursor_round_trips_and_is_url_safe(after: str) -> None:
    cursor = encode_cursor(after)
    assert set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert decode_cursor(cursor) == after


def bare(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "!!",
        "",
        "a",
        "x" * 9000,
        bare(["after"]),
        bare({"after": "a"}),  # no version
        bare({"v": 2, "after": "a"}),
        bare({"v": 1, "after": ""}),
        bare({"v": 1, "after": 3}),
        base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="),
    ],
)
def test_bad_cursors_are_refused(cursor: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor)


def test_limit_defaults_clamps_and_refuses() -> None:
    assert page_request(call(None)).limit == DEFAULT_LIMIT
    assert page_request(call("limit=7")).limit == 7
    assert page_request(call("limit=100000")).limit == MAX_LIMIT
    assert page_request(call("limit=100000")).error is None
    for bad in ("limit=0", "limit=-1", "limit=abc", "limit=", "limit=1.5", "limit=1&limit=2", "limit=9" * 20):
        request = page_request(call(bad))
        assert isinstance(request.error, InvalidParameter), bad
        with pytest.raises(InvalidParameter):
            request.check()


def test_cursor_errors_wait_for_check() -> None:
    """A bad cursor is kept, not raised: the operation raises it only after authorization."""
    request = page_request(call("cursor=!!"))
    assert isinstance(request.error, InvalidCursor) and request.after is None
    with pytest.raises(InvalidCursor):
        request.check()
    good = page_request(call("limit=2&cursor=" + encode_cursor("s1")))
    assert good.error is None and good.after == "s1" and good.fetch == 3
    assert isinstance(
        page_request(call("cursor=" + encode_cursor("x")), valid_after=lambda a: False).error, InvalidCursor
    )


# -- storage pages on every backend ------------------------------------------------------------------


def write(b: Backend, path: str, sid: str = "s1") -> None:
    b.write_resource(sid, path, io.BytesIO(path.encode()), "text/plain", allow)


def all_pages(b: Backend, prefix: str, limit: int) -> list[list[str]]:
    """Walk a listing page by page as the operation does (asking for one more than it shows)."""
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        rows = b.list_resources("s1", prefix, allow, start_after=after, limit=limit + 1)
        assert len(rows) <= limit + 1
        page = [p for p, _ in rows[:limit]]
        pages.append(page)
        if len(rows) <= limit:
            return pages
        after = page[-1]


PATHS = ["/c/b", "/c/a", "/c/a/deep", "/c/a-b", "/c/é", "/c/Z", "/c/a b", "/d/x", "/c"]


def test_resource_pages_cover_everything_once_in_key_order(with_space: Backend) -> None:  # noqa: F811
    for path in PATHS:
        write(with_space, path)
    under = sorted((p for p in PATHS if p.startswith("/c/")), key=listing_key)
    for limit in (1, 2, 3, 100):
        pages = all_pages(with_space, "/c/", limit)
        flat = [p for page in pages for p in page]
        assert flat == under, limit
        assert all(len(page) <= limit for page in pages)
    # Today's call (no page) lists the same, in the same order.
    assert [p for p, _ in with_space.list_resources("s1", "/c/", allow)] == under
    # A page starting after an id that is not stored resumes at the next key.
    rows = with_space.list_resources("s1", "/c/", allow, start_after="/c/a~", limit=2)
    assert [p for p, _ in rows] == [k for k in under if listing_key(k) > listing_key("/c/a~")][:2]


def test_resource_page_sizes_and_types(with_space: Backend) -> None:  # noqa: F811
    write(with_space, "/c/one")
    [(path, info)] = with_space.list_resources("s1", "/c/", allow, limit=1)
    assert path == "/c/one" and info.size == len(b"/c/one")
    assert with_space.list_resources("s1", "/c/", allow, start_after="/c/one", limit=5) == []
    assert with_space.list_resources("ghost", "/", allow, limit=5) == []


def test_space_pages(backend: Backend) -> None:  # noqa: F811
    for sid in ("s3", "s1", "s2", "s4"):
        put(backend, space(sid, ALICE))
    put(backend, space("s0", BOB))
    assert backend.list_spaces(ALICE, limit=2) == ["s1", "s2"]
    assert backend.list_spaces(ALICE, start_after="s2", limit=2) == ["s3", "s4"]
    assert backend.list_spaces(ALICE, start_after="s4", limit=2) == []
    assert backend.list_spaces(ALICE, start_after="s1") == ["s2", "s3", "s4"]
    assert backend.list_spaces(BOB, limit=1) == ["s0"]


def test_s3_first_page_of_a_large_container_is_one_list(mocked_aws: None) -> None:
    """3,000 resources: the first page (and a middle one) is one ListObjectsV2, beside the space's GET."""
    b = S3Backend("big", "pfx/", threads=4)
    b.client.create_bucket(Bucket="big")
    b.check()
    b.reindex()
    put(b, space("s1"))
    root = b._resources_prefix("s1")
    for n in range(3000):
        b.client.put_object(Bucket="big", Key=root + listing_key(f"/big/{n:05d}"), Body=b"x")
    b.calls.clear()
    rows = b.list_resources("s1", "/big/", allow, limit=101)
    assert [p for p, _ in rows] == [f"/big/{n:05d}" for n in range(101)]
    assert b.calls == {"ListObjectsV2": 1, "GetObject": 1}
    b.calls.clear()
    rows = b.list_resources("s1", "/big/", allow, start_after="/big/02500", limit=1001)
    assert len(rows) == 499 and rows[0][0] == "/big/02501"
    assert b.calls == {"ListObjectsV2": 1, "GetObject": 1}
    b.close()


def test_s3_short_pages_are_followed(mocked_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 may answer fewer keys than asked and say more follow: the backend asks on, never stops short."""
    b = S3Backend("short", "", threads=2)
    b.client.create_bucket(Bucket="short")
    b.check()
    b.reindex()
    put(b, space("s1"))
    for n in range(5):
        write(b, f"/c/{n}")
    real = b.client.list_objects_v2

    def stingy(**kwargs: Any) -> Any:
        return real(**{**kwargs, "MaxKeys": 1})

    monkeypatch.setattr(b.client, "list_objects_v2", stingy)
    assert [p for p, _ in b.list_resources("s1", "/c/", allow, limit=3)] == ["/c/0", "/c/1", "/c/2"]
    b.close()


# -- over the API -----------------------------------------------------------------------------------


async def fill(api: Api, who: Ed25519Signer, sid: str, names: list[str], under: str = "c") -> None:
    for name in names:
        path = f"/space/{sid}/{under}/{name}"
        r = await api.http.put(BASE + path, data=name.encode(), headers=sign(who, "PUT", path))
        assert r.code == 204


async def get_json(api: Api, url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    r = await api.http.get(url, headers=headers)
    return r.code, json.loads(await body_of(r))


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + "?" + parts.query


@pytest_twisted.ensureDeferred
async def test_container_pages_via_next(any_api: Api, alice: Ed25519Signer) -> None:  # noqa: F811
    """limit=1 gives three pages, ascending, no duplicates; the last has no next; totalItems only whole."""
    api = any_api
    sid = await provision(api, alice)
    await fill(api, alice, sid, ["b", "c", "a"])
    await fill(api, alice, sid, ["elsewhere"], under="d")
    url = f"/space/{sid}/c/?limit=1"
    seen: list[str] = []
    pages = 0
    while url:
        code, doc = await get_json(api, BASE + url, sign(alice, "GET", url))
        assert code == 200, doc
        pages += 1
        assert doc["url"] == f"/space/{sid}/c/" and "totalItems" not in doc
        assert len(doc["items"]) == 1
        seen += [item["id"] for item in doc["items"]]
        nxt = doc.get("next")
        if nxt is None:
            break
        assert nxt.startswith(BASE + f"/space/{sid}/c/?")
        assert parse_qs(urlsplit(nxt).query)["limit"] == ["1"]
        url = path_of(nxt)
    assert pages == 3 and seen == ["a", "b", "c"]
    # No limit: one page, the whole list, counted.
    path = f"/space/{sid}/c/"
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert doc["totalItems"] == 3 and [i["id"] for i in doc["items"]] == ["a", "b", "c"] and "next" not in doc
    # An oversized limit is clamped, not refused.
    path = f"/space/{sid}/c/?limit=100000"
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert code == 200 and len(doc["items"]) == 3 and "next" not in doc


@pytest_twisted.ensureDeferred
async def test_default_page_size(any_api: Api, alice: Ed25519Signer) -> None:  # noqa: F811
    api = any_api
    sid = await provision(api, alice)
    for n in range(DEFAULT_LIMIT + 1):
        api.backend.write_resource(sid, f"/c/{n:04d}", io.BytesIO(b"x"), "text/plain", allow)
    path = f"/space/{sid}/c/"
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert len(doc["items"]) == DEFAULT_LIMIT and "totalItems" not in doc
    assert parse_qs(urlsplit(doc["next"]).query)["limit"] == [str(DEFAULT_LIMIT)]
    nxt = path_of(doc["next"])
    code, doc = await get_json(api, BASE + nxt, sign(alice, "GET", nxt))
    assert [i["id"] for i in doc["items"]] == [f"{DEFAULT_LIMIT:04d}"] and "next" not in doc


@pytest.mark.parametrize(
    ("query", "kind"),
    [("cursor=!!", "invalid-cursor"), ("limit=0", "invalid-parameter"), ("limit=x", "invalid-parameter")],
)
@pytest_twisted.ensureDeferred
async def test_bad_page_parameters_only_after_authorization(
    api: Api, alice: Ed25519Signer, mallory: Ed25519Signer, query: str, kind: str
) -> None:
    sid = await provision(api, alice)
    await fill(api, alice, sid, ["a"])
    path = f"/space/{sid}/c/?{query}"
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert (code, doc["type"]) == (400, SPEC + kind)
    for headers in (sign(mallory, "GET", path), {}):
        code, doc = await get_json(api, BASE + path, headers)
        assert (code, doc["type"]) == (404, SPEC + "not-found")
    # An absent space answers as ever.
    path = f"/space/{sid}x/c/?{query}"
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_cursor_naming_no_valid_path_is_refused(api: Api, alice: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    path = f"/space/{sid}/c/?cursor=" + encode_cursor("a/../b")
    code, doc = await get_json(api, BASE + path, sign(alice, "GET", path))
    assert (code, doc["type"]) == (400, SPEC + "invalid-cursor")


@pytest_twisted.ensureDeferred
async def test_spaces_pages(any_api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:  # noqa: F811
    api = any_api
    ids = sorted([await provision(api, alice) for _ in range(3)])
    await provision(api, mallory)
    url = "/spaces/?limit=1"
    seen: list[str] = []
    while True:
        code, doc = await get_json(api, BASE + url, sign(alice, "GET", url))
        assert code == 200 and doc["url"] == "/spaces/" and "totalItems" not in doc
        seen += [item["id"] for item in doc["items"]]
        if "next" not in doc:
            break
        assert doc["next"].startswith(BASE + "/spaces/?")
        url = path_of(doc["next"])
    assert seen == ids
    code, doc = await get_json(api, BASE + "/spaces/", sign(alice, "GET", "/spaces/"))
    assert doc["totalItems"] == 3 and "next" not in doc
    url = "/spaces/?cursor=!!"
    code, doc = await get_json(api, BASE + url, sign(alice, "GET", url))
    assert (code, doc["type"]) == (400, SPEC + "invalid-cursor")
    url = "/spaces/?cursor=" + encode_cursor("../etc")
    code, doc = await get_json(api, BASE + url, sign(alice, "GET", url))
    assert (code, doc["type"]) == (400, SPEC + "invalid-cursor")


@pytest_twisted.ensureDeferred
async def test_one_root_capability_opens_every_page(api: Api, alice: Ed25519Signer) -> None:
    """A root zCap for .../c/ is invoked on the page URLs, query and all; it is not needed per page."""
    sid = await provision(api, alice)
    await fill(api, alice, sid, ["a", "b"])
    target = BASE + f"/space/{sid}/c/"
    url = target + "?limit=1"
    seen: list[str] = []
    while True:
        headers = invoke(alice, "GET", url, capability=root_id(target), now=api.clock.seconds())
        code, doc = await get_json(api, url, headers)
        assert code == 200, doc
        seen += [item["id"] for item in doc["items"]]
        if "next" not in doc:
            break
        url = doc["next"]
    assert seen == ["a", "b"]


@pytest_twisted.ensureDeferred
async def test_one_delegated_capability_opens_every_page(shared: Api) -> None:  # noqa: F811
    """A capability delegated for /space/s1/things lists /space/s1/things/ page by page."""
    await setup_space(shared)
    case = "chain3_middle"
    url = ORIGIN + "/space/s1/things/?limit=1"
    seen: list[str] = []
    while True:
        headers = invoke(
            signer(holder(case)), "GET", url, capability=CASES[case]["capability"], now=shared.clock.seconds()
        )
        code, doc = await get_json(shared, url, headers)
        assert code == 200, doc
        seen += [item["id"] for item in doc["items"]]
        if "next" not in doc:
            break
        url = doc["next"]
    assert seen == ["item1", "item2"]
    # The same capability with a bad cursor: authorized, so told.
    url = ORIGIN + "/space/s1/things/?cursor=!!"
    headers = invoke(
        signer(holder(case)), "GET", url, capability=CASES[case]["capability"], now=shared.clock.seconds()
    )
    code, doc = await get_json(shared, url, headers)
    assert (code, doc["type"]) == (400, SPEC + "invalid-cursor")


def test_s3_space_pages_before_the_index_is_complete(mocked_aws: None) -> None:
    """A bucket the existing server wrote has no index yet: spaces are scanned, and still paged."""
    b = S3Backend("scan", "", threads=2)
    b.client.create_bucket(Bucket="scan")
    b.check()
    assert not b.indexed
    for sid in ("s2", "s1", "s3"):
        doc = json.dumps({"controller": ALICE})
        b.client.put_object(Bucket="scan", Key=f"spaces/{sid}/_meta.json", Body=doc)
    assert b.list_spaces(ALICE, limit=2) == ["s1", "s2"]
    assert b.list_spaces(ALICE, start_after="s2", limit=2) == ["s3"]
    b.close()
