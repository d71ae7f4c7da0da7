"""``make ci-reports``: the example project's audit as the SARIF and JUnit files a CI job
publishes (docs/ci.md), produced by the command the make target runs, and checked here."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.test_example_project import EXAMPLE, example_env, manage
from tests.test_sarif import validate

__all__ = ["example_env"]

ROOT = EXAMPLE.parent


@pytest.fixture(scope="module")
def reports(example_env, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ci-reports")
    result = manage(example_env, "ci_reports", "--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Wrote {out / 'nplusone.sarif'}" in result.stdout
    return out


def test_the_make_target_runs_the_command():
    dry = subprocess.run(
        ["make", "-n", "ci-reports"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "manage.py ci_reports --out ../build" in dry.stdout


def test_the_sarif_file_is_valid_and_points_into_the_repository(reports):
    log = json.loads((reports / "nplusone.sarif").read_text())
    validate(log)
    results = log["runs"][0]["results"]
    ids = [r["partialFingerprints"]["nplusoneGuard/v1"] for r in results]
    assert len(ids) == len(set(ids))
    rules = {r["ruleId"] for r in results}
    assert {"nplusone-read", "missing-index"} <= rules
    for result in results:
        uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        assert uri.startswith("example_project/library/"), uri
        assert (ROOT / uri).is_file(), uri
        assert result["level"] == "error"  # every kind found is a --fail-on kind
        for related in result.get("relatedLocations", []):
            assert (ROOT / related["physicalLocation"]["artifactLocation"]["uri"]).is_file()
    books = next(r for r in results if r["properties"]["seenIn"] == ["/books/"])
    assert books["message"]["text"].splitlines()[1].startswith('Fix: .select_related("author")')
    assert books["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "example_project/library/templates/library/book_list.html"
    )


def test_the_junit_file_has_a_case_per_page_and_fails_the_problem_pages(reports):
    root = ET.parse(reports / "nplusone-junit.xml").getroot()
    [suite] = root.iter("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert int(suite.get("tests") or 0) == len(cases)
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert int(suite.get("failures") or 0) == len(failed)
    assert "/books/" in failed
    assert "/authors/by-email/" in failed  # a missing index
    twins = [name for name in cases if name.endswith("/fixed/")]
    assert twins
    assert not failed.intersection(twins)
    assert "N+1 query on library.Book.author" in (cases["/books/"].findtext("failure") or "")
