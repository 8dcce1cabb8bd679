"""The filesystem backend reads and writes exactly the existing Python server's on-disk layout."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.unit.test_storage_contract import allow, put
from was_twisted.storage.base import KeyTooLong, SpaceRecord
from was_twisted.storage.filesystem import FilesystemBackend

CONTROLLER = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK"
SPACE_ID = "0b8a3c4e-6f0e-4a0a-9b9f-5c7d2f3e1a11"
URN = f"urn:uuid:{SPACE_ID}"


def old_server_tree(root: Path) -> Path:
    """Lay out one space with two resources the way the existing server does."""
    space_dir = root / "spaces" / SPACE_ID
    res = space_dir / "resources"
    res.mkdir(parents=True)
    (space_dir / "_meta.json").write_text(json.dumps({"id": URN, "controller": CONTROLLER}))
    for path, data, ct in [
        ("/notes/a.txt", b"hello", "text/plain"),
        ("/credentials/vc 1.json", b'{"@context":[]}', 'application/ld+json; profile="x"'),
    ]:
        (res / (quote(path, safe="") + ".data")).write_bytes(data)
        (res / (quote(path, safe="") + ".meta")).write_text(json.dumps({"content_type": ct}))
    return space_dir


def files_under(root: Path) -> list[str]:
    """Every file below root, relative and sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_reads_old_server_tree(tmp_path: Path) -> None:
    """A tree written by the existing server serves unchanged: record id, bytes and type."""
    old_server_tree(tmp_path)
    b = FilesystemBackend(tmp_path)
    rec = b.get_space(SPACE_ID)
    assert rec == SpaceRecord(SPACE_ID, URN, CONTROLLER)
    assert rec is not None and rec.extra == {}
    assert b.list_spaces(CONTROLLER) == [rec.space_id]
    _, res = b.read_resource(SPACE_ID, "/credentials/vc 1.json")
    assert res is not None
    with res.body as f:
        assert f.read() == b'{"@context":[]}'
    assert res.info.content_type == 'application/ld+json; profile="x"'
    listed = b.list_resources(SPACE_ID, "/", allow)
    assert [(p, i.content_type, i.size) for p, i in listed] == [
        ("/credentials/vc 1.json", 'application/ld+json; profile="x"', 15),
        ("/notes/a.txt", "text/plain", 5),
    ]


def test_rewriting_old_space_keeps_id_and_format(tmp_path: Path) -> None:
    """Replacing an old server's space keeps its urn:uuid id and the _meta.json members."""
    space_dir = old_server_tree(tmp_path)
    b = FilesystemBackend(tmp_path)
    rec = b.get_space(SPACE_ID)
    assert rec is not None
    assert put(b, rec) is False
    assert json.loads((space_dir / "_meta.json").read_text()) == {"id": URN, "controller": CONTROLLER}


def test_writes_exact_layout(tmp_path: Path) -> None:
    """What the backend writes is the existing server's layout, file for file."""
    b = FilesystemBackend(tmp_path)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER, name="Mine", extra={"x-keep": True}), allow)
    b.write_resource(SPACE_ID, "/notes/a.txt", io.BytesIO(b"hi"), "text/plain", allow)
    b.write_resource(SPACE_ID, "/é ü.txt", io.BytesIO(b"u"), "text/markdown", allow)
    base = f"spaces/{SPACE_ID}"
    assert files_under(tmp_path) == sorted(
        [
            f"{base}/_meta.json",
            f"{base}/resources/%2Fnotes%2Fa.txt.data",
            f"{base}/resources/%2Fnotes%2Fa.txt.meta",
            f"{base}/resources/{quote('/é ü.txt', safe='')}.data",
            f"{base}/resources/{quote('/é ü.txt', safe='')}.meta",
        ]
    )
    space_dir = tmp_path / base
    assert json.loads((space_dir / "_meta.json").read_text("utf-8")) == {
        "id": URN,
        "controller": CONTROLLER,
        "name": "Mine",
        "x-keep": True,
    }
    res = space_dir / "resources"
    assert (res / "%2Fnotes%2Fa.txt.data").read_bytes() == b"hi"
    assert json.loads((res / "%2Fnotes%2Fa.txt.meta").read_text()) == {"content_type": "text/plain"}


def test_delete_leaves_no_trace(tmp_path: Path) -> None:
    """Deleting resources and spaces removes their files and leaves no tombstone behind."""
    b = FilesystemBackend(tmp_path)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER), allow)
    b.write_resource(SPACE_ID, "/a", io.BytesIO(b"x"), "text/plain", allow)
    b.write_resource(SPACE_ID, "/b", io.BytesIO(b"y"), "text/plain", allow)
    b.delete_resource(SPACE_ID, "/a", allow)
    assert files_under(tmp_path) == [
        f"spaces/{SPACE_ID}/_meta.json",
        f"spaces/{SPACE_ID}/resources/%2Fb.data",
        f"spaces/{SPACE_ID}/resources/%2Fb.meta",
    ]
    b.delete_space(SPACE_ID, allow)
    assert os.listdir(tmp_path / "spaces") == []


def test_data_persists_across_instances(tmp_path: Path) -> None:
    """A new backend on the same root sees the spaces and resources an earlier one wrote."""
    first = FilesystemBackend(tmp_path)
    put(first, SpaceRecord(SPACE_ID, URN, CONTROLLER, created_by=CONTROLLER), allow)
    info = first.write_resource(SPACE_ID, "/p", io.BytesIO(b"persist"), "text/plain", allow)
    first.close()
    second = FilesystemBackend(tmp_path)
    rec = second.get_space(SPACE_ID)
    assert rec is not None and rec.created_by == CONTROLLER
    _, res = second.read_resource(SPACE_ID, "/p")
    assert res is not None
    with res.body as f:
        assert f.read() == b"persist"
    assert res.info == info


