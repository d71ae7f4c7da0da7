"""SARIF 2.1.0 output: valid against the schema, one result per finding id, and read back by
a SARIF consumer (Microsoft's sarif-tools) to the same findings at the same lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from django.template.loader import render_to_string
from sarif import loader

from django_nplusone_guard import capture
from django_nplusone_guard.identity import RULES, split_callsite
from django_nplusone_guard.sarif import FINGERPRINT_KEY, sarif_log, write_sarif
from django_nplusone_guard.sightings import Sighting, repository_root
from tests.testapp.models import Book

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = Path(
    os.environ.get(
        "NPLUSONE_GUARD_SARIF_SCHEMA",
        ROOT / "tests" / "fixtures" / "sarif" / "sarif-2.1.0-rtm.5.json",
    )
)


def validate(log: dict) -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(log)


def _author_names() -> list[str]:
    names = []
    for book in Book.objects.order_by("id"):
        names.append(book.author.name)
    return names


def _count_twice() -> int:
    return Book.objects.count() + Book.objects.count()


def _findings(duplicates: bool = True) -> list[dict]:
    with capture(explain=False) as report:
        _author_names()
        render_to_string("orm/book_list.html", {"books": Book.objects.order_by("id")})
        _count_twice()
    return [f.to_dict() for f in report.findings if duplicates or f.category != "duplicate"]


def _line(text: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def test_the_log_is_valid_sarif_2_1_0(books):
    findings = _findings()
    log = sarif_log([Sighting(f, "tests/test_x.py::test_a", True) for f in findings])
    validate(log)
    assert log["version"] == "2.1.0"
    driver = log["runs"][0]["tool"]["driver"]
    assert [rule["id"] for rule in driver["rules"]] == list(RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"]
        assert rule["help"]["text"] and rule["helpUri"].startswith("https://")


def test_an_invalid_log_fails_the_schema_so_the_check_means_something(books):
    log = sarif_log([Sighting(f, "t", False) for f in _findings()])
    log["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        validate(log)


def test_one_result_per_finding_id_with_every_test_that_saw_it(books):
    findings = _findings()
    sightings = [Sighting(f, "test_b", False) for f in findings]
    sightings += [Sighting(f, "test_a", f["category"] == "nplusone") for f in findings]
    results = sarif_log(sightings)["runs"][0]["results"]
    assert len(results) == len({f["id"] for f in findings}) == len(findings)
    for result in results:
        assert result["properties"]["seenIn"] == ["test_a", "test_b"]
        assert result["partialFingerprints"] == {FINGERPRINT_KEY: result["properties"]["id"]}
        category = next(f["category"] for f in findings if f["id"] == result["properties"]["id"])
        assert result["level"] == ("error" if category == "nplusone" else "warning")


def test_the_location_is_the_user_line_and_related_lines_are_the_queryset_and_template(books):
    findings = _findings(duplicates=False)
    results = sarif_log([Sighting(f, "t", False) for f in findings], root=ROOT)["runs"][0][
        "results"
    ]
    by_line = {r["locations"][0]["physicalLocation"]["region"]["startLine"]: r for r in results}
    loop = by_line[_line("names.append(book.author.name)")]
    location = loop["locations"][0]["physicalLocation"]["artifactLocation"]
    assert location == {"uri": "tests/test_sarif.py", "uriBaseId": "%SRCROOT%"}
    assert loop["ruleId"] == "nplusone-read"
    queryset_line = _line('for book in Book.objects.order_by("id"):')
    title, *rest = loop["message"]["text"].splitlines()
    assert title.startswith("N+1 query on testapp.Book.author: 5 queries")
    fix, see = rest
    # Django 6.1 adds another way: "; or .fetch_mode(models.FETCH_PEERS) on the queryset".
    assert fix.startswith('Fix: .select_related("author")')
    assert see == f"See [queryset evaluated here (tests/test_sarif.py:{queryset_line})](1)."
    assert loop["relatedLocations"] == [
        {
            "id": 1,
            "physicalLocation": {
                "artifactLocation": {"uri": "tests/test_sarif.py", "uriBaseId": "%SRCROOT%"},
                "region": {"startLine": queryset_line},
            },
            "message": {"text": "queryset evaluated here"},
        }
    ]

    templated = [
        r
        for r in results
        if any(rel["message"]["text"] == "template line" for rel in r.get("relatedLocations", []))
    ]
    assert templated, results
    template = next(
        rel
        for rel in templated[0]["relatedLocations"]
        if rel["message"]["text"] == "template line"
    )
    uri = template["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.startswith("tests/testapp/templates/orm/"), uri
    assert (ROOT / uri).is_file()


def test_a_consumer_library_reads_back_the_same_findings(books, tmp_path):
    findings = _findings()
    path = tmp_path / "nplusone.sarif"
    write_sarif(path, sarif_log([Sighting(f, "t", True) for f in findings], root=ROOT))
    records = loader.load_sarif_file(str(path)).get_records()
    expected = sorted(
        (
            split_callsite(f["callsite"] if "callsite" in f else f["callsites"][0])[0],
            str(split_callsite(f["callsite"] if "callsite" in f else f["callsites"][0])[1]),
            f["category"],
        )
        for f in findings
    )
    rules = {"nplusone": "nplusone-read", "duplicate": "duplicate"}
    got = sorted(
        (r["Location"], str(r["Line"]), next(k for k, v in rules.items() if v == r["Code"]))
        for r in records
    )
    assert got == expected
    assert {r["Severity"] for r in records} == {"error"}
    assert {r["Tool"] for r in records} == {"django-nplusone-guard"}


def test_findings_without_a_user_line_have_no_location(db):
    finding = {
        "category": "nplusone",
        "kind": "read",
        "model": "testapp.Book",
        "field": "author",
        "count": 3,
        "fingerprint": "f",
        "sql": "SELECT 'secret' FROM book",
        "callsite": "<stdin>:1 in <module>",
    }
    log = sarif_log([Sighting(finding, "t", False)])
    validate(log)
    result = log["runs"][0]["results"][0]
    assert "locations" not in result
    assert "secret" not in result["properties"]["sql"]


def test_the_repository_root_is_the_directory_with_git(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert repository_root(tmp_path / "a" / "b") == tmp_path
    log = sarif_log([], root=tmp_path / "a")
    assert log["runs"][0]["originalUriBaseIds"] == {
        "%SRCROOT%": {"uri": (tmp_path / "a").as_uri() + "/"}
    }


def test_an_empty_run_is_a_valid_log_with_no_results():
    log = sarif_log([], category="audit")
    validate(log)
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["automationDetails"] == {"id": "django-nplusone-guard/audit/"}
