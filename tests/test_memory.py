"""Memory: a scope that records a million queries stays within 64 MB and keeps exact counts.

Past ``MAX_QUERIES`` a scope stops keeping samples and only counts, so its memory must stop
growing. tracemalloc sees every Python allocation, ours and Django's, while the loop runs.
SQLite runs the full million (about 20 s, most of it tracemalloc's own bookkeeping);
PostgreSQL and MariaDB answer over a socket, so they run three times ``MAX_QUERIES``. Every
backend also checks that the second half of the run, all of it past ``MAX_QUERIES``, added
(almost) nothing: memory is flat there, so the bound holds however long the scope runs.
"""

from __future__ import annotations

import tracemalloc

import pytest
from django.db import connection

from django_nplusone_guard import capture
from django_nplusone_guard.conf import get_config

pytestmark = pytest.mark.django_db

MB = 1024 * 1024
BUDGET = 64 * MB
#: Allowance for the second half of the run: counters and allocator noise, not samples.
FLAT = 1 * MB


def _query_count(kept: int) -> int:
    return 1_000_000 if connection.vendor == "sqlite" else 3 * kept


def test_a_million_queries_stay_within_64_mb_and_keep_exact_counts():
    kept = get_config().MAX_QUERIES
    total = _query_count(kept)
    assert total // 2 > kept, "the halfway mark must be past MAX_QUERIES"
    guard = capture()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        with connection.cursor() as cursor, guard as report:
            for n in range(total):
                cursor.execute("SELECT 1")  # cheap, but through Django's whole cursor path
                if n == total // 2:
                    halfway = tracemalloc.get_traced_memory()[0]
            recorded = tracemalloc.get_traced_memory()[0]
            # Still inside the scope: the count is what was recorded, not yet analysed.
            assert guard.scope is not None
            assert guard.scope.count == total
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert recorded - baseline <= BUDGET, f"{(recorded - baseline) / MB:.1f} MB recorded"
    assert peak - baseline <= BUDGET, f"{(peak - baseline) / MB:.1f} MB at peak"
    assert recorded - halfway <= FLAT, f"{(recorded - halfway) / MB:.2f} MB in the second half"

    assert report.query_count == total
    assert report.truncated is True
    assert len(report.queries) == kept
    # One statement, the same parameters each time: one repeat finding, not a loop over rows.
    [finding] = report.duplicates
    assert finding.count == total
    assert finding.callsite.startswith("tests/test_memory.py:")
    assert report.nplusones == []
