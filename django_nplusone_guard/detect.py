"""From recorded queries to findings: N+1 (read and write), duplicates, allow rules.

Grouping key is ``(alias, fingerprint, user stack)``. A group becomes an N+1 when its
statements came from at least ``threshold`` *separate calls* made by user code from the same
place; one call that issues several statements by design (``bulk_create`` batches, per-chunk
prefetches, cascade deletes) counts once, which :mod:`.capture` encodes as a shared call id.

Statements that belong to an N+1 group are never reported again as duplicates: one root
cause, one finding.
"""

from __future__ import annotations

import fnmatch
import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import TYPE_CHECKING, Any

from . import conf, loops, orm
from .capture import (
    ALIAS,
    CALL,
    DURATION,
    IGNORED,
    MANY,
    PARAMS,
    SQL,
    STACK,
    Record,
    Scope,
    log_internal_error,
    render_frame,
    render_stack,
    suppressed,
)
from .fingerprint import Fingerprint, fingerprint
from .orm import model_for_table
from .report import Duplicate, Finding, NPlusOne, QueryRun, Report, as_text, finding_order

if TYPE_CHECKING:
    from .capture import capture

__all__ = ["Group", "analyse_scope", "is_allowed", "render_frame"]


#: Longer statements are not EXPLAINed: generated SQL that size (tens of thousands of IN
#: values) takes seconds to parse for a plan a shorter twin of it would show just as well.
MAX_EXPLAINED_SQL_CHARS = 64 * 1024


class Budget:
    """The time analysis of one scope may take (``ANALYSIS_BUDGET_MS``).

    Analysis runs when a request ends, so a scope with thousands of distinct statements must
    not turn into seconds of fingerprinting and EXPLAIN. Each stage asks :attr:`spent`
    before starting work on a new statement; when it is, the rest is counted but not
    analysed and the report says so in ``errors``.
    """

    __slots__ = ("deadline", "limit_ms", "noted")

    def __init__(self, limit_ms: int) -> None:
        self.limit_ms = limit_ms
        self.deadline = perf_counter() + limit_ms / 1000
        self.noted = False

    @property
    def spent(self) -> bool:
        return perf_counter() >= self.deadline

    def note(self, report: Report, what: str) -> None:
        """Say once in ``report.errors`` what was left out."""
        if not self.noted:
            self.noted = True
            report.errors.append(
                f"analysis stopped after {self.limit_ms} ms (ANALYSIS_BUDGET_MS): {what}"
            )

    def stop(self, report: Report, what: str) -> bool:
        """True, and noted, when the budget is spent: for stages that poll it."""
        if self.spent:
            self.note(report, what)
            return True
        return False


@dataclass
class Group:
    """Statements of one shape fired from one place; the unit attribution works on."""

    alias: str
    fp: Fingerprint
    stack: tuple[Any, ...]
    records: list[Record] = field(default_factory=list)
    #: Position of the group's first statement among the scope's records.
    first_index: int = 0
    extra_count: int = 0  # statements counted past MAX_QUERIES, not kept
    extra_time: float = 0.0

    @property
    def count(self) -> int:
        return len(self.records) + self.extra_count

    @property
    def call_count(self) -> int:
        """Separate ORM calls: a batching call (``bulk_update``'s batches, a prefetch's
        chunks) shares one call id between its statements, so it counts once."""
        return len(set(map(_call_of, self.records))) + self.extra_count

    @property
    def total_time_ms(self) -> float:
        spent: float = sum(map(_duration_of, self.records))
        return (spent + self.extra_time) * 1000

    @property
    def sample_sql(self) -> str:
        return as_text(self.records[0][SQL]) if self.records else ""


_call_of = operator.itemgetter(CALL)
_duration_of = operator.itemgetter(DURATION)
_query_of = operator.itemgetter(ALIAS, SQL, PARAMS, MANY, DURATION)


def _params_key(params: Any) -> str:
    try:
        return repr(params)
    except Exception:
        return f"<unrepresentable {type(params).__name__} at {id(params):x}>"


#: Scopes up to this many statements first try :func:`_lone_runs`. Past it the full analysis
#: runs directly, under its time budget.
MAX_LONE_STATEMENTS = 32


def _lone_runs(records: list[Record]) -> list[QueryRun] | None:
    """The runs of a scope in which no statement shape repeats, or ``None`` as soon as one
    does. Such a scope holds no N+1 and no duplicate (both need two statements of one
    shape), which is most small requests: then the report needs only each statement's
    fingerprint and stack, without groups, attribution or the duplicate search. That
    analysis runs at the end of every request, cold in the CPU caches, and cost small pages
    more time than its instruction count suggests (see ``docs/benchmarks.md``)."""
    seen: set[tuple[str, str]] = set()
    runs: list[QueryRun] = []
    for index, record in enumerate(records):
        sql = record[SQL]
        key = fingerprint(sql if type(sql) is str else as_text(sql)).key
        shape = (record[ALIAS], key)
        if shape in seen:
            return None
        seen.add(shape)
        runs.append((index, render_stack(record[STACK]), key))
    return runs


