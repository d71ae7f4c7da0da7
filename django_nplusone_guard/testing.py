"""Test helpers: fail a test when the code under test runs an N+1, or scales with data.

* :class:`assert_no_nplusone`: a context manager and decorator (sync and async) that raises
  :class:`~django_nplusone_guard.NPlusOneDetected` listing every finding.
* :class:`NPlusOneGuardMixin`: runs each ``TestCase`` test method under it.
* :class:`allow_nplusone`: exempts one test (decorator) or one block (``with``).
* :func:`assert_constant_queries`: runs a function at several data sizes and fails when a
  statement's count grows with the size, whatever the threshold says.

This module never imports models and never touches settings at import time: the pytest
plugin imports it before Django is configured.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, overload

from .capture import (
    IGNORED,
    SQL,
    STACK,
    capture,
    ignore,
    render_frame,
    render_stack,
)
from .delivery import start_reporting, stop_reporting
from .detect import analyse_scope
from .exceptions import NPlusOneDetected
from .fingerprint import fingerprint
from .identity import split_callsite
from .report import Finding, NPlusOne, Report, format_finding, shorten_sql

if TYPE_CHECKING:
    from unittest import TestCase

    _MixinBase = TestCase
else:
    _MixinBase = object

__all__ = [
    "NPlusOneGuardMixin",
    "allow_nplusone",
    "assert_constant_queries",
    "assert_no_nplusone",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Files whose own queries are test set-up, not code under test, when a whole test is
#: guarded (mixin, pytest plugin): factory loops and assertions in the test body.
TEST_CODE_PATTERNS: tuple[str, ...] = (
    "test*.py",
    "*_test.py",
    "conftest.py",
    "factories.py",
    "*/factories/*.py",
)

#: Attribute :class:`allow_nplusone` sets on a test function or class to exempt it.
EXEMPT_ATTR = "_nplusone_guard_exempt"


def is_test_code(callsite: str, patterns: Iterable[str]) -> bool:
    """True when ``callsite`` lies in a file matching one of ``patterns``: a pattern with a
    ``/`` is matched against the whole path, any other against the file name."""
    path = split_callsite(callsite)[0].replace("\\", "/")
    name = path.rsplit("/", 1)[-1]
    full = path if path.startswith("/") else "/" + path
    return any(fnmatch.fnmatchcase(full if "/" in p else name, p) for p in patterns)


@dataclass(frozen=True)
class GuardOptions:
    """What a guarded scope looks for and which findings fail it. Shared by
    :class:`assert_no_nplusone`, the mixin and the pytest plugin's marker."""

    threshold: int | None = None
    allow: tuple[Mapping[str, str], ...] = ()
    missing_indexes: bool = False
    duplicates: bool = False

    @classmethod
    def build(
        cls,
        *,
        threshold: int | None = None,
        allow: Sequence[Mapping[str, str]] | None = None,
        missing_indexes: bool = False,
        duplicates: bool = False,
        where: str = "assert_no_nplusone()",
    ) -> GuardOptions:
        """Validate user-supplied options; a mistake raises ``ValueError`` with the fix."""
        from django.apps import apps

        from . import conf

        if threshold is not None and (
            not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1
        ):
            raise ValueError(f"{where}: threshold must be a positive int, got {threshold!r}.")
        rules: Any = () if allow is None else allow
        problems = conf.validate_allow_rules(
            rules, where=f"{where} allow", check_models=apps.ready
        )
        if problems:
            raise ValueError("\n".join(f"{p.msg} {p.hint}" for p in problems))
        return cls(
            threshold=threshold,
            allow=tuple(rules),
            missing_indexes=bool(missing_indexes),
            duplicates=bool(duplicates),
        )

    def capture(self) -> capture:
        # EXPLAIN only when its findings can fail the test: it is the slow part.
        return capture(threshold=self.threshold, allow=self.allow, explain=self.missing_indexes)

    def failures(self, report: Report, *, test_code: Iterable[str] | None = None) -> list[Finding]:
        """The findings of ``report`` these options fail on. With ``test_code`` patterns,
        findings fired directly by test code (set-up loops, assertions) are left out."""
        findings: list[Finding] = list(report.nplusones)
        if self.missing_indexes:
            findings.extend(report.missing_indexes)
        if self.duplicates:
            findings.extend(report.duplicates)
        if test_code is None:
            return findings
        patterns = tuple(test_code)
        return [f for f in findings if not _fired_by_test_code(f, patterns)]


def _fired_by_test_code(finding: Finding, patterns: tuple[str, ...]) -> bool:
    callsites = getattr(finding, "callsites", None) or [getattr(finding, "callsite", "")]
    return all(is_test_code(site, patterns) for site in callsites)


def snapshot(scope_capture: capture) -> Report:
    """Analyse what a still-running capture has recorded so far, without stopping it."""
    scope = scope_capture.scope
    report = Report()
    if scope is None:
        return report
    return analyse_scope(scope, scope_capture, into=report)


def _block_label(frame: FrameType | None) -> str:
    if frame is None:
        return ""
    path, line, _func = split_callsite(render_frame(frame.f_code, frame.f_lineno))
    return f"the block at {path}:{line}"


