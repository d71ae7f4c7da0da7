"""The vendor-neutral half of the missing-index check, and the interface each vendor fills.

One statement goes through :meth:`ExplainBackend.analyse`:

1. :mod:`.sql` reads which columns the statement filters and sorts on, per table instance;
   a statement that filters and sorts on nothing is never sent to the database.
2. The vendor module EXPLAINs it, **without ANALYZE**, inside a savepoint that is always
   rolled back (so ``SET LOCAL`` planner settings never leak into the user's transaction),
   with a time limit, unrecorded (:class:`~django_nplusone_guard.capture.suppressed`), and
   turns the plan into :class:`PlanSignal` s: "this table instance was read without an
   index serving its filter", "this sort under LIMIT had no index".
3. This module crosses signals with the statement's columns and the table's existing indexes
   (introspection) and builds at most one :class:`MissingIndex` per table instance, with an
   exact ``models.Index`` line, or, for a model the user does not own (``django.contrib``,
   an installed package), a ``migrations.RunSQL`` operation for one of their own apps.

Signals are structural (a scan *with a filter*, a sort *under LIMIT*), never cost-based, and a
candidate is dropped when an existing index already starts with one of its filter columns,
so the verdict does not change with table size: small development tables give the same
answer as production.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from django.apps import apps
from django.db import models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from ..capture import _library_paths, suppressed
from ..orm import model_for_table
from ..report import MissingIndex
from .sql import EQ, JOIN, PREFIX, RANGE, Block, Predicate, Statement, parse_statement

__all__ = ["ExistingIndex", "ExplainBackend", "PlanSignal", "Unexplainable", "index_name"]

SCAN, JOIN_SCAN, SORT, READ = "scan", "join", "sort", "read"

#: Existing indexes per (alias, table), cached like verdicts and cleared with them: the
#: schema is assumed stable between migrations. Bounded, least recently used evicted first.
MAX_CACHED_TABLES = 512
_index_cache: OrderedDict[tuple[str, str], list[ExistingIndex]] = OrderedDict()
_index_lock = threading.Lock()


def clear_index_cache() -> None:
    with _index_lock:
        _index_cache.clear()


#: A suggestion never has more columns than this; wider indexes rarely pay for themselves.
MAX_INDEX_COLUMNS = 3
#: A field with at most this many choices is too coarse to lead an index on its own.
SMALL_CHOICES = 6
#: Django's limit for ``Index.name`` (``Index.max_name_length``).
MAX_INDEX_NAME = 30
#: Index access methods that cannot serve a plain equality, range or sort on a column.
_NON_BTREE = frozenset({"gin", "gist", "brin", "spgist", "bloom", "fulltext", "spatial"})


class Unexplainable(Exception):
    """EXPLAIN must not run right now (broken transaction, no connection). Not cached:
    the same statement may be explainable in the next scope."""


@dataclass(frozen=True, slots=True)
class PlanSignal:
    """One structural fact a plan states about one table instance."""

    #: SCAN: read without an index serving its filter; JOIN_SCAN: the inner side of a join
    #: read without an index on the join column; SORT: a sort no index provides; READ: a
    #: whole table read with no condition of its own (it may be driving a join whose other
    #: side filters on a column no index serves).
    kind: str
    alias: str  # lower-cased alias as the plan names it; "" for a sort of the whole result
    plan: str  # the plan node, as short text
    rows_estimate: float | None = None
    #: Set when an index *was* used: its name and condition, to check the leading column.
    index_name: str | None = None
    index_cond: str = ""


@dataclass(frozen=True, slots=True)
class ExistingIndex:
    name: str
    columns: tuple[str, ...]
    #: False for partial and expression indexes and non-B-tree methods: they do not count
    #: as serving a plain column.
    plain: bool


class ExplainBackend:
    """What one database vendor must provide. Instances are stateless and shared."""

    vendor: ClassVar[str] = ""
    #: Does ``LIKE 'abc%'`` use a plain B-tree index here (MySQL yes; SQLite's LIKE is
    #: case-insensitive and PostgreSQL needs a ``*_pattern_ops`` opclass)?
    prefix_like_uses_btree: ClassVar[bool] = False
    #: PostgreSQL's ``SET LOCAL`` only lasts inside a transaction.
    needs_transaction: ClassVar[bool] = False

    # ------------------------------------------------------------------ vendor hooks

    def explain_sql(self, connection: BaseDatabaseWrapper, sql: str, timeout_ms: int) -> str:
        raise NotImplementedError

    def prepare(self, cursor: CursorWrapper, timeout_ms: int) -> None:
        """Statements to run before EXPLAIN inside the (rolled back) savepoint."""

    def time_limit(
        self, connection: BaseDatabaseWrapper, timeout_ms: int
    ) -> AbstractContextManager[None]:
        return nullcontext()

    def parse_plan(self, rows: Sequence[Sequence[Any]]) -> list[PlanSignal]:
        raise NotImplementedError

    def transaction_is_broken(self, connection: BaseDatabaseWrapper) -> bool:
        return bool(connection.needs_rollback)

    def unusable_index_names(self, cursor: CursorWrapper, table: str) -> set[str]:
        """Partial indexes, which Django's introspection does not flag."""
        return set()

    def blocker_hint(self, model: type[models.Model] | None, predicate: Predicate) -> str:
        """Extra advice for a term no B-tree index can serve (PostgreSQL: trigram)."""
        return ""

    def drop_index_sql(self, name: str, table: str) -> str:
        """``DROP INDEX`` for quoted names, to undo a ``RunSQL`` suggestion."""
        return f"DROP INDEX {name};"

    def create_index_note(self) -> str:
        """Advice on building an index from a hand-written migration (PostgreSQL: on a busy
        table, ``CONCURRENTLY``)."""
        return ""

    # ------------------------------------------------------------------ the pipeline

    def analyse(
        self, connection: BaseDatabaseWrapper, sql: str, params: Any, timeout_ms: int
    ) -> list[MissingIndex]:
        """Findings for one statement; raises on database errors (the caller logs once)."""
        statement = parse_statement(sql, params)
        if not statement.single_select or not _could_use_an_index(statement):
            return []
        with self._guarded(connection) as cursor:
            self.prepare(cursor, timeout_ms)
            with self.time_limit(connection, timeout_ms):
                cursor.execute(self.explain_sql(connection, sql, timeout_ms), params)
                rows = cursor.fetchall()
            signals = self.parse_plan(rows)
            if not signals:
                return []
            return _Findings(self, cursor, statement, sql).build(signals)

    @contextmanager
    def _guarded(self, connection: BaseDatabaseWrapper) -> Iterator[CursorWrapper]:
        """A cursor whose statements are unrecorded and, when a transaction is open (or the
        vendor needs one), inside a savepoint that is always rolled back."""
        if connection.connection is None:
            raise Unexplainable("the connection is closed")
        if self.transaction_is_broken(connection):
            raise Unexplainable("the transaction is broken (rollback pending)")
        in_transaction = connection.in_atomic_block or not connection.get_autocommit()
        with suppressed():
            if not (in_transaction or self.needs_transaction):
                with connection.cursor() as cursor:
                    yield cursor
                return
            with transaction.atomic(using=connection.alias):
                try:
                    with connection.cursor() as cursor:
                        yield cursor
                finally:
                    # Roll the savepoint back even on success: nothing we ran must stay.
                    transaction.set_rollback(True, using=connection.alias)

    def existing_indexes(self, cursor: CursorWrapper, table: str) -> list[ExistingIndex]:
        connection = cursor.db
        constraints = connection.introspection.get_constraints(cursor, table)
        unusable = self.unusable_index_names(cursor, table)
        indexes = []
        for name, info in constraints.items():
            if not (info.get("index") or info.get("unique") or info.get("primary_key")):
                continue
            columns = tuple(info.get("columns") or ())
            plain = (
                bool(columns)
                and all(isinstance(c, str) and c for c in columns)
                and name not in unusable
                and (info.get("type") or "").lower() not in _NON_BTREE
                and not (info.get("definition") and not info.get("unique"))
            )
            indexes.append(ExistingIndex(name, tuple(c or "" for c in columns), plain))
        return indexes


