"""Shared test helpers: signers, and the API wired over memory storage for StubTreq."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from moto import mock_aws
from treq.testing import StubTreq
from twisted.internet.task import Clock
from wallet_attached_storage_client import Ed25519Signer, create_authorization_header

from was_twisted.config import Settings
from was_twisted.operations import Operations
from was_twisted.storage.memory import MemoryBackend
from was_twisted.storage.threaded import AsyncStorage, run_inline
from was_twisted.web.app import WASApp

BASE = "http://was.test"


def sign(signer: Ed25519Signer, method: str, path: str, **kw: float) -> dict[str, str]:
    """Headers carrying a fresh signature exactly as the Python client makes it."""
    return {"authorization": create_authorization_header(signer=signer, method=method, url=path, **kw)}


@dataclass
class Api:
    """A WAS API over memory storage, driven in-process with StubTreq."""

    http: StubTreq
    ops: Operations
    clock: Clock
    backend: MemoryBackend


def make_api(profile: str = "spec") -> Api:
    clock = Clock()
    clock.advance(time.time())
    backend = MemoryBackend()
    ops = Operations(AsyncStorage(backend, run_inline), Settings(backend="memory", profile=profile), clock)
    return Api(StubTreq(WASApp(ops, "memory").resource()), ops, clock, backend)


@pytest.fixture
def mocked_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """In-process moto with fake credentials; a developer's real AWS settings are hidden."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


@pytest.fixture
def api() -> Api:
    return make_api("spec")


@pytest.fixture
def legacy_api() -> Api:
    return make_api("legacy")


@pytest.fixture
def alice() -> Ed25519Signer:
    return Ed25519Signer()


@pytest.fixture
def mallory() -> Ed25519Signer:
    return Ed25519Signer()


SignFn = Callable[..., dict[str, str]]