class assert_no_nplusone:
    """Fail with :class:`~django_nplusone_guard.NPlusOneDetected` when the block or the
    decorated function runs an N+1.

    ``with assert_no_nplusone() as report:`` (or ``async with``) guards a block; as a
    decorator it guards every call of a sync or async function. ``threshold`` and ``allow``
    work like the settings of the same name (and add to ``ALLOW``); ``missing_indexes=True``
    runs EXPLAIN and fails on missing indexes too; ``duplicates=True`` fails on identical
    repeated queries too. The message lists every finding, rendered like the logs.
    """

    def __init__(
        self,
        *,
        threshold: int | None = None,
        allow: Sequence[Mapping[str, str]] | None = None,
        missing_indexes: bool = False,
        duplicates: bool = False,
    ) -> None:
        self.options = GuardOptions.build(
            threshold=threshold,
            allow=allow,
            missing_indexes=missing_indexes,
            duplicates=duplicates,
        )
        self._active: list[tuple[capture, str, Any]] = []

    def _check(self, scope_capture: capture, context: str) -> None:
        __tracebackhide__ = True
        findings = self.options.failures(scope_capture.report)
        if findings:
            raise NPlusOneDetected(scope_capture.report, context=context, findings=findings)

    def _begin(self, frame: FrameType) -> Report:
        scope_capture = self.options.capture()
        label = _block_label(frame)
        # This block reports its findings: a request or command inside it delivers nothing.
        self._active.append((scope_capture, label, start_reporting(label)))
        return scope_capture.start(frame)

    def __enter__(self) -> Report:
        return self._begin(sys._getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        __tracebackhide__ = True
        scope_capture, context, token = self._active.pop()
        stop_reporting(token)
        scope_capture.stop()
        scope_capture.analyse()
        if exc_type is None:
            self._check(scope_capture, context)
        return False

    async def __aenter__(self) -> Report:
        return self._begin(sys._getframe(1))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        __tracebackhide__ = True
        scope_capture, context, token = self._active.pop()
        stop_reporting(token)
        await scope_capture.__aexit__(exc_type, exc, tb)
        if exc_type is None:
            self._check(scope_capture, context)
        return False

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        context = func.__qualname__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                __tracebackhide__ = True
                scope_capture = self.options.capture()
                token = start_reporting(context)
                scope_capture.start(sys._getframe(0))
                try:
                    result = await func(*args, **kwargs)
                finally:
                    stop_reporting(token)
                    await scope_capture.__aexit__(None, None, None)
                self._check(scope_capture, context)
                return result

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            __tracebackhide__ = True
            scope_capture = self.options.capture()
            token = start_reporting(context)
            scope_capture.start(sys._getframe(0))
            try:
                result = func(*args, **kwargs)
            finally:
                stop_reporting(token)
                scope_capture.stop()
                scope_capture.analyse()
            self._check(scope_capture, context)
            return result

        return wrapper


class _AllowNPlusOne:
    """What :func:`allow_nplusone` returns: a context manager and a decorator."""

    def __init__(self) -> None:
        self._ignore = ignore()

    def __enter__(self) -> None:
        self._ignore.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._ignore.__exit__(*exc_info)

    def __call__(self, target: R) -> R:
        if isinstance(target, type):
            setattr(target, EXEMPT_ATTR, True)
            return target
        if not callable(target):
            raise TypeError(f"allow_nplusone decorates a test or a class, not {target!r}")
        wrapped: Any = ignore()(target)
        setattr(wrapped, EXEMPT_ATTR, True)
        return wrapped  # type: ignore[no-any-return]


@overload
def allow_nplusone() -> _AllowNPlusOne: ...
@overload
def allow_nplusone(target: R) -> R: ...
def allow_nplusone(target: Any = None) -> Any:
    """Exempt a test (``@allow_nplusone`` or ``@allow_nplusone()`` on a test function,
    method or class) or a block (``with allow_nplusone():``).

    Queries inside are still counted but never become findings, so neither
    :class:`assert_no_nplusone`, the mixin, nor the pytest plugin fails on them. Use it for
    code whose repeats are intended, and say why in a comment next to it.
    """
    if target is None:
        return _AllowNPlusOne()
    return _AllowNPlusOne()(target)


def is_exempt(*targets: object) -> bool:
    """True when any of ``targets`` (a test function, method or class) was decorated with
    :class:`allow_nplusone`."""
    return any(getattr(t, EXEMPT_ATTR, False) for t in targets)


class NPlusOneGuardMixin(_MixinBase):
    """Run every test method of a ``TestCase`` or ``TransactionTestCase`` under
    :class:`assert_no_nplusone`.

    Only the test method is guarded, not ``setUp``/``setUpTestData``; queries fired
    directly by test code (factory loops, assertions in the test body, in files matching
    ``nplusone_test_code``) are set-up, not code under test, and never fail. Configure with
    the class attributes below; exempt a method or a whole class with ``@allow_nplusone``.
    """

    nplusone_threshold: int | None = None
    nplusone_allow: Sequence[Mapping[str, str]] = ()
    nplusone_missing_indexes: bool = False
    nplusone_duplicates: bool = False
    nplusone_test_code: Sequence[str] = TEST_CODE_PATTERNS

    def _callTestMethod(self, method: Callable[[], Any]) -> None:
        __tracebackhide__ = True
        if is_exempt(method, type(self)):
            super()._callTestMethod(method)  # type: ignore[misc]
            return
        options = GuardOptions.build(
            threshold=self.nplusone_threshold,
            allow=self.nplusone_allow,
            missing_indexes=self.nplusone_missing_indexes,
            duplicates=self.nplusone_duplicates,
            where=f"{type(self).__qualname__}.nplusone_*",
        )
        scope_capture = options.capture()
        token = start_reporting(self.id())
        scope_capture.start(sys._getframe(0))
        try:
            super()._callTestMethod(method)  # type: ignore[misc]
        finally:
            stop_reporting(token)
            scope_capture.stop()
            scope_capture.analyse()
        findings = options.failures(scope_capture.report, test_code=self.nplusone_test_code)
        if findings:
            raise NPlusOneDetected(scope_capture.report, context=self.id(), findings=findings)


# --------------------------------------------------------------------------- scaling


@dataclass
class _Shape:
    """One statement shape's counts across the sizes."""

    key: str
    sql: str
    counts: dict[int, int]
    callsites: list[str]


def assert_constant_queries(
    func: Callable[[], object],
    *,
    setup: Callable[[int], object],
    sizes: Sequence[int] = (2, 6),
) -> dict[int, Report]:
    """Fail when ``func``'s query count grows with the amount of data.

    For each ``n`` in ``sizes``, calls ``setup(n)`` then ``func()`` under :func:`capture`,
    inside a transaction on the default database that is rolled back afterwards, so every
    size starts from the same data. Each statement shape (fingerprint) whose count is
    higher at the largest size than at the smallest is named in the failure: a count that
    scales with data is an N+1, whatever the threshold. Returns the report of each size.
    """
    __tracebackhide__ = True
    from django.db import transaction

    if inspect.iscoroutinefunction(func):
        raise TypeError(
            "assert_constant_queries() takes a sync function; wrap it in async_to_sync"
        )
    ordered = sorted(set(sizes))
    if len(ordered) < 2 or ordered[0] < 0:
        raise ValueError(f"sizes must hold at least two different sizes >= 0, got {sizes!r}")

    reports: dict[int, Report] = {}
    shapes: dict[str, _Shape] = {}
    for n in ordered:
        with transaction.atomic():
            setup(n)
            scope_capture = capture(explain=False, threshold=2)
            scope_capture.start(sys._getframe(0))
            try:
                func()
            finally:
                scope_capture.stop()
                scope_capture.analyse()
            transaction.set_rollback(True)
        reports[n] = scope_capture.report
        _count_shapes(scope_capture, n, shapes)

    first, last = ordered[0], ordered[-1]
    growing = [s for s in shapes.values() if s.counts.get(last, 0) > s.counts.get(first, 0)]
    if growing:
        raise AssertionError(_scaling_message(growing, ordered, reports))
    return reports


def _count_shapes(scope_capture: capture, n: int, shapes: dict[str, _Shape]) -> None:
    scope = scope_capture.scope
    if scope is None:
        return
    for record in scope.records:
        sql = record[SQL] if isinstance(record[SQL], str) else str(record[SQL])
        fp = fingerprint(sql)
        if record[IGNORED] or fp.is_transaction_control:
            continue
        shape = shapes.get(fp.key)
        if shape is None:
            shape = shapes[fp.key] = _Shape(fp.key, sql, {}, [])
        shape.counts[n] = shape.counts.get(n, 0) + 1
        frames = render_stack(record[STACK][:2])
        callsite = frames[0] if frames else "unknown"
        if callsite not in shape.callsites:
            shape.callsites.append(callsite)


def _scaling_message(growing: list[_Shape], sizes: list[int], reports: dict[int, Report]) -> str:
    largest = reports[sizes[-1]]
    totals = ", ".join(f"n={n}: {reports[n].query_count}" for n in sizes)
    lines = [
        f"{len(growing)} statement shape(s) run more often as the data grows "
        f"(total queries {totals}):"
    ]
    for shape in sorted(growing, key=lambda s: -s.counts.get(sizes[-1], 0)):
        counts = ", ".join(f"n={n}: {shape.counts.get(n, 0)}" for n in sizes)
        lines.append("")
        lines.append(f"fingerprint {shape.key} ran {counts}")
        related = [f for f in largest.nplusones if f.fingerprint == shape.key]
        if related:
            lines.extend("  " + row for f in related for row in _finding_lines(f))
        else:
            lines.append(f"  at {', '.join(shape.callsites[:3])}")
            lines.append(f"  SQL: {shorten_sql(shape.sql)}")
    return "\n".join(lines)


def _finding_lines(finding: NPlusOne) -> list[str]:
    return format_finding(finding).splitlines()
