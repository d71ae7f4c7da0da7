"""EXPLAIN must never harm the user's database work. Each property on the real backend:
no ANALYZE, nothing but the statement under EXPLAIN, parameters bound, a savepoint when a
transaction is open, never inside a broken transaction, a time limit, unrecorded, errors
logged once, verdicts cached and bounded, and no sync database access in an event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import IntegrityError, OperationalError, connection, connections, transaction

import django_nplusone_guard.explain as explain_module
from django_nplusone_guard import capture
from django_nplusone_guard.detect import Group
from django_nplusone_guard.explain import backend_for, clear_cache, find_missing_indexes
from django_nplusone_guard.fingerprint import fingerprint
from tests.factories import ListingFactory
from tests.testapp.models import Counter, Listing

VENDOR = connection.vendor
EXPLAIN_PREFIX = {
    "sqlite": "EXPLAIN QUERY PLAN ",
    "postgresql": "EXPLAIN (FORMAT JSON) ",
    "mysql": "SET STATEMENT max_statement_time=0.200 FOR EXPLAIN FORMAT=JSON ",
}[VENDOR]


class Recorder:
    """Every statement sent through Django, with its parameters, as the driver got them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, execute, sql, params, many, context):
        self.calls.append((sql, params))
        return execute(sql, params, many, context)

    @property
    def explains(self) -> list[tuple[str, Any]]:
        return [(s, p) for s, p in self.calls if "EXPLAIN" in s.upper()]

    def upper_sql(self) -> list[str]:
        return [s.upper() for s, _ in self.calls]


@pytest.fixture(autouse=True)
def _fresh_verdicts() -> Iterator[None]:
    clear_cache()
    explain_module._logged.clear()
    yield
    clear_cache()
    explain_module._logged.clear()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    with connection.execute_wrapper(rec):
        yield rec


@pytest.mark.django_db
def test_explain_runs_only_the_statement_with_bound_params_and_never_analyze(recorder):
    ListingFactory(city="O'Brien")
    recorder.calls.clear()
    with capture(explain=True) as report:
        list(Listing.objects.filter(city="O'Brien"))
    (user_sql, user_params), *_ = recorder.calls
    assert [f.columns for f in report.missing_indexes] == [("city",)]
    assert recorder.explains == [(EXPLAIN_PREFIX + user_sql, user_params)]
    assert "O'Brien" not in recorder.explains[0][0]  # bound by the driver, never interpolated
    assert not any("ANALYZE" in s for s in recorder.upper_sql())
    # The user's statement itself ran exactly once.
    assert [s for s, _ in recorder.calls].count(user_sql) == 1


@pytest.mark.django_db
def test_guard_queries_are_never_recorded_even_by_an_outer_scope():
    ListingFactory()
    with capture() as outer, capture(explain=True) as inner:
        list(Listing.objects.filter(city="Leeds"))
    for report in (inner, outer):
        assert report.query_count == 1
        assert not any("EXPLAIN" in q.sql.upper() for q in report.queries)
    assert len(inner.missing_indexes) == 1


@pytest.mark.django_db
def test_inside_a_transaction_explain_runs_in_a_savepoint_that_is_rolled_back(recorder):
    with transaction.atomic():
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
        statements = recorder.upper_sql()
        Counter.objects.create(name="after")  # the transaction still works
    assert report.missing_indexes
    at = next(i for i, s in enumerate(statements) if "EXPLAIN" in s)
    assert statements[at - 1 - (VENDOR == "postgresql")].startswith("SAVEPOINT")
    assert any(s.startswith("ROLLBACK TO SAVEPOINT") for s in statements[at:])
    assert Counter.objects.filter(name="after").exists()


@pytest.mark.skipif(VENDOR != "postgresql", reason="SET LOCAL is PostgreSQL's")
@pytest.mark.django_db
def test_planner_settings_never_leak_into_the_users_transaction():
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
    with transaction.atomic():
        with capture(explain=True):
            list(Listing.objects.filter(city="Leeds"))
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('enable_seqscan'), current_setting('jit')")
            seqscan, _jit = cursor.fetchone()
            cursor.execute("SHOW statement_timeout")
            after = cursor.fetchone()[0]
    assert seqscan == "on"
    assert after == before


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_mode_nothing_stays_open():
    ListingFactory()
    with capture(explain=True) as report:
        list(Listing.objects.filter(city="Leeds"))
    assert report.missing_indexes
    assert connection.get_autocommit()
    assert not connection.in_atomic_block
    if VENDOR == "postgresql":
        assert connection.connection.info.transaction_status == 0  # IDLE: no open transaction


@pytest.mark.django_db
def test_after_a_caught_integrity_error_in_atomic_user_code_keeps_working():
    Counter.objects.create(name="taken")
    with transaction.atomic():
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
            try:
                with transaction.atomic():
                    Counter.objects.create(name="taken")
            except IntegrityError:
                pass
        Counter.objects.create(name="next")  # no TransactionManagementError
    assert [f.columns for f in report.missing_indexes] == [("city",)]
    assert Counter.objects.filter(name="next").exists()


@pytest.mark.django_db
def test_a_transaction_marked_for_rollback_is_never_touched(recorder, caplog):
    Counter.objects.create(name="taken")
    caplog.set_level(logging.INFO, logger="django_nplusone_guard")
    with transaction.atomic():
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
            with contextlib.suppress(IntegrityError), transaction.atomic(savepoint=False):
                Counter.objects.create(name="taken")
            assert connection.needs_rollback
            recorder.calls.clear()
        assert recorder.calls == []  # not a single statement from the guard
    assert report.missing_indexes == []
    assert report.errors == []
    assert "skipped EXPLAIN" in caplog.text
    # Skips are not cached: the same statement is explained once the transaction is healthy.
    with capture(explain=True) as later:
        list(Listing.objects.filter(city="Leeds"))
    assert [f.columns for f in later.missing_indexes] == [("city",)]


