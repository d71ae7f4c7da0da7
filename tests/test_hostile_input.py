"""Hostile input: whatever reaches ``cursor.execute``, the guard neither raises nor changes
the database's own answer, takes bounded time, and produces sane, serialisable output.

Every statement runs twice on the real database, without and with the guard, and the two
outcomes (result or exception type and message) must be identical. Fixed cases cover the
known-nasty shapes (megabyte statements, 10,000-element IN lists, NUL and non-UTF-8
parameters, unbalanced quotes, non-SQL text, ``executemany`` with many rows, server-side
cursors); Hypothesis then fuzzes statements and parameters with a fixed, derandomised
profile so CI runs the same examples every time.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from time import perf_counter
from typing import Any

import pytest
from django.db import connection, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_nplusone_guard import capture
from django_nplusone_guard.fingerprint import MAX_NORMALISED_CHARS, fingerprint
from django_nplusone_guard.report import CapturedQuery, Report, format_report
from tests.factories import BookFactory
from tests.testapp.models import Author, Book, Counter

pytestmark = pytest.mark.django_db

VENDOR = connection.vendor

#: The fixed fuzzing profile: modest, deterministic (same examples on every run), no
#: example database written to disk, no per-example deadline on a noisy CI machine (time
#: is bounded by the side-by-side checks instead).
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_EXAMPLES = FUZZ.max_examples


@dataclass(frozen=True)
class Outcome:
    """What the database answered: rows (as their repr, so NaN equals NaN), or an
    exception's type and message."""

    rows: str | None = None
    error: tuple[str, str] | None = None


def _run(statement: Callable[[], Any]) -> Outcome:
    """One run in a savepoint that is always rolled back: a failure must not poison the
    next statement, and a fuzzed write must not change what the second run sees."""
    try:
        with transaction.atomic():
            try:
                return Outcome(rows=repr(statement()))
            finally:
                transaction.set_rollback(True)
    except Exception as exc:
        return Outcome(error=(type(exc).__qualname__, str(exc)))


def same_with_and_without_guard(statement: Callable[[], Any], **options: Any) -> Report:
    """Run ``statement`` bare, then under ``capture``; the outcomes must be identical."""
    bare = _run(statement)
    with capture(**options) as report:
        guarded = _run(statement)
    assert guarded == bare
    check_output(report)
    return report


def statements(report: Report) -> list[CapturedQuery]:
    """The report's queries without the savepoints :func:`_run` wraps them in."""
    return [q for q in report.queries if not fingerprint(q.sql).is_transaction_control]


def check_output(report: Report) -> None:
    """The report serialises, round-trips, and renders to short, encodable lines."""
    data = json.loads(json.dumps(report.to_dict()))
    assert Report.from_dict(data).query_count == report.query_count
    text = format_report(report)
    text.encode("utf-8")  # a log handler writing UTF-8 must not choke on it
    assert max(len(line) for line in text.splitlines()) < 2_000


def execute(sql: str, params: Any = None) -> Callable[[], Any]:
    def statement() -> Any:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else None

    return statement


# --------------------------------------------------------------------------- size


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("SELECT 1 /* " + "x" * 1_000_000 + " */", id="1MB-comment"),
        pytest.param("SELECT '" + "y" * 1_000_000 + "'", id="1MB-literal"),
        pytest.param(
            "SELECT 1 WHERE 1 IN (" + ", ".join(map(str, range(150_000))) + ")", id="1MB-list"
        ),
    ],
)
def test_megabyte_statements(sql):
    """SQLite refuses statements over 1,000,000 bytes; the others run them. Either way the
    guard adds nothing to the outcome."""
    assert len(sql) > 1_000_000
    report = same_with_and_without_guard(execute(sql), explain=True)
    [query] = statements(report)
    assert len(query.sql) == len(sql)


