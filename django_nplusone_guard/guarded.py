"""Front door for work outside requests: a command, a task, a job, a cron script.

:class:`guarded` opens one capture scope around a unit of work and, when it ends, delivers
the report per ``ACTION`` with the work's label, exactly as the middleware does for a
request. Guarded management commands and task-queue integrations are built on
:class:`GuardedRun`, its start/end halves, for hooks that see the start and the end of the
work in two separate calls (signals).
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable
from contextvars import Token
from types import FrameType, TracebackType
from typing import Any, Literal, ParamSpec, TypeVar

from . import conf
from .capture import capture, log_internal_error, render_frame
from .delivery import act, start_reporting, stop_reporting
from .report import Report
from .sampling import is_sampled

__all__ = ["GuardedRun", "guarded", "signal_sender_frame"]

P = ParamSpec("P")
R = TypeVar("R")


def signal_sender_frame(dispatcher: str) -> FrameType | None:
    """Called by a signal receiver: the frame that sent the signal (a task queue about to
    call the task), past the receiver and the frames of the ``dispatcher`` module that
    delivers signals. A run's call sites stop there, as a command's stop at ``execute``."""
    frame: FrameType | None = sys._getframe(2)  # past this function and the receiver
    while frame is not None and frame.f_globals.get("__name__") == dispatcher:
        frame = frame.f_back
    return frame


class GuardedRun:
    """One guarded unit of work: its scope, its claim to report its findings (so a request
    or command inside it delivers nothing of its own), and its delivery."""

    __slots__ = ("action", "capture", "label", "token")

    def __init__(self, label: str, action: str | None, scope: capture, token: Any) -> None:
        self.label = label
        self.action = action
        self.capture = scope
        self.token: Token[str | None] | None = token

    @classmethod
    def begin(
        cls, label: str, *, action: str | None = None, frame: FrameType | None = None
    ) -> GuardedRun | None:
        """Start guarding, or ``None`` when the guard is off (:func:`conf.is_enabled`, read
        now), not sampled (``SAMPLE_RATE``) or could not start (logged; the work then runs
        unguarded)."""
        config = conf.get_config()
        if not conf.is_enabled(config) or not is_sampled(config.SAMPLE_RATE):
            return None
        try:
            scope = capture()
            token = start_reporting(label)
            scope.start(frame)
        except Exception:
            log_internal_error("starting a guarded run")
            return None
        return cls(label, action, scope, token)

    def _stop(self) -> None:
        stop_reporting(self.token)
        self.token = None
        self.capture.stop()

    def _deliver(self, failed: bool) -> Report:
        action = self.action or conf.get_config().ACTION
        if not (failed and action == "raise"):  # the work's own error says more
            act(self.capture.report, action, label=self.label)
        return self.capture.report

    def end(self, *, failed: bool = False) -> Report:
        """Stop, analyse and deliver (``failed``: the work raised; ``raise`` then keeps
        quiet so the work's own exception is the one seen)."""
        self._stop()
        self.capture.analyse()
        return self._deliver(failed)

    async def aend(self, *, failed: bool = False) -> Report:
        """:meth:`end` for async work: EXPLAIN, if on, runs in a thread."""
        from .middleware import analyse_from_async

        self._stop()
        await analyse_from_async(self.capture)
        return self._deliver(failed)


class guarded:  # lower case: used like a function, ``@guarded(label=...)``
    """Guard a function (sync or async) or a block like the middleware guards a request.

    Each call runs in one capture scope; when it returns, its findings are logged, warned
    or raised per ``action`` (default: the ``ACTION`` setting) with ``label`` where a
    request shows its path (default: the function's dotted name). Whether a call is guarded
    is decided when it starts, from ``ENABLED`` (or ``DEBUG``). Use it for work no
    middleware sees: RQ and Dramatiq jobs, cron scripts::

        @guarded(label="send_reminders")
        def send_reminders(): ...

        with guarded(label="nightly import"):
            import_everything()
    """

    def __init__(self, label: str | None = None, *, action: str | None = None) -> None:
        if action is not None and action not in conf.ACTIONS:
            raise ValueError(
                f"guarded(action={action!r}): use one of {', '.join(map(repr, conf.ACTIONS))}."
            )
        if label is not None and not isinstance(label, str):
            raise TypeError(f"guarded(label=...) takes a string, got {label!r}.")
        self.label = label
        self.action = action
        self._active: list[GuardedRun | None] = []

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        label = self.label or f"{func.__module__}.{func.__qualname__}"
        action = self.action
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                run = GuardedRun.begin(label, action=action, frame=sys._getframe(0))
                if run is None:
                    return await func(*args, **kwargs)
                try:
                    result = await func(*args, **kwargs)
                except BaseException:
                    await run.aend(failed=True)
                    raise
                await run.aend()
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            run = GuardedRun.begin(label, action=action, frame=sys._getframe(0))
            if run is None:
                return func(*args, **kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException:
                run.end(failed=True)
                raise
            run.end()
            return result

        return wrapper

    def _begin(self, frame: FrameType) -> None:
        label = self.label or render_frame(frame.f_code, frame.f_lineno)
        self._active.append(GuardedRun.begin(label, action=self.action, frame=frame))

    def __enter__(self) -> None:
        self._begin(sys._getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        run = self._active.pop()
        if run is not None:
            run.end(failed=exc_type is not None)
        return False

    async def __aenter__(self) -> None:
        self._begin(sys._getframe(1))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        run = self._active.pop()
        if run is not None:
            await run.aend(failed=exc_type is not None)
        return False
