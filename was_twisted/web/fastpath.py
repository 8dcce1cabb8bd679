"""The ``/space/...`` requests straight to their handler, the rest through Klein.

Klein's dispatch (werkzeug's URL map bound per request, three ``maybeDeferred``
and two ``notifyFinish`` per request, the handler looked up by endpoint name)
cost about a sixth of a small request's CPU, while every ``/space/`` request
goes to the same handler, which takes its path from the raw URI anyway.  So
those go straight to ``WASApp.space_tree``, with the same error handlers in
the same order and the same response writing as Klein's; everything else
(``/``, ``/spaces``, ``/health``, unknown paths) still goes through Klein's
routes.  One difference: a path that is not UTF-8 once percent-decoded gets
the handler's 400 ``invalid-id`` problem document instead of Klein's plain-text
400.

The handler's coroutine is first run here, on the stack: a request that never
waits (the memory backend, a refusal before storage) is answered without a
``Deferred``, ``inlineCallbacks`` bookkeeping or a ``notifyFinish``.  Only a
coroutine that suspends on a ``Deferred`` is handed to
``Deferred.fromCoroutine`` (``_Started``), which then drives and cancels it
exactly as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from werkzeug.exceptions import HTTPException

from ..errors import WASError

if TYPE_CHECKING:
    from .app import WASApp

_PREFIX = b"/space/"

log = Logger()

#: (exception types, handler): Klein's ``handle_errors`` table of ``WASApp``, in its order.
ErrorTable = tuple[tuple[type[BaseException], Callable[[Any, IRequest, Failure], Any]], ...]


def error_table(app_class: type[WASApp]) -> ErrorTable:
    """The error handlers ``WASApp`` registers with Klein, most specific first, as Klein tries them."""
    return (
        (WASError, app_class._domain_error),
        (HTTPException, app_class._routing_error),
        (Exception, app_class._unexpected),
    )


class SpaceFastPath(Resource):
    """Dispatches ``/space/{id}...`` to ``api.space_tree`` without Klein; anything else to ``routes``."""

    isLeaf = True

    def __init__(self, api: WASApp, routes: IResource) -> None:
        super().__init__()
        self.api = api
        self.routes = routes
        self.errors = error_table(type(api))

    def render(self, request: IRequest) -> bytes | int:
        path: bytes = request.path
        if not path.startswith(_PREFIX):
            result: bytes | int = self.routes.render(request)
            return result
        coro = self.api.space_tree(request)
        try:
            waiting_on = coro.send(None)
        except StopIteration as done:
            _finish(done.value, request)
            return NOT_DONE_YET
        except BaseException:
            self._failed(Failure(), request, self.errors)
            return NOT_DONE_YET
        d: Deferred[Any] = Deferred.fromCoroutine(_rest(_Started(coro, waiting_on)))
        if not d.called:
            # Waiting on storage: like Klein, stop waiting when the client goes away.
            request.notifyFinish().addErrback(lambda _: d.cancel())  # type: ignore[attr-defined]
        d.addCallbacks(_finish, self._failed, callbackArgs=(request,), errbackArgs=(request, self.errors))
        d.addErrback(_unhandled)
        return NOT_DONE_YET

    def _failed(self, failure: Failure, request: IRequest, errors: ErrorTable) -> None:
        """Try the error handlers in Klein's order; the first that matches answers."""
        if _gone(request):
            if not failure.check(CancelledError):
                log.failure("Unhandled error processing a request", failure)
            return
        for index, (types, handler) in enumerate(errors):
            if failure.check(types):
                try:
                    body = handler(self.api, request, failure)
                except Exception:
                    self._failed(Failure(), request, errors[index + 1 :])
                    return
                _finish(body, request)
                return
        request.processingFailed(failure)  # type: ignore[attr-defined]


class _Started:
    """A coroutine already run up to its first ``await``, awaitable from there on.

    Awaiting it yields what the coroutine was waiting on, then passes every
    result (or exception, a cancellation included) in and every further wait
    out, as ``await coro`` would have from the start.
    """

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the driver: the awaited Deferred failed
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _rest(started: _Started) -> Any:
    return await started


def _unhandled(failure: Failure) -> None:
    log.failure("Unhandled error writing the response", failure)


def _gone(request: IRequest) -> bool:
    """Finished already, or the connection was lost."""
    return bool(getattr(request, "finished", False) or getattr(request, "_disconnected", False))


def _finish(body: object, request: IRequest) -> None:
    """Write what a handler returned and finish, as Klein does (nothing once the client left)."""
    if _gone(request):
        return
    if isinstance(body, str):
        body = body.encode("utf-8")
    if isinstance(body, bytes) and body:
        request.write(body)
    request.finish()