@pytest.mark.skipif(VENDOR != "postgresql", reason="only PostgreSQL aborts the transaction")
@pytest.mark.django_db
def test_a_server_side_aborted_transaction_is_never_touched(recorder):
    Counter.objects.create(name="taken")
    with contextlib.suppress(_UserRollback), transaction.atomic():
        with capture(explain=True) as report:
            list(Listing.objects.filter(city="Leeds"))
            # Raw SQL, caught without a savepoint: Django does not know the server-side
            # transaction is aborted (the ORM would have marked it for rollback).
            with contextlib.suppress(IntegrityError), connection.cursor() as cursor:
                cursor.execute("INSERT INTO testapp_counter (name, n) VALUES (%s, 0)", ["taken"])
            assert not connection.needs_rollback
            recorder.calls.clear()
        assert recorder.calls == []
        raise _UserRollback  # what the user's own error handling has to do
    assert report.missing_indexes == []
    assert Counter.objects.filter(name="taken").count() == 1


class _UserRollback(Exception):
    pass


@pytest.mark.django_db
def test_time_limit_interrupts_a_slow_statement():
    backend = backend_for(VENDOR)
    assert backend is not None
    slow = {
        "postgresql": "SELECT pg_sleep(2)",
        "mysql": "SELECT SLEEP(2)",
        "sqlite": (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50000000)"
            " SELECT count(*) FROM n"
        ),
    }[VENDOR]
    if VENDOR == "mysql":
        from django_nplusone_guard.explain.mysql import with_max_statement_time

        slow = with_max_statement_time(slow, 50)
    started = time.perf_counter()
    with backend._guarded(connection) as cursor:
        backend.prepare(cursor, 50)
        with backend.time_limit(connection, 50), pytest.raises(OperationalError):
            cursor.execute(slow)
    assert time.perf_counter() - started < 1.5
    # The savepoint was rolled back: the test transaction is usable.
    assert Counter.objects.count() == 0


@pytest.mark.django_db
def test_explain_errors_are_logged_once_and_skipped(monkeypatch, caplog):
    backend = backend_for(VENDOR)
    monkeypatch.setattr(backend, "explain_sql", lambda conn, sql, ms: "EXPLAIN NONSENSE " + sql)
    caplog.set_level(logging.INFO, logger="django_nplusone_guard")
    with transaction.atomic():
        for _ in range(2):
            with capture(explain=True) as report:
                list(Listing.objects.filter(city="Leeds"))
            assert report.missing_indexes == []
            clear_cache()
        Counter.objects.create(name="still fine")  # the failed EXPLAIN left no damage
    messages = [r.getMessage() for r in caplog.records if "could not EXPLAIN" in r.getMessage()]
    assert len(messages) == 1
    assert "testapp_listing" in messages[0]


@pytest.mark.django_db
def test_verdicts_are_cached_per_alias_and_fingerprint(recorder):
    with capture(explain=True) as first:
        list(Listing.objects.filter(city="Leeds"))
    with capture(explain=True) as second:
        list(Listing.objects.filter(city="York"))  # same shape, other value
    assert len(recorder.explains) == 1
    assert first.missing_indexes[0].columns == second.missing_indexes[0].columns


@pytest.mark.django_db
def test_the_verdict_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(explain_module, "MAX_CACHED_VERDICTS", 2)
    with capture(explain=True):
        list(Listing.objects.filter(city="Leeds"))
        list(Listing.objects.filter(zip_code="Z1"))
        list(Listing.objects.filter(price=3))
    assert len(explain_module._verdicts) == 2


@pytest.mark.django_db
def test_statements_without_filter_or_sort_are_never_sent(recorder):
    with capture(explain=True):
        list(Listing.objects.all())
        Listing.objects.count()
    assert recorder.explains == []


@pytest.mark.django_db
def test_a_spent_analysis_budget_stops_explaining(recorder):
    sql = 'SELECT 1 FROM "testapp_listing" WHERE "testapp_listing"."city" = %s'
    if VENDOR == "mysql":
        sql = sql.replace('"', "`")
    record = ("default", sql, ["Leeds"], False, 0.0, (), 1, False, None)
    group = Group(alias="default", fp=fingerprint(sql), stack=(), records=[record])
    assert find_missing_indexes([group], lambda stack: [], should_stop=lambda: True) == []
    assert recorder.explains == []
    assert len(find_missing_indexes([group], lambda stack: [], should_stop=lambda: False)) == 1


@pytest.mark.django_db(transaction=True)
def test_sync_capture_exiting_inside_an_event_loop_skips_and_logs(caplog):
    caplog.set_level(logging.INFO, logger="django_nplusone_guard")

    async def main():
        with capture(explain=True) as report:
            await sync_to_async(lambda: list(Listing.objects.filter(city="Leeds")))()
        await sync_to_async(connections.close_all)()
        return report

    report = asyncio.run(main())
    assert report.missing_indexes == []
    assert report.query_count == 1
    assert "running event loop" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_async_capture_explains_in_a_worker_thread():
    async def main():
        async with capture(explain=True) as report:
            await sync_to_async(lambda: list(Listing.objects.filter(city="Leeds")))()
        await sync_to_async(connections.close_all)()
        return report

    report = asyncio.run(main())
    assert [f.columns for f in report.missing_indexes] == [("city",)]
