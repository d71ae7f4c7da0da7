"""Inline ``# nplusone: allow[kind] reason`` comments, and the ledger of suppressions that
matched (stale ones are listed by the pytest plugin and the audit)."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from django.core.management import call_command

from django_nplusone_guard import assert_no_nplusone, capture, suppressions
from django_nplusone_guard.identity import split_callsite
from django_nplusone_guard.suppressions import (
    INLINE_KINDS,
    ledger,
    parse_comment,
    stale_inline,
    stale_lines,
    stale_rules,
)
from tests import suppressed_code
from tests.conftest import guard_records

CODE = Path(suppressed_code.__file__)


def _line_ending(text: str) -> int:
    lines = CODE.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if line.endswith(text))


def code_line(text: str) -> int:
    lines = CODE.read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


@pytest.fixture
def fresh_ledger(monkeypatch):
    """The process's ledger, emptied and tracking for one test, then as it was."""
    saved = ledger.to_dict(), ledger.tracking
    ledger.clear()
    ledger.tracking = True
    monkeypatch.setattr(suppressions, "_warned", set())  # warnings are once per process
    yield ledger
    ledger.clear()
    ledger.merge(saved[0])
    ledger.tracking = saved[1]


@pytest.mark.parametrize(
    ("text", "rules", "reason"),
    [
        ("x  # nplusone: allow[read] capped at 10", INLINE_KINDS["read"], "capped at 10"),
        (
            "x  # nplusone: allow[write, duplicate] -- batch of 3",
            INLINE_KINDS["write"] | INLINE_KINDS["duplicate"],
            "batch of 3",
        ),
        ("x  #nplusone:allow[index]", INLINE_KINDS["index"], ""),
        ("x  # nplusone: allow: legacy report", frozenset().union(*INLINE_KINDS.values()), ""),
    ],
)
def test_comment_syntax(text, rules, reason):
    comment = parse_comment(text, "/a.py", 3)
    assert comment is not None
    assert comment.rules == rules
    if text.endswith("legacy report"):
        assert comment.reason == "legacy report"
    else:
        assert comment.reason == reason


def test_other_comments_are_not_allow_comments():
    assert parse_comment("x  # nplusone is fun", "/a.py", 1) is None
    assert parse_comment("x  # noqa: allow[read]", "/a.py", 1) is None
    assert parse_comment("x = 'nplusone'", "/a.py", 1) is None


def test_a_comment_with_a_reason_silences_its_kind_at_the_call_site(books, fresh_ledger):
    with capture() as report:
        suppressed_code.allowed_with_reason()
    assert report.nplusones == []
    line = code_line("allow[read] at most 5 rows")
    assert (str(CODE), line) in fresh_ledger.matched_inline
    assert fresh_ledger.reasonless == set()


def test_a_comment_on_the_queryset_line_silences_the_loop_below(books, fresh_ledger):
    with assert_no_nplusone():  # another front door, the same analysis
        suppressed_code.allowed_on_the_queryset_line()
    assert (str(CODE), code_line("allow[read, write]")) in fresh_ledger.matched_inline


def test_a_comment_for_another_kind_does_not_silence(books, fresh_ledger):
    with capture() as report:
        suppressed_code.allowed_for_another_kind()
    [finding] = report.nplusones
    assert split_callsite(finding.callsite)[:2] == (
        "tests/suppressed_code.py",
        code_line("allow[duplicate] no"),
    )
    assert fresh_ledger.matched_inline == set()


def test_duplicates_are_silenced_by_a_duplicate_comment_on_each_line(books, fresh_ledger):
    with capture() as report:
        suppressed_code.counted_twice()
    assert report.duplicates == []
    assert fresh_ledger.matched_inline == {
        (str(CODE), code_line("first = Book.objects.count()")),
        (str(CODE), code_line("return first + Book.objects.count()")),
    }


def test_a_comment_without_a_reason_works_and_is_warned_about_once(books, fresh_ledger, caplog):
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    for _ in range(2):
        with capture() as report:
            suppressed_code.allowed_without_reason()
        assert report.nplusones == []
    line = _line_ending("# nplusone: allow")
    warnings = [r.getMessage() for r in guard_records(caplog)]
    assert warnings == [
        f"nplusone-guard: the allow comment at tests/suppressed_code.py:{line} gives no "
        "reason; say why the finding is accepted: # nplusone: allow[read] <why>."
    ]
    assert fresh_ledger.reasonless == {(str(CODE), line)}


def test_a_comment_naming_an_unknown_kind_is_ignored_with_a_warning(books, fresh_ledger, caplog):
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    with capture() as report:
        suppressed_code.unknown_kind()
    assert len(report.nplusones) == 1
    line = code_line("allow[reed]")
    [warning] = [r.getMessage() for r in guard_records(caplog)]
    assert f"suppressed_code.py:{line} names unknown kind(s) reed and is ignored" in warning


def test_comments_that_matched_nothing_in_executed_files_are_stale(books, fresh_ledger):
    with capture():
        suppressed_code.allowed_with_reason()
        suppressed_code.no_longer_a_loop()
    stale = {(Path(c.path).name, c.line) for c in stale_inline()}
    assert ("suppressed_code.py", code_line("this loop used to be an N+1")) in stale
    assert ("suppressed_code.py", code_line("at most 5 rows")) not in stale
    # Only files that ran queries are read: this test module's comments are not listed.
    assert {Path(c.path).name for c in stale_inline()} == {"suppressed_code.py"}


def test_without_tracking_no_file_is_noted(books, fresh_ledger):
    fresh_ledger.tracking = False
    with capture():
        suppressed_code.no_longer_a_loop()
    assert fresh_ledger.executed_files == set()
    assert stale_inline() == []


def test_allow_rules_that_matched_are_noted_and_the_others_are_stale(books, fresh_ledger, guard):
    used = {"model": "testapp.Book", "field": "author"}
    unused = {"model": "testapp.Publisher"}
    guard(ALLOW=[used, unused])
    with capture() as report:
        suppressed_code.allowed_for_another_kind()
    assert report.nplusones == []
    assert stale_rules([used, unused]) == ["{'model': 'testapp.Publisher'}"]
    lines = stale_lines([used, unused], marks=["allow_nplusone on t"], baseline=["entry x"])
    assert lines[0] == "ALLOW rule {'model': 'testapp.Publisher'}"
    assert lines[-2:] == ["allow_nplusone on t", "entry x"]


@pytest.mark.django_db(databases=["default", "other"])
def test_the_audit_of_the_whole_site_lists_stale_allow_rules(books, guard):
    used = {"model": "testapp.Book", "field": "author"}
    guard(ALLOW=[used, {"model": "testapp.Publisher"}])
    err = io.StringIO()
    call_command("nplusone_audit", "--all", stdout=io.StringIO(), stderr=err)
    stale = [line for line in err.getvalue().splitlines() if "Stale suppression" in line]
    assert stale == ["Stale suppression: ALLOW rule {'model': 'testapp.Publisher'}"]

    err = io.StringIO()
    call_command("nplusone_audit", "/books/fixed/", stdout=io.StringIO(), stderr=err)
    assert "Stale suppression" not in err.getvalue()  # one page says nothing of the site
