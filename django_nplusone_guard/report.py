"""Findings as plain data, and the one formatter every front door uses.

A :class:`Report` is what a capture scope produces. It is deliberately dumb: dataclasses of
strings and numbers that survive ``to_dict()`` -> JSON -> ``from_dict()`` unchanged, because
the debug-toolbar stores panel stats as JSON and the pytest plugin merges reports from xdist
workers. Logs, warnings, exceptions, the panel and the audit command all render findings
with :func:`format_finding`, so a developer sees the same words everywhere.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar, overload

__all__ = [
    "CapturedQuery",
    "Duplicate",
    "Finding",
    "MissingIndex",
    "NPlusOne",
    "Report",
    "count_of",
    "format_finding",
]

_T = TypeVar("_T")

#: How many characters of SQL a text rendering shows before eliding the rest.
SQL_PREVIEW_CHARS = 300


def count_of(count: int, singular: str, plural: str) -> str:
    """``1 query``, ``2 queries``: every count a person reads is rendered with this."""
    return f"{count} {singular if count == 1 else plural}"


def finding_order(finding: Finding) -> tuple[int, str, str]:
    """Sort key of findings of one kind: the biggest first, then by call site, so that the
    same code gives the same text in the same order (outputs diff cleanly); never by
    timing, which changes from run to run."""
    return (
        -int(getattr(finding, "count", 0)),
        str(getattr(finding, "callsite", "")),
        str(getattr(finding, "fingerprint", "")),
    )


@dataclass(slots=True)
class CapturedQuery:
    """One statement as it ran. ``params`` is ``None`` when parameters were not kept."""

    alias: str
    sql: str
    params: Any
    many: bool
    duration_ms: float
    callsite: str
    stack: list[str] = field(default_factory=list)
    fingerprint: str = ""

    def to_dict(self, *, params: bool = True) -> dict[str, Any]:
        # Not ``asdict``: it deep-copies ``params``, which fails on memoryviews and
        # generators (``executemany``) and copies 10,000-element IN lists for nothing.
        return {
            "alias": self.alias,
            "sql": self.sql,
            "params": _params_to_json(self.params, self.many) if params else None,
            "many": self.many,
            "duration_ms": self.duration_ms,
            "callsite": self.callsite,
            "stack": list(self.stack),
            "fingerprint": self.fingerprint,
        }


_field_names_of: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _field_names_of.get(cls)
    if names is None:
        names = _field_names_of[cls] = tuple(f.name for f in fields(cls))
    return names


@dataclass(slots=True)
class Finding:
    """Fields every finding has, whatever its kind."""

    category: ClassVar[str] = "finding"

    def to_dict(self) -> dict[str, Any]:
        # Not ``asdict``: its recursive deep copy cost more than the analysis of a finding.
        # Values are strings, numbers, None and flat lists or tuples of strings, so copying
        # the sequences one level deep is the same copy.
        data: dict[str, Any] = {}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            data[name] = list(value) if isinstance(value, list) else value
        data["category"] = self.category
        data["id"] = self.id
        return data

    @property
    def id(self) -> str:
        """The same for the same root cause across requests, processes, machines and edits
        that only move lines: see :mod:`django_nplusone_guard.identity`."""
        from .identity import finding_id

        return finding_id(self)

    @property
    def title(self) -> str:
        raise NotImplementedError


@dataclass(slots=True)
class NPlusOne(Finding):
    """The same statement shape fired once per item of something the code iterates."""

    category: ClassVar[str] = "nplusone"

    kind: str  # "read" (SELECT), "write" (INSERT/UPDATE/DELETE in a loop), "unused_eager"
    model: str | None
    field: str | None
    count: int
    fingerprint: str
    sql: str
    callsite: str
    # ``dataclasses.field`` spelled out: the ``field`` attribute above shadows the name.
    stack: list[str] = dataclasses.field(default_factory=list)
    suggestion: str = ""
    total_time_ms: float = 0.0
    alias: str = "default"
    parent_callsite: str | None = None
    template: str | None = None
    #: Where ``suggestion`` goes, as a call site renders: the parent queryset's line, or the
    #: member of the user's class that configures it (``BookAdmin.list_select_related``).
    fix_at: str | None = None
    #: Another fix, or how to apply this one, in words (``or .fetch_mode(models.FETCH_PEERS)
    #: on the queryset``): kept out of ``suggestion`` so that what is pasted is code only (a
    #: ``#`` comment pasted into a chained queryset would comment out the rest of the line).
    alternative: str | None = None
    #: The first statements' parameters (``(1,), (2,), (3,) ...``): what the loop went
    #: through, shown by the panel. Values can be personal data: text renderings leave it
    #: out, and the audit's JSON keeps it only with ``LOG_PARAMS``.
    params: str | None = None

    @property
    def relation(self) -> str:
        """``app.Model.field`` when attribution knows it, else the model or the table."""
        if self.model and self.field:
            return f"{self.model}.{self.field}"
        return self.model or "unknown relation"

    @property
    def title(self) -> str:
        if self.kind == "unused_eager":
            return f"Unused eager load {self.relation}: loaded {self.count}x, never accessed"
        what = "N+1 query" if self.kind == "read" else "N+1 write"
        queries = count_of(self.count, "query", "queries")
        return f"{what} on {self.relation}: {queries} ({self.total_time_ms:.1f} ms)"


#: Duplicate kinds: the same statement and parameters again; one place repeating a statement
#: a fixed number of times (parameters that are constants, not rows loaded earlier); and a
#: library running it per item or twice (formset validation, the admin's two counts).
DUPLICATE_KINDS = ("identical", "repeat", "library")


@dataclass(slots=True)
class Duplicate(Finding):
    """A statement run more than once where no loop over rows explains it: run it once and
    reuse the result, or leave it (a fixed number of queries does not grow with data)."""

    category: ClassVar[str] = "duplicate"

    model: str | None
    count: int
    fingerprint: str
    sql: str
    callsites: list[str]
    total_time_ms: float = 0.0
    alias: str = "default"
    params: str | None = None
    kind: str = "identical"
    #: For ``kind="library"``: whose loop it is (``django.forms``, ``rest_framework``).
    library: str | None = None
    #: What to change, when something can: a setting of that library, or "reuse the result".
    suggestion: str = ""
    #: The relation the repeated statement reads, when the ORM knows it.
    field: str | None = None
    #: The template lines that ran it (``nav.html:7``), when templates did.
    templates: list[str] = dataclasses.field(default_factory=list)

    @property
    def callsite(self) -> str:
        return self.callsites[0] if self.callsites else "unknown"

    @property
    def title(self) -> str:
        where = self.model or "unknown table"
        if self.field and self.model:
            where = f"{self.model}.{self.field}"
        queries = count_of(self.count, "query", "queries")
        if self.kind == "library":
            return f"Library loop on {where}: {queries} run by {self.library}"
        if self.kind == "repeat":
            return f"Repeated query on {where}: {queries} from one place"
        identical = count_of(self.count, "identical query", "identical queries")
        return f"Duplicate query on {where}: {identical}"


@dataclass(slots=True)
class MissingIndex(Finding):
    """A filter or sort that no index can serve, with the index that would."""

    category: ClassVar[str] = "missing_index"

    model: str | None
    table: str
    columns: tuple[str, ...]
    fields: tuple[str, ...]
    reason: str
    plan: str
    sql: str
    callsite: str
    suggestion: str = ""
    rows_estimate: float | None = None
    alias: str = "default"
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = Finding.to_dict(self)
        data["columns"] = list(self.columns)
        data["fields"] = list(self.fields)
        return data

    @property
    def title(self) -> str:
        cols = ", ".join(self.fields or self.columns) or "?"
        return f"Missing index on {self.model or self.table} ({cols}): {self.reason}"


_FINDING_TYPES: dict[str, type[Finding]] = {
    cls.category: cls for cls in (NPlusOne, Duplicate, MissingIndex)
}


#: A statement as the analysis hands it over, before :class:`CapturedQuery` is built from
#: it: alias, sql (text or a driver's SQL object), params, many, duration in seconds.
PendingQuery = tuple[str, Any, Any, bool, float]
#: Where a run of statements with one rendered stack and one fingerprint key starts:
#: (index of its first statement, rendered stack, fingerprint key). A loop's hundred
#: statements are one run, so nothing is built per statement until ``queries`` is read.
QueryRun = tuple[int, list[str], str]


def as_text(sql: Any) -> str:
    """A statement as text, whatever the driver handed over (bytes, psycopg's Composed)."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes):
        return sql.decode("utf-8", "replace")
    return str(sql)


class _Queries:
    """``Report.queries``, built on first read.

    Most reports are never asked for their statements: the middleware only logs findings.
    Building one ``CapturedQuery`` per statement cost as much as the rest of the analysis of
    that statement, so the analysis leaves plain tuples and runs (:meth:`Report.defer_queries`)
    and the list is made the first time anyone reads it. Nothing else changes for a reader:
    the attribute is a ``list[CapturedQuery]``, can be assigned, and is a dataclass field.
    """

    @overload
    def __get__(self, report: None, owner: type[Report] | None = None) -> tuple[()]: ...

    @overload
    def __get__(
        self, report: Report, owner: type[Report] | None = None
    ) -> list[CapturedQuery]: ...

    def __get__(
        self, report: Report | None, owner: type[Report] | None = None
    ) -> list[CapturedQuery] | tuple[()]:
        if report is None:
            return ()  # the field's default, as the dataclass reads it: "no statements"
        state = report.__dict__
        queries: list[CapturedQuery] | None = state.get("_queries")
        if queries is None:
            pending: list[PendingQuery]
            pending, runs = state.pop("_pending_queries", ([], []))
            queries = state["_queries"] = []
            ends = [start for start, _frames, _key in runs[1:]] + [len(pending)] if runs else []
            for (start, frames, key), end in zip(runs, ends, strict=True):
                callsite = frames[0] if frames else "unknown"
                queries.extend(
                    CapturedQuery(
                        alias=alias,
                        sql=as_text(sql),
                        params=params,
                        many=many,
                        duration_ms=duration * 1000,
                        callsite=callsite,
                        stack=frames,
                        fingerprint=key,
                    )
                    for alias, sql, params, many, duration in pending[start:end]
                )
        return queries

    def __set__(self, report: Report, value: Iterable[CapturedQuery]) -> None:
        state = report.__dict__
        state.pop("_pending_queries", None)
        state["_queries"] = value if isinstance(value, list) else list(value)


@dataclass(init=False)
class Report:
    """Everything one capture scope saw and concluded."""

    queries: _Queries = _Queries()
    nplusones: list[NPlusOne] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    missing_indexes: list[MissingIndex] = field(default_factory=list)
    #: Statements seen, including those past ``MAX_QUERIES`` that were counted but not kept.
    query_count: int = 0
    total_time_ms: float = 0.0
    #: True when ``MAX_QUERIES`` was reached and later samples were dropped.
    truncated: bool = False
    #: Internal problems met while analysing (the scope's queries were still counted).
    errors: list[str] = field(default_factory=list)

    def __init__(
        self,
        queries: Iterable[CapturedQuery] | None = None,
        nplusones: list[NPlusOne] | None = None,
        duplicates: list[Duplicate] | None = None,
        missing_indexes: list[MissingIndex] | None = None,
        query_count: int = 0,
        total_time_ms: float = 0.0,
        truncated: bool = False,
        errors: list[str] | None = None,
    ) -> None:
        # Written out, not generated: the generated ``__init__`` sets ``queries`` through
        # its descriptor even to the empty default, which made an empty report cost more
        # than the rest of a capture's set-up at the start of every request.
        if queries is not None:
            self.queries = queries
        self.nplusones = [] if nplusones is None else nplusones
        self.duplicates = [] if duplicates is None else duplicates
        self.missing_indexes = [] if missing_indexes is None else missing_indexes
        self.query_count = query_count
        self.total_time_ms = total_time_ms
        self.truncated = truncated
        self.errors = [] if errors is None else errors

    @property
    def findings(self) -> list[Finding]:
        """Every finding: N+1s, then missing indexes, then duplicates, each kind in
        :func:`finding_order`."""
        return [
            *sorted(self.nplusones, key=finding_order),
            *sorted(self.missing_indexes, key=finding_order),
            *sorted(self.duplicates, key=finding_order),
        ]

    def defer_queries(self, pending: list[PendingQuery], runs: list[QueryRun]) -> None:
        """Set ``queries`` to these statements, built into ``CapturedQuery`` objects only
        when ``queries`` is first read (see :class:`_Queries`). ``runs`` gives each
        statement its stack and fingerprint: a run covers the statements from its index to
        the next run's; the first run starts at 0."""
        self.__dict__.pop("_queries", None)
        self.__dict__["_pending_queries"] = (pending, runs)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.nplusones) + len(self.missing_indexes) + len(self.duplicates)

    def __bool__(self) -> bool:
        # A Report is always truthy, so ``with capture() as r: ... ; if r:`` is not a trap;
        # use ``r.findings`` to ask whether anything was found.
        return True

    def header_value(self) -> str:
        return (
            f"nplusone={len(self.nplusones)}; duplicates={len(self.duplicates)}; "
            f"missing_indexes={len(self.missing_indexes)}; queries={self.query_count}"
        )

    def to_dict(self, *, params: bool = True, queries: bool = True) -> dict[str, Any]:
        """Plain JSON-able data; ``params=False`` leaves statement parameters out (they can
        hold personal data), ``queries=False`` the statements themselves (the toolbar's SQL
        panel keeps them already), which also spares building them."""
        return {
            "queries": [q.to_dict(params=params) for q in self.queries] if queries else [],
            "nplusones": [f.to_dict() for f in self.nplusones],
            "duplicates": [f.to_dict() for f in self.duplicates],
            "missing_indexes": [f.to_dict() for f in self.missing_indexes],
            "query_count": self.query_count,
            # Unrounded, so from_dict() renders exactly the same text back.
            "total_time_ms": self.total_time_ms,
            "truncated": self.truncated,
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Report:
        """Rebuild a report from :meth:`to_dict` output (toolbar history, xdist workers)."""
        return cls(
            queries=[_load(CapturedQuery, q) for q in data.get("queries", ())],
            nplusones=[_load(NPlusOne, f) for f in data.get("nplusones", ())],
            duplicates=[_load(Duplicate, f) for f in data.get("duplicates", ())],
            missing_indexes=[_load(MissingIndex, f) for f in data.get("missing_indexes", ())],
            query_count=int(data.get("query_count", 0)),
            total_time_ms=float(data.get("total_time_ms", 0.0)),
            truncated=bool(data.get("truncated", False)),
            errors=list(data.get("errors", ())),
        )

    def __str__(self) -> str:
        return format_report(self)

    def __repr__(self) -> str:
        # Short: a report can hold thousands of statements, and a debugger or a failing
        # assertion prints the repr of every local.
        return (
            f"<Report: {count_of(self.query_count, 'query', 'queries')}, "
            f"{len(self.nplusones)} N+1, {len(self.missing_indexes)} missing index, "
            f"{len(self.duplicates)} duplicate>"
        )


def _load(cls: type[_T], data: Mapping[str, Any]) -> _T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names}
    for name in ("columns", "fields"):
        if isinstance(kwargs.get(name), list):
            kwargs[name] = tuple(kwargs[name])
    return cls(**kwargs)