def analyse_scope(scope: Scope, options: capture, *, into: Report) -> Report:
    """Fill ``into`` with the queries and findings of ``scope``."""
    config = conf.get_config()
    report = into
    report.query_count = scope.count
    report.total_time_ms = scope.total_time * 1000
    report.truncated = scope.count > len(scope.records)
    if (
        len(scope.records) <= MAX_LONE_STATEMENTS
        and not scope.overflow
        and options.threshold >= 2
        and not options.explain
        and not config.REPORT_UNUSED_EAGER
    ):
        lone = _lone_runs(scope.records)
        if lone is not None:
            report.defer_queries(list(map(_query_of, scope.records)), lone)
            return report
    # Attribution can touch model instances and EXPLAIN runs statements: neither may be
    # recorded into an enclosing scope or the toolbar. The short path above runs none.
    with suppressed():
        return _analyse_in_full(scope, options, report, config)


def _analyse_in_full(
    scope: Scope, options: capture, report: Report, config: conf.Config
) -> Report:
    """Group the statements, find N+1s and duplicates, attribute them, run EXPLAIN."""
    budget = Budget(config.ANALYSIS_BUDGET_MS)

    groups: dict[tuple[Any, ...], Group] = {}
    stacks = _Stacks()
    records = scope.records
    # A loop's statements arrive one after another with equal text and the very same stack
    # tuple (the recorder reuses its walk): a record like the one before it shares its
    # fingerprint, rendered stack and group, and costs a comparison instead of the lookups.
    # Such a run is also one entry in ``runs``, which is all the report keeps per statement
    # besides the statement itself until someone reads ``report.queries``.
    runs: list[QueryRun] = []
    last_sql: Any = None
    last_stack: Any = None
    last_alias: Any = None
    fp: Fingerprint | None = None
    control = False
    group: Group | None = None
    for index, record in enumerate(records):
        if index & 31 == 31 and budget.spent:
            budget.note(
                report,
                f"{len(records) - index} of {scope.count} statements were counted but not "
                "analysed",
            )
            # The rest keeps its stack where one was rendered already, and no fingerprint.
            runs.extend(
                (i, stacks.frames(r[STACK]), "") for i, r in enumerate(records[index:], index)
            )
            break
        sql = record[SQL]
        if type(sql) is not str:
            sql = as_text(sql)
        raw_stack = record[STACK]
        if (
            fp is None
            or raw_stack is not last_stack
            or sql != last_sql
            or record[ALIAS] != last_alias
        ):
            fp = fingerprint(sql)
            stack, frames = stacks.get(raw_stack)
            runs.append((index, frames, fp.key))
            control = fp.is_transaction_control
            group = None
            last_sql, last_stack, last_alias = sql, raw_stack, record[ALIAS]
        if record[IGNORED] or control:
            continue
        if group is None:
            key = (record[ALIAS], fp.key, id(stack))
            group = groups.get(key)
            if group is None:
                group = groups[key] = Group(
                    alias=record[ALIAS], fp=fp, stack=stack, first_index=index
                )
        group.records.append(record)
    for (alias, sql, stack, ignored), (count, duration, _many) in scope.overflow.items():
        if budget.spent:
            budget.note(report, "statements past MAX_QUERIES were counted but not analysed")
            break
        fp = fingerprint(as_text(sql))
        if ignored or fp.is_transaction_control:
            continue
        stack, _frames = stacks.get(stack)
        key = (alias, fp.key, id(stack))
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(alias=alias, fp=fp, stack=stack)
        group.extra_count += count
        group.extra_time += duration
    # The statements without their events (a report keeps no model instance alive).
    report.defer_queries(list(map(_query_of, records)), runs)

    repeated = [g for g in groups.values() if g.call_count >= options.threshold and g.fp.verb]
    verdicts = _classify(scope, repeated, report)
    for group, verdict in zip(repeated, verdicts, strict=True):
        if verdict.into is not None:  # folded: its statements count with the one it joins
            main = repeated[verdict.into]
            main.extra_count += group.count
            main.extra_time += group.total_time_ms / 1000
    nplusone_groups = [g for g, v in zip(repeated, verdicts, strict=True) if v.kind == "loop"]
    # A statement belongs to exactly one group: skipping a group skips its records, so the
    # statements of an N+1 or of a repeat are never reported again as identical duplicates.
    handled = {id(g) for g, v in zip(repeated, verdicts, strict=True) if v.kind != "none"}
    nplusones = [_nplusone(g, stacks) for g in nplusone_groups]
    nplusones = _attribute(scope, nplusone_groups, nplusones, config, report)

    duplicates: list[Duplicate] = []
    if config.REPORT_DUPLICATES:
        duplicates = [
            _repeat(g, v, stacks)
            for g, v in zip(repeated, verdicts, strict=True)
            if v.kind in ("repeat", "library")
        ]
        duplicates.extend(_duplicates(groups.values(), handled, stacks))

    report.nplusones = sorted(
        (f for f in nplusones if not is_allowed(f, options.allow)), key=finding_order
    )
    report.duplicates = sorted(
        (f for f in duplicates if not is_allowed(f, options.allow)), key=finding_order
    )
    if options.explain:
        from .explain import find_missing_indexes

        missing = find_missing_indexes(
            (g for g in groups.values() if len(g.sample_sql) <= MAX_EXPLAINED_SQL_CHARS),
            stacks.frames,
            should_stop=lambda: budget.stop(
                report, "EXPLAIN was skipped for the remaining statements"
            ),
        )
        report.missing_indexes = sorted(
            (f for f in missing if not is_allowed(f, options.allow)), key=finding_order
        )
    return report


