"""systemd's readiness protocol (``sd_notify(3)``), spoken directly over ``$NOTIFY_SOCKET``.

With ``Type=notify`` systemd starts units ordered after ours (and counts a
restart as done) only when we say ``READY=1``, so it is sent once the
listeners are bound, not when the process merely exists.  The protocol is
one datagram of ``KEY=value`` lines to a Unix socket; libsystemd is not
needed for that.  Without ``NOTIFY_SOCKET`` (not under systemd) every call
is a no-op.  A notification that cannot be sent must never stop the server:
it is logged once and dropped.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

log = Logger("was_twisted.sdnotify")


def notify_address(environ: Mapping[str, str]) -> str | None:
    """The socket address named by ``NOTIFY_SOCKET``: a path, or ``@name`` for the abstract namespace."""
    value = environ.get("NOTIFY_SOCKET", "")
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    return value


def _one_line(text: str) -> str:
    """A value on one line: a newline would start another (unintended) assignment."""
    return " ".join(text.splitlines())


class Notifier:
    """Sends notifications to systemd; does nothing when not started by it."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.address = notify_address(os.environ if environ is None else environ)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``assignments`` (``"READY=1"``, ...) as one datagram; True when it was sent."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # A full receive queue answers EAGAIN at once instead of stalling the reactor.
                sock.setblocking(False)
                sock.sendto(data, self.address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.warn(
                    "sd_notify: cannot notify systemd at {address!r} ({error}); "
                    "further failures are not logged",
                    address=self.address.replace("\0", "@"),
                    error=exc.strerror or repr(exc),
                )
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Start-up is complete: the listeners accept connections."""
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def stopping(self, status: str = "") -> bool:
        """Shutdown has begun (systemd then waits up to ``TimeoutStopSec``)."""
        return self.notify("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """A free-form line that ``systemctl status`` shows."""
        return self.notify(f"STATUS={_one_line(text)}")


class NotifyService(Service):
    """Says ``READY=1`` when started and ``STOPPING=1`` when stopped.

    Put it last in the tree: a ``MultiService`` starts its children in order
    (so the listeners, earlier children, are bound by then: TCP and adopted
    systemd sockets listen synchronously, and a failed bind stops twistd
    before this runs) and stops them in reverse (so ``STOPPING=1`` goes out
    first, before the listeners close).
    """

    def __init__(self, status: str, notifier: Notifier | None = None) -> None:
        self.ready_status = status
        self.notifier = notifier if notifier is not None else Notifier()

    def startService(self) -> None:
        super().startService()
        self.notifier.ready(self.ready_status)

    def stopService(self) -> defer.Deferred[None] | None:
        self.notifier.stopping("was: shutting down")
        super().stopService()
        return None
