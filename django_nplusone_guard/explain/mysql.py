"""MySQL and MariaDB: ``EXPLAIN FORMAT=JSON``.

Both vendors describe each table access as ``{"table": {"table_name": ..., "access_type":
...}}`` somewhere in a tree whose wrappers differ (MariaDB: ``nested_loop``,
``block-nl-join``, ``read_sorted_file``/``filesort``; MySQL 8: ``nested_loop``,
``ordering_operation`` with ``using_filesort``, ``using_join_buffer``). Signals:

* ``access_type`` ``ALL`` (or ``index``, a full index walk) with an ``attached_condition``:
  the table is read without an index serving its filter;
* a join buffer (MariaDB ``block-nl-join`` / ``hash_ALL``, MySQL ``using_join_buffer``):
  the join column has no index;
* a filesort, which :mod:`.base` only reports when the statement has a ``LIMIT``.

These optimizers do weigh table size (a 3-row table is read with ``ALL`` even when an index
exists), so :mod:`.base` drops a scan whenever an existing index starts with one of the
filtered columns: what remains is what no index could serve at any size.

Time limit: MariaDB runs ``SET STATEMENT max_statement_time=<s> FOR EXPLAIN ...`` (one
statement, nothing left behind); MySQL gets a ``/*+ MAX_EXECUTION_TIME(ms) */`` hint after
the statement's ``SELECT``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from .base import JOIN_SCAN, READ, SCAN, SORT, ExplainBackend, PlanSignal

__all__ = ["MySQLExplain"]

_FULL_ACCESS = frozenset({"ALL", "index"})
_HASH_ACCESS = frozenset({"hash_ALL", "hash_index"})
#: MariaDB escapes a quote inside a condition as backslash-quote, which is not valid JSON.
_INVALID_ESCAPE_RE = re.compile(r"\\(.)", re.DOTALL)
_JSON_ESCAPES = frozenset('"\\/bfnrtu')
_LEADING_SELECT_RE = re.compile(r"^(\s*(?:/\*.*?\*/\s*)*SELECT)\b", re.IGNORECASE | re.DOTALL)


class MySQLExplain(ExplainBackend):
    vendor = "mysql"
    prefix_like_uses_btree = True

    def explain_sql(self, connection: BaseDatabaseWrapper, sql: str, timeout_ms: int) -> str:
        if getattr(connection, "mysql_is_mariadb", False):
            return with_max_statement_time("EXPLAIN FORMAT=JSON " + sql, timeout_ms)
        return "EXPLAIN FORMAT=JSON " + with_execution_time_hint(sql, timeout_ms)

    def drop_index_sql(self, name: str, table: str) -> str:
        return f"DROP INDEX {name} ON {table};"

    def parse_plan(self, rows: Sequence[Sequence[Any]]) -> list[PlanSignal]:
        document = rows[0][0] if rows and rows[0] else "{}"
        if isinstance(document, bytes):
            document = document.decode()
        if isinstance(document, str):
            document = json.loads(_INVALID_ESCAPE_RE.sub(_unescape, document))
        return parse_json_plan(document)


def _unescape(match: re.Match[str]) -> str:
    escaped = match.group(1)
    return match.group(0) if escaped in _JSON_ESCAPES else escaped


def with_max_statement_time(sql: str, timeout_ms: int) -> str:
    """MariaDB: a time limit for this one statement, with no session state left behind."""
    return f"SET STATEMENT max_statement_time={max(int(timeout_ms), 1) / 1000:.3f} FOR {sql}"


def with_execution_time_hint(sql: str, timeout_ms: int) -> str:
    """MySQL's per-statement limit is an optimizer hint right after ``SELECT``."""
    return _LEADING_SELECT_RE.sub(
        lambda m: f"{m.group(1)} /*+ MAX_EXECUTION_TIME({int(timeout_ms)}) */", sql, count=1
    )


def parse_json_plan(document: Any) -> list[PlanSignal]:
    """Signals from a MariaDB or MySQL 8 ``EXPLAIN FORMAT=JSON`` document."""
    if not isinstance(document, Mapping):
        return []
    return list(_walk(document, join_buffer=False))


def _walk(node: Any, *, join_buffer: bool) -> Iterator[PlanSignal]:
    if isinstance(node, list):
        # A nested_loop, outermost table first: a later table read whole is read once
        # per row of the tables before it.
        for position, item in enumerate(node):
            yield from _walk(item, join_buffer=join_buffer or position > 0)
        return
    if not isinstance(node, Mapping):
        return
    table = node.get("table")
    if isinstance(table, Mapping) and "table_name" in table:
        yield from _table(table, join_buffer=join_buffer or "block-nl-join" in node)
    if node.get("using_filesort") is True or isinstance(node.get("filesort"), Mapping):
        sort_key = (node.get("filesort") or {}).get("sort_key", "")
        yield PlanSignal(SORT, "", f"filesort {sort_key}".strip())
    for key, child in node.items():
        if key == "table" and isinstance(child, Mapping) and "table_name" in child:
            # Nested query blocks (materialized subqueries) live inside the table.
            for inner in child.values():
                if isinstance(inner, Mapping | list):
                    yield from _walk(inner, join_buffer=False)
            continue
        if isinstance(child, Mapping | list):
            yield from _walk(child, join_buffer=join_buffer or key == "block-nl-join")


def _table(table: Mapping[str, Any], *, join_buffer: bool) -> Iterator[PlanSignal]:
    name = str(table.get("table_name", ""))
    if not name or name.startswith("<"):
        return  # <subquery2>, <derived2>, <union1,2>: not real tables
    access = str(table.get("access_type", ""))
    rows = table.get("rows", table.get("rows_examined_per_scan"))
    condition = table.get("attached_condition")
    plan = f"{name}: access_type={access}"
    if condition:
        plan += f", attached_condition: {condition}"
    alias = name.lower()
    estimate = float(rows) if isinstance(rows, int | float) else None
    if access in _FULL_ACCESS:
        yield PlanSignal(SCAN if condition else READ, alias, plan, estimate)
    uses_buffer = join_buffer or bool(table.get("using_join_buffer"))
    if access in _HASH_ACCESS or (access in _FULL_ACCESS and uses_buffer):
        yield PlanSignal(JOIN_SCAN, alias, plan + " (inner side of a join)", estimate)
