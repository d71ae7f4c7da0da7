"""The pytest plugin, exercised through real pytest sessions (pytester, in a subprocess).

Each session is a fresh interpreter with pytest-django and the plugin loaded from its
``pytest11`` entry point, exactly as in a user's project. The code under test lives in
``shop.py`` (not a test module), the way an application's views and services do. Sessions
use SQLite in memory unless a test says otherwise, which keeps them around a second each.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.settings import BACKEND

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent

SHOP = """
from tests.testapp.models import Author, Book


def author_names():
    return [book.author.name for book in Book.objects.order_by("id")]


def author_names_fixed():
    books = Book.objects.select_related("author").order_by("id")
    return [book.author.name for book in books]


def book_counts():
    return [author.book_set.count() for author in Author.objects.order_by("id")]


def first_book_twice():
    first = Book.objects.order_by("id").first()
    again = Book.objects.order_by("id").first()
    return first, again
"""

CONFTEST = """
import pytest

from tests.factories import AuthorFactory, BookFactory


@pytest.fixture
def books(db):
    return [BookFactory(author=AuthorFactory()) for _ in range(4)]
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytest project that uses the repository's test app and settings."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "tests.settings")
    monkeypatch.setenv("NPLUSONE_GUARD_TEST_DB", "sqlite")
    for name in list(os.environ):
        if name.startswith(("PYTEST_XDIST", "PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST")):
            monkeypatch.delenv(name)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)  # no annotations unless a test asks
    pytester.makeini(
        "[pytest]\n"
        "addopts = --no-migrations -p no:cacheprovider\n"
        "asyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(shop=SHOP)
    pytester.makeconftest(CONFTEST)
    return pytester


def run(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(*args, timeout=180)


def shop_line(project: pytest.Pytester, text: str) -> int:
    lines = (project.path / "shop.py").read_text().splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


SUITE_WIDE_TESTS = """
import pytest
from django.test import TestCase

import shop
from django_nplusone_guard.testing import allow_nplusone
from tests.factories import AuthorFactory, BookFactory
from tests.testapp.models import Book


def test_nplusone(books):
    shop.author_names()


def test_clean(books):
    shop.author_names_fixed()


@pytest.mark.allow_nplusone
def test_exempt_by_marker(books):
    shop.author_names()


@allow_nplusone()
def test_exempt_by_decorator(books):
    shop.author_names()


def test_test_code_is_setup_not_code_under_test(db):
    for _ in range(3):
        BookFactory(author=AuthorFactory())
    assert all(book.author.name for book in Book.objects.all())


@pytest.mark.django_db
def test_django_db_marker():
    for _ in range(3):
        BookFactory(author=AuthorFactory())
    shop.book_counts()


def test_without_database():
    assert True


def test_own_failure_wins(books):
    shop.author_names()
    assert 1 == 2, "the test's own failure"


class BookTests(TestCase):
    def test_unittest_style(self):
        for _ in range(3):
            BookFactory(author=AuthorFactory())
        shop.author_names()
"""


def test_suite_wide_fail_mode(project):
    project.makepyfile(test_suite=SUITE_WIDE_TESTS)
    result = run(project, "--nplusone=fail", "--strict-markers", "-rf")
    result.assert_outcomes(passed=5, failed=4)
    line = shop_line(project, "book.author.name for book in Book")
    result.stdout.fnmatch_lines(
        [
            "*1 N+1 finding in test_suite.py::test_nplusone:",
            "N+1 query on testapp.*: 4 queries (*",
            f"  at shop.py:{line} in author_names*",
            '  SQL: SELECT "testapp_author"."id", *',
        ]
    )
    result.stdout.fnmatch_lines(["*N+1 query on testapp.*: 3 queries*", "*testapp_book*"])
    result.stdout.fnmatch_lines(["*in test_suite.py::BookTests::test_unittest_style:"])
    result.stdout.fnmatch_lines(["*AssertionError: the test's own failure"])
    result.stdout.fnmatch_lines(["nplusone-guard: 4 findings in 4 of 6 guarded tests"])
    failed = {line.split()[1] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {
        "test_suite.py::test_nplusone",
        "test_suite.py::test_django_db_marker",
        "test_suite.py::test_own_failure_wins",
        "test_suite.py::BookTests::test_unittest_style",
    }


def test_off_is_the_default_and_warn_does_not_fail(project):
    project.makepyfile(
        test_suite="""
        def test_nplusone(books):
            import shop
            shop.author_names()
        """
    )
    quiet = run(project)
    quiet.assert_outcomes(passed=1)
    assert "nplusone-guard:" not in quiet.stdout.str()

    warned = run(project, "--nplusone=warn")
    warned.assert_outcomes(passed=1, warnings=1)
    warned.stdout.fnmatch_lines(
        [
            "*shop.py:*: NPlusOneWarning: 1 N+1 finding in test_suite.py::test_nplusone:",
            "*N+1 query on testapp.*: 4 queries*",
            "nplusone-guard: 1 finding in 1 of 1 guarded test",
        ]
    )


def test_markers_and_fixture(project):
    project.makepyfile(
        test_markers="""
        import pytest

        import shop


        @pytest.mark.nplusone
        def test_marked(books):
            shop.author_names()


        @pytest.mark.nplusone(threshold=5)
        def test_marked_threshold_above_the_count(books):
            shop.author_names()


        @pytest.mark.nplusone(allow=[{"sql": "testapp_author"}])
        def test_marked_allow(books):
            shop.author_names()


        @pytest.mark.nplusone(duplicates=True)
        def test_marked_duplicates(books):
            shop.first_book_twice()


        @pytest.mark.nplusone(allow=[{"modle": "testapp.Author"}])
        def test_marked_bad_rule(books):
            shop.author_names_fixed()


        @pytest.mark.nplusone
        @pytest.mark.allow_nplusone
        def test_marked_and_exempt(books):
            shop.author_names()


        def test_unmarked(books):
            shop.author_names()


        def test_fixture_report(books, nplusone_guard):
            assert nplusone_guard.report.nplusones == []
            shop.author_names()
            [finding] = nplusone_guard.report.nplusones
            assert finding.count == 4
            shop.author_names()
            assert nplusone_guard.report.query_count == 10


        def test_fixture_assert_clean(books, nplusone_guard):
            shop.author_names()
            nplusone_guard.assert_clean()


        def test_fixture_clean(books, nplusone_guard):
            shop.author_names_fixed()
            nplusone_guard.assert_clean()


        @pytest.mark.nplusone(threshold=9)
        def test_fixture_uses_the_marker_options(books, nplusone_guard):
            shop.author_names()
            nplusone_guard.assert_clean()
        """
    )
    result = run(project, "--strict-markers", "-rf")
    failed = {line.split()[1] for line in result.outlines if line.startswith("FAILED ")}
    assert failed == {
        "test_markers.py::test_marked",
        "test_markers.py::test_marked_duplicates",
        "test_markers.py::test_marked_bad_rule",
        "test_markers.py::test_fixture_assert_clean",
    }
    result.assert_outcomes(passed=7, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*1 N+1 finding in test_markers.py::test_marked:",
            "N+1 query on testapp.*: 4 queries*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "1 finding in test_markers.py::test_marked_duplicates:",
            "",
            "Duplicate query on testapp.Book: 2 identical queries",
        ]
    )
    result.stdout.fnmatch_lines(["*unknown key(s) 'modle'*"])
    result.stdout.fnmatch_lines(
        ["E*NPlusOneDetected: 1 N+1 finding in test_markers.py::test_fixture_assert_clean:"]
    )


def test_baseline_round_trip_and_new_finding(project):
    project.makepyfile(
        test_legacy="""
        import shop


        def test_legacy_page(books):
            shop.author_names()
        """
    )
    update = run(
        project, "--nplusone-baseline=nplusone-baseline.json", "--nplusone-baseline-update"
    )
    update.assert_outcomes(passed=1)
    update.stdout.fnmatch_lines(
        ["nplusone-guard: baseline written to *nplusone-baseline.json (1)"]
    )
    baseline = json.loads((project.path / "nplusone-baseline.json").read_text())
    [entry] = baseline["findings"]
    assert baseline["version"] == 2
    assert entry["rule"] == "nplusone-read"
    assert re.fullmatch(r"[0-9a-f]{16}", entry["id"])
    assert entry["subject"] in ("testapp.Author", "testapp.Book.author")
    assert (entry["file"], entry["function"]) == ("shop.py", "author_names")
    assert entry["tests"] == ["test_legacy.py::test_legacy_page"]
    assert "line" not in entry and "count" not in entry

    known = run(project, "--nplusone-baseline=nplusone-baseline.json")
    known.assert_outcomes(passed=1)
    known.stdout.fnmatch_lines(
        ["nplusone-guard: 1 finding in 1 of 1 guarded test (0 new, 1 in baseline)"]
    )

    # Unrelated edits move the known loop down; a new N+1 appears in new code.
    shop = project.path / "shop.py"
    shop.write_text("# Shop services.\n\n\n" + shop.read_text())
    project.makepyfile(
        test_new="""
        import shop


        def test_new_page(books):
            shop.book_counts()
        """
    )
    caught = run(project, "--nplusone-baseline=nplusone-baseline.json", "-rf")
    caught.assert_outcomes(passed=1, failed=1)
    caught.stdout.fnmatch_lines(
        [
            "*1 N+1 finding in test_new.py::test_new_page (not in baseline "
            "nplusone-baseline.json):",
            "N+1 query on testapp.*: 4 queries*",
            "*testapp_book*",
        ]
    )
    caught.stdout.fnmatch_lines(
        ["nplusone-guard: 2 findings in 2 of 2 guarded tests (1 new, 1 in baseline)"]
    )


def test_baseline_option_errors(project):
    project.makepyfile(test_x="def test_x():\n    pass\n")
    (project.path / "old.json").write_text('{"version": 1, "findings": []}')
    old = run(project, "--nplusone-baseline=old.json")
    assert old.ret == pytest.ExitCode.USAGE_ERROR
    old.stderr.fnmatch_lines(
        ["*old.json is not a baseline file*version 1*--nplusone-baseline-update*"]
    )
    missing = run(project, "--nplusone-baseline=absent.json")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*baseline *absent.json does not exist; create it with*"])
    alone = run(project, "--nplusone-baseline-update")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR
    alone.stderr.fnmatch_lines(["*--nplusone-baseline-update needs --nplusone-baseline=PATH*"])


def test_json_report_under_xdist(project, monkeypatch):
    pytest.importorskip("xdist")
    tests = "\n\n".join(
        f"def test_page_{i}(books):\n    shop.{'author_names' if i % 2 else 'book_counts'}()\n"
        for i in range(4)
    )
    clean = "def test_clean(books):\n    shop.author_names_fixed()\n"
    project.makepyfile(test_pages="import shop\n\n\n" + tests + "\n\n" + clean)
    # The one session on the suite's own backend: workers create their own databases.
    monkeypatch.setenv("NPLUSONE_GUARD_TEST_DB", BACKEND)
    result = run(project, "-p", "xdist", "-n", "2", "--nplusone-report=out/report.json")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["nplusone-guard: 4 findings in 4 of 5 guarded tests"])
    data = json.loads((project.path / "out" / "report.json").read_text())
    assert data["version"] == 1
    assert data["summary"] == {
        "guarded_tests": 5,
        "tests_with_findings": 4,
        "findings": 4,
        "new": 4,
        "in_baseline": 0,
    }
    assert [f["test"] for f in data["findings"]] == [
        f"test_pages.py::test_page_{i}" for i in range(4)
    ]
    for finding in data["findings"]:
        assert finding["category"] == "nplusone"
        assert finding["count"] == 4
        assert finding["callsite"].startswith("shop.py:")
        assert finding["in_baseline"] is False
    assert {f["model"] for f in data["findings"]} == {"testapp.Author", "testapp.Book"}
    quote = "`" if BACKEND == "mysql" else '"'
    assert any(f"{quote}testapp_author{quote}" in f["sql"] for f in data["findings"])


def test_plugin_is_harmless_without_django(project, monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    (project.path / "conftest.py").unlink()
    project.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    project.makepyfile(test_plain="def test_plain():\n    assert True\n")
    plain = run(project, "-p", "no:django", "--strict-markers")
    plain.assert_outcomes(passed=1)
    needs = run(project, "-p", "no:django", "--nplusone=fail")
    assert needs.ret == pytest.ExitCode.USAGE_ERROR
    needs.stderr.fnmatch_lines(["*the --nplusone* options need pytest-django*"])


def test_the_pytest_plugin_and_the_middleware_report_once(project):
    project.makepyfile(
        test_pages="""
        import logging

        import pytest
        from django.test import Client


        @pytest.fixture(autouse=True)
        def _guard(settings):
            settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}


        @pytest.mark.nplusone
        def test_marked(books):
            Client().get("/books/")


        def test_unmarked(books, caplog):
            with caplog.at_level(logging.WARNING):
                Client().get("/books/")
            assert len(caplog.records) == 1  # nothing else guards it: the middleware logs
        """
    )
    result = run(project, "-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    output = result.stdout.str()
    # pytest repeats a failure's whole message in its short summary when CI is set in the
    # environment (it does not cut it to the terminal's width there): count the report.
    report = output.split("short test summary info")[0]
    assert report.count("N+1 query on testapp.Book.author") == 1, output
    assert "Captured log call" not in output


FAILING_HELPERS = """
import pytest
from django.test import TestCase

import shop
from django_nplusone_guard import NPlusOneDetected, assert_no_nplusone
from django_nplusone_guard.testing import NPlusOneGuardMixin
from tests.factories import AuthorFactory, BookFactory


def test_fixture(books, nplusone_guard):
    shop.author_names()
    shop.book_counts()
    nplusone_guard.assert_clean()


def test_context_manager(books):
    with assert_no_nplusone():
        shop.author_names()


@assert_no_nplusone()
def test_decorator(books):
    shop.book_counts()


def test_caught_is_not_a_failure(books):
    with pytest.raises(NPlusOneDetected):
        with assert_no_nplusone():
            shop.author_names()


class MixinTests(NPlusOneGuardMixin, TestCase):
    def test_mixin(self):
        for _ in range(3):
            BookFactory(author=AuthorFactory())
        shop.author_names()
"""


def test_summary_counts_findings_of_fixtures_and_helpers(project):
    """Four tests failed by the fixture, the context manager, the decorator and the mixin,
    with five findings between them: the summary says so (it counted none of them)."""
    project.makepyfile(test_helpers=FAILING_HELPERS)
    result = run(project)
    result.assert_outcomes(passed=1, failed=4)
    result.stdout.fnmatch_lines(["nplusone-guard: 5 findings in 4 of 4 guarded tests"])


def test_findings_seen_by_the_suite_guard_and_a_helper_count_once(project):
    """The suite-wide scope sees what the helpers inside each test saw: each finding counts
    once. The caught one fails the test here, since the suite-wide guard sees it too."""
    project.makepyfile(test_helpers=FAILING_HELPERS)
    result = run(project, "--nplusone=fail")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(["nplusone-guard: 6 findings in 5 of 5 guarded tests"])
