"""Limits: whatever a scope records, the guard's memory and analysis time stay bounded."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from django_nplusone_guard import capture
from django_nplusone_guard.capture import _frame_kinds, render_frame
from django_nplusone_guard.fingerprint import fingerprint
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db

# The package exports the ``capture`` class under the module's name.
capture_module = importlib.import_module("django_nplusone_guard.capture")


def _select(text: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(text)


def _many_authors(request: HttpRequest) -> HttpResponse:
    for pk in range(40):
        Author.objects.filter(pk=pk).first()
    return HttpResponse("ok")


urlpatterns = [path("many/", _many_authors)]


def test_max_queries_setting_bounds_a_request_but_keeps_the_totals(settings):
    settings.ROOT_URLCONF = __name__
    settings.NPLUSONE_GUARD = {"ENABLED": True, "MAX_QUERIES": 10, "HEADER": True}
    response = Client().get("/many/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert response["X-NPlusOne-Guard"].endswith("queries=40")
    assert len(report.queries) == 10
    assert report.truncated is True
    [finding] = report.nplusones
    assert finding.count == 40


def test_distinct_statements_past_max_queries_are_counted_in_bounded_memory(monkeypatch):
    monkeypatch.setattr(capture_module, "MAX_OVERFLOW_KEYS", 50)
    guard = capture(max_queries=5)
    with guard as report:
        for n in range(300):
            _select(f"SELECT {n}")  # 300 distinct statements, 295 past MAX_QUERIES
    assert guard.scope is not None
    assert len(guard.scope.overflow) == 50
    assert len(report.queries) == 5
    assert report.query_count == 300
    assert report.truncated is True
    # Literals are not part of the shape: the kept and overflowed samples form one group.
    [finding] = report.nplusones
    assert 5 + 50 <= finding.count < 300


def _analyse(guard: capture) -> None:
    guard.stop()
    guard.analyse()


def _run_distinct_statements(marker: str, count: int) -> capture:
    padding = "-- " + "x" * 8000 + "\n"  # fingerprinting dominates the analysis
    guard = capture(max_queries=count)
    guard.start()
    for n in range(count):
        _select(f"{padding}SELECT '{marker}{n}'")  # one shape, distinct text: no cache hits
    return guard


def test_analysis_budget_stops_analysis_and_says_so(settings):
    settings.NPLUSONE_GUARD = {"ANALYSIS_BUDGET_MS": 1}
    count = 2000
    budgeted = _run_distinct_statements("budgeted", count)
    _analyse(budgeted)
    report = budgeted.report

    settings.NPLUSONE_GUARD = {}
    unbounded = _run_distinct_statements("unbounded", count)
    _analyse(unbounded)

    assert report.query_count == len(report.queries) == count
    [error] = report.errors
    assert "ANALYSIS_BUDGET_MS" in error
    assert "counted but not analysed" in error
    analysed = [q for q in report.queries if q.fingerprint]
    assert 0 < len(analysed) < count
    assert all(q.sql for q in report.queries)
    [finding] = report.nplusones
    assert finding.count == len(analysed)

    assert unbounded.report.errors == []
    assert unbounded.report.nplusones[0].count == count
    # No wall-clock assertion: fewer statements analysed (above) is the proof; timing ratios
    # flake on a shared 2-core CI machine.


def test_fingerprint_cache_is_bounded():
    maxsize = fingerprint.cache_info().maxsize
    assert maxsize is not None
    for n in range(maxsize + 500):
        fingerprint(f"SELECT {n} FROM cache_bound_{n}")
    assert fingerprint.cache_info().currsize == maxsize


def test_render_frame_cache_is_bounded_and_keyed_by_the_code_itself(monkeypatch):
    monkeypatch.setattr(capture_module, "MAX_RENDERED_FRAMES", 50)
    monkeypatch.setattr(capture_module, "_rendered_frames", {})
    code = test_render_frame_cache_is_bounded_and_keyed_by_the_code_itself.__code__
    for line in range(120):
        assert render_frame(code, line).endswith(f":{line} in {code.co_qualname}")
        assert len(capture_module._rendered_frames) <= 50
    # Two code objects with one name and line are two frames (the cache keys by identity).
    namespace: dict[str, Any] = {}
    exec(compile("def f(): pass", "one.py", "exec"), namespace)
    first = namespace["f"].__code__
    exec(compile("def f(): pass", "two.py", "exec"), namespace)
    second = namespace["f"].__code__
    assert render_frame(first, 1).startswith("one.py:1 ")
    assert render_frame(second, 1).startswith("two.py:1 ")
    assert render_frame(first, 1).startswith("one.py:1 ")


def test_frame_kind_cache_is_cleared_when_full(monkeypatch):
    monkeypatch.setattr(capture_module, "MAX_FRAME_KINDS", 40)
    functions: list[Callable[[], object]] = []
    for n in range(120):
        # Each exec makes a new code object, as template engines and code generators do.
        namespace: dict[str, Any] = {"Book": Book}
        exec(
            compile(
                f"def load_{n}():\n    return Book.objects.filter(pk={n}).first()\n",
                f"generated_{n}.py",
                "exec",
            ),
            namespace,
        )
        functions.append(namespace[f"load_{n}"])
    with capture() as report:
        for function in functions:
            function()
    assert len(_frame_kinds) <= 40
    # Classification still works across clears: every query has its generated call site.
    assert [q.callsite.split(":")[0] for q in report.queries] == [
        f"generated_{n}.py" for n in range(120)
    ]


def _filters() -> list[tuple[type[Any], dict[str, Any]]]:
    """Thirty statements, each filtering on a different set of unindexed columns."""
    from itertools import combinations

    from tests.testapp.models import Publisher

    columns: dict[type[Any], dict[str, Any]] = {
        Book: {"title": "t", "isbn": "i", "pages": 1, "price": 1, "published": None,
               "in_print": True},
        Author: {"name": "n", "email": "e", "active": True},
        Publisher: {"name": "n", "country": "GB"},
    }  # fmt: skip
    statements = []
    for model, values in columns.items():
        for size in (1, 2):
            for names in combinations(values, size):
                statements.append((model, {name: values[name] for name in names}))
    return statements


def _explained(settings, budget_ms: int) -> Any:
    from django_nplusone_guard import explain

    explain.clear_cache()
    settings.NPLUSONE_GUARD = {"ANALYSIS_BUDGET_MS": budget_ms}
    with capture(explain=True) as report:
        for model, lookup in _filters():
            list(model.objects.filter(**lookup))
    return report


def test_analysis_budget_also_stops_explain(settings):
    statements = _filters()
    assert len(statements) == 30  # under 32: the recording stage never checks the budget
    unbounded = _explained(settings, 60_000)
    budgeted = _explained(settings, 1)
    assert unbounded.errors == []
    assert len(unbounded.missing_indexes) >= 10
    [error] = budgeted.errors
    assert "ANALYSIS_BUDGET_MS" in error
    assert "EXPLAIN was skipped" in error
    assert len(budgeted.missing_indexes) < len(unbounded.missing_indexes)