def _could_use_an_index(statement: Statement) -> bool:
    outer = statement.outer
    if outer is not None and outer.order_by and outer.limit:
        return True
    return any(p.kind in (EQ, RANGE, JOIN, PREFIX) for b in statement.blocks for p in b.predicates)


# ---------------------------------------------------------------------------- findings


class _Findings:
    """Signals + statement + existing indexes -> at most one finding per table instance."""

    def __init__(
        self, backend: ExplainBackend, cursor: CursorWrapper, statement: Statement, sql: str
    ) -> None:
        self.backend = backend
        self.cursor = cursor
        self.statement = statement
        self.sql = sql
        self._indexes: dict[str, list[ExistingIndex]] = {}

    def indexes(self, table: str) -> list[ExistingIndex]:
        key = (self.cursor.db.alias, table)
        with _index_lock:
            cached = _index_cache.get(key)
            if cached is not None:
                _index_cache.move_to_end(key)
                return cached
        found = self.backend.existing_indexes(self.cursor, table)
        with _index_lock:
            _index_cache[key] = found
            while len(_index_cache) > MAX_CACHED_TABLES:
                _index_cache.popitem(last=False)
        return found

    def build(self, signals: list[PlanSignal]) -> list[MissingIndex]:
        outer = self.statement.outer
        sort = _sorted_alias(outer) if outer is not None and outer.limit else None
        by_alias: dict[str, list[PlanSignal]] = {}
        reads: list[PlanSignal] = []
        for signal in signals:
            alias = signal.alias
            if signal.kind == READ or (signal.kind == SCAN and not self._filters(alias)):
                # SQLite says SCAN whether or not the table has a condition of its own.
                reads.append(signal)
                continue
            if signal.kind == SORT:
                if sort is None:
                    continue
                alias = sort[0]
            by_alias.setdefault(alias, []).append(signal)
        findings = []
        for alias, alias_signals in by_alias.items():
            finding = self.finding(alias, alias_signals, sort)
            if finding is not None:
                findings.append(finding)
        if reads:
            # A table read whole drives the statement (MySQL picks that on small tables);
            # a filter on another table that an index could serve would let the planner
            # start from there instead.
            for alias in self.statement.tables:
                if alias in by_alias:
                    continue
                plan = f"{reads[0].plan} (read whole; the filter on {alias} uses no index)"
                finding = self.finding(alias, [PlanSignal(SCAN, alias, plan)], None)
                if finding is not None:
                    findings.append(finding)
        return findings

    def _filters(self, alias: str) -> bool:
        uses_prefix = self.backend.prefix_like_uses_btree
        return any(
            p.kind in (EQ, RANGE) or (p.kind == PREFIX and uses_prefix)
            for p in self.statement.predicates_for(alias)
        )

    def finding(
        self,
        alias: str,
        signals: list[PlanSignal],
        sort: tuple[str, list[tuple[str, bool]]] | None,
    ) -> MissingIndex | None:
        table = self.statement.tables.get(alias) or alias
        model = _model_for(table) if table else None
        if model is None:
            # Not a model's table: a CTE, a derived table, or a table Django does not
            # manage. There is no Meta.indexes to suggest for.
            return None
        indexes = self.indexes(table)
        signals = [s for s in signals if not _served_by_named_index(s, indexes)]
        if not signals:
            return None
        kinds = {s.kind for s in signals}
        predicates = self.statement.predicates_for(alias)
        uses_prefix = self.backend.prefix_like_uses_btree
        eq = _unique(p.column for p in predicates if p.kind == EQ)
        ranges = _unique(
            p.column for p in predicates if p.kind == RANGE or (p.kind == PREFIX and uses_prefix)
        )
        joins = _unique(p.column for p in predicates if p.kind == JOIN)
        blockers = [
            p
            for p in predicates
            if p.kind not in (EQ, RANGE, JOIN) and not (p.kind == PREFIX and uses_prefix)
        ]
        plain = [ix.columns for ix in indexes if ix.plain]
        low = _low_selectivity_columns(model)
        eq = [c for c in eq if c not in low] + [c for c in eq if c in low]
        order = sort[1] if sort is not None and sort[0] == alias else []

        reasons: list[str] = []
        columns: list[str] = []
        if kinds & {SCAN, JOIN_SCAN}:
            filtered = eq + ranges
            if filtered and not any(_serves(ix, filtered, joins) for ix in plain):
                reasons.append("full scan")
                columns = eq + ([c for c, _ in order] if order else ranges[:1])
            elif (
                not filtered
                and JOIN_SCAN in kinds
                and joins
                and not any(ix[0] in joins for ix in plain)
            ):
                reasons.append("join without index")
                columns = joins[:1]
        if (
            SORT in kinds
            and order
            and not columns
            and not _pk_order_after_indexed_eq(model, eq, order, plain)
        ):
            reasons.append("sort without index")
            columns = eq + [c for c, _ in order]
        if not columns:
            return None
        if reasons == ["full scan"] and SORT in kinds:
            reasons = ["full scan and sort without index"]
        columns = _unique(columns)
        fields_by_column = _fields_by_column(model)
        columns = [c for c in columns if c in fields_by_column]
        columns = columns[:MAX_INDEX_COLUMNS]
        if not columns or all(c in low for c in columns):
            return None
        if any(ix[: len(columns)] == tuple(columns) for ix in plain):
            return None
        descending = {c for c, d in order if d}
        mixed = 0 < len(descending & set(columns)) < len([c for c, _ in order if c in columns])
        field_names = [
            ("-" if mixed and c in descending else "") + fields_by_column[c].name for c in columns
        ]
        reason = reasons[0]
        notes = []
        for predicate in blockers:
            if predicate.detail:
                note = f"{predicate.column}: {predicate.detail}, no B-tree index can serve it"
                hint = self.backend.blocker_hint(model, predicate)
                notes.append(note + (f" ({hint})" if hint else ""))
        if notes:
            reason += "; " + "; ".join(_unique(notes))
        estimates = [s.rows_estimate for s in signals if s.rows_estimate is not None]
        return MissingIndex(
            model=model._meta.label,
            table=table,
            columns=tuple(columns),
            fields=tuple(f.lstrip("-") for f in field_names),
            reason=reason,
            plan=" | ".join(_unique(s.plan for s in signals))[:500],
            sql=self.sql,
            callsite="",
            suggestion=(
                suggestion(model, field_names)
                if is_users_model(model)
                else run_sql_suggestion(
                    self.backend, self.cursor.db, model, table, columns, field_names
                )
            ),
            rows_estimate=max(estimates) if estimates else None,
            alias=self.cursor.db.alias,
        )


