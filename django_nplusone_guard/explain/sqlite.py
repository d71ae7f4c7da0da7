"""SQLite: ``EXPLAIN QUERY PLAN``.

The plan is a list of lines such as ``SCAN testapp_book`` (3.36+) or ``SCAN TABLE
testapp_book AS T3`` (older), ``SEARCH ... USING INDEX ix (col=?)``, ``USE TEMP B-TREE FOR
ORDER BY`` and ``SEARCH T3 USING AUTOMATIC COVERING INDEX (col=?)``. Signals:

* ``SCAN t`` (also ``SCAN t USING [COVERING] INDEX``, a full index walk): ``t`` is read
  without an index serving its terms;
* ``AUTOMATIC [PARTIAL] COVERING INDEX``: SQLite builds a throwaway index for a join on
  every run, because the join column has none;
* ``USE TEMP B-TREE FOR [... ] ORDER BY``: a sort no index provides.

Without ``ANALYZE`` statistics (development databases have none) SQLite's choice between
these does not depend on table size. ``EXPLAIN QUERY PLAN`` only compiles the statement;
the time limit is a progress handler that interrupts the VM past the deadline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from .base import JOIN_SCAN, SCAN, SORT, ExplainBackend, PlanSignal

__all__ = ["SQLiteExplain"]

_LINE_RE = re.compile(
    r"^(?P<verb>SCAN|SEARCH)\s+(?:TABLE\s+)?(?P<name>[^\s(]+)"
    r"(?:\s+AS\s+(?P<alias>[^\s(]+))?(?:\s+USING\s+(?P<using>.*?))?(?:\s+LEFT-JOIN)?$",
    re.IGNORECASE,
)
_SORT_RE = re.compile(r"^USE TEMP B-TREE FOR (?:(?:RIGHT PART|LAST \d+ TERMS) OF )?ORDER BY")
#: Pseudo-tables in plan lines: not real tables.
_NOT_TABLES = frozenset({"subquery", "constant", "(subquery", "cte"})
#: Progress handler granularity, in VM instructions.
_PROGRESS_STEPS = 1000


class SQLiteExplain(ExplainBackend):
    vendor = "sqlite"

    def explain_sql(self, connection: BaseDatabaseWrapper, sql: str, timeout_ms: int) -> str:
        return "EXPLAIN QUERY PLAN " + sql

    def time_limit(self, connection: BaseDatabaseWrapper, timeout_ms: int) -> Any:
        return _progress_deadline(connection, timeout_ms)

    def parse_plan(self, rows: Sequence[Sequence[Any]]) -> list[PlanSignal]:
        return parse_query_plan([str(row[-1]) for row in rows], [int(row[1]) for row in rows])

    def unusable_index_names(self, cursor: CursorWrapper, table: str) -> set[str]:
        quoted = cursor.db.ops.quote_name(table)
        cursor.execute(f"PRAGMA index_list({quoted})")
        # seq, name, unique, origin, partial
        return {row[1] for row in cursor.fetchall() if len(row) > 4 and row[4]}


def parse_query_plan(
    details: Sequence[str], parents: Sequence[int] | None = None
) -> list[PlanSignal]:
    """Signals from the ``detail`` (and ``parent``) columns of ``EXPLAIN QUERY PLAN`` rows.

    Lines under one parent are nested loops, outermost first: a ``SCAN`` after the first
    table of its loop nest is read whole once per outer row, the join has no index."""
    signals = []
    seen_parents: set[int] = set()
    for n, detail in enumerate(details):
        parent = parents[n] if parents is not None else 0
        text = detail.strip()
        if _SORT_RE.match(text):
            signals.append(PlanSignal(SORT, "", text))
            continue
        match = _LINE_RE.match(text)
        if match is None:
            continue
        name = match["name"].strip('"`[]')
        if name.lower() in _NOT_TABLES or name.isdigit():
            continue
        alias = (match["alias"] or name).strip('"`[]').lower()
        using = (match["using"] or "").upper()
        inner = parent in seen_parents
        seen_parents.add(parent)
        if match["verb"].upper() == "SCAN":
            signals.append(PlanSignal(SCAN, alias, text))
            if inner:
                signals.append(PlanSignal(JOIN_SCAN, alias, text))
        elif "AUTOMATIC" in using:
            signals.append(PlanSignal(JOIN_SCAN, alias, text))
    return signals


@contextmanager
def _progress_deadline(connection: BaseDatabaseWrapper, timeout_ms: int) -> Iterator[None]:
    """Interrupt the statement (``OperationalError: interrupted``) past the deadline.
    Django installs no progress handler of its own, so removing ours restores the state."""
    raw = connection.connection
    deadline = perf_counter() + timeout_ms / 1000

    def past_deadline() -> int:
        return 1 if perf_counter() > deadline else 0

    raw.set_progress_handler(past_deadline, _PROGRESS_STEPS)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 0)
