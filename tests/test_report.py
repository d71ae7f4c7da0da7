"""The shared text formatter and the JSON round trip of the fields added for precision."""

from __future__ import annotations

import json

from django_nplusone_guard.report import Duplicate, NPlusOne, Report, format_finding, format_report


def _finding(**overrides: object) -> NPlusOne:
    values: dict[str, object] = {
        "kind": "read",
        "model": "library.Book",
        "field": "author",
        "count": 5,
        "fingerprint": "fp",
        "sql": 'SELECT * FROM "library_author" WHERE "id" = %s',
        "callsite": "library/api.py:30 in BookSerializer.author",
        "suggestion": '.select_related("author")',
        "parent_callsite": "library/api.py:12 in BookList.queryset",
    }
    values.update(overrides)
    return NPlusOne(**values)  # type: ignore[arg-type]


def test_the_fix_line_is_code_only_and_the_alternative_stands_apart():
    text = format_finding(
        _finding(alternative="or .fetch_mode(models.FETCH_PEERS) on the queryset")
    )
    lines = text.splitlines()
    fix = lines.index('  Fix: .select_related("author")')
    assert lines[fix + 1] == "    or .fetch_mode(models.FETCH_PEERS) on the queryset"
    assert "#" not in lines[fix]


def test_where_the_fix_goes_is_said_when_it_is_not_the_querysets_line():
    text = format_finding(
        _finding(
            suggestion='list_select_related = ["author"]',
            fix_at="library/admin.py:9 in BookAdmin.list_select_related",
        )
    )
    assert '  Fix: list_select_related = ["author"]\n' in text
    assert "    in library/admin.py:9 in BookAdmin.list_select_related" in text
    same_place = format_finding(_finding(fix_at="library/api.py:12 in BookList.queryset"))
    # Said once: the "queryset evaluated at" line already names it.
    assert same_place.count("library/api.py:12 in BookList.queryset") == 1


def test_each_kind_of_duplicate_has_its_own_title_and_advice():
    base = {
        "model": "library.Tag",
        "count": 5,
        "fingerprint": "fp",
        "sql": "SELECT 1",
        "callsites": ["library/api.py:40 in TagView.post"],
    }
    identical = Duplicate(**base)  # type: ignore[arg-type]
    assert identical.title == "Duplicate query on library.Tag: 5 identical queries"
    assert "Fix: run it once and reuse the result" in format_finding(identical)

    repeat = Duplicate(**base, kind="repeat", field="tags")  # type: ignore[arg-type]
    assert repeat.title == "Repeated query on library.Tag.tags: 5 queries from one place"

    library = Duplicate(
        **base,  # type: ignore[arg-type]
        kind="library",
        library="rest_framework",
        suggestion="PrimaryKeyRelatedField(many=True) looks up each pk",
    )
    assert library.title == "Library loop on library.Tag: 5 queries run by rest_framework"
    assert "Fix: PrimaryKeyRelatedField(many=True) looks up each pk" in format_finding(library)


def test_new_fields_survive_the_json_round_trip():
    report = Report(
        nplusones=[_finding(fix_at="a.py:1 in A.queryset", alternative="or that")],
        duplicates=[
            Duplicate(
                model="library.Tag",
                count=2,
                fingerprint="fp",
                sql="SELECT 1",
                callsites=["a.py:2 in f"],
                kind="library",
                library="django.contrib.admin",
                suggestion="show_full_result_count = False",
                field=None,
            )
        ],
    )
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.nplusones == report.nplusones
    assert again.duplicates == report.duplicates
    assert str(again) == str(report)


def test_repr_is_short_and_counts():
    from django_nplusone_guard.report import CapturedQuery

    queries = [
        CapturedQuery("default", f"SELECT {i}", (i,), False, 0.1, "views.py:1 in f")
        for i in range(1_000)
    ]
    nplusone = NPlusOne(
        kind="read", model="library.Book", field="author", count=1_000, fingerprint="f",
        sql="SELECT 1", callsite="views.py:1 in f",
    )  # fmt: skip
    report = Report(queries=queries, nplusones=[nplusone], query_count=1_000)
    assert repr(report) == ("<Report: 1000 queries, 1 N+1, 0 missing index, 0 duplicate>")
    assert repr(Report(query_count=1)) == "<Report: 1 query, 0 N+1, 0 missing index, 0 duplicate>"


def test_counts_read_one_query_and_many_queries():
    one = format_report(Report(query_count=1))
    assert one.startswith("1 query, 0.0 ms:")
    assert format_report(Report(query_count=2)).startswith("2 queries, 0.0 ms:")
    duplicate = Duplicate(
        model="library.Book", count=1, fingerprint="f", sql="SELECT 1", callsites=["a.py:1"]
    )
    assert duplicate.title == "Duplicate query on library.Book: 1 identical query"
    duplicate.count = 3
    assert duplicate.title == "Duplicate query on library.Book: 3 identical queries"


def test_findings_are_in_count_then_call_site_order_whatever_their_timing():
    def nplusone(count: int, callsite: str, ms: float) -> NPlusOne:
        return NPlusOne(
            kind="read", model="library.Book", field=callsite, count=count, fingerprint=callsite,
            sql="SELECT 1", callsite=callsite, total_time_ms=ms,
        )  # fmt: skip

    findings = [
        nplusone(3, "b.py:1 in f", 9.0),
        nplusone(5, "z.py:1 in f", 0.1),
        nplusone(3, "a.py:1 in f", 0.2),
    ]
    report = Report(nplusones=findings)
    order = [getattr(f, "callsite", None) for f in report.findings]
    assert order == ["z.py:1 in f", "a.py:1 in f", "b.py:1 in f"]
    text = format_report(report)
    assert text.index("at z.py") < text.index("at a.py") < text.index("at b.py")
    # The same findings found in another order (another run's timings) render the same.
    assert format_report(Report(nplusones=list(reversed(findings)))) == text
