"""Delivering a report the way ``ACTION`` says: one place for every front door.

The middleware, guarded commands, tasks and :func:`~django_nplusone_guard.guarded` all end
their scope with :func:`act`. The test helpers and the pytest plugin report findings their
own way (a failed test, a warning in pytest's summary); while one of them guards the code,
it is :func:`reporting`, and :func:`act` leaves the findings to it, so one finding is
reported once, not once by the test and once more by the middleware it ran through.

A request reports its own findings too, and its scope records everything run inside it:
work guarded inside a request (a ``guarded`` function the view calls, ``call_command()``,
a task run eagerly, a streamed body) leaves its findings to the request's report
(:attr:`Scope.reports <django_nplusone_guard.capture.Scope>`), or they would be reported
twice, once under each label. The outermost front door always reports.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

from . import conf
from .capture import active_scope, log_internal_error
from .exceptions import NPlusOneDetected, NPlusOneWarning
from .exporters.base import deliver
from .identity import split_callsite
from .report import Report, format_finding

__all__ = ["act", "reporter", "reporting", "start_reporting", "stop_reporting"]

logger = logging.getLogger("django_nplusone_guard")


#: The outermost front door that reports its scope's findings itself (a test, a guarded
#: block), by label; ``None`` when nothing does.
_reporter: ContextVar[str | None] = ContextVar("django_nplusone_guard_reporter", default=None)


def reporter() -> str | None:
    """The label of the front door that reports the findings of this context, if any."""
    return _reporter.get()


def _reported_by_enclosing_scope() -> bool:
    """Whether a scope recording here reports its own findings (a request's): the work
    running now is part of it, and so are its findings."""
    scope = active_scope()
    while scope is not None:
        if scope.reports:
            return True
        scope = scope.parent
    return False


def start_reporting(label: str) -> Token[str | None] | None:
    """Declare that the code run from now on reports its findings itself (a test helper,
    the pytest plugin, a guarded command): front doors opened inside it (a request made by
    the test, a command it calls) still build their reports, but deliver nothing. The
    outermost one wins: ``None`` when one already reports, a context variable or a request
    whose scope encloses this code."""
    if _reporter.get() is not None or _reported_by_enclosing_scope():
        return None
    return _reporter.set(label or "?")


def stop_reporting(token: Token[str | None] | None) -> None:
    """End what :func:`start_reporting` started (``None``: it started nothing)."""
    if token is None:
        return
    try:
        _reporter.reset(token)
    except ValueError:  # ended in another context than started (a fixture finalised elsewhere)
        _reporter.set(None)


@contextmanager
def reporting(label: str) -> Iterator[None]:
    """:func:`start_reporting` for a block."""
    token = start_reporting(label)
    try:
        yield
    finally:
        stop_reporting(token)


def act(report: Report, action: str, *, label: str = "") -> None:
    """Deliver a report the way ``ACTION`` says. Only ``raise`` ever raises. ``log`` hands
    the findings to ``EXPORTERS`` (a log line each by default), at most once per finding id
    and ``REPORT_INTERVAL``.

    Nothing is delivered while an enclosing test, guarded block or request reports
    (:func:`reporting`, a request's scope enclosing this code).
    """
    if action == "off" or not len(report):  # len(): no list of findings built to ask
        return
    if _reporter.get() is not None or _reported_by_enclosing_scope():
        return  # the enclosing guard reports these findings: one finding, one report
    if action == "raise":
        if report.nplusones:
            raise NPlusOneDetected(report, context=label)
        return
    config = conf.get_config()
    try:
        if action == "warn":
            for finding in report.findings:
                text = format_finding(finding, verbose=False, params=config.LOG_PARAMS)
                warn_at_callsite(text, getattr(finding, "callsite", ""))
        else:
            deliver(report.findings, label=label, config=config)
    except NPlusOneWarning:
        raise  # warnings turned into errors (``-W error``) are the user's choice
    except Exception:
        log_internal_error("delivering findings")


def warn_at_callsite(message: str, callsite: str) -> None:
    """An :class:`NPlusOneWarning` shown at the line that fired the queries."""
    path, line, _function = split_callsite(callsite)
    if line is None:
        warnings.warn(message, NPlusOneWarning, stacklevel=2)
        return
    warnings.warn_explicit(
        message,
        NPlusOneWarning,
        filename=path,
        lineno=line,
        module=path.removesuffix(".py").replace("/", "."),
    )