class _Stacks:
    """Rendered stacks for one analysis, and one canonical tuple per distinct stack (its
    ``id`` keys groups). Repeats of one call site share one stack tuple (the recorder
    reuses its walk), so each tuple is looked up by identity first; equal stacks from
    separate walks are matched by their codes' ids and lines, because hashing a stack hashes
    its code objects (bytecode, constants, nested functions), which is slow. Every stack
    passed in must stay alive while this object is used (the scope's records hold them)."""

    __slots__ = ("_by_id", "_by_value")

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[tuple[Any, ...], list[str]]] = {}
        self._by_value: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[str]]] = {}

    def get(self, stack: tuple[Any, ...]) -> tuple[tuple[Any, ...], list[str]]:
        """The canonical tuple equal to ``stack`` and its rendering."""
        found = self._by_id.get(id(stack))
        if found is None:
            key = (tuple(map(id, stack[::2])), stack[1::2])
            found = self._by_value.get(key)
            if found is None:
                found = self._by_value[key] = (stack, render_stack(stack))
            self._by_id[id(stack)] = found
        return found

    def frames(self, stack: tuple[Any, ...]) -> list[str]:
        """The rendering of a stack :meth:`get` has seen; ``[]`` for any other."""
        found = self._by_id.get(id(stack))
        return [] if found is None else found[1]


def _classify(scope: Scope, groups: list[Group], report: Report) -> list[loops.Verdict]:
    """Loop, repeat or library loop, per group (:mod:`.loops`). A failure there keeps
    today's answer for every group: each is a loop."""
    try:
        return loops.classify_all(scope, groups)
    except Exception as exc:
        log_internal_error("telling loops from repeats")
        report.errors.append(f"telling loops from repeats failed: {exc!r}")
        return [loops.LOOP] * len(groups)


def _repeat(group: Group, verdict: loops.Verdict, stacks: _Stacks) -> Duplicate:
    """One finding for a group that repeats without a loop over rows."""
    frames = stacks.frames(group.stack) or render_stack(group.stack)
    keys = {_params_key(record[PARAMS]) for record in group.records}
    identical = len(keys) == 1 and not group.extra_count
    table = group.fp.tables[0] if group.fp.tables else None
    model, field = verdict.relation or (model_for_table(table) or table, None)
    kind = "library" if verdict.kind == "library" else ("identical" if identical else "repeat")
    suggestion = verdict.suggestion
    if kind == "repeat" and not suggestion:
        suggestion = REPEAT_FIX if field is None else REPEAT_ROW_FIX
    return Duplicate(
        model=model,
        count=group.count,
        fingerprint=group.fp.key,
        sql=group.sample_sql,
        callsites=[frames[0] if frames else "unknown"],
        total_time_ms=round(group.total_time_ms, 3),
        alias=group.alias,
        params=_short(next(iter(keys))) if identical else None,
        kind=kind,
        library=verdict.library,
        suggestion=suggestion,
        field=field,
        templates=orm.template_lines(group.records),
    )


#: Advice for one place that runs a statement a fixed number of times with other values.
REPEAT_FIX = (
    "a fixed number of queries from one place, not a loop over rows: leave it, or fetch "
    "the values at once (filter(field__in=[...])) when the list can grow"
)
#: Advice for the same row asked the same thing again (a method or template value called
#: twice, one object saved twice).
REPEAT_ROW_FIX = (
    "the same row again: keep the first result (a variable, cached_property, or {% with %} "
    "in a template) instead of asking twice"
)