def _params_to_json(params: Any, many: bool) -> Any:
    """Parameters as JSON-safe values; huge or odd ones are summarised, never raise."""
    if params is None:
        return None
    if many:
        try:
            return f"<{len(params)} rows>"
        except TypeError:
            return "<rows>"
    if isinstance(params, Mapping):
        return {str(k): _scalar(v) for k, v in list(params.items())[:200]}
    try:
        items = list(params)
    except TypeError:
        return _scalar(params)
    out = [_scalar(v) for v in items[:200]]
    if len(items) > 200:
        out.append(f"... {len(items) - 200} more")
    return out


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= 200 else value[:200] + "..."
    if isinstance(value, bytes | bytearray | memoryview):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "..."


def shorten_sql(sql: str, limit: int = SQL_PREVIEW_CHARS) -> str:
    """One line of at most ``limit`` characters, always encodable as UTF-8: a lone
    surrogate in SQL text would make a log handler drop the whole message."""
    flat = " ".join(sql.split()) if len(sql) < 20 * limit else " ".join(sql[: 20 * limit].split())
    short = flat if len(flat) <= limit else flat[: limit - 3] + "..."
    return short.encode("utf-8", "backslashreplace").decode("utf-8")


# A quoted SQL string literal, E'...' and N'...' included; unbalanced quotes run to the end.
_LITERAL_RE = re.compile(r"(?:\b[ENXBenxb])?'(?:[^'\\]|\\.|'')*(?:'|$)", re.DOTALL)


