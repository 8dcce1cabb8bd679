"""A request body flowing from the reactor to one storage thread, as it arrives, in bounded memory.

The reactor ``feed``s the bytes Twisted hands the request; a backend's
``write_resource`` reads them in a pool thread, where ``read`` blocks until
bytes are there.  Past ``high_water`` buffered bytes the transport is paused
(the client's TCP window closes); it resumes once the reader has drained
half of it.  Every pause and resume happens on the reactor; whether the
transport is paused is changed only under the lock the reader takes, so a
reader that drains the buffer always sees a pause and asks for the resume.

Nothing is read from the client before the first ``read``: a backend reads
only after its guard (the authorization) passed, so a refused request never
has its body read, and ``Expect: 100-continue`` is answered only then.

The reader sees the body's end (``b""``) only once the whole body arrived
and every check registered on it (the Digest) passed; a failure (the size
limit, a mismatch, a client that went away) is raised from ``read``
instead, so the backend aborts rather than commits.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python import threadable

from ..auth.digest import DigestError
from ..errors import InvalidDigest

T = TypeVar("T")

#: Bytes buffered before the transport is paused (it resumes below half of this).
HIGH_WATER = 4 * 1024 * 1024


class BodyAborted(Exception):  # noqa: N818 - a state, not a fault of ours
    """The body will not arrive whole: the client went away, or the response was already sent."""


class BodyCheck(Protocol):
    """Something told every byte of the body, then asked at its end (``DigestCheck``)."""

    def update(self, chunk: bytes) -> None: ...

    def verify(self) -> None: ...


class BodyPipe(io.RawIOBase):
    """A readable, unseekable body for exactly one reader thread; fed by the reactor."""

    def __init__(
        self,
        reactor: IReactorFromThreads,
        pause: Callable[[], None],
        resume: Callable[[], None],
        on_start: Callable[[], None] = lambda: None,
        high_water: int = HIGH_WATER,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._pause = pause
        self._resume = resume
        self._on_start = on_start
        self._high = high_water
        self._cond = threading.Condition()
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._error: BaseException | None = None
        self._paused = False
        self._resume_asked = False
        self._collecting: Deferred[bytes] | None = None
        self._collect_limit = 0
        self._checks: list[BodyCheck] = []
        self._position = 0
        #: The whole body arrived (the reactor saw its end).
        self.ended = False
        #: A reader (or ``collect``) asked for the body.
        self.started = False
        #: What is left of the body is dropped as it arrives (a response went out first).
        self.discarding = False

    # -- the reactor's side --------------------------------------------------

    def hold(self) -> None:
        """Read nothing more from the client until the body is asked for."""
        with self._cond:
            pause = not self._paused and not self.started
            self._paused = self._paused or pause
        if pause:
            self._pause()

    def feed(self, data: bytes) -> None:
        """Bytes from the client (reactor thread)."""
        if self.discarding or self._error is not None or not data:
            return
        collecting = self._collecting is not None
        with self._cond:
            self._chunks.append(data)
            self._buffered += len(data)
            # Decided under the lock the reader takes: it then sees the pause and asks to resume.
            pause = not collecting and self._buffered > self._high and not self._paused
            self._paused = self._paused or pause
            self._cond.notify()
        if collecting and self._buffered > self._collect_limit:
            self._deliver()
        elif pause:
            self._pause()

    def end(self) -> None:
        """The whole body arrived (reactor thread)."""
        with self._cond:
            self.ended = True
            self._cond.notify()
        if self._collecting is not None:
            self._deliver()

    def fail(self, error: BaseException) -> None:
        """The body is unusable (too large, the client went away): the reader gets ``error``."""
        with self._cond:
            if self._error is not None or self.ended:
                return  # a whole body stays whole (its reader may still store it)
            self._error = error
            self._chunks.clear()
            self._buffered = 0
            self._cond.notify()
        if self._collecting is not None:
            waiting, self._collecting = self._collecting, None
            waiting.errback(error)

    def discard(self, resume: bool) -> None:
        """Drop the rest of the body as it comes; ``resume`` reading (to drain it) or keep it paused."""
        self.fail(BodyAborted("A response was sent before the body was read."))
        self.discarding = True
        if resume:
            self._resume_now()

    def _resume_now(self) -> None:
        with self._cond:
            resume, self._paused = self._paused, False
        if resume:
            self._resume()

    def _maybe_resume(self) -> None:
        with self._cond:
            self._resume_asked = False
            low = self._buffered <= self._high // 2
        if low and not self.discarding:
            self._resume_now()

    def _start(self) -> None:
        self._on_start()
        self._maybe_resume()

    # -- the reader's side ---------------------------------------------------

    def check_at_end(self, check: BodyCheck) -> None:
        """Feed ``check`` every byte read, and ``verify`` it before the end is reported."""
        self._checks.append(check)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Only a no-op rewind to the start (Twisted does one before the body is read)."""
        if offset == 0 and whence == io.SEEK_SET and self._position == 0:
            return 0
        raise io.UnsupportedOperation("a streamed request body cannot be rewound")

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes once some are there; ``b""`` at the verified end.  Never on the reactor."""
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        data = self._next(lambda: self._take(size))
        self._seen(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """Like ``read``, straight into ``buffer`` (one copy: how storage fills a part)."""
        view = memoryview(buffer).cast("B")
        n = self._next(lambda: self._take_into(view))
        self._seen(view[:n])
        return n

    def _next(self, take: Callable[[], T]) -> T:
        """(Reader.) Wait for bytes, the end or a failure; ``take`` what is there under the lock."""
        if threadable.isInIOThread():
            raise RuntimeError("a streamed body is read in a pool thread; on the reactor, await collect()")
        if not self.started:
            self.started = True
            self._reactor.callFromThread(self._start)
        with self._cond:
            while not self._chunks and not self.ended and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            taken = take()
            ask = self._paused and not self._resume_asked and self._buffered <= self._high // 2
            if ask:
                self._resume_asked = True
        if ask:
            self._reactor.callFromThread(self._maybe_resume)
        return taken

    def _seen(self, data: bytes | memoryview) -> None:
        """(Reader.) Count and check what was read; at the end, verify before reporting it."""
        if data:
            self._position += len(data)
            for check in self._checks:
                check.update(data)  # type: ignore[arg-type]
        else:
            self._verify()

    def _take(self, size: int) -> bytes:
        """(Under the lock.) Up to ``size`` buffered bytes, whole chunks joined where they fit."""
        if not self._chunks or size == 0:
            return b""
        parts: list[bytes] = []
        taken = 0
        while self._chunks and taken < size:
            chunk = self._chunks[0]
            room = size - taken
            if len(chunk) <= room:
                parts.append(self._chunks.popleft())
                taken += len(chunk)
            else:
                parts.append(chunk[:room])
                self._chunks[0] = chunk[room:]
                taken += room
        self._buffered -= taken
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _take_into(self, view: memoryview) -> int:
        """(Under the lock.) Copy buffered bytes into ``view``; how many."""
        taken = 0
        size = len(view)
        while self._chunks and taken < size:
            chunk = self._chunks[0]
            k = min(len(chunk), size - taken)
            view[taken : taken + k] = chunk[:k] if k < len(chunk) else chunk
            if k < len(chunk):
                self._chunks[0] = chunk[k:]
            else:
                self._chunks.popleft()
            taken += k
        self._buffered -= taken
        return taken

    def _verify(self) -> None:
        checks, self._checks = self._checks, []
        try:
            for check in checks:
                check.verify()
        except DigestError as exc:
            raise InvalidDigest(str(exc)) from None

    # -- read on the reactor -------------------------------------------------

    def collect(self, limit: int) -> Deferred[bytes]:
        """(Reactor.) The whole body, or its first ``limit + 1`` bytes if longer: for small JSON routes."""
        d: Deferred[bytes] = Deferred()
        if self._error is not None:
            d.errback(self._error)
            return d
        self.started = True
        self._collecting, self._collect_limit = d, limit
        self._on_start()
        if self.ended or self._buffered > limit:
            self._deliver()
        else:
            self._resume_now()
        return d

    def _deliver(self) -> None:
        waiting, self._collecting = self._collecting, None
        assert waiting is not None
        with self._cond:
            data = self._take(self._collect_limit + 1)
        self._position += len(data)
        try:
            for check in self._checks:
                check.update(data)
            if self.ended and not self._chunks:
                self._verify()
        except InvalidDigest as exc:
            waiting.errback(exc)
            return
        waiting.callback(data)
