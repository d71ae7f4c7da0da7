"""Transactions: with EXPLAIN on, the guard never changes what the user's transaction does.

``test_explain_safety`` checks the EXPLAIN machinery statement by statement; these tests take
the user's side: whole flows (nested ``atomic``, a caught ``IntegrityError``, manual
transactions, ``ATOMIC_REQUESTS``) run under ``capture(explain=True)`` or the middleware,
and the data they leave behind is checked, together with every statement the connection
received. The vendor-specific cases (a server-side aborted transaction, a planner that runs
user code) need PostgreSQL or MariaDB and say so when skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from time import perf_counter
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client
from django.urls import path

from django_nplusone_guard import capture
from django_nplusone_guard.explain import clear_cache
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.factories import ListingFactory
from tests.statements import all_statements
from tests.testapp.models import Counter, Listing

VENDOR = connection.vendor

needs_pg_or_mariadb = pytest.mark.skipif(
    VENDOR not in ("postgresql", "mysql"),
    reason="transaction semantics checked on PostgreSQL and MariaDB (SQLite has no "
    "server-side transaction state to corrupt)",
)
needs_postgresql = pytest.mark.skipif(
    VENDOR != "postgresql",
    reason="needs PostgreSQL: only its planner runs user functions (IMMUTABLE, constant "
    "arguments) while EXPLAINing",
)

#: What the guard itself may send: EXPLAIN, its time limit and planner settings, savepoints
#: (always rolled back), and read-only introspection. Never a write, never COMMIT.
_GUARD_STATEMENT = re.compile(
    r"^\s*(EXPLAIN|SET STATEMENT max_statement_time=[\d.]+ FOR EXPLAIN|SAVEPOINT|"
    r"ROLLBACK TO SAVEPOINT|RELEASE SAVEPOINT|SELECT set_config\(|SELECT|SHOW|PRAGMA|WITH)\b",
    re.IGNORECASE,
)
_WRITE = re.compile(
    r"^\s*(INSERT|UPDATE|DELETE|REPLACE|MERGE|CREATE|DROP|ALTER|TRUNCATE|COMMIT|GRANT|LOCK)\b",
    re.IGNORECASE,
)


@pytest.fixture(autouse=True)
def fresh_verdicts() -> Iterator[None]:
    """EXPLAIN verdicts are cached per statement shape; every test explains afresh."""
    clear_cache()
    yield
    clear_cache()


def guard_statements(sent: list[str], report: Any) -> list[str]:
    """What the connection ran that the user did not (multiset difference, in order)."""
    users = [q.sql for q in report.queries]
    extra = []
    for sql in sent:
        if sql in users:
            users.remove(sql)
        else:
            extra.append(sql)
    return extra


def transaction_state() -> tuple[Any, ...]:
    state: tuple[Any, ...] = (
        connection.get_autocommit(),
        connection.in_atomic_block,
        tuple(connection.savepoint_ids),
        connection.needs_rollback,
    )
    if VENDOR == "postgresql":
        state += (int(connection.connection.info.transaction_status),)
    return state


def user_work() -> None:
    """A little of everything: explainable reads (with a missing index), an N+1 of
    updates, a bulk insert and a delete."""
    list(Listing.objects.filter(city="Leeds"))
    list(Listing.objects.filter(zip_code="LS1").order_by("price")[:5])
    for counter in Counter.objects.order_by("id"):
        Counter.objects.filter(pk=counter.pk).update(n=F("n") + 1)
    Counter.objects.bulk_create([Counter(name=f"bulk-{i}") for i in range(3)])
    Counter.objects.filter(name="bulk-0").delete()


# --------------------------------------------------------------------------- executed once


@pytest.mark.django_db
def test_an_update_under_explain_runs_exactly_once():
    Counter.objects.create(name="hits")
    with capture(explain=True) as report, connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_counter SET n = n + 1 WHERE name = %s", ["hits"])
    assert Counter.objects.get(name="hits").n == 1
    assert report.query_count == 1


@pytest.mark.django_db
def test_an_n_plus_one_of_updates_under_explain_increments_once_per_call():
    counters = Counter.objects.bulk_create([Counter(name=f"c{i}") for i in range(6)])
    with capture(explain=True) as report:
        for counter in counters:
            Counter.objects.filter(pk=counter.pk).update(n=F("n") + 1)
    assert report.nplusones[0].kind == "write"
    assert report.nplusones[0].count == 6
    assert list(Counter.objects.order_by("id").values_list("n", flat=True)) == [1] * 6


@pytest.mark.django_db
def test_the_guard_never_writes_nor_commits_and_leaves_the_transaction_as_it_was():
    ListingFactory.create_batch(3)
    Counter.objects.bulk_create([Counter(name="a"), Counter(name="b")])
    with transaction.atomic():
        before = transaction_state()
        with all_statements() as sent, capture(explain=True) as report:
            user_work()
        after = transaction_state()
    extra = guard_statements(sent, report)
    assert report.missing_indexes, "EXPLAIN ran and found the unindexed city filter"
    assert any(s.lstrip().upper().startswith(("EXPLAIN", "SET STATEMENT")) for s in extra)
    assert [s for s in extra if _WRITE.match(s) or not _GUARD_STATEMENT.match(s)] == []
    assert after == before
    assert list(Counter.objects.order_by("name").values_list("name", "n")) == [
        ("a", 1), ("b", 1), ("bulk-1", 0), ("bulk-2", 0),
    ]  # fmt: skip


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_mode_the_guard_leaves_no_transaction_open():
    ListingFactory.create_batch(3)
    Counter.objects.create(name="a")
    before = transaction_state()
    with all_statements() as sent, capture(explain=True) as report:
        user_work()
    assert transaction_state() == before
    assert [s for s in guard_statements(sent, report) if _WRITE.match(s)] == []
    assert Counter.objects.get(name="a").n == 1


@needs_pg_or_mariadb
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["commit", "rollback"])
def test_in_manual_transactions_the_guard_neither_commits_nor_rolls_back(ending):
    ListingFactory.create_batch(3)
    transaction.set_autocommit(False)
    try:
        Counter.objects.create(name="pending")
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
            Counter.objects.filter(name="pending").update(n=F("n") + 1)
        assert report.missing_indexes
        assert not transaction.get_autocommit()
        getattr(transaction, ending)()
    finally:
        transaction.set_autocommit(True)
    expected = [("pending", 1)] if ending == "commit" else []
    assert list(Counter.objects.values_list("name", "n")) == expected


# --------------------------------------------------------------------------- broken states


@needs_pg_or_mariadb
@pytest.mark.django_db(transaction=True)
def test_nested_integrity_error_then_more_work_then_commit():
    """The flow users write: try a nested atomic, catch the IntegrityError, carry on."""
    ListingFactory.create_batch(3)
    Counter.objects.create(name="taken")
    with transaction.atomic():
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
            for name in ("taken", "fresh", "taken"):
                try:
                    with transaction.atomic():
                        Counter.objects.create(name=name)
                except IntegrityError:
                    Counter.objects.filter(name=name).update(n=F("n") + 1)
            list(Listing.objects.filter(zip_code="LS1"))
        # The guard's EXPLAINs ran here, inside the user's transaction.
        Counter.objects.create(name="after")  # no TransactionManagementError
    assert {f.columns for f in report.missing_indexes} == {("city",), ("zip_code",)}
    assert dict(Counter.objects.values_list("name", "n")) == {"taken": 2, "fresh": 0, "after": 0}


@needs_pg_or_mariadb
@pytest.mark.django_db(transaction=True)
def test_an_error_escaping_the_capture_leaves_the_rollback_to_the_user():
    """The capture ends while the error propagates and the transaction must roll back:
    the guard runs nothing, and the user's handler sees the same state as without it."""
    ListingFactory.create_batch(3)
    Counter.objects.create(name="taken")

    def flow(explain: bool) -> tuple[Any, ...]:
        with transaction.atomic():
            try:
                with transaction.atomic(), capture(explain=explain):
                    list(Listing.objects.filter(city="Leeds"))
                    Counter.objects.create(name="kept-out")
                    Counter.objects.create(name="taken")
            except IntegrityError:
                state = transaction_state()
            Counter.objects.create(name=f"after-{explain}")
        return state

    with all_statements() as sent:
        guarded_state = flow(explain=True)
    assert guarded_state == flow(explain=False)
    assert not any("EXPLAIN" in s.upper() for s in sent)
    assert sorted(Counter.objects.values_list("name", flat=True)) == [
        "after-False", "after-True", "taken",
    ]  # fmt: skip


