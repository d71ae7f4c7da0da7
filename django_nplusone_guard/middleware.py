"""Request-level front door: capture each request, then log, warn, raise or add a header.

The middleware is thin on purpose: it opens a :class:`~django_nplusone_guard.capture.capture`
scope, lets the view run, and hands the :class:`~django_nplusone_guard.report.Report` to
:func:`act`. Put it as high in ``MIDDLEWARE`` as you can, so queries made by other
middleware (sessions, auth) are seen too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from . import conf, sampling
from .capture import capture, log_internal_error, resumed
from .delivery import act

__all__ = [
    "NPlusOneGuardMiddleware",
    "act",
    "analyse_from_async",
    "join_request_capture",
    "leave_request_capture",
]

logger = logging.getLogger("django_nplusone_guard")

#: Where the middleware leaves the request's report, for views, tests and the panel.
REQUEST_ATTR = "nplusone_guard_report"
#: Where a request's capture waits while it records, so the middleware and the toolbar panel
#: share one capture: whichever runs first opens it and the other joins it.
CAPTURE_ATTR = "_nplusone_guard_capture"


class NPlusOneGuardMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        _warn_if_app_missing()
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        scope = _begin(request, sys._getframe(0))
        if scope is None:
            return self.get_response(request)
        try:
            response = self.get_response(request)
        finally:
            stopped_here = leave_request_capture(request, scope)
        if stopped_here:
            if response.streaming:  # type: ignore[union-attr]
                return _report_when_closed(request, response, scope)  # type: ignore[arg-type]
            scope.analyse()
        return _finish(request, response, scope)  # type: ignore[arg-type]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        scope = _begin(request, sys._getframe(0))
        if scope is None:
            return await self.get_response(request)  # type: ignore[no-any-return,misc]
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        finally:
            stopped_here = leave_request_capture(request, scope)
        if stopped_here:
            if response.streaming:
                return _report_when_closed(request, response, scope)
            await analyse_from_async(scope)
        return _finish(request, response, scope)


_app_check_done = False


def _warn_if_app_missing() -> None:
    """W002 at the first handler load: system checks only run for installed apps, so a
    middleware without its app would otherwise go unnoticed (and unvalidated)."""
    global _app_check_done
    if _app_check_done:
        return
    _app_check_done = True
    from .checks import check_app_installed

    for message in check_app_installed():
        logger.warning("%s", message)


def _begin(request: HttpRequest, frame: Any) -> capture | None:
    """The request's capture, or None: disabled, not sampled (``SAMPLE_RATE``), ignored URL,
    or a failure to start one (logged; the request then runs unguarded rather than
    failing)."""
    config = conf.get_config()
    enabled = config.ENABLED  # conf.is_enabled(), inline: this runs for every request
    if not (settings.DEBUG if enabled is None else enabled):
        return None
    rate = config.SAMPLE_RATE  # sampling.is_sampled(), inline: one draw, only below 1.0
    if rate < 1.0 and sampling.source.random() >= rate:
        return None
    if config.IGNORE_URLS and any(p.search(request.path_info) for p in config.IGNORE_URLS):
        return None
    try:
        scope = join_request_capture(request, frame)
    except Exception:
        log_internal_error("starting the request's capture")
        return None
    # The request reports what runs inside it: guarded work there (a ``guarded`` function,
    # a command, an eager task) leaves its findings to this report (see ``delivery``).
    scope.scope.reports = True  # type: ignore[union-attr]  # started by join_request_capture
    return scope


def join_request_capture(request: HttpRequest, frame: Any) -> capture:
    """The capture recording ``request``: the one another front door (the toolbar panel)
    already opened, else a new one. One capture per request, never two nested ones."""
    scope: capture | None = getattr(request, CAPTURE_ATTR, None)
    if scope is None:
        scope = capture()
        scope.start(frame)
        setattr(request, CAPTURE_ATTR, scope)
        setattr(request, REQUEST_ATTR, scope.report)
    return scope


async def analyse_from_async(scope: capture) -> None:
    """``scope.analyse()`` for async front doors: EXPLAIN talks to the database, which is
    only allowed from sync code."""
    if scope.explain:
        await sync_to_async(scope.analyse)()
    else:
        scope.analyse()


def leave_request_capture(request: HttpRequest, scope: capture) -> bool:
    """Stop ``scope`` unless another front door already did; True means this call stopped
    it and the caller must analyse it.

    The innermost front door leaves first, so the shared report covers exactly the code
    both wrap, and the outer one finds it already filled.
    """
    if getattr(request, CAPTURE_ATTR, None) is not scope:
        return False
    delattr(request, CAPTURE_ATTR)
    scope.stop()
    return True


def _finish(request: HttpRequest, response: HttpResponseBase, scope: capture) -> HttpResponseBase:
    config = conf.get_config()
    report = scope.report
    if config.HEADER:
        response["X-NPlusOne-Guard"] = report.header_value()
    act(report, config.ACTION, label=f"{request.method} {request.path}")
    return response


# --------------------------------------------------------------------------- streaming


def _report_when_closed(
    request: HttpRequest, response: StreamingHttpResponse, scope: capture
) -> StreamingHttpResponse:
    """Keep recording while a streamed body (``StreamingHttpResponse``, ``FileResponse``) is
    consumed, after the middleware has returned; analyse and deliver when it is closed.

    The request's scope is :class:`~django_nplusone_guard.capture.resumed` around each step
    of the body, in whatever context consumes it (the server's, a test's), and only for
    that step: its statements join the request's report, and nothing else (the consumer's
    own scope, the next request on the thread) ever sees the scope. The report is delivered
    when the server (or the test client) closes the response, before Django's ``close()``
    sends ``request_finished``. The headers are gone by then: no ``X-NPlusOne-Guard``.
    """
    content = response.streaming_content
    if response.is_async:
        response.streaming_content = _astream(scope, content)  # type: ignore[arg-type]
    else:
        response.streaming_content = _stream(scope, content)  # type: ignore[arg-type]
    close = response.close
    closed = False

    def report_then_close() -> None:
        nonlocal closed
        if closed:
            close()
            return
        closed = True
        try:
            scope.analyse()
            act(scope.report, conf.get_config().ACTION, label=f"{request.method} {request.path}")
        finally:
            close()

    response.close = report_then_close  # type: ignore[method-assign]
    return response


def _stream(scope: capture, content: Iterator[bytes]) -> Iterator[bytes]:
    iterator = iter(content)
    while True:
        with resumed(scope):
            chunk = next(iterator, _END)
        if chunk is _END:
            return
        yield chunk


_END: Any = object()


async def _astream(scope: capture, content: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    iterator = aiter(content)
    while True:
        with resumed(scope):  # set and reset in this task, around one step only
            chunk = await anext(iterator, _END)
        if chunk is _END:
            return
        yield chunk