def redact_literals(sql: str) -> str:
    """``sql`` with quoted string literals replaced by ``'?'``.

    Django binds values as parameters, but hand-written SQL can inline them, and they may be
    personal data: logs show them only with ``LOG_PARAMS``.
    """
    return _LITERAL_RE.sub("'?'", sql)


#: What to do about an identical statement run twice, unless the finding knows better.
DUPLICATE_FIX = "run it once and reuse the result (a variable, or cached_property)."


def format_finding(finding: Finding, *, verbose: bool = True, params: bool = True) -> str:
    """Human text for one finding: a title line, then indented details a tired developer
    can act on: where it fired, where to fix it, what to type.

    ``params=False`` leaves out parameter values and inline string literals, for text that
    goes to logs (see ``LOG_PARAMS``)."""
    lines = [finding.title]

    def sql_line(sql: str) -> str:
        return f"  SQL: {shorten_sql(sql if params else redact_literals(sql))}"

    if isinstance(finding, NPlusOne):
        lines.append(f"  at {finding.callsite}")
        if finding.template:
            lines.append(f"  in template {finding.template}")
        if finding.parent_callsite:
            lines.append(f"  queryset evaluated at {finding.parent_callsite}")
        if verbose and len(finding.stack) > 1:
            lines.append("  stack: " + " <- ".join(finding.stack[:5]))
        lines.append(sql_line(finding.sql))
        if finding.suggestion:
            lines.append(f"  Fix: {finding.suggestion}")
            if finding.fix_at and finding.fix_at != finding.parent_callsite:
                lines.append(f"    in {finding.fix_at}")
        if finding.alternative:
            lines.append(f"    {finding.alternative}")
    elif isinstance(finding, Duplicate):
        lines.append(f"  at {', '.join(finding.callsites[:3])}")
        if finding.templates:
            lines.append(f"  in template {', '.join(finding.templates[:3])}")
        lines.append(sql_line(finding.sql))
        if params and finding.params is not None:
            lines.append(f"  params: {finding.params}")
        lines.append(f"  Fix: {finding.suggestion or DUPLICATE_FIX}")
    elif isinstance(finding, MissingIndex):
        lines.append(f"  at {finding.callsite}")
        if finding.plan:
            # Plans show the bound values: "Filter: (email = 'a@example.com'::text)".
            lines.append(f"  plan: {finding.plan if params else redact_literals(finding.plan)}")
        lines.append(sql_line(finding.sql))
        if finding.suggestion:
            lines.append(f"  Fix: {finding.suggestion}")
    # Last, for grepping logs and matching baselines, Sentry issues and SARIF results.
    lines.append(f"  id: {finding.id}")
    return "\n".join(lines)


def format_report(report: Report, *, verbose: bool = True, params: bool = True) -> str:
    """The report's head line and every finding; ``params`` as in :func:`format_finding`."""
    head = (
        f"{count_of(report.query_count, 'query', 'queries')}, {report.total_time_ms:.1f} ms: "
        f"{len(report.nplusones)} N+1, {len(report.missing_indexes)} missing index, "
        f"{len(report.duplicates)} duplicate"
    )
    if report.truncated:
        head += " (MAX_QUERIES reached: later queries counted, not kept)"
    body = [format_finding(f, verbose=verbose, params=params) for f in report.findings]
    return "\n\n".join([head, *body]) if body else head + "\nNo findings."
