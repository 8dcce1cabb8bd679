"""Data the existing server wrote (nested resources, no collection records) under the collection rules.

A data directory and a bucket laid out by hand exactly as the existing
Python server writes them still serve, list and delete through the HTTP
API; ``python -m was_twisted.admin adopt-collections`` turns their
top-level containers into collections so that strict mode can be switched on.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest
import pytest_twisted
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import Api
from tests.unit.test_collections_routes import call
from was_twisted import admin
from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.base import Backend
from was_twisted.storage.filesystem import FilesystemBackend
from was_twisted.storage.s3 import S3Backend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

SID = "0b8a3c4e-6f0e-4a0a-9b9f-5c7d2f3e1a11"
BUCKET = "old-server"
OLD = {
    "/greeting.txt": (b"hello", "text/plain"),
    "/notes/a.txt": (b"a", "text/plain"),
    "/notes/deep/b.txt": (b"b", "text/markdown"),
    "/credentials/vc 1.json": (b"{}", "application/ld+json"),
    "/a b/odd.txt": (b"odd", "text/plain"),
    "/collections/x": (b"legacy", "text/plain"),
}


def lay_out_filesystem(root: Path, controller: str) -> None:
    """The existing server's tree: _meta.json and resources/{quote(path)}.data/.meta, nothing else."""
    space_dir = root / "spaces" / SID
    res = space_dir / "resources"
    res.mkdir(parents=True)
    (space_dir / "_meta.json").write_text(json.dumps({"id": f"urn:uuid:{SID}", "controller": controller}))
    for path, (data, ct) in OLD.items():
        (res / (quote(path, safe="") + ".data")).write_bytes(data)
        (res / (quote(path, safe="") + ".meta")).write_text(json.dumps({"content_type": ct}))


def lay_out_bucket(controller: str) -> Any:
    """The seed's keys, written with a raw client, no index and no records."""
    raw = boto3.client("s3", region_name="us-east-1")
    raw.create_bucket(Bucket=BUCKET)
    raw.put_object(
        Bucket=BUCKET,
        Key=f"spaces/{SID}/_meta.json",
        Body=json.dumps({"id": f"urn:uuid:{SID}", "controller": controller}).encode(),
    )
    for path, (data, ct) in OLD.items():
        raw.put_object(
            Bucket=BUCKET, Key=f"spaces/{SID}/resources/{quote(path, safe='')}", Body=data, ContentType=ct
        )
    return raw


@pytest.fixture(params=["filesystem", "s3"])
def old_data(
    request: pytest.FixtureRequest, tmp_path: Path, alice: Ed25519Signer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, Backend]]:
    """(the backend's name, a backend over data the existing server wrote); the env names it for admin."""
    if request.param == "s3":
        request.getfixturevalue("mocked_aws")
        lay_out_bucket(alice.controller)
        monkeypatch.setenv("WAS_STORAGE_BACKEND", "s3")
        monkeypatch.setenv("WAS_STORAGE_BUCKET", BUCKET)
        monkeypatch.delenv("WAS_STORAGE_PREFIX", raising=False)
        b: Backend = S3Backend(BUCKET, "", threads=4)
    else:
        lay_out_filesystem(tmp_path, alice.controller)
        monkeypatch.setenv("WAS_STORAGE_BACKEND", "filesystem")
        monkeypatch.setenv("WAS_STORAGE_ROOT_DIR", str(tmp_path))
        b = FilesystemBackend(tmp_path)
    yield request.param, b
    b.close()


def api_over(backend: Backend, name: str, **settings: Any) -> Api:
    clock = Clock()
    clock.advance(time.time())
    ops = Operations(AsyncStorage(backend, run_inline), Settings(backend=name, **settings), clock)
    return Api(StubTreq(WASApp(ops, name).resource()), ops, clock, backend)  # type: ignore[arg-type]


