"""Stale suppressions and inline allow comments in real pytest sessions (pytester, in a
subprocess): listed at the end of a run of the whole suite, an error with
``--nplusone-strict``, and stale baseline entries removed by ``--nplusone-baseline-prune``."""

from __future__ import annotations

import json

import pytest

from tests.test_pytest_plugin import project, run

pytest_plugins = ["pytester"]
__all__ = ["project"]

SUPPRESSED = """
from tests.testapp.models import Book


def allowed_loop():
    return [b.author.name for b in Book.objects.order_by("id")]  # nplusone: allow[read] 4 rows


def allowed_loop_without_reason():
    return [b.author.name for b in Book.objects.order_by("id")]  # nplusone: allow


def fixed_loop():
    books = Book.objects.select_related("author").order_by("id")
    return [b.author.name for b in books]  # nplusone: allow[read] this used to loop
"""

SETTINGS = """
from tests.settings import *  # noqa: F403

NPLUSONE_GUARD = {
    "ENABLED": True,
    "ACTION": "log",
    "ALLOW": [{"callsite": "*in author_names"}, {"model": "testapp.Publisher"}],
}
"""

TESTS = """
import pytest

import shop
import suppressed


def test_allowed_by_comment(books):
    suppressed.allowed_loop()


def test_allowed_by_comment_without_reason(books):
    suppressed.allowed_loop_without_reason()


def test_fixed(books):
    suppressed.fixed_loop()


def test_allowed_by_rule(books):
    shop.author_names()


@pytest.mark.allow_nplusone
def test_needed_exemption(books):
    shop.book_counts()


@pytest.mark.allow_nplusone
def test_unneeded_exemption(books):
    shop.author_names_fixed()
"""

STALE_ID = "ffffffffffffffff"


@pytest.fixture
def suite(project, monkeypatch):
    project.makepyfile(suppressed=SUPPRESSED, stale_settings=SETTINGS, test_suite=TESTS)
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "stale_settings")
    baseline = {
        "version": 2,
        "findings": [
            {"id": STALE_ID, "rule": "nplusone-read", "subject": "testapp.Book.author",
             "file": "shop.py", "function": "gone", "tests": ["test_suite.py::test_fixed"]},
            {"id": "eeeeeeeeeeeeeeee", "rule": "nplusone-read", "subject": "testapp.X.y",
             "file": "other.py", "function": "f", "tests": ["test_other.py::test_not_run"]},
        ],
    }  # fmt: skip
    (project.path / "baseline.json").write_text(json.dumps(baseline))
    return project


def line_of(project, text: str) -> int:
    lines = (project.path / "suppressed.py").read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_a_whole_run_lists_what_matched_nothing_and_strict_fails_on_it(suite):
    result = run(
        suite, "--nplusone=fail", "--nplusone-baseline=baseline.json", "--nplusone-strict"
    )
    result.assert_outcomes(passed=6)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    stale_comment = line_of(suite, "this used to loop")
    no_reason = line_of(suite, "without_reason():") + 1
    result.stdout.fnmatch_lines(
        [
            "nplusone-guard error: 5 suppressions matched nothing in this run; remove them:",
            "  ALLOW rule {'model': 'testapp.Publisher'}",
            f"  # nplusone: allow comment at suppressed.py:{stale_comment}",
            "  allow_nplusone on test_suite.py::test_unneeded_exemption (its code ran no N+1)",
            f"  baseline entry {STALE_ID} (nplusone-read testapp.Book.author shop.py gone)",
            "  baseline entry eeeeeeeeeeeeeeee (*",
            "nplusone-guard warning: 1 allow comment without a reason; *",
            f"  suppressed.py:{no_reason}",
        ]
    )
    out = result.stdout.str()
    assert "{'callsite': '*in author_names'}" not in out
    assert "test_needed_exemption" not in out


def test_a_partial_run_lists_no_stale_suppressions(suite):
    result = run(suite, "--nplusone=fail", "--nplusone-strict", "-k", "allowed")
    result.assert_outcomes(passed=3)
    assert result.ret == 0
    assert "matched nothing" not in result.stdout.str()
    # Comments without a reason are warned about in any run.
    result.stdout.fnmatch_lines(["nplusone-guard warning: 1 allow comment without a reason*"])


def test_prune_removes_entries_no_test_saw(suite):
    partial = run(
        suite,
        "--nplusone=fail",
        "--nplusone-baseline=baseline.json",
        "--nplusone-baseline-prune",
        "test_suite.py::test_fixed",
    )
    partial.assert_outcomes(passed=1)
    partial.stdout.fnmatch_lines(["nplusone-guard: 1 stale baseline entry removed from *"])
    ids = [e["id"] for e in json.loads((suite.path / "baseline.json").read_text())["findings"]]
    # Only the entry of a test that ran; the other test did not run in a partial run.
    assert ids == ["eeeeeeeeeeeeeeee"]

    # "." holds every test: a whole run, so every entry no test saw goes.
    whole = run(
        suite,
        "--nplusone=fail",
        "--nplusone-baseline=baseline.json",
        "--nplusone-baseline-prune",
        ".",
    )
    whole.assert_outcomes(passed=6)
    whole.stdout.fnmatch_lines(
        [
            "nplusone-guard: 1 stale baseline entry removed from *",
            "nplusone-guard warning: 4 suppressions matched nothing in this run; remove them:",
        ]
    )
    assert json.loads((suite.path / "baseline.json").read_text())["findings"] == []


def test_prune_needs_a_baseline(suite):
    result = run(suite, "--nplusone-baseline-prune")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--nplusone-baseline-prune needs --nplusone-baseline=PATH.*"])


def test_workers_report_what_matched_to_the_controller(suite):
    result = run(suite, "-n", "2", "--nplusone=fail", "--nplusone-baseline=baseline.json")
    result.assert_outcomes(passed=6)
    stale_comment = line_of(suite, "this used to loop")
    result.stdout.fnmatch_lines(
        [
            "nplusone-guard warning: 5 suppressions matched nothing in this run; remove them:",
            "  ALLOW rule {'model': 'testapp.Publisher'}",
            f"  # nplusone: allow comment at suppressed.py:{stale_comment}",
            "  allow_nplusone on test_suite.py::test_unneeded_exemption (its code ran no N+1)",
            f"  baseline entry {STALE_ID} (*",
            "  baseline entry eeeeeeeeeeeeeeee (*",
            "nplusone-guard warning: 1 allow comment without a reason; *",
        ]
    )
    assert "{'callsite': '*in author_names'}" not in result.stdout.str()
