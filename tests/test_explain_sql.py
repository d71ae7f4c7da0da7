"""Reading WHERE / ON / ORDER BY terms out of the SQL Django writes (no database needed)."""

from __future__ import annotations

import re

import pytest
from django.db.models import Q
from hypothesis import given, settings
from hypothesis import strategies as st

from django_nplusone_guard.explain.base import MAX_INDEX_NAME, index_name
from django_nplusone_guard.explain.sql import (
    EQ,
    FUNCTION,
    JOIN,
    NOT,
    OR,
    OTHER,
    PATTERN,
    PREFIX,
    RANGE,
    _parse,
    parse_statement,
)
from tests.testapp.models import Listing


def kinds(sql: str, params=()) -> list[tuple[str, str, str]]:
    statement = parse_statement(sql, params)
    return [(p.alias, p.column, p.kind) for b in statement.blocks for p in b.predicates]


def django_sql(queryset):
    return queryset.query.sql_with_params()


def test_conjunction_of_equalities():
    sql = 'SELECT 1 FROM "t" WHERE ("t"."a" = %s AND "t"."b" = %s)'
    assert kinds(sql, (1, 2)) == [("t", "a", EQ), ("t", "b", EQ)]


def test_ranges_between_and_reversed_comparisons():
    sql = 'SELECT 1 FROM "t" WHERE "t"."a" BETWEEN %s AND %s AND %s < "t"."b" AND "t"."c" >= %s'
    assert kinds(sql, (1, 2, 3, 4)) == [("t", "a", RANGE), ("t", "b", RANGE), ("t", "c", RANGE)]


def test_in_lists_subqueries_and_is_null_are_equalities():
    sql = (
        'SELECT 1 FROM "t" WHERE "t"."a" IN (%s, %s) AND "t"."b" IS NULL AND "t"."c" IN '
        '(SELECT U0."id" FROM "u" U0 WHERE U0."x" = %s)'
    )
    statement = parse_statement(sql, (1, 2, 3))
    assert [(p.column, p.kind) for p in statement.blocks[0].predicates] == [
        ("a", EQ),
        ("b", EQ),
        ("c", EQ),
    ]
    assert statement.tables == {"t": "t", "u0": "u"}
    assert [(p.alias, p.column, p.kind) for p in statement.blocks[1].predicates] == [
        ("u0", "x", EQ)
    ]


def test_bare_boolean_column_is_an_equality():
    sql, params = django_sql(Listing.objects.filter(active=True))
    assert kinds(sql, params) == [("testapp_listing", "active", EQ)]


def test_leading_wildcard_like_cannot_use_a_btree_but_a_prefix_may():
    sql = 'SELECT 1 FROM "t" WHERE "t"."a" LIKE %s ESCAPE \'\\\' AND "t"."b" LIKE %s'
    statement = parse_statement(sql, ("%x%", "x%"))
    a, b = statement.blocks[0].predicates
    assert (a.kind, b.kind) == (PATTERN, PREFIX)
    assert "leading wildcard" in a.detail


def test_postgresql_icontains_is_a_function_on_the_column():
    sql = 'SELECT 1 FROM "t" WHERE UPPER("t"."a"::text) LIKE UPPER(%s)'
    (predicate,) = parse_statement(sql, ("%x%",)).blocks[0].predicates
    assert predicate.kind == FUNCTION
    assert predicate.detail.startswith("UPPER(column) LIKE")
    assert "icontains" in predicate.detail


def test_or_negation_and_inequality_are_not_candidates():
    sql, params = django_sql(Listing.objects.filter(Q(city="a") | Q(zip_code="b")))
    assert {k for _, _, k in kinds(sql, params)} == {OR}
    sql, params = django_sql(Listing.objects.exclude(city="a"))
    assert {k for _, _, k in kinds(sql, params)} == {NOT}
    assert kinds('SELECT 1 FROM "t" WHERE "t"."a" <> %s', (1,)) == [("t", "a", OTHER)]
    assert kinds('SELECT 1 FROM "t" WHERE "t"."a" IS NOT NULL') == [("t", "a", OTHER)]


def test_join_equalities_from_on_clauses_name_both_sides():
    sql = (
        'SELECT 1 FROM "a" INNER JOIN "b" T3 ON ("a"."b_id" = T3."id") '
        'LEFT OUTER JOIN "c" ON ("a"."id" = "c"."a_id") WHERE T3."x" = %s'
    )
    statement = parse_statement(sql, (1,))
    assert statement.tables == {"a": "a", "t3": "b", "c": "c"}
    assert [(p.alias, p.column, p.kind) for p in statement.blocks[0].predicates] == [
        ("a", "b_id", JOIN),
        ("t3", "id", JOIN),
        ("a", "id", JOIN),
        ("c", "a_id", JOIN),
        ("t3", "x", EQ),
    ]


def test_order_by_and_limit():
    sql, params = django_sql(Listing.objects.order_by("-listed", "id")[:5])
    block = parse_statement(sql, params).outer
    assert block is not None
    assert block.limit
    assert block.order_by == [
        ("testapp_listing", "listed", True),
        ("testapp_listing", "id", False),
    ]


def test_order_by_an_expression_has_no_columns():
    block = parse_statement('SELECT 1 FROM "t" ORDER BY UPPER("t"."a") LIMIT 3').outer
    assert block is not None
    assert block.order_by is None


def test_mysql_backticks_and_unqualified_raw_sql():
    assert kinds("SELECT 1 FROM `t` WHERE `t`.`a` = %s", (1,)) == [("t", "a", EQ)]
    assert kinds("select id from t where city = %s", ("x",)) == [("t", "city", EQ)]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1; DELETE FROM t",
        "SELECT * INTO OUTFILE '/tmp/x' FROM t",
        "SELECT * INTO new_table FROM t",
    ],
)
def test_anything_but_one_plain_select_is_refused(sql):
    assert not parse_statement(sql).single_select


@pytest.mark.parametrize(
    "sql", ["", "SELECT", "SELECT ((((", "WHERE = = AND OR", "SELECT 'unterminated", "\x00"]
)
def test_odd_text_never_raises(sql):
    parse_statement(sql, ("x",))


def test_index_names_are_valid_and_at_most_30_characters():
    assert index_name("listing", ["city", "zip_code"]) == "listing_city_zip_code_idx"
    long = index_name("averyveryverylongmodelname", ["first_long_field", "-second_field"])
    assert len(long) <= MAX_INDEX_NAME
    assert re.fullmatch(r"[a-z][a-z0-9_]*", long)
    assert long != index_name("averyveryverylongmodelname", ["first_long_field", "third"])
    assert index_name("9lives", ["x"]).startswith("ix_")


_SQL_WORDS = [
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "BETWEEN",
    "ORDER",
    "BY",
    "LIMIT",
    "(",
    ")",
    ",",
    ".",
    ";",
    "=",
    "<",
    ">",
    "%s",
    '"t"',
    '"c"',
    "`x`",
    "'a'",
    "1",
    "::text",
    "IS",
    "NULL",
    "JOIN",
    "ON",
    "T3",
    "U0",
    "UPPER",
    "ESCAPE",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_SQL_WORDS), max_size=40).map(" ".join),
    st.lists(st.one_of(st.none(), st.text(max_size=3), st.integers()), max_size=5),
)
def test_the_reader_itself_never_raises_on_sql_like_noise(sql, params):
    # parse_statement() also guards with a catch-all; this checks the reader needs none.
    _parse(sql, params)
