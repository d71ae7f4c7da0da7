"""PostgreSQL: ``EXPLAIN (FORMAT JSON)`` with sequential scans priced out.

Inside the rolled-back savepoint the guard sets, with ``set_config(..., is_local => true)``
(that is ``SET LOCAL``): ``statement_timeout`` (the time limit), ``enable_seqscan = off``
and ``jit = off``. With sequential scans disabled the planner takes any index that can
serve a condition, whatever the table size; what is left in the plan is structural:

* a ``Seq Scan`` with a ``Filter``: no index can serve that filter;
* an ``Index Scan`` / ``Index Only Scan`` with a ``Filter`` and no ``Index Cond``: a full
  walk of some index (usually the primary key) standing in for the disabled seq scan;
* an index scan whose ``Index Cond`` does not use the index's leading column (checked
  against introspection in :mod:`.base`);
* a ``Seq Scan`` on the inner side of a join: nothing indexes the join column;
* a ``Sort`` (or ``Incremental Sort``) under a ``Limit``: no index provides the order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from .base import JOIN_SCAN, READ, SCAN, SORT, ExplainBackend, PlanSignal, index_name
from .sql import FUNCTION, PATTERN, PREFIX, Predicate

__all__ = ["PostgreSQLExplain"]

_INDEX_SCANS = frozenset({"Index Scan", "Index Only Scan"})
_JOINS = frozenset({"Nested Loop", "Hash Join", "Merge Join"})
_SORTS = frozenset({"Sort", "Incremental Sort"})
_IN_ERROR = 3  # psycopg's TransactionStatus.INERROR (same value in psycopg2)


class PostgreSQLExplain(ExplainBackend):
    vendor = "postgresql"
    needs_transaction = True

    def explain_sql(self, connection: BaseDatabaseWrapper, sql: str, timeout_ms: int) -> str:
        return "EXPLAIN (FORMAT JSON) " + sql

    def prepare(self, cursor: CursorWrapper, timeout_ms: int) -> None:
        cursor.execute(
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)",
            [str(int(timeout_ms))],
        )

    def parse_plan(self, rows: Sequence[Sequence[Any]]) -> list[PlanSignal]:
        document = rows[0][0]
        if isinstance(document, str | bytes):
            document = json.loads(document)
        return parse_json_plan(document)

    def transaction_is_broken(self, connection: BaseDatabaseWrapper) -> bool:
        """Also catch the case Django does not track: an error caught *inside* ``atomic``
        without a savepoint leaves the server-side transaction aborted."""
        if super().transaction_is_broken(connection):
            return True
        raw = connection.connection
        info = getattr(raw, "info", None)  # psycopg 3
        if info is not None:
            return int(info.transaction_status) == _IN_ERROR
        status = getattr(raw, "get_transaction_status", None)  # psycopg2
        return status is not None and status() == _IN_ERROR

    def unusable_index_names(self, cursor: CursorWrapper, table: str) -> set[str]:
        cursor.execute(
            "SELECT ic.relname FROM pg_index i "
            "JOIN pg_class ic ON ic.oid = i.indexrelid "
            "JOIN pg_class tc ON tc.oid = i.indrelid "
            "WHERE tc.relname = %s AND pg_catalog.pg_table_is_visible(tc.oid) "
            "AND (i.indpred IS NOT NULL OR i.indexprs IS NOT NULL)",
            [table],
        )
        return {row[0] for row in cursor.fetchall()}

    def create_index_note(self) -> str:
        return (
            "on a large table in use, CREATE INDEX CONCURRENTLY does not block writes, but it "
            "cannot run in a transaction: give that migration atomic = False"
        )

    def blocker_hint(self, model: type[models.Model] | None, predicate: Predicate) -> str:
        """Trigram indexes serve ``LIKE '%x%'``, and on ``UPPER(col)`` Django's icontains."""
        upper = predicate.kind == FUNCTION and predicate.detail.startswith("UPPER(column) LIKE")
        if model is None or not (predicate.kind in (PATTERN, PREFIX) or upper):
            return ""
        field = next(
            (f for f in model._meta.concrete_fields if f.column == predicate.column), None
        )
        if field is None:
            return ""
        name = index_name(model._meta.model_name or "", [field.name, "trgm"])
        if upper:
            index = f'GinIndex(OpClass(Upper("{field.name}"), name="gin_trgm_ops"), name="{name}")'
        else:
            index = f'GinIndex(fields=["{field.name}"], opclasses=["gin_trgm_ops"], name="{name}")'
        return (
            "on PostgreSQL a trigram index can: TrigramExtension() in a migration, then "
            f"{index} in Meta.indexes"
        )


