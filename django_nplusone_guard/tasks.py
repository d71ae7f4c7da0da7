"""Front door for Django's tasks framework (``django.tasks``, Django 6.0+).

A backend runs a task between its ``task_started`` and ``task_finished`` signals, in one
thread. When ``TASKS`` is set, receivers of both open a scope per task execution (a
:class:`~django_nplusone_guard.guarded.GuardedRun` labelled with the task's name) and
deliver its findings per ``ACTION``, as for a guarded command. Until ``TASKS`` is set,
nothing is connected; on Django < 6.0, nothing ever is (and ``django.tasks`` is never
imported).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import django

from . import conf
from .guarded import GuardedRun, signal_sender_frame

if TYPE_CHECKING:
    from django.tasks import TaskResult

__all__ = ["connect", "has_tasks_framework", "sync_with_settings"]

# task_result.id -> its run: the two signals are two calls, and a task run inside another
# (an immediate backend called from a task) is a second entry, reported by the outer one.
_runs: dict[str, GuardedRun] = {}
_lock = threading.Lock()
_DISPATCHER = "django.dispatch.dispatcher"


def has_tasks_framework() -> bool:
    """Whether this Django has ``django.tasks`` (6.0+)."""
    return django.VERSION >= (6, 0)


def _task_started(sender: Any, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    if not conf.get_config().TASKS:
        return  # switched off after the receivers were connected
    run = GuardedRun.begin(task_result.task.name, frame=signal_sender_frame(_DISPATCHER))
    if run is not None:
        with _lock:
            _runs[task_result.id] = run


def _task_finished(sender: Any, task_result: TaskResult[..., Any], **kwargs: Any) -> None:
    with _lock:
        run = _runs.pop(task_result.id, None)
    if run is None:
        return
    from django.tasks import TaskResultStatus

    # A failed task keeps its own error; its findings are still logged or warned.
    run.end(failed=task_result.status == TaskResultStatus.FAILED)


def connect() -> None:
    """Connect the receivers; idempotent (``dispatch_uid``)."""
    from django.tasks.signals import task_finished, task_started

    task_started.connect(_task_started, dispatch_uid="django_nplusone_guard.task_started")
    task_finished.connect(_task_finished, dispatch_uid="django_nplusone_guard.task_finished")


def sync_with_settings() -> None:
    """Connect once ``TASKS`` asks for it (at start-up, or when a test changes the settings),
    on a Django that has tasks. Never disconnected: once connected, a task not guarded costs
    one settings read."""
    if conf.get_config().TASKS and has_tasks_framework():
        connect()
