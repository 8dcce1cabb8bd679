"""End to end: the real JavaScript client ``@wallet.storage/fetch-client`` against ``twistd -n was``.

``tests/js/drive.mjs`` provisions a space and reads and writes resources with
the npm client, which signs ``pathname + search`` of the WHATWG-encoded URL
(``authorization-signature``).  It prints one JSON line per check.  Install
its dependencies first: ``npm ci --prefix tests/js``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .jsdriver import node_with, run_driver
from .processes import WasProcess


@pytest.fixture
def node() -> str:
    """Path to ``node``, with the npm client installed in ``tests/js/node_modules``."""
    return node_with("@wallet.storage/fetch-client")


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
    run_driver(node, "drive.mjs", js_server).assert_all_passed(
        js_server, {"unsigned GET of a resource -> 404", "DELETE space -> 204"}
    )