def parse_json_plan(document: Any) -> list[PlanSignal]:
    """Signals from ``EXPLAIN (FORMAT JSON)`` output (a list with one ``{"Plan": ...}``)."""
    if isinstance(document, list):
        document = document[0] if document else {}
    plan = document.get("Plan") if isinstance(document, Mapping) else None
    if not isinstance(plan, Mapping):
        return []
    return list(_walk(plan, under_limit=False, inner=False, heap=None))


def _walk(
    node: Mapping[str, Any], *, under_limit: bool, inner: bool, heap: Mapping[str, Any] | None
) -> Iterator[PlanSignal]:
    kind = node.get("Node Type", "")
    alias = str(node.get("Alias") or node.get("Relation Name") or "").lower()
    rows = node.get("Plan Rows")
    if kind == "Seq Scan" and alias:
        if node.get("Filter"):
            yield PlanSignal(SCAN, alias, _text(node, "Filter"), rows)
        if inner:
            yield PlanSignal(JOIN_SCAN, alias, _text(node, "Filter"), rows)
        elif not node.get("Filter"):
            yield PlanSignal(READ, alias, _text(node, None), rows)
    elif kind in _INDEX_SCANS and alias:
        if not node.get("Index Cond"):
            key = "Filter" if node.get("Filter") else None
            yield PlanSignal(SCAN if key else READ, alias, _text(node, key), rows)
        else:
            yield PlanSignal(
                SCAN,
                alias,
                _text(node, "Index Cond"),
                rows,
                index_name=node.get("Index Name"),
                index_cond=str(node.get("Index Cond")),
            )
    elif kind == "Bitmap Index Scan" and heap is not None:
        heap_alias = str(heap.get("Alias") or heap.get("Relation Name") or "").lower()
        yield PlanSignal(
            SCAN,
            heap_alias,
            f"Bitmap Heap Scan on {heap.get('Relation Name')} via {node.get('Index Name')}",
            heap.get("Plan Rows"),
            index_name=node.get("Index Name"),
            index_cond=str(node.get("Index Cond") or ""),
        )
    elif kind in _SORTS and under_limit:
        keys = ", ".join(str(k) for k in node.get("Sort Key") or ())
        yield PlanSignal(SORT, "", f"{kind} (Key: {keys}) under Limit", rows)
    for child in node.get("Plans") or ():
        if not isinstance(child, Mapping):
            continue
        child_inner = inner
        if kind in _JOINS:
            child_inner = child.get("Parent Relationship") == "Inner"
        yield from _walk(
            child,
            under_limit=(kind == "Limit") or (under_limit and kind in ("Gather Merge", "Gather")),
            inner=child_inner,
            heap=node if kind == "Bitmap Heap Scan" else heap,
        )


def _text(node: Mapping[str, Any], key: str | None) -> str:
    relation = node.get("Relation Name", "?")
    alias = node.get("Alias")
    head = f"{node.get('Node Type')} on {relation}"
    if alias and alias != relation:
        head += f" {alias}"
    if node.get("Index Name"):
        head += f" using {node['Index Name']}"
    return f"{head}  {key}: {node[key]}" if key and node.get(key) else head
