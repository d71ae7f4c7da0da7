"""GitHub Actions workflow commands: escaping as the runner reads them back, and one
annotation per finding id."""

from __future__ import annotations

from django_nplusone_guard.github_annotations import (
    annotation_lines,
    escape_data,
    escape_property,
    in_github_actions,
)
from django_nplusone_guard.sightings import Sighting


def test_messages_escape_percent_and_line_breaks():
    assert escape_data("100% of\r\nrows: a, b") == "100%25 of%0D%0Arows: a, b"


def test_properties_also_escape_colon_and_comma():
    assert escape_property("C:\\app,v2%\n") == "C%3A\\app%2Cv2%25%0A"


def test_only_github_actions_turns_annotations_on():
    assert in_github_actions({"GITHUB_ACTIONS": "true"})
    assert not in_github_actions({"GITHUB_ACTIONS": "false"})
    assert not in_github_actions({})


def _finding(callsite: str) -> dict[str, object]:
    return {
        "category": "nplusone",
        "kind": "read",
        "model": "shop.Order",
        "field": "lines",
        "count": 7,
        "fingerprint": "f",
        "sql": "SELECT 1",
        "callsite": callsite,
        "suggestion": '.prefetch_related("lines")',
        "total_time_ms": 1.5,
    }


def test_one_annotation_per_finding_with_escaped_file_and_message(tmp_path):
    source = tmp_path / "shop, v2" / "views.py"
    source.parent.mkdir()
    source.write_text("x = 1\n")
    finding = _finding(f"{source}:1 in order_list")
    lines = annotation_lines(
        [Sighting(finding, "/orders/", True), Sighting(finding, "/orders/?page=2", False)],
        root=tmp_path,
    )
    assert lines == [
        "::error file=shop%2C v2/views.py,line=1,title=nplusone-guard%3A nplusone-read::"
        "N+1 query on shop.Order.lines: 7 queries (1.5 ms)"
        '%0AFix: .prefetch_related("lines")'
        "%0Aseen in /orders/, /orders/?page=2"
        f"%0Aid: {lines[0].rsplit('%0Aid: ', 1)[1]}"
    ]
    assert len(lines[0].rsplit("%0Aid: ", 1)[1]) == 16


def test_a_finding_without_a_user_line_has_no_file():
    [line] = annotation_lines([Sighting(_finding("<stdin>:1 in <module>"), "t", False)])
    assert line.startswith("::warning title=nplusone-guard%3A nplusone-read::N+1 query")
