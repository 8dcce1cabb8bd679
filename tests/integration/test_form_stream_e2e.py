"""Large ``multipart/form-data`` uploads through the real ``twistd -n was``: the file part streams.

The form's one file part goes to storage as the form arrives, like any large
body: nothing is written to ``TMPDIR`` (each server has an empty one of its
own), and a form refused after its file part went up (a second file part)
keeps nothing: no resource, no temporary file, no multipart upload on S3.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from urllib3 import encode_multipart_formdata

from was_twisted.auth.digest import multihash_digest_header

from .test_streaming_e2e import BIG, Server, server  # noqa: F401  (the fixture, on every backend)


def _form(fields: dict[str, object]) -> tuple[bytes, str]:
    body, content_type = encode_multipart_formdata(fields)  # type: ignore[arg-type]
    return body, content_type


@contextmanager
def _files_opened(pid: int, under: str) -> Iterator[set[str]]:
    """What the process has open under ``under`` (deleted or unnamed files too), sampled every 5 ms."""
    seen: set[str] = set()
    done = threading.Event()

    def sample() -> None:
        fds = f"/proc/{pid}/fd"
        while not done.wait(0.005):
            for fd in os.listdir(fds):
                try:
                    target = os.readlink(os.path.join(fds, fd))
                except OSError:
                    continue
                if target.startswith(under):
                    seen.add(target)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def test_large_form_upload_streams_its_file_part(server: Server) -> None:  # noqa: F811
    path = f"/space/{server.sid}/videos/clip"
    body, ct = _form({"title": "a clip", "file": ("clip.mp4", BIG, "video/mp4"), "after": "x"})
    headers = {"content-type": ct, **server.signed("PUT", path)}
    assert server.was.proc is not None
    with _files_opened(server.was.proc.pid, str(server.tmpdir)) as opened:
        r = httpx.put(server.url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 204, r.text
    assert not opened, opened
    got = server.get(path)
    assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
    assert got.content == BIG
    assert server.uploads() == [] and list(server.tmpdir.iterdir()) == []


def test_second_file_part_after_a_large_first_keeps_nothing(server: Server) -> None:  # noqa: F811
    path = f"/space/{server.sid}/videos/two"
    body, ct = _form({"one": ("a.mp4", BIG, "video/mp4"), "two": ("b.txt", b"b", "text/plain")})
    headers = {"content-type": ct, **server.signed("PUT", path)}
    r = httpx.put(server.url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("#invalid-request-body")
    server.assert_nothing_left(path)


def test_large_form_with_a_wrong_digest_keeps_nothing(server: Server) -> None:  # noqa: F811
    """The Digest covers the whole form as sent, epilogue included, checked at the body's end."""
    path = f"/space/{server.sid}/videos/bad"
    body, ct = _form({"file": ("clip.mp4", BIG, "video/mp4")})
    body += b"an epilogue, which a form may carry and the parser ignores"
    headers = {
        "content-type": ct,
        "digest": multihash_digest_header(body + b"x"),
        **server.signed("PUT", path),
    }
    r = httpx.put(server.url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 400 and "Digest" in r.json()["detail"], r.text
    server.assert_nothing_left(path)
    headers["digest"] = multihash_digest_header(body)
    r = httpx.put(server.url + path, content=body, headers=headers, timeout=60)
    assert r.status_code == 204, r.text
    assert server.get(path).content == BIG