@needs_pg_or_mariadb
@pytest.mark.django_db(transaction=True)
def test_an_explain_that_fails_is_skipped_and_the_transaction_goes_on(caplog):
    """A statement that ran fine can fail under EXPLAIN at the end of the scope: here its
    temporary table is gone by then. The failure stays inside the guard's savepoint."""
    drop = "DROP TEMPORARY TABLE" if VENDOR == "mysql" else "DROP TABLE"
    caplog.set_level(logging.WARNING, logger="django_nplusone_guard")
    with transaction.atomic():
        with all_statements() as sent, capture(explain=True) as report:
            with connection.cursor() as cursor:
                cursor.execute("CREATE TEMPORARY TABLE r9_scratch (code varchar(10), n int)")
                cursor.execute("INSERT INTO r9_scratch (code, n) VALUES (%s, 1)", ["x"])
                cursor.execute("SELECT n FROM r9_scratch WHERE code = %s", ["x"])
                assert [tuple(row) for row in cursor.fetchall()] == [(1,)]
                cursor.execute(f"{drop} r9_scratch")
            Counter.objects.create(name="inside")
        Counter.objects.create(name="after")  # no TransactionManagementError
    assert any("EXPLAIN" in s and "r9_scratch" in s for s in sent), "EXPLAIN was attempted"
    assert report.missing_indexes == []
    assert sorted(Counter.objects.values_list("name", flat=True)) == ["after", "inside"]
    [logged] = [r for r in caplog.records if "could not EXPLAIN" in r.getMessage()]
    assert "r9_scratch" in logged.getMessage()


