"""A real browser wallet: headless Chromium calls ``twistd -n was`` from another origin.

``tests/browser/wallet.js`` (served from one port on 127.0.0.1) makes an Ed25519
key with WebCrypto, signs Cavage draft-12 requests as the Python client does,
and fetches the WAS server on another port: every request is cross-origin, so
each needs the preflight and response headers of the CORS layer.  The page
POSTs what it saw to its own origin; the assertions are here.  Needs Debian's
``chromium`` (skipped without it locally; under ``CI=true`` a missing browser fails).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base58
import pytest

from tests.browser.pageserver import PageServer

from .processes import WasProcess, which_or_skip

pytestmark = pytest.mark.integration

SPEC = "https://wallet.storage/spec#"
REPORT_TIMEOUT = 30.0


@pytest.fixture
def chromium() -> str:
    return which_or_skip("chromium", "apt-get install chromium")


@pytest.fixture
def page() -> Iterator[PageServer]:
    server = PageServer().start()
    try:
        yield server
    finally:
        server.stop()


def was_server(tmp_path: Path, cors: str | None) -> WasProcess:
    env = {"WAS_STORAGE_BACKEND": "memory"}
    if cors is not None:
        env["WAS_CORS_ORIGINS"] = cors
    return WasProcess(env, tmp_path / "twistd.log")


def _stop_browser(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM Chromium's process group (it was started in a session of its own), then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def browse(chromium: str, page: PageServer, was: WasProcess, tmp_path: Path) -> dict[str, Any]:
    """Open the wallet page headless and return its report (fails, with Chromium's stderr, on timeout)."""
    stderr_path = tmp_path / "chromium.stderr"
    profile = tmp_path / "chromium-profile"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            [
                chromium,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--enable-logging=stderr",
                page.page_url(was.url),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + REPORT_TIMEOUT
        report = None
        while report is None and time.monotonic() < deadline and proc.poll() is None:
            report = page.report(timeout=0.5)
    finally:
        _stop_browser(proc)
    if report is None:
        pytest.fail(
            f"no report from the page within {REPORT_TIMEOUT}s (chromium exit code {proc.returncode})\n"
            f"chromium stderr:\n{stderr_path.read_text(errors='replace')[-6000:]}\n"
            f"server log:\n{was.log_path.read_text(errors='replace')[-4000:]}"
        )
    return report


def did_key(public_key_hex: str) -> str:
    """The did:key of a raw Ed25519 public key, with the ``base58`` package (not the page's encoder)."""
    return "did:key:z" + base58.b58encode(b"\xed\x01" + bytes.fromhex(public_key_hex)).decode()


@pytest.mark.parametrize("cors", [None, "page-origin"], ids=["default-any-origin", "listed-origin"])
def test_browser_wallet_round_trip(chromium: str, page: PageServer, tmp_path: Path, cors: str | None) -> None:
    """Provision, write, read, 304, POST to a container, list, delete, 404: all from another origin."""
    listed = page.origin if cors == "page-origin" else cors
    with was_server(tmp_path, listed) as was:
        report = browse(chromium, page, was, tmp_path)
    log = was.log_path.read_text(errors="replace")
    why = json.dumps(report, indent=1, ensure_ascii=False) + "\nserver log:\n" + log[-4000:]
    assert report["error"] is None and report["failedStep"] is None, why
    steps = report["steps"]
    assert report["did"] == did_key(report["publicKeyHex"]), why
    space = report["space"]

    assert steps["provision"]["status"] == 201, why
    assert steps["provision"]["location"] == was.url + space, why
    assert json.loads(steps["provision"]["body"])["controller"] == report["did"], why

    assert steps["write"]["status"] == 204, why

    read = steps["read"]
    assert read["status"] == 200 and read["body"] == report["written"], why
    assert read["contentType"] == "text/plain; charset=utf-8", why
    assert read["etag"] and read["etag"].startswith('"'), why

    assert steps["notModified"]["status"] == 304, why

    posted = steps["post"]
    assert posted["status"] == 201, why
    assert posted["location"] and posted["location"].startswith(f"{was.url}{space}/notes/"), why
    posted_path = posted["location"][len(was.url) :]

    listing = steps["list"]
    assert listing["status"] == 200 and listing["contentType"] == "application/json", why
    assert posted_path in listing["body"], why

    assert steps["readPosted"]["status"] == 200, why
    assert json.loads(steps["readPosted"]["body"]) == {"note": 1}, why

    assert steps["delete"]["status"] == 204, why

    gone = steps["gone"]
    assert gone["status"] == 404 and gone["contentType"] == "application/problem+json", why
    problem = json.loads(gone["body"])
    assert problem["type"].endswith("#not-found") and problem["status"] == 404, why

    # The browser caches our preflights (Max-Age 7200): a later request to a URL it already
    # preflighted sends no OPTIONS (unless it has a new header such as If-None-Match).
    preflights = log.count('"OPTIONS /space/')
    requests = sum(log.count(f'"{m} /space/') for m in ("GET", "PUT", "POST", "DELETE"))
    assert requests == 9 and 0 < preflights < requests, why


def test_browser_from_an_unlisted_origin_is_refused(chromium: str, page: PageServer, tmp_path: Path) -> None:
    """Only http://other.example is allowed: the preflight gets no CORS headers, so fetch fails."""
    with was_server(tmp_path, "http://other.example") as was:
        report = browse(chromium, page, was, tmp_path)
    log = was.log_path.read_text(errors="replace")
    why = json.dumps(report, indent=1) + "\nserver log:\n" + log[-4000:]
    assert report["error"] == "TypeError: Failed to fetch", why
    assert report["failedStep"] == "provision" and report["steps"] == {}, why
    # The browser asked (the preflight reached us) but never sent the PUT itself.
    assert f'"OPTIONS {report["space"]} HTTP/1.1" 204' in log, why
    assert f'"PUT {report["space"]}' not in log, why