def _best_of(runs: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = perf_counter()
        work()
        best = min(best, perf_counter() - started)
    return best


def test_fingerprint_time_is_capped_for_huge_statements():
    """Past MAX_NORMALISED_CHARS only a prefix is normalised: 16 MB costs what 1 MB does.
    Measured side by side; linear cost would make the ratio about 16."""
    one = "SELECT '" + "a" * (1 << 20) + "'"
    sixteen = "SELECT '" + "a" * (16 << 20) + "'"
    assert len(one) > MAX_NORMALISED_CHARS
    small = _best_of(3, lambda: fingerprint.__wrapped__(one))
    large = _best_of(3, lambda: fingerprint.__wrapped__(sixteen))
    assert large < small * 4, (small, large)
    assert fingerprint(one).key != fingerprint(sixteen).key  # sizes far apart: not one shape


def test_an_in_list_of_ten_thousand_parameters():
    BookFactory.create_batch(3)
    ids = list(range(1, 10_001))
    report = same_with_and_without_guard(
        lambda: sorted(book.pk for book in Book.objects.filter(pk__in=ids)),
        explain=True,
    )
    [query] = statements(report)
    assert len(query.params) == 10_000
    # Shape, not size: a list one shorter is the same statement.
    with capture() as shorter:
        list(Book.objects.filter(pk__in=ids[:-1]))
    assert shorter.queries[0].fingerprint == query.fingerprint
    assert len(json.dumps(report.to_dict())) < 50_000  # parameters are summarised


def test_logs_stay_short_for_a_megabyte_duplicate(settings, caplog):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "LOG_PARAMS": True}
    sql = "SELECT 1 /* " + "z" * 900_000 + " */"
    from django_nplusone_guard.middleware import act

    with capture() as report:
        execute(sql)()
        execute(sql)()
    assert len(report.duplicates) == 1
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    act(report, "log")
    [record] = caplog.records
    assert len(record.getMessage()) < 2_000


# --------------------------------------------------------------------------- parameters

_ODD_PARAMETERS = [
    pytest.param(b"\xff\xfe\x00raw", id="bytes-non-utf8-nul"),
    pytest.param("nul\x00inside", id="str-nul"),
    pytest.param("lone \udcff surrogate", id="str-lone-surrogate"),
    pytest.param("emoji 😀 and RTL \u202e", id="str-emoji-rtl"),
    pytest.param("<script>alert(1)</script>' OR '1'='1", id="str-injection-text"),
    pytest.param(bytearray(b"\x00\x01"), id="bytearray"),
    pytest.param(memoryview(b"mv"), id="memoryview"),
    pytest.param("x" * 100_000, id="str-100k"),
    pytest.param(Decimal("1e-30"), id="decimal"),
    pytest.param(float("nan"), id="nan"),
    pytest.param(10**30, id="huge-int"),
    pytest.param(object(), id="unadaptable-object"),
]


@pytest.mark.parametrize("value", _ODD_PARAMETERS)
def test_odd_parameters_through_the_orm(value):
    same_with_and_without_guard(lambda: Author.objects.filter(name=value).exists())


@pytest.mark.parametrize("value", _ODD_PARAMETERS)
def test_odd_parameters_through_a_cursor(value):
    same_with_and_without_guard(execute("SELECT %s", [value]))


def test_odd_parameters_in_a_logged_duplicate(settings, caplog):
    settings.NPLUSONE_GUARD = {"LOG_PARAMS": True}
    from django_nplusone_guard.middleware import act

    value = b"\xff" + ("lone \udcff nul \x00 " + "x" * 5_000).encode("utf-8", "surrogatepass")
    with capture() as report:
        _run(execute("SELECT %s", [value]))  # MySQLdb cannot decode the row: fine
        _run(execute("SELECT %s", [value]))
    assert len(report.duplicates) == 1
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    act(report, "log")
    for record in caplog.records:
        message = record.getMessage()
        message.encode("utf-8")
        assert len(message) < 2_000


# --------------------------------------------------------------------------- not SQL

_NOT_SQL = [
    "",
    "   ",
    "hello world",
    "SELECT 'unbalanced",
    'SELECT "unbalanced',
    "SELECT 1 /* unterminated comment",
    "SELECT 1 -- trailing comment",
    "*/ SELECT 1",
    "SELECT $$dollar",
    "SELECT 1; SELECT 2",
    "(" * 5_000 + "SELECT 1" + ")" * 5_000,
    "(" * 5_000,
    "SELECT " + "'a' || " * 2_000 + "'b'",
    "SELECT \x00",
    "SELECT '\udcff'",
    "😀😀😀",
    "%s %s %s",
    "SELECT %(name)s",
    "EXPLAIN SELECT 1",
    "SELECT * FROM testapp_counter WHERE name = 'x' OR 1=1 --",
]


@pytest.mark.parametrize("sql", _NOT_SQL, ids=range(len(_NOT_SQL)))
def test_non_sql_text_gets_the_databases_own_answer(sql):
    report = same_with_and_without_guard(execute(sql), explain=True)
    assert len(statements(report)) == 1


@pytest.mark.parametrize("sql", ["SELECT %s", "SELECT %s, %s"])
def test_wrong_parameter_counts_get_the_databases_own_answer(sql):
    same_with_and_without_guard(execute(sql, []))
    same_with_and_without_guard(execute(sql, [1, 2, 3]))


# --------------------------------------------------------------------------- many rows