def test_no_temp_files_remain(tmp_path: Path) -> None:
    """After writes, overwrites and a refused write, no .tmp- file is left on disk."""

    class Refused(Exception):
        pass

    def refuse(current: SpaceRecord | None) -> None:
        raise Refused

    b = FilesystemBackend(tmp_path)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER), allow)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER, name="again"), allow)
    for i in range(3):
        b.write_resource(SPACE_ID, "/x", io.BytesIO(b"v%d" % i), f"text/v{i}", allow)
    with pytest.raises(Refused):
        b.write_resource(SPACE_ID, "/x", io.BytesIO(b"no"), "text/plain", refuse)
    assert not [p for p in files_under(tmp_path) if ".tmp-" in p]


def test_failed_body_read_leaves_old_resource_and_no_temp(tmp_path: Path) -> None:
    """A body that fails mid-read leaves the old resource intact and no temp file."""

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: object) -> int:
            raise OSError("client went away")

    b = FilesystemBackend(tmp_path)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER), allow)
    b.write_resource(SPACE_ID, "/x", io.BytesIO(b"old"), "text/plain", allow)
    with pytest.raises(OSError, match="client went away"):
        b.write_resource(SPACE_ID, "/x", io.BufferedReader(Broken()), "text/html", allow)
    _, res = b.read_resource(SPACE_ID, "/x")
    assert res is not None
    with res.body as f:
        assert f.read() == b"old"
    assert res.info.content_type == "text/plain"
    assert not [p for p in files_under(tmp_path) if ".tmp-" in p]


def test_temp_files_and_tombstones_are_ignored(tmp_path: Path) -> None:
    """Leftover .tmp- files, lone .meta files, tombstones and junk dirs never show as resources or spaces."""
    space_dir = old_server_tree(tmp_path)
    res = space_dir / "resources"
    (res / ".tmp-abc123").write_bytes(b"partial")
    (res / ".tmp-def.data").write_bytes(b"partial")
    (res / "%2Forphan.meta").write_text(json.dumps({"content_type": "text/plain"}))
    spaces = tmp_path / "spaces"
    (spaces / ".deleting-x-1").mkdir()
    (spaces / ".deleting-x-1" / "_meta.json").write_text(json.dumps({"id": "t", "controller": CONTROLLER}))
    (spaces / "no-meta").mkdir()
    (spaces / "bad-json").mkdir()
    (spaces / "bad-json" / "_meta.json").write_text("{not json")
    (spaces / "no-controller").mkdir()
    (spaces / "no-controller" / "_meta.json").write_text(json.dumps({"id": "x"}))
    (spaces / "stray-file").write_text("x")
    b = FilesystemBackend(tmp_path)
    listed = [p for p, _ in b.list_resources(SPACE_ID, "/", allow)]
    assert listed == ["/credentials/vc 1.json", "/notes/a.txt"]
    assert b.list_spaces(CONTROLLER) == [SPACE_ID]
    assert b.read_resource(SPACE_ID, "/orphan")[1] is None


def test_key_too_long(tmp_path: Path) -> None:
    """A path whose quoted file name is over 255 bytes raises KeyTooLong and writes nothing."""
    b = FilesystemBackend(tmp_path)
    put(b, SpaceRecord(SPACE_ID, URN, CONTROLLER), allow)
    fits = "/" + "a" * (255 - len("%2F") - len(".data"))
    b.write_resource(SPACE_ID, fits, io.BytesIO(b"ok"), "text/plain", allow)
    for too_long in ["/" + "a" * (256 - len("%2F") - len(".data")), "/" + "é" * 60]:
        with pytest.raises(KeyTooLong):
            b.write_resource(SPACE_ID, too_long, io.BytesIO(b"x"), "text/plain", allow)
        assert b.read_resource(SPACE_ID, too_long)[1] is None
        assert b.delete_resource(SPACE_ID, too_long, allow) is False
    assert [p for p, _ in b.list_resources(SPACE_ID, "/", allow)] == [fits]


def test_missing_meta_serves_octet_stream(tmp_path: Path) -> None:
    """A .data without its .meta is served as application/octet-stream."""
    space_dir = old_server_tree(tmp_path)
    os.unlink(space_dir / "resources" / "%2Fnotes%2Fa.txt.meta")
    b = FilesystemBackend(tmp_path)
    _, res = b.read_resource(SPACE_ID, "/notes/a.txt")
    assert res is not None
    res.body.close()
    assert res.info.content_type == "application/octet-stream"
    listed = dict(b.list_resources(SPACE_ID, "/notes/", allow))
    assert listed["/notes/a.txt"].content_type == "application/octet-stream"


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a\0b", ".hidden"])
def test_unsafe_space_ids_refused(tmp_path: Path, bad: str) -> None:
    """Space ids that could escape or hide in the spaces directory are refused outright."""
    b = FilesystemBackend(tmp_path)
    with pytest.raises(ValueError):
        put(b, SpaceRecord(bad, "x", CONTROLLER), allow)
    with pytest.raises(ValueError):
        b.get_space(bad)
    assert os.listdir(tmp_path / "spaces") == []
