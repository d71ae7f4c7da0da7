"""SQLite ``EXPLAIN QUERY PLAN`` lines, in the formats before and after SQLite 3.36."""

from __future__ import annotations

import pytest
from django.db import OperationalError, connection

from django_nplusone_guard.explain.base import JOIN_SCAN, SCAN, SORT
from django_nplusone_guard.explain.sqlite import _progress_deadline, parse_query_plan


def signals(*details: str) -> list[tuple[str, str]]:
    return [(s.kind, s.alias) for s in parse_query_plan(details)]


@pytest.mark.parametrize(
    ("detail", "expected"),
    [
        ("SCAN testapp_book", [(SCAN, "testapp_book")]),
        ("SCAN TABLE testapp_book", [(SCAN, "testapp_book")]),
        ("SCAN U0", [(SCAN, "u0")]),
        ("SCAN TABLE testapp_book AS T3", [(SCAN, "t3")]),
        ("SCAN testapp_book USING COVERING INDEX ix_a", [(SCAN, "testapp_book")]),
        ("SCAN TABLE testapp_book USING INDEX ix_a", [(SCAN, "testapp_book")]),
        ("SEARCH testapp_book USING INDEX ix_a (title=?)", []),
        ("SEARCH TABLE testapp_book USING INTEGER PRIMARY KEY (rowid=?)", []),
        ("SEARCH T3 USING AUTOMATIC COVERING INDEX (author_id=?)", [(JOIN_SCAN, "t3")]),
        (
            "SEARCH TABLE b AS T3 USING AUTOMATIC PARTIAL COVERING INDEX (x=?)",
            [(JOIN_SCAN, "t3")],
        ),
        ("USE TEMP B-TREE FOR ORDER BY", [(SORT, "")]),
        ("USE TEMP B-TREE FOR RIGHT PART OF ORDER BY", [(SORT, "")]),
        ("USE TEMP B-TREE FOR LAST 2 TERMS OF ORDER BY", [(SORT, "")]),
        ("USE TEMP B-TREE FOR GROUP BY", []),
        ("USE TEMP B-TREE FOR DISTINCT", []),
        ("SCAN SUBQUERY 1", []),
        ("SCAN CONSTANT ROW", []),
        ("LIST SUBQUERY 1", []),
        ("MULTI-INDEX OR", []),
        ("CORRELATED SCALAR SUBQUERY 2", []),
    ],
)
def test_plan_lines(detail, expected):
    assert signals(detail) == expected


def test_a_scan_inside_a_loop_nest_is_a_join_without_index():
    plan = parse_query_plan(
        ["SEARCH testapp_author USING INTEGER PRIMARY KEY (rowid=?)", "SCAN testapp_shelf"],
        [0, 0],
    )
    assert [(s.kind, s.alias) for s in plan] == [
        (SCAN, "testapp_shelf"),
        (JOIN_SCAN, "testapp_shelf"),
    ]
    left = parse_query_plan(["SCAN a", "SCAN b LEFT-JOIN"], [0, 0])
    assert [(s.kind, s.alias) for s in left] == [(SCAN, "a"), (SCAN, "b"), (JOIN_SCAN, "b")]
    # A subquery's first table opens its own loop nest.
    sub = parse_query_plan(["SCAN a", "LIST SUBQUERY 1", "SCAN u0"], [0, 0, 7])
    assert [(s.kind, s.alias) for s in sub] == [(SCAN, "a"), (SCAN, "u0")]


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's progress handler")
@pytest.mark.django_db
def test_progress_deadline_interrupts_and_is_removed_afterwards():
    slow = (
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000) "
        "SELECT count(*) FROM n WHERE i < %s"
    )
    with connection.cursor() as cursor:
        with _progress_deadline(connection, 20), pytest.raises(OperationalError):
            cursor.execute(slow, [10])
        cursor.execute(slow.replace("50000000", "300000"), [10])  # no handler left behind
        assert cursor.fetchone() == (9,)
