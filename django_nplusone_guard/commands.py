"""Front door for management commands: ``manage.py <command>`` and ``call_command()``.

Both end in ``BaseCommand.execute``. When ``COMMANDS`` is set, that method is wrapped so a
guarded command runs in one scope (a :class:`~django_nplusone_guard.guarded.GuardedRun`
labelled with the command's name) and its findings are delivered per ``ACTION``. Until
``COMMANDS`` is set, at start-up or later by a test's ``override_settings``, nothing is
wrapped: projects that do not use this pay nothing, not even a call.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

from django.core.management.base import BaseCommand

from . import conf
from .guarded import GuardedRun

__all__ = ["command_name", "install", "is_guarded_command", "sync_with_settings"]

_original_execute: Callable[..., Any] | None = None
_lock = threading.Lock()


def command_name(command: BaseCommand) -> str:
    """The name ``manage.py`` knows a command by: its module's last part."""
    return type(command).__module__.rpartition(".")[2]


def is_guarded_command(name: str, commands: bool | tuple[str, ...]) -> bool:
    """Whether ``COMMANDS`` (``True``, or names and fnmatch patterns) guards ``name``."""
    if not commands or name in conf.NEVER_GUARDED_COMMANDS:
        return False
    return commands is True or any(fnmatchcase(name, p) for p in commands)  # type: ignore[union-attr]


def _execute(self: BaseCommand, *args: Any, **options: Any) -> Any:
    execute = _original_execute
    assert execute is not None  # installed before this wrapper is
    commands = conf.get_config().COMMANDS
    if not commands:
        return execute(self, *args, **options)  # switched off after it was installed
    name = command_name(self)
    if not is_guarded_command(name, commands):
        return execute(self, *args, **options)
    run = GuardedRun.begin(name, frame=sys._getframe(0))
    if run is None:
        return execute(self, *args, **options)
    try:
        output = execute(self, *args, **options)
    except BaseException:
        run.end(failed=True)
        raise
    run.end()
    return output


def install() -> None:
    """Wrap ``BaseCommand.execute``; idempotent."""
    global _original_execute
    with _lock:
        if _original_execute is not None:
            return
        _original_execute = BaseCommand.execute
        BaseCommand.execute = _execute  # type: ignore[method-assign]


def sync_with_settings() -> None:
    """Wrap commands once ``COMMANDS`` asks for it (at start-up, or when a test changes the
    settings). Never unwrapped: once installed, the wrapper costs one settings read."""
    if conf.get_config().COMMANDS:
        install()
