"""The service tree: thread pool, storage, and the listening endpoints.

``build_service`` is what ``twistd -n was`` runs, kept free of option
parsing so tests can build the same tree.  The pool is added first so it is
stopped last: listeners close, requests in flight finish, then it joins.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.application import strports
from twisted.application.service import IServiceCollection, MultiService
from twisted.web.server import Site

from .config import ConfigError, Settings
from .operations import Operations
from .storage.base import Backend
from .storage.threaded import AsyncStorage, PoolRunner, PoolService, run_inline
from .web.app import WASApp


class WASSite(Site):
    """A ``Site`` whose access log can be switched off (it costs 30-80 us a request)."""

    def __init__(self, resource: Any, access_log: bool) -> None:
        super().__init__(resource)
        self.access_log = access_log
        self.displayTracebacks = False

    def log(self, request: Any) -> None:
        if self.access_log:
            super().log(request)


def make_backend(settings: Settings) -> Backend:
    """The configured backend; an unusable root directory is a start-up error."""
    if settings.backend == "memory":
        from .storage.memory import MemoryBackend

        return MemoryBackend()
    from .storage.filesystem import FilesystemBackend

    root = settings.root_dir
    try:
        os.makedirs(os.path.join(root, "spaces"), exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"WAS_STORAGE_ROOT_DIR {root!r} cannot be created: {exc.strerror}.") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ConfigError(f"WAS_STORAGE_ROOT_DIR {root!r} is not writable by this user.")
    return FilesystemBackend(root)


def build_service(settings: Settings, reactor: Any, endpoints: list[str]) -> MultiService:
    """The whole server as a ``MultiService``; raises ``ConfigError`` for unusable settings."""
    top = MultiService()
    backend = make_backend(settings)
    if settings.backend == "memory":
        storage = AsyncStorage(backend, run_inline)
    else:
        pool = PoolService("was-storage", settings.threads)
        pool.setServiceParent(top)
        storage = AsyncStorage(backend, PoolRunner(reactor, pool.pool, settings.max_backlog))
    api = WASApp(Operations(storage, settings, reactor), settings.backend)
    site = WASSite(api.resource(), settings.access_log)
    for description in endpoints:
        listener = strports.service(description, site, reactor=reactor)
        listener.setServiceParent(top)
    return top


__all__ = ["IServiceCollection", "build_service", "make_backend"]