def _sorted_alias(block: Block) -> tuple[str, list[tuple[str, bool]]] | None:
    """The one table instance an ORDER BY sorts on, with (column, descending) pairs."""
    if not block.order_by:
        return None
    only = next(iter(block.tables)) if len(block.tables) == 1 else ""
    aliases = {a or only for a, _, _ in block.order_by}
    if len(aliases) != 1 or "" in aliases:
        return None
    return aliases.pop(), [(c, d) for _, c, d in block.order_by]


def _serves(index: tuple[str, ...], filtered: list[str], joins: list[str]) -> bool:
    """An index can serve a filter when it starts with a filtered column, or with a join
    column followed by one (``unique_together = [("content_type", "codename")]`` serves
    ``filter(content_type__app_label=..., codename=...)`` through a nested loop)."""
    if index[0] in filtered:
        return True
    return index[0] in joins and any(c in filtered for c in index[1:])


def _pk_order_after_indexed_eq(
    model: type[models.Model],
    eq: list[str],
    order: list[tuple[str, bool]],
    plain: list[tuple[str, ...]],
) -> bool:
    """``author.books.first()``: an indexed equality, then ORDER BY the primary key. MySQL
    and SQLite indexes carry the primary key, so they need no sort; PostgreSQL sorts one
    parent's rows. Not worth a warning on every ``.first()``."""
    pk = model._meta.pk
    if not eq or pk is None or [c for c, _ in order] != [pk.column]:
        return False
    return any(ix[: len(eq)] == tuple(eq) for ix in plain)


