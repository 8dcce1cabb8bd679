"""Fixtures that start real server processes: S3 servers (once a session) and ``twistd -n was``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .processes import WasProcess
from .s3servers import S3Server, ceph_available, start_ceph, start_moto

#: Where end-to-end tests run: the embedded default, and S3 over HTTP on two real servers.
BACKENDS = ["filesystem", "s3-moto", "s3-ceph"]


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server over HTTP, for the whole session."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ceph_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Ceph's RADOS Gateway (checks signatures), for the whole session.

    CI installs Ceph (.ci/install-s3-servers), so there a missing Ceph fails.
    """
    if not ceph_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Ceph is not installed: .ci/run must run .ci/install-s3-servers")
        pytest.skip("Ceph RGW not installed: run sudo bash .ci/install-s3-servers")
    server = start_ceph(tmp_path_factory.mktemp("ceph"))
    try:
        yield server
    finally:
        server.stop()


def s3_server_for(request: pytest.FixtureRequest, backend: str) -> S3Server:
    name = "moto_server" if backend == "s3-moto" else "ceph_server"
    server: S3Server = request.getfixturevalue(name)
    return server


def backend_env(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> dict[str, str]:
    """Environment for ``twistd -n was`` on ``backend``; S3 gets a fresh bucket of its own."""
    if backend == "filesystem":
        return {"WAS_STORAGE_BACKEND": "filesystem", "WAS_STORAGE_ROOT_DIR": str(tmp_path / "data")}
    s3 = s3_server_for(request, backend)
    return {
        **s3.env(),
        "WAS_STORAGE_BACKEND": "s3",
        "WAS_STORAGE_BUCKET": s3.create_bucket(),
        "WAS_STORAGE_PREFIX": "e2e/",
    }


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[WasProcess]:
    """``twistd -n was`` (spec profile) on each backend in turn."""
    env = backend_env(request, request.param, tmp_path)
    was = WasProcess(env, tmp_path / "twistd.log").start()
    try:
        yield was
    finally:
        was.stop()
