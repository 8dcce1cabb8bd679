"""End to end: pagination, resource metadata and form uploads through the real ``twistd -n was``.

On every backend a user has (filesystem; S3 over HTTP on moto and Ceph's RADOS Gateway).
"""

from __future__ import annotations

import json
import uuid
from urllib.parse import urlsplit

import httpx
from urllib3 import encode_multipart_formdata
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .processes import WasProcess


def signed(signer: Ed25519Signer, method: str, target: str, **headers: str) -> dict[str, str]:
    return {"authorization": create_authorization_header(signer=signer, method=method, url=target), **headers}


def test_pages_metadata_and_forms(server: WasProcess) -> None:
    signer = Ed25519Signer()
    sid = str(uuid.uuid4())
    space = f"/space/{sid}"
    with httpx.Client(base_url=server.url, timeout=30) as http:
        body = json.dumps({"id": f"urn:uuid:{sid}", "controller": signer.controller}).encode()
        assert http.put(space, content=body, headers=signed(signer, "PUT", space)).status_code == 201
        names = ["e", "a", "d", "b", "c"]
        for name in names:
            path = f"{space}/c/{name}"
            r = http.put(
                path,
                content=name.encode(),
                headers=signed(signer, "PUT", path, **{"content-type": "text/plain"}),
            )
            assert r.status_code == 204, r.text

        # Pages of two, followed by next; the last has none.
        target = f"{space}/c/?limit=2"
        seen: list[str] = []
        pages = 0
        while True:
            r = http.get(target, headers=signed(signer, "GET", target))
            assert r.status_code == 200, r.text
            doc = r.json()
            pages += 1
            seen += [item["id"] for item in doc["items"]]
            if "next" not in doc:
                break
            assert doc["next"].startswith(server.url + f"{space}/c/?")
            parts = urlsplit(doc["next"])
            target = parts.path + "?" + parts.query
        assert pages == 3 and seen == sorted(names)
        bad = f"{space}/c/?cursor=nope!"
        assert http.get(bad, headers=signed(signer, "GET", bad)).json()["type"].endswith("#invalid-cursor")
        assert http.get(bad, headers=signed(Ed25519Signer(), "GET", bad)).status_code == 404

        # Metadata: server fields, custom replaced by PUT, createdBy kept across an overwrite.
        meta = f"{space}/c/a/meta"
        doc = http.get(meta, headers=signed(signer, "GET", meta)).json()
        assert (doc["contentType"], doc["size"], doc["createdBy"]) == ("text/plain", 1, signer.controller)
        custom = {"custom": {"name": "A", "tags": {"k": "v"}}}
        r = http.put(meta, content=json.dumps(custom).encode(), headers=signed(signer, "PUT", meta))
        assert r.status_code == 204, r.text
        path = f"{space}/c/a"
        r = http.put(
            path,
            content=b"[1,2]",
            headers=signed(signer, "PUT", path, **{"content-type": "application/json"}),
        )
        assert r.status_code == 204
        doc = http.get(meta, headers=signed(signer, "GET", meta)).json()
        assert (doc["contentType"], doc["size"]) == ("application/json", 5)
        assert doc["custom"] == custom["custom"] and doc["createdBy"] == signer.controller
        assert http.delete(meta, headers=signed(signer, "DELETE", meta)).status_code == 405

        # A form with one file part stores that part under its own type.
        data = bytes(range(256)) * 8
        form, form_type = encode_multipart_formdata({"title": "x", "file": ("f.bin", data, "image/x-test")})
        path = f"{space}/c/upload"
        r = http.put(path, content=form, headers=signed(signer, "PUT", path, **{"content-type": form_type}))
        assert r.status_code == 204, r.text
        r = http.get(path, headers=signed(signer, "GET", path))
        assert r.content == data and r.headers["content-type"] == "image/x-test"
        two, two_type = encode_multipart_formdata(
            {"a": ("a", b"1", "text/plain"), "b": ("b", b"2", "text/plain")}
        )
        r = http.put(path, content=two, headers=signed(signer, "PUT", path, **{"content-type": two_type}))
        assert r.status_code == 400 and r.json()["type"].endswith("#invalid-request-body")
        assert http.get(path, headers=signed(signer, "GET", path)).content == data