def test_executemany_with_many_rows_is_one_record_and_the_rows_all_arrive():
    rows = ((f"row-{i}", i) for i in range(20_000))  # a generator: the guard must not eat it
    with capture(explain=True) as report, connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO testapp_counter (name, n) VALUES (%s, %s)",
            rows,  # type: ignore[arg-type]  # drivers take any iterable
        )
    assert Counter.objects.count() == 20_000
    [query] = report.queries
    assert query.many is True
    assert report.nplusones == []
    assert report.duplicates == []
    check_output(report)
    assert report.to_dict()["queries"][0]["params"] in ("<rows>", "<20000 rows>")


def test_bulk_create_of_thousands_is_not_an_n_plus_one():
    with capture(explain=True) as report:
        Counter.objects.bulk_create([Counter(name=f"bulk-{i}") for i in range(5_000)])
    assert Counter.objects.count() == 5_000
    assert report.nplusones == []
    check_output(report)


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "atomic"])
@pytest.mark.django_db(transaction=True)
def test_server_side_cursor_iteration(in_transaction):
    """``.iterator()`` streams through a named cursor on PostgreSQL (chunked fetches that
    do not go through ``execute``) and a plain streaming cursor elsewhere."""
    Counter.objects.bulk_create([Counter(name=f"c{i:04d}", n=i) for i in range(2_500)])
    block = transaction.atomic() if in_transaction else contextlib.nullcontext()
    with capture(explain=True) as report, block:
        total = sum(c.n for c in Counter.objects.order_by("id").iterator(chunk_size=100))
    assert total == sum(range(2_500))
    selects = [q for q in report.queries if q.sql.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1
    assert report.nplusones == []
    assert report.duplicates == []
    check_output(report)


# --------------------------------------------------------------------------- fuzzing

_SQL_TOKENS = st.sampled_from(
    [
        "SELECT", "select", "FROM", "WHERE", "IN", "VALUES", "INSERT INTO", "UPDATE", "SET",
        "JOIN", "ON", "ORDER BY", "LIMIT", "WITH", "UNION", "testapp_counter", "name", "n",
        "1", "-2.5e3", "'", "''", "'it''s'", "E'\\''", '"', "`", "[", "]", "(", ")", ",",
        "(?, ?)", "%s", "%%", "%(x)s", "?", "$1", ":name", "::int", "/*", "*/", "--", "\n",
        ";", "\\", "\x00", "é", "\udcff", "😀", "  ", "\t",
    ]
)  # fmt: skip
_SQL_LIKE = st.lists(
    st.one_of(_SQL_TOKENS, st.text(st.characters(exclude_categories=()), max_size=8)),
    max_size=40,
).map(" ".join)


@FUZZ
@given(sql=_SQL_LIKE)
def test_fuzz_fingerprint_never_raises_and_is_stable(sql):
    first = fingerprint.__wrapped__(sql)
    assert first == fingerprint.__wrapped__(sql)
    assert len(first.key) == 16
    assert first.verb == first.verb.upper()


@FUZZ
@given(sql=_SQL_LIKE)
def test_fuzz_statements_through_the_database(sql):
    same_with_and_without_guard(execute(sql), explain=True)


_PARAMETER = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=False, places=3),
    st.text(st.characters(exclude_categories=()), max_size=50),
    st.binary(max_size=50),
    st.dates(),
    st.datetimes(),
)


@FUZZ
@given(params=st.lists(_PARAMETER, min_size=1, max_size=6))
def test_fuzz_parameters_through_the_database(params):
    placeholders = ", ".join(["%s"] * len(params))
    same_with_and_without_guard(execute(f"SELECT {placeholders}", params))
    same_with_and_without_guard(lambda: Author.objects.filter(name__in=params).count())


def test_a_statement_with_a_lone_surrogate_logs_as_valid_utf8(caplog):
    from django_nplusone_guard.middleware import act

    sql = "SELECT '\udcff' AS broken"
    with capture() as report:
        _run(execute(sql))  # no driver can encode it: the database never sees it
        _run(execute(sql))
    assert len(report.duplicates) == 1
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    act(report, "log")
    [record] = caplog.records
    record.getMessage().encode("utf-8")
    check_output(report)


def test_a_long_leading_comment_does_not_hide_the_statement():
    """Tools prepend comments (sqlcommenter, tracing); a long one must not make the
    statement verb-less, or its loop would never be reported as an N+1."""
    comment = "/* " + "trace=" + "x" * 10_000 + " */ "
    assert fingerprint(comment + "SELECT 1").verb == "SELECT"
    with capture() as report:
        for n in range(3):
            _run(execute(f"{comment}SELECT {n}"))
    [finding] = report.nplusones
    assert finding.count == 3
