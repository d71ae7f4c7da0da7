"""nplusone_audit --format sarif | github | junit: the same findings, in the forms CI reads."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.test_sarif import validate

pytestmark = pytest.mark.django_db(databases=["default", "other"])


def audit(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command("nplusone_audit", *args, stdout=out, stderr=io.StringIO(), **options)
    return out.getvalue()


def test_sarif_has_one_result_per_finding_id_across_pages(books):
    log = json.loads(audit("/books/", "/books/?page=2", "/books/fixed/", "--format", "sarif"))
    validate(log)
    run = log["runs"][0]
    assert run["automationDetails"] == {"id": "django-nplusone-guard/audit/"}
    [result] = run["results"]
    assert result["ruleId"] == "nplusone-read"
    assert result["level"] == "warning"
    assert result["properties"]["seenIn"] == ["/books/", "/books/?page=2"]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "tests/testapp/views.py"
    assert location["region"]["startLine"] > 0


def test_sarif_findings_of_fail_on_kinds_are_errors_and_the_exit_status_is_kept(books):
    out = io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "nplusone_audit",
            "/books/",
            "--format=sarif",
            "--fail-on=nplusone",
            stdout=out,
            stderr=io.StringIO(),
        )
    assert excinfo.value.returncode == 1
    log = json.loads(out.getvalue())
    assert [r["level"] for r in log["runs"][0]["results"]] == ["error"]


def test_github_format_prints_one_annotation_per_finding(books):
    lines = audit("/books/", "/books/?page=2", "--format", "github").splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::warning file=tests/testapp/views.py,line=")
    assert ",title=nplusone-guard%3A nplusone-read::N+1 query on testapp.Book.author" in lines[0]
    assert "%0Aseen in /books/, /books/?page=2%0A" in lines[0]


def test_junit_format_has_a_test_case_per_page(books):
    out = io.StringIO()
    with pytest.raises(CommandError):
        call_command(
            "nplusone_audit",
            "/books/",
            "/books/fixed/",
            "/boom/",
            "--format=junit",
            "--fail-on=nplusone",
            stdout=out,
            stderr=io.StringIO(),
        )
    root = ET.fromstring(out.getvalue())
    [suite] = root.iter("testsuite")
    assert dict(suite.attrib) == {
        "name": "nplusone_audit",
        "tests": "3",
        "failures": "1",
        "errors": "1",
    }
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["/books/", "/books/fixed/", "/boom/"]
    books_case = cases["/books/"]
    failure = books_case.find("failure")
    assert failure is not None
    assert failure.get("message") == "1 finding of a --fail-on kind"
    assert "N+1 query on testapp.Book.author: 5 queries" in (failure.text or "")
    [prop] = books_case.iter("property")
    assert prop.get("name") == "nplusone-guard.finding"
    assert (prop.get("value") or "").startswith("nplusone-read ")
    assert "GET /books/ (200)" in (books_case.findtext("system-out") or "")
    assert list(cases["/books/fixed/"]) == []  # passed, nothing to say
    error = cases["/boom/"].find("error")
    assert error is not None
    assert (error.get("message") or "").startswith("page raised ZeroDivisionError")


def test_junit_keeps_parameters_out_unless_log_params(books):
    document = audit("/audit/duplicate/", "--format=junit")
    assert "ada@private.example" not in document
    assert "Duplicate query" in document


def test_junit_shows_a_page_s_note_in_its_output():
    from django_nplusone_guard import Report
    from django_nplusone_guard.junit import audit_junit_xml
    from django_nplusone_guard.management.commands.nplusone_audit import PageResult

    page = PageResult(
        url="/private/", report=Report(), status=302, note="redirected to login: use --user"
    )
    case = next(ET.fromstring(audit_junit_xml([page], fail_on=[])).iter("testcase"))
    assert (case.findtext("system-out") or "").startswith(
        "GET /private/ (302; redirected to login: use --user)\n"
    )
