"""manage.py nplusone_audit: URLs, --all and skipped routes, text and JSON output, exit codes."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from django_nplusone_guard import Report
from django_nplusone_guard.management.commands.nplusone_audit import discover_routes
from django_nplusone_guard.report import format_finding
from tests.testapp.models import Counter

# The audit runs each request in a transaction on every alias (and rolls it back).
pytestmark = pytest.mark.django_db(databases=["default", "other"])

ROOT = Path(__file__).resolve().parent.parent


def audit(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command("nplusone_audit", *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def audit_json(*args: str, **options: Any) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(audit(*args, "--format", "json", **options))
    return document


def page(document: dict[str, Any], url: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [p for p in document["pages"] if p["url"] == url]
    assert len(found) == 1, url
    return found[0]


# --------------------------------------------------------------------------- URLs


def test_text_output_shows_each_url_findings_with_the_shared_formatter(books):
    output = audit("/books/", "/books/fixed/")
    document = audit_json("/books/", "/books/fixed/")
    report = Report.from_dict(page(document, "/books/")["report"])
    [finding] = report.nplusones
    assert finding.count == 5
    assert "GET /books/ (200)" in output
    title, *details = format_finding(finding, verbose=False).splitlines()
    assert title.split(" (")[0] == "N+1 query on testapp.Book.author: 5 queries"
    assert "\n  N+1 query on testapp.Book.author: 5 queries (" in output  # timing differs per run
    for line in details:
        assert f"\n  {line}\n" in output
    assert "GET /books/fixed/ (200): 1 query, no findings." in output


def test_summary_table_has_a_row_per_page_and_totals(books):
    output = audit("/books/", "/books/fixed/", "/clean/")
    summary = output.split("Summary", 1)[1].splitlines()
    rows = {line.split()[0]: line.split()[1:] for line in summary if line.strip().startswith("/")}
    assert rows["/books/"] == ["200", "6", "1", "0", "0"]
    assert rows["/books/fixed/"] == ["200", "1", "0", "0", "0"]
    assert rows["/clean/"] == ["200", "1", "0", "0", "0"]
    assert "3 pages audited, 0 routes skipped: 1 N+1, 0 missing index" in output


def test_query_strings_and_absolute_urls_are_requested_as_given(books):
    document = audit_json("http://testserver/books/?page=2", "/books/?page=2")
    assert [p["url"] for p in document["pages"]] == ["/books/?page=2"]
    assert document["pages"][0]["status"] == 200


def test_threshold_option_is_passed_to_capture(books):
    document = audit_json("/books/", "--threshold", "6")
    assert page(document, "/books/")["report"]["nplusones"] == []


def test_streaming_responses_are_read_inside_the_scope(books):
    report = page(audit_json("/audit/export.csv"), "/audit/export.csv")["report"]
    assert report["query_count"] == 6
    assert report["nplusones"][0]["count"] == 5


def test_async_views_are_audited(books):
    document = audit_json("/async/books/", "/async/books/fixed/")
    [finding] = page(document, "/async/books/")["report"]["nplusones"]
    assert finding["count"] == 5
    # Requested through ASGI, so the awaiting line is found.
    assert finding["callsite"].startswith("tests/testapp/views.py:")
    assert finding["callsite"].endswith(" in async_book_list")
    assert page(document, "/async/books/fixed/")["report"]["nplusones"] == []


# --------------------------------------------------------------------------- --all


def test_discover_routes_lists_requestable_paths_and_why_others_are_skipped():
    routes = {r.pattern: r for r in discover_routes()}
    assert routes["books/"].path == "/books/"
    assert routes["audit/nested/inner/"].path == "/audit/nested/inner/"
    assert routes["audit/nested/inner/"].name == "auditns:inner"
    assert routes["audit/books/<int:pk>/"].path is None
    assert routes["audit/books/<int:pk>/"].skip_reason == "needs URL argument(s): pk"
    assert routes["audit/books/<int:pk>/"].name == "audit-book"
    regex = routes["^audit/archive/(?P<year>[0-9]{4})/$"]
    assert (regex.path, regex.skip_reason) == (None, "needs URL argument(s): year")
    assert routes["audit/post-only/"].skip_reason == "view does not handle GET"


def test_all_requests_every_get_route_and_lists_skipped_ones(books):
    document = audit_json("--all")
    urls = [p["url"] for p in document["pages"]]
    expected = [r.path for r in discover_routes() if r.path is not None]
    assert urls == expected
    assert {"/books/", "/books/fixed/", "/clean/", "/audit/nested/inner/"} <= set(urls)
    skipped = {s["pattern"]: s["reason"] for s in document["skipped"]}
    assert skipped["audit/books/<int:pk>/"] == (
        "needs URL argument(s): pk; book_detail is a function view: give its URL to nplusone_audit"
    )
    assert skipped["audit/post-only/"] == "view does not handle GET"
    assert "audit/post-only/" not in urls

    output = audit("--all")
    skipped_count = sum(1 for r in discover_routes() if r.path is None)
    assert f"Skipped {skipped_count} routes" in output
    assert "audit/books/<int:pk>/" in output
    assert "needs URL argument(s): pk" in output


def test_all_honours_exclude_and_ignore_urls(books, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "IGNORE_URLS": [r"^/ignored/"]}
    document = audit_json("--all", "--exclude", "^/async/", "--exclude", "fixed")
    urls = [p["url"] for p in document["pages"]]
    assert not [u for u in urls if u.startswith(("/async/", "/ignored/")) or "fixed" in u]
    skipped = {s["pattern"]: s["reason"] for s in document["skipped"]}
    assert skipped["async/books/"] == "excluded by --exclude"
    assert skipped["ignored/books/"] == "ignored by NPLUSONE_GUARD['IGNORE_URLS']"


def test_explicit_urls_come_first_and_are_not_repeated_by_all(books):
    urls = [p["url"] for p in audit_json("/clean/", "--all")["pages"]]
    assert urls[0] == "/clean/"
    assert urls.count("/clean/") == 1


# --------------------------------------------------------------------------- JSON


def test_json_document_matches_its_documented_shape(books):
    document = audit_json("/books/", "/boom/", "/books/fixed/", "--fail-on", "duplicate")
    assert set(document) == {"version", "pages", "skipped", "summary", "fail_on", "failed"}
    assert document["version"] == 1
    assert document["fail_on"] == ["duplicate"]
    assert document["failed"] == []
    for entry in document["pages"]:
        assert set(entry) == {"url", "status", "error", "note", "report"}
        assert entry["note"] is None
        assert isinstance(entry["url"], str)
        assert entry["status"] is None or isinstance(entry["status"], int)
        assert entry["error"] is None or isinstance(entry["error"], str)
        report = entry["report"]
        assert set(report) >= {"queries", "nplusones", "duplicates", "missing_indexes"}
        assert Report.from_dict(report).to_dict(params=False) == report
        assert all(q["params"] is None for q in report["queries"])  # no data in CI logs
    summary = document["summary"]
    pages = document["pages"]
    assert summary == {
        "pages": 3,
        "skipped": 0,
        "queries": sum(p["report"]["query_count"] for p in pages),
        "nplusone": sum(len(p["report"]["nplusones"]) for p in pages),
        "missing_index": sum(len(p["report"]["missing_indexes"]) for p in pages),
        "duplicate": sum(len(p["report"]["duplicates"]) for p in pages),
        "error": 1,
    }
    nplusone = page(document, "/books/")["report"]["nplusones"][0]
    assert nplusone["category"] == "nplusone"
    assert nplusone["count"] == 5
    assert nplusone["callsite"].startswith("tests/testapp/views.py:")
    # The stable id a log line, the panel and a test baseline give the same loop.
    assert nplusone["id"] == Report.from_dict(page(document, "/books/")["report"]).nplusones[0].id
    assert nplusone["id"] == page(audit_json("/books/"), "/books/")["report"]["nplusones"][0]["id"]


def test_parameters_stay_out_of_output_unless_log_params(books, settings):
    secret = "ada@private.example"
    document = audit_json("/audit/duplicate/")
    report = page(document, "/audit/duplicate/")["report"]
    [duplicate] = report["duplicates"]
    assert duplicate["count"] == 2
    assert secret not in json.dumps(document)
    assert secret not in audit("/audit/duplicate/")

    settings.NPLUSONE_GUARD = {"ENABLED": True, "LOG_PARAMS": True}
    report = page(audit_json("/audit/duplicate/"), "/audit/duplicate/")["report"]
    assert secret in report["duplicates"][0]["params"]
    assert secret in json.dumps(report["queries"])
    assert f"params: ('{secret}',)" in audit("/audit/duplicate/")


# --------------------------------------------------------------------------- errors


def test_a_page_that_raises_is_reported_and_the_audit_goes_on(books):
    document = audit_json("/boom/", "/books/")
    boom = page(document, "/boom/")
    assert boom["status"] is None
    assert boom["error"].startswith("ZeroDivisionError: view failed on its own (at ")
    assert "tests/testapp/views.py" in boom["error"]
    assert boom["report"]["query_count"] == 1  # its query before the crash still counts
    assert page(document, "/books/")["report"]["nplusones"][0]["count"] == 5

    output = audit("/boom/", "/books/")
    assert "GET /boom/ (error)" in output
    assert "Page raised ZeroDivisionError: view failed on its own" in output


def test_async_pages_that_raise_are_reported_and_their_writes_rolled_back(books):
    document = audit_json("/audit/async-counter/?fail=1", "/audit/async-counter/", "/books/")
    failed = page(document, "/audit/async-counter/?fail=1")
    assert failed["status"] is None
    assert failed["error"].startswith("LookupError: async view failed on its own (at ")
    assert "tests/testapp/views.py" in failed["error"]
    assert page(document, "/audit/async-counter/")["status"] == 200
    assert page(document, "/books/")["report"]["nplusones"][0]["count"] == 5
    assert Counter.objects.count() == 0


def test_missing_pages_are_reported_with_their_status(books):
    assert page(audit_json("/no-such-page/"), "/no-such-page/")["status"] == 404


# --------------------------------------------------------------------------- exit codes


def test_fail_on_found_kind_exits_with_status_1(books):
    with pytest.raises(CommandError) as excinfo:
        audit("/books/", "--fail-on", "nplusone,missing_index")
    assert excinfo.value.returncode == 1
    assert str(excinfo.value) == "nplusone_audit failed (--fail-on): found 1 N+1."


def test_fail_on_passes_when_nothing_of_that_kind_is_found(books):
    audit("/books/fixed/", "--fail-on", "nplusone,missing_index,duplicate")
    audit("/books/", "--fail-on", "duplicate")  # an N+1 is not a duplicate


def test_fail_on_error_catches_crashing_pages(books):
    with pytest.raises(CommandError) as excinfo:
        audit("/boom/", "--fail-on", "error")
    assert excinfo.value.returncode == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "Give one or more URLs, or --all."),
        (("/books/", "--fail-on", "nplusone,slow"), "unknown kind(s) slow"),
        (("books/",), "must be a path starting with '/'"),
        (("/books/", "--user", "nobody"), "no user 'nobody'"),
        (("--all", "--exclude", "("), "not a valid regular expression"),
        (("/books/", "--threshold", "0"), "--threshold must be at least 1"),
        (("/books/", "--format", "xml"), "invalid choice: 'xml'"),
    ],
)
def test_usage_errors_have_status_2(books, args, message):
    with pytest.raises(CommandError) as excinfo:
        audit(*args)
    assert excinfo.value.returncode == 2
    assert message in str(excinfo.value)


def test_process_exit_status_is_2_for_usage_errors():
    """The real process, not call_command: argparse and CommandError both exit with 2."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        # Usage errors happen before any page is requested; system checks may still
        # connect (MySQL on Django 6.1), and only SQLite's in-memory database always exists.
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
    }
    for args in (["--format", "xml", "/books/"], ["--fail-on", "slow", "/books/"]):
        result = subprocess.run(
            [sys.executable, "-m", "django", "nplusone_audit", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, result.stderr


# --------------------------------------------------------------------------- behaviour


def test_user_option_logs_in_first(books):
    get_user_model().objects.create_user("ada", password="unused")
    assert page(audit_json("/audit/me/"), "/audit/me/")["status"] == 403
    assert page(audit_json("/audit/me/", "--user", "ada"), "/audit/me/")["status"] == 200


def test_writes_of_get_views_are_rolled_back_unless_asked(books):
    audit("/audit/create-counter/")
    assert Counter.objects.count() == 0
    audit("/audit/create-counter/", "--no-rollback")
    assert Counter.objects.count() == 1


def test_the_middleware_stays_out_of_the_audit(books, settings, caplog):
    """The audit's own scope is the report; the middleware must not log or raise twice."""
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "raise"}
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        document = audit_json("/books/")
    assert page(document, "/books/")["status"] == 200
    assert page(document, "/books/")["report"]["nplusones"][0]["count"] == 5
    assert [r for r in caplog.records if r.name == "django_nplusone_guard"] == []


def test_no_explain_leaves_missing_indexes_empty(books, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "EXPLAIN": True}
    document = audit_json("/books/", "--no-explain")
    assert page(document, "/books/")["report"]["missing_indexes"] == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(books):
    terminal, pipe = _Terminal(), io.StringIO()
    call_command("nplusone_audit", "/books/", "/clean/", stdout=io.StringIO(), stderr=terminal)
    call_command("nplusone_audit", "/books/", "/clean/", stdout=io.StringIO(), stderr=pipe)
    assert "2/2 /clean/" in terminal.getvalue()
    assert terminal.getvalue().endswith("\r\033[K")
    assert pipe.getvalue() == ""


def test_progress_bar_is_not_styled_as_an_error(books):
    """A command's stderr styles what it writes as an error on a terminal; not progress."""
    from django_nplusone_guard.management.commands.nplusone_audit import Command

    terminal = _Terminal()
    command = Command(stderr=terminal, force_color=True)
    assert command.stderr.style_func("x") != "x"  # the wrapper would colour it red
    call_command(command, "/clean/", stdout=io.StringIO())
    written = terminal.getvalue()
    assert "1/1 /clean/" in written
    assert "\033[" not in written.replace("\r\033[K", "")