def _attribute(
    scope: Scope,
    groups: list[Group],
    nplusones: list[NPlusOne],
    config: conf.Config,
    report: Report,
) -> list[NPlusOne]:
    """ORM attribution hook (:mod:`.orm`): name the relation, the parent queryset's line,
    the template line and the fix, and merge findings with one root cause. A failure here
    keeps the plain SQL-level findings."""
    try:
        attributed = orm.attribute(scope, groups, nplusones)
        if config.REPORT_UNUSED_EAGER:
            attributed.extend(orm.unused_eager(scope))
    except Exception as exc:
        log_internal_error("ORM attribution")
        report.errors.append(f"ORM attribution failed: {exc!r}")
        return nplusones
    return attributed


def _nplusone(group: Group, stacks: _Stacks) -> NPlusOne:
    frames = stacks.frames(group.stack) or render_stack(group.stack)
    table = group.fp.tables[0] if group.fp.tables else None
    return NPlusOne(
        kind="read" if group.fp.is_read else "write",
        model=model_for_table(table) or table,
        field=None,
        count=group.count,
        fingerprint=group.fp.key,
        sql=group.sample_sql,
        callsite=frames[0] if frames else "unknown",
        stack=list(frames),
        suggestion="",
        total_time_ms=round(group.total_time_ms, 3),
        alias=group.alias,
        params=_sample_params(group.records),
    )


#: How many statements of an N+1 show their parameters, as a sample of what varied.
SAMPLE_PARAMS = 3


def _sample_params(records: Sequence[Record]) -> str | None:
    """The first few statements' parameters (``(1,), (2,), (3,) ...``), for the panel: what
    the loop went through. None for ``executemany`` batches, whose rows are not a sample."""
    samples = []
    for record in records[:SAMPLE_PARAMS]:
        if record[MANY] or record[PARAMS] is None:
            return None
        samples.append(_short(_params_key(record[PARAMS]), 100))
    if not samples:
        return None
    more = " ..." if len(records) > SAMPLE_PARAMS else ""
    return ", ".join(samples) + more


def _duplicates(
    groups: Iterable[Group], nplusone_ids: set[int], stacks: _Stacks
) -> list[Duplicate]:
    # Statements are first sorted by text, which hashes at C speed; only a text seen twice
    # has its parameters rendered (``repr``) to tell exact repeats apart.
    by_text: dict[tuple[str, str], tuple[Fingerprint, list[Record]]] = {}
    for group in groups:
        if not group.fp.is_read or id(group) in nplusone_ids:
            # Re-running the same write is usually intended, and an N+1's statements are
            # reported as that N+1 (one root cause, one finding).
            continue
        for record in group.records:
            if record[MANY]:
                continue
            text_key = (record[ALIAS], as_text(record[SQL]))
            found = by_text.get(text_key)
            if found is None:
                by_text[text_key] = (group.fp, [record])
            else:
                found[1].append(record)
    findings = []
    for (alias, sql), (fp, same_text) in by_text.items():
        if len(same_text) < 2:
            continue
        exact: dict[str, list[Record]] = {}
        for record in same_text:
            exact.setdefault(_params_key(record[PARAMS]), []).append(record)
        for params, records in exact.items():
            if len(records) < 2:
                continue
            callsites: list[str] = []
            for record in records:
                frames = stacks.frames(record[STACK]) or ["unknown"]
                if frames[0] not in callsites:
                    callsites.append(frames[0])
            table = fp.tables[0] if fp.tables else None
            findings.append(
                Duplicate(
                    model=model_for_table(table) or table,
                    count=len(records),
                    fingerprint=fp.key,
                    sql=sql,
                    callsites=callsites,
                    total_time_ms=round(sum(r[DURATION] for r in records) * 1000, 3),
                    alias=alias,
                    params=_short(params),
                )
            )
    return findings


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _match_glob(pattern: str, value: str | None) -> bool:
    return value is not None and fnmatch.fnmatchcase(value, pattern)


def is_allowed(finding: Finding, rules: Sequence[Mapping[str, str]]) -> bool:
    """True when any rule matches every key it names (model, field, callsite, sql, kind)."""
    return any(_rule_matches(finding, rule) for rule in rules)


def _rule_matches(finding: Finding, rule: Mapping[str, str]) -> bool:
    for key, pattern in rule.items():
        if key == "sql":
            if not re.search(pattern, getattr(finding, "sql", "") or ""):
                return False
        elif key == "callsite":
            sites = [getattr(finding, "callsite", None), *getattr(finding, "stack", ())]
            if not any(_match_glob(pattern, s) for s in sites):
                return False
        elif key == "kind":
            kinds = {finding.category, getattr(finding, "kind", None)}
            if pattern not in kinds:
                return False
        elif not _match_glob(pattern, getattr(finding, key, None)):
            return False
    return True
