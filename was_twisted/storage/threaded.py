"""The async storage contract: any synchronous ``Backend`` run inline or in a bounded pool.

A backend that never blocks (memory) runs inline: a thread hop costs more
than the work.  A blocking backend (filesystem, s3) runs each call, space
lookup and action together, in a named pool that is a service in the tree
(``HopPool``: a ``ThreadPool`` whose calls go through one C queue, a few
times cheaper per hop than Twisted's own, which matters when every request
makes one).  The pool's own queue is unbounded, so ``PoolRunner`` counts
calls in flight and sheds load with ``Unavailable`` past a limit.
"""

from __future__ import annotations

import contextlib
import functools
import io
import queue
import threading
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from functools import partial
from typing import Any, BinaryIO, Protocol, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from ..errors import InvalidId, StorageFailure, Unavailable
from ..errors import PreconditionFailed as PreconditionFailedError
from .base import (
    Backend,
    Builder,
    ByteRange,
    Condition,
    Guard,
    KeyTooLong,
    PreconditionFailed,
    ResourceInfo,
    SpaceRecord,
    StorageBusy,
    StorageError,
    StoredResource,
)

T = TypeVar("T")
_log = Logger(namespace="was_twisted.storage.threaded")

#: Bodies up to this size are read in the same call that opens them (one hop).
SMALL_BODY = 256 * 1024
#: Chunk size for streaming larger bodies: the first chunk (soon on the wire), then ``STREAM_CHUNK``.
CHUNK = 64 * 1024
#: Later chunks of a large body: few pool hops, while two chunks bound the memory per download.
STREAM_CHUNK = 1024 * 1024


class Runner(Protocol):
    """Runs a blocking callable and gives back a Deferred of its result."""

    def __call__(self, f: Callable[..., T], *args: Any) -> defer.Deferred[T]: ...


def run_inline(f: Callable[..., T], *args: Any) -> defer.Deferred[T]:
    """Call ``f`` now, on this thread: for backends that never block, and unit tests."""
    return defer.maybeDeferred(f, *args)


#: What a ``HopPool`` thread runs: ``(f, args, kwargs, done)``; ``done(ok, result)`` is told the outcome.
_Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "Callable[[bool, Any], object] | None"]


