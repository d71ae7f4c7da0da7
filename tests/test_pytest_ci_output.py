"""The pytest plugin's CI output, through real pytest sessions (pytester, in a subprocess):
SARIF (``--nplusone-sarif``), GitHub annotations and findings in pytest's ``--junitxml``.
Each session checks all three, to keep the number of sessions (a second or more each) low."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

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

SEEN_IN = ["test_suite.py::test_first", "test_suite.py::test_second"]


def sarif_result(path: Path) -> dict[str, Any]:
    log = json.loads(path.read_text())
    validate(log)
    [result] = log["runs"][0]["results"]
    return result  # type: ignore[no-any-return]


def cases(path: Path) -> dict[str, ET.Element]:
    return {case.get("name") or "": case for case in ET.parse(path).iter("testcase")}


def properties(case: ET.Element) -> list[tuple[str | None, str | None]]:
    return [(p.get("name"), p.get("value")) for p in case.iter("property")]


def test_fail_mode_sarif_junit_and_annotations(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project,
        "--nplusone=fail",
        "--nplusone-sarif=out/guard.sarif",
        "--nplusone-annotations",
        "--junitxml=junit.xml",
        "-o",
        "junit_logging=system-out",
    )
    result.assert_outcomes(passed=1, failed=2)
    line = shop_line(project, "book.author.name for")

    # SARIF: one result for the loop both tests ran, an error since it failed them.
    result.stdout.fnmatch_lines(["nplusone-guard: SARIF written to *out/guard.sarif"])
    found = sarif_result(project.path / "out" / "guard.sarif")
    assert found["ruleId"] == "nplusone-read"
    assert found["level"] == "error"
    assert found["properties"]["seenIn"] == SEEN_IN
    location = found["locations"][0]["physicalLocation"]
    assert location["artifactLocation"] == {"uri": "shop.py", "uriBaseId": "%SRCROOT%"}
    assert location["region"] == {"startLine": line}
    log = json.loads((project.path / "out" / "guard.sarif").read_text())
    assert log["runs"][0]["originalUriBaseIds"]["%SRCROOT%"]["uri"] == (
        project.path.resolve().as_uri() + "/"
    )

    # JUnit: the failure message shows the findings, a property names each, and the
    # output does not repeat them.
    case = cases(project.path / "junit.xml")["test_first"]
    failure = case.find("failure")
    assert failure is not None
    assert "N+1 query on testapp.Book.author" in (failure.get("message") or "")
    [(name, value)] = properties(case)
    assert name == "nplusone-guard.finding"
    assert (value or "").startswith("nplusone-read ")
    assert f" shop.py:{line}: N+1 query on testapp.Book.author: 4 queries" in (value or "")
    assert "nplusone-guard findings:" not in (case.findtext("system-out") or "")
    assert properties(cases(project.path / "junit.xml")["test_clean"]) == []

    # Annotations: one, an error, at the loop's line.
    [annotation] = [x for x in result.outlines if x.startswith("::")]
    assert annotation.startswith(
        f"::error file=shop.py,line={line},title=nplusone-guard%3A nplusone-read::"
        "N+1 query on testapp.Book.author: 4 queries"
    )
    assert '%0AFix: .select_related("author")' in annotation
    assert "%0Aseen in test_suite.py::test_first, test_suite.py::test_second" in annotation


def test_warn_mode_under_github_actions(project, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project,
        "--nplusone=warn",
        "--nplusone-sarif=guard.sarif",
        "--junitxml=junit.xml",
        "-o",
        "junit_logging=system-out",
    )
    result.assert_outcomes(passed=3, warnings=2)
    assert sarif_result(project.path / "guard.sarif")["level"] == "warning"
    [annotation] = [x for x in result.outlines if x.startswith("::")]
    assert annotation.startswith("::warning file=shop.py,")
    # The tests passed: their output carries the findings.
    out = cases(project.path / "junit.xml")["test_first"].findtext("system-out") or ""
    assert "nplusone-guard findings:" in out
    assert f"at shop.py:{shop_line(project, 'book.author.name for')} in author_names" in out


def test_sarif_alone_records_without_failing_and_without_annotations(project, monkeypatch):
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(project, "--nplusone-sarif=guard.sarif")
    result.assert_outcomes(passed=3)
    assert sarif_result(project.path / "guard.sarif")["level"] == "warning"
    assert not [x for x in result.outlines if x.startswith("::")]


def test_sarif_and_junit_under_xdist(project):
    project.makepyfile(test_suite=TWO_TESTS_ONE_LOOP)
    result = run(
        project, "-n", "2", "--nplusone=fail", "--nplusone-sarif=guard.sarif", "--junitxml=j.xml"
    )
    result.assert_outcomes(passed=1, failed=2)
    assert sarif_result(project.path / "guard.sarif")["properties"]["seenIn"] == SEEN_IN
    junit = cases(project.path / "j.xml")
    assert [name for name, _value in properties(junit["test_first"])] == ["nplusone-guard.finding"]
    assert properties(junit["test_clean"]) == []
