"""``reuseport:PORT[:interface=ADDR][:backlog=N]``: a TCP endpoint several processes can share.

One process is bound by the GIL to about one core.  Several ``twistd -n
was`` processes listening with ``SO_REUSEPORT`` on one port let the kernel
spread connections across them.  Only the s3 backend may be shared this
way: its writes are conditional in S3 itself, while the filesystem and
memory backends keep their locks (or data) in one process.
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

PREFIX = "reuseport"


@implementer(IStreamServerEndpoint)
class ReusePortEndpoint:
    """Listens on a TCP port with ``SO_REUSEPORT`` set, through ``adoptStreamPort``."""

    def __init__(self, reactor: Any, port: int, backlog: int = 128, interface: str = "") -> None:
        self.reactor = reactor
        self.port = port
        self.backlog = backlog
        self.interface = interface

    def listen(self, factory: Any) -> defer.Deferred[IListeningPort]:
        family = socket.AF_INET6 if ":" in self.interface else socket.AF_INET
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.bind((self.interface, self.port))
                sock.listen(self.backlog)
                sock.setblocking(False)
                # adoptStreamPort duplicates the descriptor; ours is closed below.
                listening: IListeningPort = self.reactor.adoptStreamPort(sock.fileno(), family, factory)
            finally:
                sock.close()
        except OSError as exc:
            return defer.fail(exc)
        return defer.succeed(listening)


@implementer(IPlugin, IStreamServerEndpointStringParser)
class ReusePortParser:
    """Parses ``reuseport:8080:interface=0.0.0.0:backlog=128`` for ``--listen``."""

    prefix = PREFIX

    def parseStreamServer(self, reactor: Any, *args: object, **kwargs: object) -> IStreamServerEndpoint:
        return self._parse(reactor, *args, **kwargs)  # type: ignore[arg-type]

    def _parse(self, reactor: Any, port: str, backlog: str = "128", interface: str = "") -> ReusePortEndpoint:
        return ReusePortEndpoint(reactor, int(port), int(backlog), interface)
