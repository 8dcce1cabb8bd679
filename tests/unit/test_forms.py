"""multipart/form-data writes (RES-4): exactly one file part is the resource, under its own type."""

from __future__ import annotations

import io
import os

import pytest
import pytest_twisted
from urllib3 import encode_multipart_formdata
from wallet_attached_storage_client import Ed25519Signer

from tests.conftest import BASE, Api, sign
from tests.unit.test_metadata import any_api, call  # noqa: F401
from tests.unit.test_routes import body_of, provision
from was_twisted.errors import InvalidRequestBody
from was_twisted.operations.forms import CHUNK, file_part, is_form_data

SPEC = "https://wallet.storage/spec#"


def form(fields: dict[str, object]) -> tuple[bytes, str]:
    body, content_type = encode_multipart_formdata(fields)  # type: ignore[arg-type]
    return body, content_type


def browser_form(boundary: str, data: bytes, part_type: str) -> bytes:
    """What Chromium's FormData sends for a text field and one file."""
    return (
        (
            f"------{boundary}\r\n"
            'Content-Disposition: form-data; name="title"\r\n\r\n'
            "My note\r\n"
            f"------{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="note.txt"\r\n'
            f"Content-Type: {part_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n------{boundary}--\r\n".encode()
    )


def test_is_form_data() -> None:
    assert is_form_data("multipart/form-data; boundary=x")
    assert is_form_data("Multipart/Form-Data;boundary=x")
    assert not is_form_data("multipart/mixed; boundary=x")
    assert not is_form_data("application/json")
    assert not is_form_data(None)


class CountingBody(io.BytesIO):
    """A form body that counts how much of it was read."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.taken = 0

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data


def read_form(body: bytes, ct: str) -> tuple[bytes, str]:
    part, part_type = file_part(io.BytesIO(body), ct)
    with part:
        return part.read(), part_type


def test_file_part_streams_and_keeps_the_type() -> None:
    """The part is parsed out as it is read: the form is never read far ahead of the reader."""
    data = os.urandom(4 * 1024 * 1024 + 7)
    raw, ct = form({"a": "field", "upload": ("big.bin", data, "application/x-thing; v=2"), "z": "after"})
    body = CountingBody(raw)
    part, part_type = file_part(body, ct)
    assert part_type == "application/x-thing; v=2"
    assert body.taken <= 2 * CHUNK
    with part:
        first = part.read(1024 * 1024)
        assert body.taken <= 1024 * 1024 + 3 * CHUNK
        assert first + part.read() == data
    assert body.taken == len(raw)


@pytest.mark.parametrize(
    "fields",
    [
        {"just": "a field"},
        {"one": ("a.txt", b"a", "text/plain"), "two": ("b.txt", b"b", "text/plain")},
        {"one": ("a.bin", os.urandom(CHUNK * 5), "x/y"), "f": "x", "two": ("b.txt", b"b", "text/plain")},
    ],
    ids=["no-file", "two-files", "second-file-after-a-large-first"],
)
def test_zero_or_several_file_parts_are_refused(fields: dict[str, object]) -> None:
    body, ct = form(fields)
    with pytest.raises(InvalidRequestBody):
        read_form(body, ct)


@pytest.mark.parametrize(
    ("body", "ct"),
    [
        (
            b"--x\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nabc",
            "multipart/form-data; boundary=x",
        ),
        (b"no parts at all", "multipart/form-data; boundary=x"),
        (b"--x--\r\n", "multipart/form-data"),
        (
            b"--x\r\n" + b"X-Long: " + b"a" * 10000 + b"\r\n\r\n\r\n--x--\r\n",
            "multipart/form-data; boundary=x",
        ),
        (
            b"--x\r\nContent-Disposition: form-data; name=f; filename=a\r\n\r\nabc\r\n--x\r\nBad header\r\n",
            "multipart/form-data; boundary=x",
        ),
    ],
)
def test_malformed_forms_are_refused(body: bytes, ct: str) -> None:
    with pytest.raises(InvalidRequestBody):
        read_form(body, ct)


@pytest_twisted.ensureDeferred
async def test_form_upload_stores_the_file_part(any_api: Api, alice: Ed25519Signer) -> None:  # noqa: F811
    api = any_api
    sid = await provision(api, alice)
    data = bytes(range(256)) * 5000  # 1.2 MiB: many parser chunks
    body, ct = form({"caption": "a photo", "file": ("photo.png", data, "image/png")})
    path = f"/space/{sid}/photos/p1"
    code, _ = await call(api, alice, "PUT", path, data=body, headers={"content-type": ct})
    assert code == 204
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.headers.getRawHeaders("content-type") == ["image/png"]
    assert await body_of(r) == data
    code, doc = await call(api, alice, "GET", path + "/meta")
    assert (doc["contentType"], doc["size"]) == ("image/png", len(data))
    # POST to a container: a new resource, the same way.
    coll = f"/space/{sid}/notes/"
    boundary = "WebKitFormBoundary7MA4YWxkTrZu0gW"
    raw = browser_form(boundary, "héllo".encode(), "text/plain; charset=utf-8")
    r = await api.http.post(
        BASE + coll,
        data=raw,
        headers={
            "content-type": f"multipart/form-data; boundary=----{boundary}",
            **sign(alice, "POST", coll),
        },
    )
    assert r.code == 201
    new = r.headers.getRawHeaders("location")[0][len(BASE) :]
    r = await api.http.get(BASE + new, headers=sign(alice, "GET", new))
    assert r.headers.getRawHeaders("content-type") == ["text/plain; charset=utf-8"]
    assert await body_of(r) == "héllo".encode()


@pytest_twisted.ensureDeferred
async def test_bad_forms_store_nothing(api: Api, alice: Ed25519Signer, mallory: Ed25519Signer) -> None:
    sid = await provision(api, alice)
    path = f"/space/{sid}/f"
    body, ct = form({"one": ("a.txt", b"a", "text/plain"), "two": ("b.txt", b"b", "text/plain")})
    code, doc = await call(api, alice, "PUT", path, data=body, headers={"content-type": ct})
    assert (code, doc["type"]) == (400, SPEC + "invalid-request-body")
    assert api.backend.read_resource(sid, "/f")[1] is None
    # Someone unauthorized learns nothing from the form's shape: the same 404 as ever.
    code, doc = await call(api, mallory, "PUT", path, data=body, headers={"content-type": ct})
    assert (code, doc["type"]) == (404, SPEC + "not-found")
    code, doc = await call(
        api, alice, "PUT", path, data=b"--", headers={"content-type": "multipart/form-data"}
    )
    assert (code, doc["type"]) == (400, SPEC + "invalid-request-body")


@pytest_twisted.ensureDeferred
async def test_a_form_refused_after_its_file_part_keeps_the_old_bytes(
    any_api: Api,  # noqa: F811
    alice: Ed25519Signer,
) -> None:
    """The second file part shows only after the first went to storage: the write is undone."""
    api = any_api
    sid = await provision(api, alice)
    path = f"/space/{sid}/doc"
    code, _ = await call(api, alice, "PUT", path, data=b"old", headers={"content-type": "text/plain"})
    assert code == 204
    big = os.urandom(3 * 1024 * 1024)
    body, ct = form({"one": ("a.bin", big, "x/y"), "two": ("b.txt", b"b", "text/plain")})
    code, doc = await call(api, alice, "PUT", path, data=body, headers={"content-type": ct})
    assert (code, doc["type"]) == (400, SPEC + "invalid-request-body")
    r = await api.http.get(BASE + path, headers=sign(alice, "GET", path))
    assert r.headers.getRawHeaders("content-type") == ["text/plain"]
    assert await body_of(r) == b"old"
    new = f"/space/{sid}/new"
    code, doc = await call(api, alice, "PUT", new, data=body, headers={"content-type": ct})
    assert code == 400
    code, _ = await call(api, alice, "GET", new)
    assert code == 404
