"""End to end: the real ``twistd -n was`` process, the real Python client, and treq.

Each test runs on every backend a user has: the filesystem (in a temp dir),
and S3 over HTTP on moto's server and on Ceph's RADOS Gateway.  After a
restart every resource written before it is still there, byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest_twisted
import treq
from wallet_attached_storage_client import Ed25519Signer, StorageClient, create_authorization_header

from .processes import WasProcess, run_twistd

ALL_BYTES = bytes(range(256))


def test_python_client_round_trip_survives_restart(server: WasProcess) -> None:
    """Provision; write text, JSON, binary, unicode and escaped paths; POST; delete; restart; read back."""
    signer = Ed25519Signer()
    with StorageClient(server.url) as client:
        space = client.space(signer=signer)
        body = json.dumps({"id": space.id, "controller": signer.controller}).encode()
        r = space.put(body, "application/json")
        assert r.status_code == 201, r.text
        assert r.headers["location"] == server.url + space.path

        r = space.get()
        assert r.status_code == 200 and r.json()["controller"] == signer.controller
        assert r.json()["id"] == space.id

        writes = {
            "/hello.txt": (b"hello, wallet", "text/plain"),
            "/doc.json": (json.dumps({"a": [1, "é"]}).encode(), "application/json"),
            "/bin/all-bytes": (ALL_BYTES, "application/octet-stream"),
            "/ünï cødé/ø.txt": ("ünïcødé".encode(), "text/plain"),
            "/deep/a/b/c/d.txt": (b"deep", 'text/plain; charset="iso-8859-1"'),
        }
        for path, (data, ctype) in writes.items():
            r = space.resource(path).put(data, ctype)
            assert r.status_code == 204, (path, r.text)
        for path, (data, ctype) in writes.items():
            r = space.resource(path).get()
            assert r.status_code == 200, path
            assert r.content == data
            assert r.headers["content-type"] == ctype
            assert r.headers["content-length"] == str(len(data))
            head = client._client.head(
                space.path + quote(path),
                headers={
                    "authorization": create_authorization_header(
                        signer=signer, method="HEAD", url=space.path + path
                    )
                },
            )
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(data))

        # httpx sends an existing escape as is: /x%41 is decoded once, to /xA.
        r = space.resource("/x%41").put(b"A via escape", "text/plain")
        assert r.status_code == 204
        assert space.resource("/xA").get().content == b"A via escape"

        r = space.resource("/created.txt").post(b"posted", "text/plain")
        assert r.status_code == 201
        assert space.resource("/created.txt").get().content == b"posted"

        r = space.resource("/hello.txt").delete()
        assert r.status_code == 204
        assert space.resource("/hello.txt").get().status_code == 404
        assert space.resource("/hello.txt").delete().status_code == 204

        other = Ed25519Signer()
        assert space.resource("/doc.json").get(signer=other).status_code == 404
        assert space.resource("/doc.json").put(b"x", signer=other).status_code == 404

    server.stop()
    server.start()
    with StorageClient(server.url) as client:
        space = client.space(space.id, signer=signer)
        for path, (data, ctype) in writes.items():
            if path == "/hello.txt":
                assert space.resource(path).get().status_code == 404
                continue
            r = space.resource(path).get()
            assert (r.status_code, r.content, r.headers["content-type"]) == (200, data, ctype), path
        assert space.resource("/created.txt").get().content == b"posted"
        r = space.delete()
        assert r.status_code == 204
        assert space.get().status_code == 404


def _signed(signer: Ed25519Signer, method: str, target: str) -> dict[str, list[str]]:
    return {"authorization": [create_authorization_header(signer=signer, method=method, url=target)]}


@pytest_twisted.ensureDeferred
async def test_treq_with_js_style_encoded_signatures(server: WasProcess) -> None:
    """treq, signing the percent-encoded path with its query as the JS client does; big bodies stream."""
    signer = Ed25519Signer()
    sid = "0f1e2d3c-4b5a-4697-8899-aabbccddeeff"
    path = f"/space/{sid}"
    body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller}).encode()
    r = await treq.put(server.url + path, data=body, headers=_signed(signer, "PUT", path))
    assert r.code == 201
    await r.content()

    encoded = path + "/" + quote("café & crème.txt") + "?v=1"
    headers = _signed(signer, "PUT", encoded)
    headers["content-type"] = ["text/markdown; variant=CommonMark"]
    r = await treq.put(server.url + encoded, data="# café".encode(), headers=headers)
    assert r.code == 204, await r.text()

    r = await treq.get(server.url + encoded, headers=_signed(signer, "GET", encoded))
    assert r.code == 200
    assert await r.content() == "# café".encode()
    assert r.headers.getRawHeaders("content-type") == ["text/markdown; variant=CommonMark"]

    big = bytes(range(256)) * 4096 * 3  # 3 MiB: streamed in chunks, not read whole
    big_path = path + "/big.bin"
    r = await treq.put(server.url + big_path, data=big, headers=_signed(signer, "PUT", big_path))
    assert r.code == 204
    r = await treq.get(server.url + big_path, headers=_signed(signer, "GET", big_path))
    assert r.code == 200 and r.length == len(big)
    assert await r.content() == big
    r = await treq.head(server.url + big_path, headers=_signed(signer, "HEAD", big_path))
    assert r.code == 200
    assert await r.content() == b""

    listing_path = path + "/"
    r = await treq.get(server.url + listing_path, headers=_signed(signer, "GET", listing_path))
    listing = json.loads(await r.content())
    assert sorted(item["id"] for item in listing["items"]) == ["big.bin", "café & crème.txt"]


def test_legacy_profile_as_existing_clients_expect(tmp_path: Path) -> None:
    """WAS_PROFILE=legacy: create answers 204, unsigned reads are public, unsigned writes 401."""
    with WasProcess(
        {"WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"), "WAS_PROFILE": "legacy"}, tmp_path / "log"
    ) as server:
        signer = Ed25519Signer()
        with StorageClient(server.url) as client:
            space = client.space(signer=signer)
            r = space.put(json.dumps({"id": space.id, "controller": signer.controller}).encode())
            assert r.status_code == 204
            assert space.resource("/pub.txt").put(b"public", "text/plain").status_code == 204
            anon = client.space(space.id)
            assert anon.resource("/pub.txt").get().content == b"public"
            assert anon.resource("/pub.txt").put(b"x").status_code == 401
            assert space.resource("/pub.txt").put(b"x", signer=Ed25519Signer()).status_code == 403


def test_bad_settings_stop_startup_with_one_sentence(tmp_path: Path) -> None:
    """An unknown backend or bad value exits non-zero with one sentence naming the variable."""
    for env, name in (
        ({"WAS_STORAGE_BACKEND": "floppy"}, "WAS_STORAGE_BACKEND"),
        ({"WAS_PROFILE": "strict"}, "WAS_PROFILE"),
        ({"WAS_MAX_SIGNATURE_LIFETIME": "soon"}, "WAS_MAX_SIGNATURE_LIFETIME"),
        ({"WAS_STORAGE_ROOT_DIR": str(tmp_path / "file" / "sub")}, "WAS_STORAGE_ROOT_DIR"),
        ({"WAS_PUBLIC_URL": "https://storage.example.com/was/"}, "WAS_PUBLIC_URL"),
        ({"WAS_PUBLIC_URL": "storage.example.com"}, "WAS_PUBLIC_URL"),
        ({"WAS_REQUIRE_DIGEST": "maybe"}, "WAS_REQUIRE_DIGEST"),
    ):
        (tmp_path / "file").write_text("not a directory")
        result = run_twistd(env)
        assert result.returncode != 0
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and name in lines[0], result.stderr


def test_uploads_over_the_limit_are_413_and_not_kept(tmp_path: Path) -> None:
    """Past WAS_MAX_UPLOAD_BYTES a write is 413 payload-too-large, declared or chunked; nothing is stored."""
    env = {"WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"), "WAS_MAX_UPLOAD_BYTES": "1000"}
    with WasProcess(env, tmp_path / "log") as server:
        signer = Ed25519Signer()
        with StorageClient(server.url) as client:
            space = client.space(signer=signer)
            assert (
                space.put(json.dumps({"id": space.id, "controller": signer.controller}).encode()).status_code
                == 201
            )
            big = space.resource("/big")
            r = big.put(b"x" * 1001)
            assert r.status_code == 413
            assert r.json()["type"] == "https://wallet.storage/spec#payload-too-large"
            assert big.put(b"x" * 1000).status_code == 204  # the same connection goes on

            def chunks() -> Iterator[bytes]:
                for _ in range(5):
                    yield b"y" * 300

            path = space.path + "/chunked"
            headers = {"authorization": create_authorization_header(signer=signer, method="PUT", url=path)}
            r = client._client.put(path, content=chunks(), headers=headers)
            assert r.status_code == 413
            assert space.resource("/chunked").get().status_code == 404
            assert big.get().content == b"x" * 1000
        assert not list((tmp_path / "data").rglob("*chunked*"))


def test_startup_says_where_capability_targets_come_from(tmp_path: Path) -> None:
    """Without WAS_PUBLIC_URL one line says targets use the request's Host; with it, no such line."""
    data = {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")}
    with WasProcess(data, tmp_path / "plain.log"):
        pass
    assert "WAS_PUBLIC_URL is not set" in (tmp_path / "plain.log").read_text()
    with WasProcess({**data, "WAS_PUBLIC_URL": "https://storage.example.com"}, tmp_path / "public.log"):
        pass
    assert "WAS_PUBLIC_URL is not set" not in (tmp_path / "public.log").read_text()
