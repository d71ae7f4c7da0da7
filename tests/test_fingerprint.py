"""Fingerprints: same shape -> same key, different shape -> different key, never raise."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from django_nplusone_guard.fingerprint import fingerprint


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('SELECT * FROM "t" WHERE "id" = %s', 'SELECT * FROM "t" WHERE "id" = 42'),
        ("SELECT * FROM t WHERE id = ?", "SELECT * FROM t WHERE id = $1"),
        ("SELECT * FROM t WHERE id = :id", "SELECT * FROM t WHERE id = %(id)s"),
        ("SELECT * FROM t WHERE name = 'bob'", "SELECT * FROM t WHERE name = 'it''s'"),
        ("SELECT * FROM t WHERE id IN (%s, %s)", "SELECT * FROM t WHERE id IN (%s, %s, %s, %s)"),
        ("SELECT * FROM t WHERE id IN (1, 2, 3)", "SELECT * FROM t WHERE id IN (%s)"),
        (
            "INSERT INTO t (a, b) VALUES (%s, %s)",
            "INSERT INTO t (a, b) VALUES (%s, %s), (%s, %s), (%s, %s)",
        ),
        ("select  *\n from t where id=%s", "SELECT * FROM t WHERE id=%s"),
        (
            "SELECT * FROM t WHERE id = %s /*controller='index',framework='django'*/",
            "SELECT * FROM t WHERE id = %s /*controller='other'*/",
        ),
        ("SELECT * FROM t -- trailing comment\nWHERE id = 1", "SELECT * FROM t WHERE id = 2"),
        ("SELECT * FROM t WHERE x > -1.5e3", "SELECT * FROM t WHERE x > 7"),
    ],
)
def test_same_shape_same_fingerprint(a, b):
    assert fingerprint(a).key == fingerprint(b).key


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('SELECT * FROM "author" WHERE id = %s', 'SELECT * FROM "book" WHERE id = %s'),
        ("SELECT a FROM t WHERE id = %s", "SELECT b FROM t WHERE id = %s"),
        ("SELECT * FROM t WHERE id = %s", "SELECT * FROM t WHERE id > %s"),
        ("SELECT * FROM t WHERE id = %s", "DELETE FROM t WHERE id = %s"),
        ('SELECT "t1"."c2" FROM t1', 'SELECT "t1"."c3" FROM t1'),
    ],
)
def test_different_shape_different_fingerprint(a, b):
    assert fingerprint(a).key != fingerprint(b).key


@pytest.mark.parametrize(
    ("sql", "verb", "read", "write", "control"),
    [
        ("SELECT 1", "SELECT", True, False, False),
        ("  (SELECT 1) UNION (SELECT 2)", "SELECT", True, False, False),
        ("/* hi */ WITH x AS (SELECT 1) SELECT * FROM x", "WITH", True, False, False),
        ('INSERT INTO "t" VALUES (1)', "INSERT", False, True, False),
        ('UPDATE "t" SET a = 1', "UPDATE", False, True, False),
        ('DELETE FROM "t"', "DELETE", False, True, False),
        ('SAVEPOINT "s1_x1"', "SAVEPOINT", False, False, True),
        ('RELEASE SAVEPOINT "s1_x1"', "RELEASE", False, False, True),
        ("BEGIN", "BEGIN", False, False, True),
    ],
)
def test_verb_classification(sql, verb, read, write, control):
    fp = fingerprint(sql)
    assert (fp.verb, fp.is_read, fp.is_write, fp.is_transaction_control) == (
        verb,
        read,
        write,
        control,
    )


def test_tables_are_extracted_in_order():
    fp = fingerprint(
        'SELECT * FROM "testapp_book" INNER JOIN "testapp_author" ON (1 = 1) '
        "LEFT OUTER JOIN `testapp_tag` ON (1 = 1)"
    )
    assert fp.tables == ("testapp_book", "testapp_author", "testapp_tag")


def test_huge_statement_is_bounded_and_stable():
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(["%s"] * 10_000) + ")"
    assert fingerprint(sql).key == fingerprint("SELECT * FROM t WHERE id IN (%s)").key
    big = "SELECT '" + "x" * 1_000_000 + "'"
    assert fingerprint(big).verb == "SELECT"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text):
    fp = fingerprint(text)
    assert isinstance(fp.key, str) and len(fp.key) == 16


@settings(max_examples=100, deadline=None)
@given(st.binary())
def test_never_raises_on_bytes(data):
    assert fingerprint(data).key


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=500), st.integers(min_value=1, max_value=500))
def test_in_list_length_does_not_change_fingerprint(n, m):
    def sql(k: int) -> str:
        return 'SELECT * FROM "t" WHERE "t"."id" IN (' + ", ".join(["%s"] * k) + ")"

    assert fingerprint(sql(n)).key == fingerprint(sql(m)).key


@settings(max_examples=100, deadline=None)
@given(
    st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
    st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True),
)
def test_different_tables_give_different_fingerprints(a, b):
    assume(a != b)
    assert (
        fingerprint(f'SELECT * FROM "{a}" WHERE id = %s').key
        != fingerprint(f'SELECT * FROM "{b}" WHERE id = %s').key
    )
