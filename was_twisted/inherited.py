"""``inherited:FD:domain=INET``: serve on a listening socket this process was started with.

A worker process (``--workers``, see ``workers.py``) gets its parent's
listening socket as file descriptor ``FD`` and accepts on it, so the kernel
spreads connections over every worker.  Twisted's ``systemd:`` endpoint
adopts inherited sockets too, but only when ``LISTEN_PID`` names the process
itself, which a parent cannot know before the child exists; this endpoint
takes the descriptor as it is.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import (
    IListeningPort,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

PREFIX = "inherited"
DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6}


@implementer(IStreamServerEndpoint)
class InheritedEndpoint:
    """Accepts on the already listening socket ``fd`` (``adoptStreamPort`` duplicates it)."""

    def __init__(self, reactor: Any, fd: int, family: socket.AddressFamily) -> None:
        self.reactor = reactor
        self.fd = fd
        self.family = family

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        try:
            port: IListeningPort = self.reactor.adoptStreamPort(self.fd, self.family, factory)
        except OSError as exc:
            return defer.fail(exc)
        return defer.succeed(port)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class InheritedParser:
    """Parses ``inherited:3:domain=INET6`` for ``--listen``."""

    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> IStreamServerEndpoint:
        return self._parse(reactor, *args, **kwargs)  # type: ignore[arg-type]

    def _parse(self, reactor: Any, fd: str, domain: str = "INET") -> InheritedEndpoint:
        if domain not in DOMAINS:
            raise ValueError(f"inherited: domain must be INET or INET6, not {domain!r}")
        return InheritedEndpoint(reactor, int(fd), DOMAINS[domain])
