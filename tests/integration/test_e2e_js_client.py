"""End to end: the real JavaScript client ``@wallet.storage/fetch-client`` against ``twistd -n was``.

``tests/js/drive.mjs`` provisions a space and reads and writes resources with
the npm client, which signs ``pathname + search`` of the WHATWG-encoded URL
(``authorization-signature``).  It prints one JSON line per check.  Install
its dependencies first: ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import REPO, WasProcess

JS_DIR = REPO / "tests" / "js"
DRIVER = JS_DIR / "drive.mjs"
NODE_TIMEOUT = 60.0


def _require(ok: bool, missing: str) -> None:
    """Skip locally, but fail under CI (which must have run ``npm ci``)."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {missing}; CI must run: npm ci --prefix tests/js")
    pytest.skip("run: npm ci --prefix tests/js")


@pytest.fixture
def node() -> str:
    """Path to ``node``, with the npm client installed in ``tests/js/node_modules``."""
    path = shutil.which("node")
    _require(path is not None, "node is not on PATH")
    _require(
        (JS_DIR / "node_modules" / "@wallet.storage" / "fetch-client").is_dir(),
        "tests/js/node_modules is missing",
    )
    assert path is not None
    return path


@pytest.fixture
def js_server(tmp_path: Path) -> Iterator[WasProcess]:
    """``twistd -n was`` on the filesystem backend in a temp dir (default spec profile)."""
    server = WasProcess(
        {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")},
        tmp_path / "twistd.log",
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_js_fetch_client_round_trip(node: str, js_server: WasProcess) -> None:
    """The npm client's signed requests are accepted and every driver check passes."""
    try:
        proc = subprocess.run(
            [node, str(DRIVER), js_server.url],
            cwd=str(JS_DIR),
            capture_output=True,
            text=True,
            timeout=NODE_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        pytest.fail(
            f"node drive.mjs timed out after {NODE_TIMEOUT}s\nstdout:\n{out}\n"
            f"server log:\n{js_server.log_path.read_text(errors='replace')}"
        )

    checks = []
    bad_lines = []
    for line in proc.stdout.splitlines():
        try:
            checks.append(json.loads(line))
        except ValueError:
            bad_lines.append(line)
    failed = [c for c in checks if c.get("ok") is not True]

    def explain() -> str:
        return (
            f"exit code {proc.returncode}\n"
            + "\n".join(json.dumps(c, ensure_ascii=False) for c in failed or checks)
            + (f"\nnon-JSON stdout:\n{chr(10).join(bad_lines)}" if bad_lines else "")
            + f"\nstderr:\n{proc.stderr}"
            + f"\nserver log:\n{js_server.log_path.read_text(errors='replace')}"
        )

    assert checks, explain()
    assert not failed, explain()
    assert not bad_lines, explain()
    assert proc.returncode == 0, explain()
    names = {c["check"] for c in checks}
    assert "unsigned GET of a resource -> 404" in names, explain()
    assert "DELETE space -> 204" in names, explain()
