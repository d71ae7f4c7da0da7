"""PostgreSQL ``EXPLAIN (FORMAT JSON)`` plans -> signals (shapes as PostgreSQL 13-17 print
them), and the trigram hint."""

from __future__ import annotations

from django_nplusone_guard.explain.base import JOIN_SCAN, READ, SCAN, SORT
from django_nplusone_guard.explain.postgresql import PostgreSQLExplain, parse_json_plan
from django_nplusone_guard.explain.sql import FUNCTION, OTHER, PATTERN, Predicate
from tests.testapp.models import Listing


def scan(alias="t", **extra):
    return {"Node Type": "Seq Scan", "Relation Name": "t", "Alias": alias, "Plan Rows": 7, **extra}


def signals(plan) -> list[tuple[str, str]]:
    return [(s.kind, s.alias) for s in parse_json_plan([{"Plan": plan}])]


def test_seq_scan_with_filter():
    (signal,) = parse_json_plan([{"Plan": scan(Filter="((city)::text = 'x'::text)")}])
    assert (signal.kind, signal.alias, signal.rows_estimate) == (SCAN, "t", 7)
    assert signal.plan == "Seq Scan on t  Filter: ((city)::text = 'x'::text)"


def test_seq_scan_without_filter_is_a_whole_read_or_the_inner_side_of_a_join():
    assert signals(scan()) == [(READ, "t")]
    join = {
        "Node Type": "Hash Join",
        "Plans": [
            scan("a") | {"Parent Relationship": "Outer"},
            {
                "Node Type": "Hash",
                "Parent Relationship": "Inner",
                "Plans": [scan("b") | {"Parent Relationship": "Outer"}],
            },
        ],
    }
    assert signals(join) == [(READ, "a"), (JOIN_SCAN, "b")]


def test_seq_scan_with_filter_on_the_inner_side_of_a_nested_loop():
    loop = {
        "Node Type": "Nested Loop",
        "Plans": [
            {"Node Type": "Index Scan", "Index Name": "a_pkey", "Relation Name": "a",
             "Alias": "a", "Index Cond": "(id = 1)", "Parent Relationship": "Outer"},
            scan("b", Filter="(a_id = 1)") | {"Parent Relationship": "Inner"},
        ],
    }  # fmt: skip
    assert [k for k in signals(loop) if k[1] == "b"] == [(SCAN, "b"), (JOIN_SCAN, "b")]


def test_full_index_walk_without_condition_is_a_whole_read():
    node = {"Node Type": "Index Scan", "Index Name": "t_pkey", "Relation Name": "t", "Alias": "t"}
    assert signals(node) == [(READ, "t")]


def test_full_index_walk_with_filter_stands_in_for_a_disabled_seq_scan():
    node = {
        "Node Type": "Index Scan",
        "Index Name": "t_pkey",
        "Relation Name": "t",
        "Alias": "T3",
        "Filter": "(x = 1)",
    }
    assert signals(node) == [(SCAN, "t3")]


def test_index_scans_carry_the_index_and_condition_for_the_leading_column_check():
    node = {
        "Node Type": "Index Only Scan",
        "Index Name": "t_a_b_idx",
        "Relation Name": "t",
        "Alias": "t",
        "Index Cond": "(b = 1)",
    }
    (signal,) = parse_json_plan([{"Plan": node}])
    assert (signal.index_name, signal.index_cond) == ("t_a_b_idx", "(b = 1)")


def test_bitmap_index_scan_is_tied_to_its_heap_scan():
    plan = {
        "Node Type": "Bitmap Heap Scan",
        "Relation Name": "t",
        "Alias": "u0",
        "Plan Rows": 3,
        "Plans": [{"Node Type": "Bitmap Index Scan", "Index Name": "ix", "Index Cond": "(a = 1)"}],
    }
    (signal,) = parse_json_plan([{"Plan": plan}])
    assert (signal.alias, signal.index_name, signal.rows_estimate) == ("u0", "ix", 3)


def test_sort_only_counts_under_a_limit():
    sort = {"Node Type": "Sort", "Sort Key": ["listed DESC"], "Plans": [scan()]}
    assert signals(sort) == [(READ, "t")]
    assert signals({"Node Type": "Limit", "Plans": [sort]}) == [(SORT, ""), (READ, "t")]
    incremental = sort | {"Node Type": "Incremental Sort"}
    assert signals({"Node Type": "Limit", "Plans": [incremental]})[0] == (SORT, "")
    gathered = {"Node Type": "Gather Merge", "Plans": [sort]}
    assert signals({"Node Type": "Limit", "Plans": [gathered]})[0] == (SORT, "")


def test_odd_documents_give_no_signals():
    assert parse_json_plan([]) == []
    assert parse_json_plan({"nope": 1}) == []
    assert parse_json_plan([{"Plan": {"Node Type": "Result"}}]) == []


def test_trigram_hint_for_patterns_and_upper_like_only():
    backend = PostgreSQLExplain()
    contains = Predicate("t", "city", PATTERN, "a pattern with a leading wildcard")
    icontains = Predicate("t", "city", FUNCTION, "UPPER(column) LIKE a pattern (icontains)")
    assert 'GinIndex(fields=["city"], opclasses=["gin_trgm_ops"]' in backend.blocker_hint(
        Listing, contains
    )
    assert 'GinIndex(OpClass(Upper("city"), name="gin_trgm_ops")' in backend.blocker_hint(
        Listing, icontains
    )
    date_part = Predicate("t", "listed", FUNCTION, "a function or expression on the column")
    assert backend.blocker_hint(Listing, date_part) == ""
    assert backend.blocker_hint(Listing, Predicate("t", "city", OTHER, "x")) == ""
