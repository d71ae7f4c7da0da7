"""Front door for Celery: one scope per task execution, in a worker or eagerly.

Celery's tracer runs a task between its ``task_prerun`` and ``task_postrun`` signals, in one
thread, whether a worker runs it or ``apply()`` / ``task_always_eager`` runs it in the
caller. When ``CELERY`` is set, receivers of both open a scope per execution (a
:class:`~django_nplusone_guard.guarded.GuardedRun` labelled with the task's name) and deliver
its findings per ``ACTION``; ``task_failure`` notes that the task failed on its own. Until
``CELERY`` is set, nothing is connected and Celery is never imported by the guard.

Celery catches every exception a signal receiver raises (and logs it as a receiver's
failure), so ``raise`` cannot fail a task from here: in ``raise`` mode the findings are
logged at ERROR, as the :class:`~django_nplusone_guard.NPlusOneDetected` message.

This module is ``django_nplusone_guard.celery``; ``import celery`` below is absolute (the
library), as every import is in Python 3.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from typing import Any

from . import conf
from .exceptions import NPlusOneDetected
from .guarded import GuardedRun, signal_sender_frame

__all__ = ["connect", "has_celery", "sync_with_settings"]

logger = logging.getLogger("django_nplusone_guard")

#: Where Celery sends its signals from: frames skipped to find the tracer, which calls the task.
_DISPATCHER = "celery.utils.dispatch.signal"


class _TaskRun:
    """A task execution being guarded, and whether it failed on its own."""

    __slots__ = ("failed", "run")

    def __init__(self, run: GuardedRun) -> None:
        self.run = run
        self.failed = False


# task_id -> its runs, innermost last: the signals are separate calls, and a retry runs the
# same task id again (older Celery versions ran an eager retry inside the first run).
_runs: dict[str, list[_TaskRun]] = {}
_lock = threading.Lock()


def has_celery() -> bool:
    """Whether Celery can be imported here (without importing it)."""
    return importlib.util.find_spec("celery") is not None


def _task_prerun(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    if not conf.get_config().CELERY or task_id is None:
        return  # switched off after the receivers were connected
    run = GuardedRun.begin(
        getattr(sender, "name", None) or "celery task", frame=signal_sender_frame(_DISPATCHER)
    )
    if run is not None:
        with _lock:
            _runs.setdefault(task_id, []).append(_TaskRun(run))


def _task_failure(sender: Any = None, task_id: str | None = None, **kwargs: Any) -> None:
    with _lock:
        runs = _runs.get(task_id or "")
        if runs:
            runs[-1].failed = True


def _task_postrun(
    sender: Any = None, task_id: str | None = None, state: str | None = None, **kwargs: Any
) -> None:
    with _lock:
        runs = _runs.get(task_id or "")
        if not runs:
            return
        task_run = runs.pop()
        if not runs:
            del _runs[task_id or ""]
    # No state: the task's error escaped the tracer (eager, ``task_eager_propagates``).
    failed = task_run.failed or state is None
    run = task_run.run
    if failed and (run.action or conf.get_config().ACTION) == "raise":
        run.action = "log"  # the task's own error is the error; its findings are still logged
    try:
        run.end()
    except NPlusOneDetected as exc:
        # Raised from here, Celery would log it as a failed signal receiver; say it plainly.
        logger.error("%s", exc)


def connect() -> None:
    """Connect the receivers; idempotent (``dispatch_uid``)."""
    from celery import signals

    signals.task_prerun.connect(
        _task_prerun, weak=False, dispatch_uid="django_nplusone_guard.task_prerun"
    )
    signals.task_failure.connect(
        _task_failure, weak=False, dispatch_uid="django_nplusone_guard.task_failure"
    )
    signals.task_postrun.connect(
        _task_postrun, weak=False, dispatch_uid="django_nplusone_guard.task_postrun"
    )


def sync_with_settings() -> None:
    """Connect once ``CELERY`` asks for it (at start-up, or when a test changes the settings)
    and Celery is installed (else check E009 says so). Never disconnected: once connected, a
    task not guarded costs one settings read."""
    if conf.get_config().CELERY and has_celery():
        connect()
