"""What EXPLAIN adds per distinct statement, on the backend ``NPLUSONE_GUARD_TEST_DB`` picks.

Not a test (absolute times are never pass/fail): run it explicitly and read the table::

    NPLUSONE_GUARD_TEST_DB=postgres .venv/bin/python -m pytest tests/measure_explain_cost.py -s

Each round clears every cache and times the first statement on the table (EXPLAIN plus the
one-off introspection of the table's indexes), then clears only the verdicts and times each
statement shape (savepoint, planner settings, EXPLAIN, parse), then once more (a cached
verdict). Medians over all rounds, in milliseconds.
"""

from __future__ import annotations

import statistics
import time

import pytest
from django.db import connection, transaction

import django_nplusone_guard.explain as explain_module
from django_nplusone_guard.explain import clear_cache, explain_statement
from django_nplusone_guard.fingerprint import fingerprint
from tests.factories import ListingFactory
from tests.testapp.models import Listing

ROUNDS = 30

SHAPES = {
    "finding: equality": lambda: Listing.objects.filter(city="Leeds"),
    "finding: composite": lambda: Listing.objects.filter(city="Leeds", zip_code="Z1"),
    "finding: sort+limit": lambda: Listing.objects.order_by("listed")[:10],
    "finding: join": lambda: Listing.objects.filter(owner__name="x"),
    "no finding: pk": lambda: Listing.objects.filter(pk=1),
    "no finding: fk": lambda: Listing.objects.filter(owner_id=1),
    "no finding: unique": lambda: Listing.objects.filter(sku="x"),
    "no finding: icontains": lambda: Listing.objects.filter(city__icontains="x"),
}


def _measure(label: str) -> None:
    statements = []
    for name, make in SHAPES.items():
        sql, params = make().query.sql_with_params()
        statements.append((name, sql, params, fingerprint(sql).key))

    def timed(name: str, sql: str, params: object, key: str) -> float:
        start = time.perf_counter()
        explain_statement("default", key, sql, params, timeout_ms=200)
        return (time.perf_counter() - start) * 1000

    first: list[float] = []  # first statement on the table: includes introspection
    per_shape: dict[str, list[float]] = {name: [] for name in SHAPES}
    cached: list[float] = []
    for _ in range(ROUNDS):
        clear_cache()
        first.append(timed(*statements[0]))
        explain_module._verdicts.clear()  # verdicts only: existing indexes stay cached
        for statement in statements:
            per_shape[statement[0]].append(timed(*statement))
            cached.append(timed(*statement))
    explained = [t for times in per_shape.values() for t in times]
    print(f"\n{connection.vendor} ({label}), {ROUNDS} rounds, median ms")
    for name, times in per_shape.items():
        print(f"  {name:<34} {statistics.median(times):7.3f}")
    print(f"  {'EXPLAIN per distinct statement':<34} {statistics.median(explained):7.3f}")
    print(f"  {'first statement on a table':<34} {statistics.median(first):7.3f}")
    print(f"  {'cached verdict':<34} {statistics.median(cached):7.4f}")


@pytest.mark.django_db(transaction=True)
def test_measure_autocommit():
    ListingFactory.create_batch(20)
    _measure("autocommit, as in a request")


@pytest.mark.django_db(transaction=True)
def test_measure_inside_a_transaction():
    ListingFactory.create_batch(20)
    with transaction.atomic():
        _measure("inside atomic: savepoint")
