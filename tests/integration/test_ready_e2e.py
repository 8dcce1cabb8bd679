"""``/ready`` and trusted proxies on the real ``twistd -n was``: filesystem, S3 on a moto server we stop."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from .processes import WasProcess
from .s3servers import start_moto

pytestmark = pytest.mark.integration

VIA_PROXY = {
    "x-forwarded-for": "198.51.100.9, 203.0.113.7",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "storage.example.com",
}


def filesystem_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data"), **extra}


def create_space(url: str, extra: dict[str, str]) -> tuple[str, str]:
    """PUT a new space with ``extra`` headers; its path and the Location answered."""
    signer = Ed25519Signer()
    path = f"/space/{uuid.uuid4()}"
    body = json.dumps({"controller": signer.controller})
    auth = create_authorization_header(signer=signer, method="PUT", url=path)
    r = httpx.put(url + path, content=body, headers={"authorization": auth, **extra})
    assert r.status_code == 201, r.text
    return path, r.headers["location"]


def wait_for_log(was: WasProcess, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = was.log_path.read_text(errors="replace")
        if needle in text or time.monotonic() > deadline:
            return text
        time.sleep(0.05)


def test_ready_on_filesystem(tmp_path: Path) -> None:
    with WasProcess(filesystem_env(tmp_path), tmp_path / "twistd.log") as was:
        r = httpx.get(was.url + "/ready")
        assert r.status_code == 200 and r.json() == {"status": "ready"}
        assert r.headers["cache-control"] == "no-store"
        r = httpx.head(was.url + "/ready")
        assert r.status_code == 200 and r.content == b""
        assert httpx.get(was.url + "/health").json() == {"status": "ok"}


def test_trusted_proxy_sets_the_origin_and_the_logged_client(tmp_path: Path) -> None:
    env = filesystem_env(tmp_path, WAS_TRUSTED_PROXIES="127.0.0.1")
    with WasProcess(env, tmp_path / "trusted.log") as was:
        path, location = create_space(was.url, VIA_PROXY)
        assert location == "https://storage.example.com" + path
        log = wait_for_log(was, f'"PUT {path} HTTP/1.1" 201')
        line = next(line for line in log.splitlines() if f'"PUT {path} ' in line)
        assert '"203.0.113.7" - -' in line, line
        assert "forwarded headers count from 127.0.0.1/32" in log


def test_forwarded_headers_are_ignored_without_trusted_proxies(tmp_path: Path) -> None:
    with WasProcess(filesystem_env(tmp_path), tmp_path / "untrusted.log") as was:
        path, location = create_space(was.url, VIA_PROXY)
        assert location == was.url + path
        log = wait_for_log(was, f'"PUT {path} HTTP/1.1" 201')
        line = next(line for line in log.splitlines() if f'"PUT {path} ' in line)
        assert '"127.0.0.1" - -' in line and "203.0.113.7" not in line, line


def test_ready_turns_503_when_s3_goes_away(tmp_path: Path) -> None:
    """Ready on S3; once the S3 server is stopped, /ready answers 503 within seconds and /health stays 200."""
    s3 = start_moto(tmp_path / "moto")
    env = {
        **s3.env(),
        "WAS_STORAGE_BACKEND": "s3",
        "WAS_STORAGE_BUCKET": s3.create_bucket(),
        "WAS_STORAGE_PREFIX": "ready/",
    }
    try:
        with WasProcess(env, tmp_path / "twistd.log") as was:
            r = httpx.get(was.url + "/ready", timeout=10)
            assert r.status_code == 200 and r.json() == {"status": "ready"}
            s3.stop()
            deadline = time.monotonic() + 15
            while True:
                started = time.monotonic()
                r = httpx.get(was.url + "/ready", timeout=10)
                # Never longer than the check's timeout (2 s), whatever botocore's retries do.
                assert time.monotonic() - started < 3.0
                if r.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert int(r.headers["retry-after"]) >= 1
            assert "Storage" in r.json()["detail"]
            started = time.monotonic()
            assert httpx.get(was.url + "/health").status_code == 200
            assert time.monotonic() - started < 0.5
            log = wait_for_log(was, "ready: storage check failed")
            assert "ready: storage check failed" in log
    finally:
        s3.stop()