def _served_by_named_index(signal: PlanSignal, indexes: list[ExistingIndex]) -> bool:
    """An index scan is fine when its condition uses the index's leading column; it is a
    disguised full scan when the condition only names later columns."""
    if signal.index_name is None:
        return False
    index = next((ix for ix in indexes if ix.name == signal.index_name), None)
    if index is None or not index.columns or not index.columns[0]:
        return True  # cannot tell: do not accuse
    return re.search(rf"\b{re.escape(index.columns[0])}\b", signal.index_cond) is not None


def _unique(items: Any) -> list[Any]:
    return list(dict.fromkeys(items))


def _model_for(table: str) -> type[models.Model] | None:
    label = model_for_table(table)
    if label is None:
        return None
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _fields_by_column(model: type[models.Model]) -> dict[str, models.Field[Any, Any]]:
    return {f.column: f for f in model._meta.concrete_fields if f.column}


def _low_selectivity_columns(model: type[models.Model]) -> set[str]:
    """Columns that split rows into a handful of groups: never worth an index alone."""
    low = set()
    for column, field in _fields_by_column(model).items():
        coarse = bool(field.choices) and len(list(field.flatchoices)) <= SMALL_CHOICES
        if coarse or isinstance(field, models.BooleanField):
            low.add(column)
    return low