@needs_postgresql
@pytest.mark.django_db(transaction=True)
def test_an_explain_that_times_out_is_skipped_and_the_transaction_goes_on(settings):
    """PostgreSQL folds IMMUTABLE functions with constant arguments while planning, so this
    statement is slow to EXPLAIN too; EXPLAIN_TIMEOUT_MS cancels it."""
    settings.NPLUSONE_GUARD = {"EXPLAIN_TIMEOUT_MS": 50}
    Counter.objects.create(name="slow")
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "CREATE FUNCTION pg_temp.slow_identity(i int) RETURNS int IMMUTABLE "
                "LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN i; END $$"
            )
        guard = capture(explain=True)
        with guard, connection.cursor() as cursor:
            started = perf_counter()
            cursor.execute(
                "SELECT name FROM testapp_counter WHERE n = pg_temp.slow_identity(%s)", [0]
            )
            assert [tuple(row) for row in cursor.fetchall()] == [("slow",)]
            users_query = perf_counter() - started
            guard_started = perf_counter()
        explain_time = perf_counter() - guard_started
        Counter.objects.filter(name="slow").update(n=F("n") + 1)
    assert guard.report.missing_indexes == []
    assert Counter.objects.get(name="slow").n == 1
    # Side by side: the user's statement took the function's sleep, EXPLAIN was cut short.
    assert explain_time < users_query / 2, (explain_time, users_query)


@needs_postgresql
@pytest.mark.django_db
def test_explain_never_runs_a_volatile_function_a_select_calls():
    """EXPLAIN without ANALYZE plans the statement but never executes it: a function with
    side effects called by a SELECT runs once, for the user."""
    Counter.objects.create(name="calls")
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION pg_temp.bump(counter text) RETURNS int VOLATILE LANGUAGE sql AS "
            "$$ UPDATE testapp_counter SET n = n + 1 WHERE name = counter RETURNING n $$"
        )
    with capture(explain=True) as report, connection.cursor() as cursor:
        cursor.execute("SELECT pg_temp.bump(name) FROM testapp_counter WHERE name = %s", ["calls"])
        assert [tuple(row) for row in cursor.fetchall()] == [(1,)]
    assert report.query_count == 1
    assert Counter.objects.get(name="calls").n == 1


# --------------------------------------------------------------------------- requests


def atomic_view(request: HttpRequest) -> HttpResponse:
    """Runs inside ATOMIC_REQUESTS' transaction: a caught IntegrityError, then more work."""
    list(Listing.objects.filter(city="Leeds"))
    try:
        with transaction.atomic():
            Counter.objects.create(name="taken")
    except IntegrityError:
        pass
    Counter.objects.filter(name="taken").update(n=F("n") + 1)
    return JsonResponse({"n": Counter.objects.get(name="taken").n})


urlpatterns = [path("atomic/", atomic_view)]


@needs_pg_or_mariadb
@pytest.mark.django_db(transaction=True)
def test_atomic_requests_with_the_middleware_explaining(settings, monkeypatch):
    settings.ROOT_URLCONF = __name__
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log", "EXPLAIN": True}
    monkeypatch.setitem(connections.settings["default"], "ATOMIC_REQUESTS", True)
    ListingFactory.create_batch(3)
    Counter.objects.create(name="taken")
    response = Client().get("/atomic/")
    assert response.status_code == 200
    assert response.json() == {"n": 1}
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert [f.columns for f in report.missing_indexes] == [("city",)]
    assert Counter.objects.get(name="taken").n == 1
