"""The pytest plugin's CI output, through real pytest sessions (pytester, in a subprocess):
SARIF (``--nplusone-sarif``), GitHub annotations and findings in pytest's ``--junitxml``."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from tests.test_pytest_plugin import project, run, shop_line
from tests.test_sarif import validate

pytest_plugins = ["pytester"]
__all__ = ["project"]

TWO_TESTS_ONE_LOOP = """
import shop


def test_first(books):
    shop.author_names()


def test_second(books):
    shop.author_names()


def test_clean(books):
    shop.author_names_fixed()
"""


@pytest.mark.parametrize("mode", ["fail", "warn"])
def test_sarif_has_one_result_per_finding_with_the_tests_that_saw_it(project, mode):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(project, f"--nplusone={mode}", "--nplusone-sarif=out/guard.sarif")
    if mode == "fail":
        result.assert_outcomes(passed=1, failed=2)
    else:
        result.assert_outcomes(passed=3, warnings=2)
    result.stdout.fnmatch_lines(["nplusone-guard: SARIF written to *out/guard.sarif"])
    log = json.loads((project.path / "out" / "guard.sarif").read_text())
    validate(log)
    [result_] = log["runs"][0]["results"]
    assert result_["ruleId"] == "nplusone-read"
    assert result_["level"] == ("error" if mode == "fail" else "warning")
    assert result_["properties"]["seenIn"] == [
        "test_suite.py::test_first",
        "test_suite.py::test_second",
    ]
    location = result_["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "shop.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": shop_line(project, "book.author.name for")}
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == (
        project.path.resolve().as_uri() + "/"
    )


def test_sarif_alone_guards_the_suite_without_failing_it(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(project, "--nplusone-sarif=guard.sarif")
    result.assert_outcomes(passed=3)
    log = json.loads((project.path / "guard.sarif").read_text())
    assert [r["level"] for r in log["runs"][0]["results"]] == ["warning"]


def test_sarif_and_junit_under_xdist(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project, "-n", "2", "--nplusone=fail", "--nplusone-sarif=guard.sarif", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1, failed=2)
    log = json.loads((project.path / "guard.sarif").read_text())
    [result_] = log["runs"][0]["results"]
    assert len(result_["properties"]["seenIn"]) == 2
    properties = _properties(project.path / "j.xml")
    assert {name for name, _value in properties["test_first"]} == {"nplusone-guard.finding"}
    assert properties["test_clean"] == []


def _properties(path) -> dict[str, list[tuple[str, str]]]:
    tree = ET.parse(path)
    return {
        case.get("name"): [(p.get("name"), p.get("value")) for p in case.iter("property")]
        for case in tree.iter("testcase")
    }


def test_junit_report_carries_each_test_s_findings(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project, "--nplusone=warn", "--junitxml=junit.xml", "-o", "junit_logging=system-out"
    )
    result.assert_outcomes(passed=3, warnings=2)
    properties = _properties(project.path / "junit.xml")
    line = shop_line(project, "book.author.name for")
    [(name, value)] = properties["test_first"]
    assert name == "nplusone-guard.finding"
    assert value.startswith("nplusone-read ")
    assert f" shop.py:{line}: N+1 query on testapp.Book.author: 4 queries" in value
    assert properties["test_clean"] == []
    tree = ET.parse(project.path / "junit.xml")
    case = next(c for c in tree.iter("testcase") if c.get("name") == "test_first")
    out = case.find("system-out")
    assert out is not None
    assert "nplusone-guard findings:" in (out.text or "")
    assert f"at shop.py:{line} in author_names" in (out.text or "")


def test_junit_failure_message_holds_the_findings_once(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project, "--nplusone=fail", "--junitxml=junit.xml", "-o", "junit_logging=system-out"
    )
    result.assert_outcomes(passed=1, failed=2)
    tree = ET.parse(project.path / "junit.xml")
    case = next(c for c in tree.iter("testcase") if c.get("name") == "test_first")
    failure = case.find("failure")
    assert failure is not None
    assert "N+1 query on testapp.Book.author" in (failure.get("message") or "")
    out = case.find("system-out")
    assert out is None or "nplusone-guard findings:" not in (out.text or "")
    assert [p.get("name") for p in case.iter("property")] == ["nplusone-guard.finding"]


@pytest.mark.parametrize("how", ["option", "environment"])
def test_github_annotations(project, monkeypatch, how):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    args = ["--nplusone=fail"]
    if how == "option":
        args.append("--nplusone-annotations")
    else:
        monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = run(project, *args)
    result.assert_outcomes(passed=1, failed=2)
    line = shop_line(project, "book.author.name for")
    annotations = [x for x in result.outlines if x.startswith("::")]
    assert len(annotations) == 1, annotations
    [annotation] = annotations
    assert annotation.startswith(
        f"::error file=shop.py,line={line},title=nplusone-guard%3A nplusone-read::"
        "N+1 query on testapp.Book.author: 4 queries"
    )
    assert '%0AFix: .select_related("author")' in annotation
    assert "%0Aseen in test_suite.py::test_first, test_suite.py::test_second" in annotation


def test_no_annotations_outside_github_actions(project, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(project, "--nplusone=warn")
    assert not [x for x in result.outlines if x.startswith("::")]