class HopPool(ThreadPool):
    """A ``ThreadPool`` (same contract: ``callInThreadWithCallback``, ``start``, ``stop``) with a lean hop.

    Calls go through one ``queue.SimpleQueue`` to at most ``max`` threads,
    started as the backlog needs them, instead of Twisted's coordinator,
    per-worker queues and context wrapping; ``PoolRunner`` puts its own
    calls on the queue directly.  Calls made before ``start`` wait for it;
    ``stop`` lets the queued calls finish, then joins the threads.
    """

    def __init__(self, name: str, size: int) -> None:
        super().__init__(minthreads=0, maxthreads=size, name=name)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._count = threading.Lock()
        self._queued = 0
        self._idle = 0
        self._busy = 0

    @property
    def workers(self) -> int:
        return len(self.threads)

    @property
    def working(self) -> list[None]:
        return [None] * self._busy

    @property
    def waiters(self) -> list[None]:
        return [None] * self._idle

    def start(self) -> None:
        self.joined = False
        self.started = True
        with self._count:
            for _ in range(min(self._queued, self.max)):
                self._spawn()

    def _spawn(self) -> None:
        """One more thread (the caller holds ``_count``)."""
        thread = threading.Thread(target=self._work, name=f"PoolThread-{self.name}-{len(self.threads)}")
        self.threads.append(thread)
        thread.start()

    def submit(
        self, f: Callable[..., Any], args: tuple[Any, ...], done: Callable[[bool, Any], object]
    ) -> None:
        """Run ``f(*args)`` on a pool thread, then (there) ``done(True, result)`` or ``done(False, fail)``."""
        self._put((f, args, {}, done))

    def _put(self, job: _Job) -> None:
        with self._count:
            self._queued += 1
            if self.started and self._queued > self._idle and len(self.threads) < self.max:
                self._spawn()
        self._jobs.put(job)

    def callInThreadWithCallback(  # noqa: N802 - Twisted's name
        self,
        onResult: Callable[[bool, Any], object] | None,  # noqa: N803
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        if self.joined:
            return
        self._put((func, args, kw, onResult))

    def _work(self) -> None:
        get, count = self._jobs.get, self._count
        with count:
            self._idle += 1
        while True:
            job = get()
            with count:
                self._idle -= 1
                if job is None:
                    return
                self._queued -= 1
                self._busy += 1
            f, args, kw, done = job
            del job
            try:
                result = f(*args, **kw)
                ok = True
            except BaseException:
                result = Failure()
                ok = False
            del f, args, kw
            with count:
                # Idle from now, before the result is handed back: the next call (which the result
                # often prompts at once) then finds this thread instead of starting another.
                self._busy -= 1
                self._idle += 1
            if done is not None:
                done(ok, result)
            elif not ok:
                _log.failure("{pool}: a call with no one waiting for it failed", result, pool=self.name)
            del done, result

    def stop(self) -> None:
        """Finish the queued calls, then end every thread and join it."""
        self.joined = True
        self.started = False
        with self._count:
            threads = list(self.threads)
        for _ in threads:
            self._jobs.put(None)
        for thread in threads:
            thread.join()
        with self._count:
            self.threads.clear()


class PoolService(Service):
    """A named, bounded ``HopPool`` started and stopped with the service tree.

    It is stopped after the listeners (it is added to the tree first), so
    requests in flight finish their storage calls before the pool joins.
    """

    def __init__(self, name: str, size: int) -> None:
        self.pool = HopPool(name, size)

    def startService(self) -> None:
        super().startService()
        self.pool.start()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.pool.stop()
        return None


class PoolRunner:
    """Runs calls in a thread pool, refusing new ones once ``max_backlog`` are in flight."""

    def __init__(self, reactor: IReactorFromThreads, pool: ThreadPool, max_backlog: int) -> None:
        self._reactor = reactor
        self._pool = pool
        self._hop = pool.submit if isinstance(pool, HopPool) else None
        self._max_backlog = max_backlog
        self.in_flight = 0
        #: Calls refused because the backlog was full (exported as a metric).
        self.shed = 0

    @property
    def pool(self) -> ThreadPool:
        """The pool the calls run in (read by the metrics collector)."""
        return self._pool

    def __call__(self, f: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        if self.in_flight >= self._max_backlog:
            self.shed += 1
            return defer.fail(Unavailable("The server is busy; retry shortly.", retry_after=1))
        self.in_flight += 1
        if self._hop is None:
            d: defer.Deferred[T] = deferToThreadPool(self._reactor, self._pool, f, *args)
        else:
            d = defer.Deferred()
            call_from_thread = self._reactor.callFromThread

            def done(ok: bool, result: Any) -> None:  # on the pool thread
                call_from_thread(d.callback if ok else d.errback, result)

            self._hop(f, args, done)

        def finished(result: Any) -> Any:
            self.in_flight -= 1
            return result

        d.addBoth(finished)
        return d


#: Called after a read with the space found; raises to refuse (the body is then closed).
ReadGuard = Callable[["SpaceRecord | None"], None]


def _read_small(
    backend: Backend,
    space_id: str,
    path: str,
    with_body: bool,
    guard: ReadGuard | None = None,
    byte_range: ByteRange | None = None,
) -> tuple[SpaceRecord | None, StoredResource | None]:
    """Open a resource (or a range of it) and, when small, read it whole in the same pool call.

    Not for a HEAD.  ``guard`` decides, in the same call, whether the reader may have it.
    """
    space, resource = (
        backend.read_resource(space_id, path, with_body)
        if byte_range is None
        else backend.read_resource(space_id, path, with_body, byte_range)
    )
    if guard is not None:
        try:
            guard(space)
        except BaseException:
            if resource is not None:
                resource.body.close()
            raise
    if not with_body and resource is not None:
        resource.body.close()
        return space, StoredResource(resource.info, io.BytesIO())
    if resource is not None and byte_range is not None and resource.span is None:
        if byte_range.resolve(resource.info.size) is None:
            # Unsatisfiable: the caller answers 416 and needs no byte of it.
            resource.body.close()
            return space, StoredResource(resource.info, io.BytesIO())
    if resource is not None and resource.length <= SMALL_BODY and not isinstance(resource.body, io.BytesIO):
        try:
            data = resource.body.read()
        finally:
            resource.body.close()
        resource = StoredResource(resource.info, io.BytesIO(data), resource.span)
    return space, resource


class AsyncBody:
    """A resource body read in chunks, off the reactor unless already in memory."""

    def __init__(self, body: BinaryIO, run: Runner) -> None:
        self._body = body
        self._in_memory = isinstance(body, io.BytesIO)
        self._run = run

    async def read(self, size: int = CHUNK) -> bytes:
        """The next chunk; ``b""`` at the end."""
        if self._in_memory:
            return self._body.read(size)
        return await self._run(self._body.read, size)

    async def chunks(self, first: int = CHUNK, size: int = STREAM_CHUNK) -> AsyncGenerator[bytes, None]:
        """The body chunk by chunk, each next read already running in the pool while this one is sent.

        Close the iterator (``aclose``) before ``close``: it waits for a read still in flight.
        """
        if self._in_memory:
            while chunk := self._body.read(size):
                yield chunk
            return
        pending: defer.Deferred[bytes] | None = self._run(self._body.read, first)
        try:
            while pending is not None:
                chunk = await pending
                pending = self._run(self._body.read, size) if chunk else None
                if not chunk:
                    return
                yield chunk
        finally:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending

    async def close(self) -> None:
        """Release the file or connection behind the body."""
        if self._in_memory:
            self._body.close()
        else:
            await self._run(self._body.close)


def _translate(exc: BaseException) -> BaseException:
    """Turn backend errors into the domain errors the HTTP edge knows."""
    if isinstance(exc, PreconditionFailed):
        return PreconditionFailedError("The precondition did not hold; nothing was written.")
    if isinstance(exc, StorageBusy):
        return Unavailable("Storage is busy; retry shortly.", retry_after=1)
    if isinstance(exc, KeyTooLong):
        return InvalidId("The resource path is too long for this storage backend.")
    if isinstance(exc, StorageError):
        return StorageFailure("Storage failed.")
    return exc


def _operation_of(f: Callable[..., Any]) -> str:
    """``write_resource`` for a function defined inside ``ResourceOperations.write_resource``."""
    parts = getattr(f, "__qualname__", "run").split(".<locals>.")
    return parts[-2].rsplit(".", 1)[-1] if len(parts) > 1 else parts[-1].rsplit(".", 1)[-1]


class StorageObserver(Protocol):
    """Told of every storage call: its operation name, seconds taken and outcome (ok, error, refused)."""

    def __call__(self, operation: str, seconds: float, outcome: str) -> None: ...


class AsyncStorage:
    """The contract the operations use: one awaitable per backend call.

    ``observer``, when given, times each call (metrics); without one a call costs nothing extra.
    """

    def __init__(self, backend: Backend, run: Runner, observer: StorageObserver | None = None) -> None:
        self.backend = backend
        self._run = run
        self._inline = run is run_inline
        self._observer = observer
        #: A backend's ``batched(f, *args)``, if it has one (filesystem: merges a call's flushes).
        self._batched: Callable[..., Any] | None = getattr(backend, "batched", None)

    async def _call(self, operation: str, f: Callable[..., T], *args: Any) -> T:
        if self._batched is not None:
            f, args = self._batched, (f, *args)
        if self._observer is not None:
            return await self._observed(operation, f, *args)
        try:
            if self._inline:
                # No Deferred at all: a backend that never blocks is just a function call.
                return f(*args)
            return await self._run(f, *args)
        except (StorageError, PreconditionFailed) as exc:
            raise _translate(exc) from exc

    async def _observed(self, operation: str, f: Callable[..., T], *args: Any) -> T:
        """``_call`` timed: a backend failure or shed call is an error; a guard's refusal is refused."""
        assert self._observer is not None
        started = time.perf_counter()
        outcome = "error"
        try:
            result = f(*args) if self._inline else await self._run(f, *args)
            outcome = "ok"
            return result
        except PreconditionFailed as exc:
            outcome = "refused"
            raise _translate(exc) from exc
        except StorageError as exc:
            raise _translate(exc) from exc
        except Unavailable:
            raise
        except Exception:
            outcome = "refused"
            raise
        finally:
            self._observer(operation, time.perf_counter() - started, outcome)

    async def get_space(self, space_id: str) -> SpaceRecord | None:
        return await self._call("get_space", self.backend.get_space, space_id)

    async def put_space(self, space_id: str, build: Builder) -> tuple[bool, SpaceRecord]:
        return await self._call("put_space", self.backend.put_space, space_id, build)

    async def delete_space(self, space_id: str, guard: Guard) -> bool:
        return await self._call("delete_space", self.backend.delete_space, space_id, guard)

    async def list_spaces(
        self, controller: str, *, start_after: str | None = None, limit: int | None = None
    ) -> list[str]:
        return await self._call(
            "list_spaces", partial(self.backend.list_spaces, start_after=start_after, limit=limit), controller
        )

    async def run(self, f: Callable[..., T], *args: Any) -> T:
        """Run a composite of backend calls (lookups, then an action) as one call: one pool hop.

        Its operation label (metrics) is the operation that built it, e.g. ``write_resource``.
        """
        return await self._call(_operation_of(f), f, *args)

    async def read_resource(
        self, space_id: str, path: str, with_body: bool = True, guard: ReadGuard | None = None
    ) -> tuple[SpaceRecord | None, ResourceInfo | None, AsyncBody | None]:
        """The space, and the resource's metadata and open body (``None`` when absent; empty for a HEAD)."""
        space, resource = await self._call(
            "read_resource", _read_small, self.backend, space_id, path, with_body, guard
        )
        if resource is None:
            return space, None, None
        return space, resource.info, AsyncBody(resource.body, self._run)

    async def read_resource_range(
        self, space_id: str, path: str, byte_range: ByteRange | None, guard: ReadGuard | None = None
    ) -> tuple[SpaceRecord | None, StoredResource | None, AsyncBody | None]:
        """A GET of ``byte_range`` (``None``: all): the stored resource (its ``span``) and its body.

        The stored resource's own ``body`` is not to be read: ``AsyncBody`` is.
        """
        space, resource = await self._call(
            "read_resource", _read_small, self.backend, space_id, path, True, guard, byte_range
        )
        if resource is None:
            return space, None, None
        return space, resource, AsyncBody(resource.body, self._run)

    async def write_resource(
        self,
        space_id: str,
        path: str,
        body: BinaryIO,
        content_type: str,
        guard: Guard,
        *,
        condition: Condition | None = None,
    ) -> ResourceInfo:
        write = functools.partial(self.backend.write_resource, condition=condition)
        return await self._call("write_resource", write, space_id, path, body, content_type, guard)

    async def delete_resource(
        self, space_id: str, path: str, guard: Guard, *, condition: Condition | None = None
    ) -> bool:
        delete = functools.partial(self.backend.delete_resource, condition=condition)
        return await self._call("delete_resource", delete, space_id, path, guard)

    async def list_resources(
        self,
        space_id: str,
        prefix: str,
        guard: Guard,
        *,
        start_after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, ResourceInfo]]:
        return await self._call(
            "list_resources",
            partial(self.backend.list_resources, start_after=start_after, limit=limit),
            space_id,
            prefix,
            guard,
        )

    async def delete_resources(self, space_id: str, prefix: str, guard: Guard) -> int:
        return await self._call("delete_resources", self.backend.delete_resources, space_id, prefix, guard)

    async def get_records(self, space_id: str, kind: str, names: Sequence[str]) -> dict[str, bytes]:
        return await self._call("get_records", self.backend.get_records, space_id, kind, list(names))

    async def put_record(
        self,
        space_id: str,
        kind: str,
        name: str,
        data: bytes,
        guard: Guard,
        condition: Condition | None = None,
    ) -> bool:
        return await self._call(
            "put_record", self.backend.put_record, space_id, kind, name, data, guard, condition
        )

    async def delete_record(self, space_id: str, kind: str, name: str, guard: Guard) -> bool:
        return await self._call("delete_record", self.backend.delete_record, space_id, kind, name, guard)

    async def list_records(self, space_id: str, kind: str, guard: Guard) -> list[tuple[str, bytes]]:
        return await self._call("list_records", self.backend.list_records, space_id, kind, guard)