def index_name(model_name: str, field_names: Sequence[str]) -> str:
    """A valid ``Index.name`` (<= 30 chars, starts with a letter) that says what it is."""
    base = "_".join([model_name.lower(), *(f.lstrip("-").lower() for f in field_names)])
    base = re.sub(r"[^a-z0-9_]", "_", base)
    if not base[:1].isalpha():
        base = "ix_" + base
    if len(base) + len("_idx") <= MAX_INDEX_NAME:
        return base + "_idx"
    digest = hashlib.blake2b(base.encode(), digest_size=3).hexdigest()
    return f"{base[:19].rstrip('_')}_{digest}_idx"


@lru_cache(maxsize=256)
def _model_file(model: type[models.Model]) -> str | None:
    try:
        path = inspect.getsourcefile(model)
    except (TypeError, OSError):
        return None
    if path is None:
        return None
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


@lru_cache(maxsize=256)
def is_users_model(model: type[models.Model]) -> bool:
    """Whether the model's source is the user's to edit: not Django's (``django.contrib``)
    and not an installed package's (a file under the paths the call-site walk treats as
    libraries: the standard library, site-packages and dist-packages). A model whose file
    cannot be found counts as the user's."""
    module_name = model.__module__
    if module_name == "django" or module_name.startswith("django."):
        return False
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if not path:
        return True
    return not os.path.realpath(path).startswith(_library_paths())


def run_sql_suggestion(
    backend: ExplainBackend,
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    table: str,
    columns: Sequence[str],
    field_names: Sequence[str],
) -> str:
    """For a model the user does not own, whose ``Meta.indexes`` they cannot edit: a
    ``RunSQL`` operation for a migration in one of their own apps, in the vendor's
    syntax, with the ``DROP INDEX`` that reverses it."""
    quote = connection.ops.quote_name
    meta = model._meta
    name = _table_index_name(table, columns, connection.ops.max_name_length() or 63)
    listed = ", ".join(
        quote(column) + (" DESC" if field.startswith("-") else "")
        for column, field in zip(columns, field_names, strict=True)
    )
    create = f"CREATE INDEX {quote(name)} ON {quote(table)} ({listed});"
    drop = backend.drop_index_sql(quote(name), quote(table))
    source = meta.app_config.name if meta.app_config is not None else model.__module__
    note = backend.create_index_note()
    return (
        f"{meta.label} is not your model (it comes from {source}): add the index from a "
        f"migration in one of your apps, depending on the {meta.app_label} app's latest "
        f"migration{f' ({note})' if note else ''}: migrations.RunSQL({_python_str(create)}, "
        f"reverse_sql={_python_str(drop)})"
    )


def _table_index_name(table: str, columns: Sequence[str], limit: int) -> str:
    """``<table>_<columns>_idx``: the index lives in the user's migration but on another
    app's table, so the table names it (index names share one namespace per schema on
    PostgreSQL and SQLite). Shortened with a digest past the vendor's identifier limit."""
    base = re.sub(r"[^a-z0-9_]", "_", "_".join([table, *columns]).lower())
    if not base[:1].isalpha():
        base = "ix_" + base
    if len(base) + len("_idx") <= limit:
        return base + "_idx"
    digest = hashlib.blake2b(base.encode(), digest_size=3).hexdigest()
    return f"{base[: limit - 12].rstrip('_')}_{digest}_idx"


def _python_str(text: str) -> str:
    """A Python string literal for ``text``, in double quotes unless it holds some."""
    return f'"{text}"' if '"' not in text and "\\" not in text else repr(text)


def suggestion(model: type[models.Model], field_names: Sequence[str]) -> str:
    """The exact line to paste, and where."""
    fields = ", ".join(f'"{f}"' for f in field_names)
    name = index_name(model._meta.model_name or "", field_names)
    line = f'models.Index(fields=[{fields}], name="{name}")'
    if model._meta.auto_created:
        return (
            f"{model._meta.label} is an auto-created through table, which cannot declare "
            f"indexes: give the ManyToManyField an explicit through model and add {line} "
            "to its Meta.indexes"
        )
    where = _model_file(model)
    return f"add to {model._meta.label} Meta.indexes{f' ({where})' if where else ''}: {line}"