@pytest_twisted.ensureDeferred
async def test_old_data_serves_lists_and_deletes(old_data: tuple[str, Backend], alice: Ed25519Signer) -> None:
    """No collection records: every read, listing, write and delete the clients make works as before."""
    name, backend = old_data
    api = api_over(backend, name)
    base = f"/space/{SID}"
    code, headers, raw = await call(api, alice, "GET", f"{base}/notes/deep/b.txt")
    assert code == 200 and raw == b"b" and headers.getRawHeaders("content-type") == ["text/markdown"]
    code, _, raw = await call(api, alice, "GET", f"{base}/greeting.txt")
    assert code == 200 and raw == b"hello"
    code, _, doc = await call(api, alice, "GET", f"{base}/notes/")
    assert code == 200 and [i["id"] for i in doc["items"]] == ["a.txt", "deep/b.txt"] and "id" not in doc
    code, _, doc = await call(api, alice, "GET", f"{base}/collections/")
    assert code == 200 and doc["items"] == []
    # Not a collection: GET is 404 and DELETE is a resource delete that leaves /notes/... alone.
    code, _, _ = await call(api, alice, "GET", f"{base}/notes")
    assert code == 404
    code, _, _ = await call(api, alice, "DELETE", f"{base}/notes")
    assert code == 204
    code, _, raw = await call(api, alice, "GET", f"{base}/notes/a.txt")
    assert code == 200 and raw == b"a"
    code, _, _ = await call(api, alice, "PUT", f"{base}/notes/new.txt", b"n", {"content-type": "text/plain"})
    assert code == 204
    code, _, _ = await call(api, alice, "DELETE", f"{base}/notes/a.txt")
    assert code == 204
    code, _, doc = await call(api, alice, "GET", f"{base}/notes/")
    assert [i["id"] for i in doc["items"]] == ["deep/b.txt", "new.txt"]
    # Adopting the container as a collection, then deleting it, removes exactly its resources.
    code, _, _ = await call(api, alice, "PUT", f"{base}/notes", {"type": ["Collection"], "name": "Notes"})
    assert code == 201
    code, _, doc = await call(api, alice, "GET", f"{base}/notes/")
    assert doc["name"] == "Notes" and len(doc["items"]) == 2
    code, _, _ = await call(api, alice, "DELETE", f"{base}/notes")
    assert code == 204
    remaining = sorted(p for p, _ in backend.list_resources(SID, "/", lambda s: None))
    assert remaining == ["/a b/odd.txt", "/collections/x", "/credentials/vc 1.json", "/greeting.txt"]
    # The whole space still deletes, records and all.
    code, _, _ = await call(api, alice, "DELETE", base)
    assert code == 204 and backend.get_space(SID) is None


@pytest_twisted.ensureDeferred
async def test_adopt_then_strict(
    old_data: tuple[str, Backend], alice: Ed25519Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Strict mode refuses writes into the old containers until adopt-collections creates their records."""
    name, backend = old_data
    api = api_over(backend, name, strict_collections=True)
    base = f"/space/{SID}"
    text = {"content-type": "text/plain"}
    code, _, _ = await call(api, alice, "PUT", f"{base}/notes/c.txt", b"c", text)
    assert code == 404
    code, _, raw = await call(api, alice, "GET", f"{base}/notes/a.txt")
    assert code == 200 and raw == b"a"  # reads are never refused

    assert admin.main(["adopt-collections", "--all"]) == 0
    out = capsys.readouterr().out
    assert f"space {SID}: 2 collections created (credentials, notes), 0 already there" in out
    assert "skipped 'a b'" in out and "skipped 'collections'" in out

    code, _, _ = await call(api, alice, "PUT", f"{base}/notes/c.txt", b"c", text)
    assert code == 204
    code, _, doc = await call(api, alice, "GET", f"{base}/collections/")
    assert [i["id"] for i in doc["items"]] == ["credentials", "notes"]
    code, _, doc = await call(api, alice, "GET", f"{base}/credentials")
    assert code == 200 and doc["backend"] == {"id": "default"}
    # Nothing in resources/ changed but the one write.
    paths = sorted(p for p, _ in backend.list_resources(SID, "/", lambda s: None))
    assert paths == sorted([*OLD, "/notes/c.txt"])
    # A second run creates nothing.
    assert admin.main(["adopt-collections", SID]) == 0
    assert "0 collections created, 2 already there" in capsys.readouterr().out


def test_admin_refuses_what_it_cannot_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WAS_STORAGE_BACKEND", "memory")
    assert admin.main(["adopt-collections", "--all"]) == 2
    monkeypatch.setenv("WAS_STORAGE_BACKEND", "filesystem")
    monkeypatch.setenv("WAS_STORAGE_ROOT_DIR", str(tmp_path))
    assert admin.main(["adopt-collections"]) == 2
    assert "space ids, or --all" in capsys.readouterr().err
    assert admin.main(["adopt-collections", "absent-space"]) == 0
    assert "absent-space: no such space" in capsys.readouterr().err
    assert admin.main(["reindex"]) == 2
