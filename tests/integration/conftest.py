"""Fixtures that start real server processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import WasProcess


@pytest.fixture
def fs_server(tmp_path: Path) -> Iterator[WasProcess]:
    """``twistd -n was`` on the filesystem backend in a temp dir (spec profile)."""
    server = WasProcess(
        {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")},
        tmp_path / "twistd.log",
    ).start()
    try:
        yield server
    finally:
        server.stop()
