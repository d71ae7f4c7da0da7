"""Attribution: filling the SQL layer's N+1 findings with their ORM cause.

The entry points :mod:`..detect` calls after a scope: :func:`attribute` names each
finding's relation, parent queryset, template line and fix, then merges findings that
share one root cause; :func:`unused_eager` reports eager loads nothing read
(``REPORT_UNUSED_EAGER``). It is the one module that ties the others together: events
from :mod:`.hooks`, their origins from :mod:`.origins`, the fix text from :mod:`.fixes`;
none of them imports it.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.db import models

from ..capture import EVENT, MAX_ATTRIBUTED_CALLS, SQL, render_frame
from ..fingerprint import fingerprint
from ..report import NPlusOne
from .fixes import _Cause, _describe, _place_fix, _raw_fix, _through_write
from .hooks import _WRITE_KINDS, Site, _EagerLog, _Event
from .origins import _event_of, _Origins
from .relations import _relations_by_name

if TYPE_CHECKING:
    from ..capture import Scope
    from ..detect import Group


def template_lines(records: Sequence[Any]) -> list[str]:
    """The template lines that asked for a group's statements (``nav.html:7``), in the
    order first seen: where a repeat run by a template is, when no line of Python is."""
    lines: list[str] = []
    for record in records[:MAX_ATTRIBUTED_CALLS]:
        event = record[EVENT]
        line = _template(event.node) if event is not None and event.node is not None else None
        if line is not None and line not in lines:
            lines.append(line)
    return lines


def _template(node: Any) -> str | None:
    origin = getattr(node, "origin", None)
    token = getattr(node, "token", None)
    if origin is None or token is None:
        return None
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    return f"{name}:{token.lineno}" if name else None


# Calls looked at per finding to name its cause (capture.MAX_ATTRIBUTED_CALLS). A finding is
# one statement from one call stack, so its calls agree in practice; the first ones are
# enough to find the majority, and a 10,000-statement loop costs no more to explain than a
# 20-statement one.
_PLAIN = (tuple, str, bool)


def _parent_site(
    fetches: list[tuple[_Event, int]], stack: tuple[Any, ...], first_index: int
) -> Site | None:
    """For loops with no instance to follow (``get`` in a loop, raw SQL, writes): the last
    queryset evaluated, before the first repeated statement, in a function on the
    statements' stack (possibly on the same line: a one-line comprehension iterates and
    loops on one line)."""
    if not stack:
        return None
    codes = {id(stack[i]) for i in range(0, len(stack), 2)}
    found: tuple[int, Site] | None = None
    for event, end in fetches:
        if event.parent is not None or event.site is None or end > first_index:
            continue
        if id(event.site[0]) in codes and (found is None or end >= found[0]):
            found = (end, event.site)
    return found[1] if found else None


def attribute(scope: Scope, groups: Sequence[Group], findings: list[NPlusOne]) -> list[NPlusOne]:
    """Fill ``model``, ``field``, ``suggestion``, ``parent_callsite`` and ``template`` on the
    SQL layer's N+1 findings (``findings[i]`` was made from ``groups[i]``), then merge
    findings that share one root cause (a generic foreign key loading several content
    types, a cascade delete touching several tables).

    Each statement's record names the hooked ORM call it ran in directly (none when user
    code ran in between, e.g. a signal handler); everything the hot path left out is worked
    out here, only because there are findings to explain."""
    if not groups:
        return findings
    # The calls made, in the order of their first statement, gathered at C speed: events
    # hash by identity, and a loop's hundreds of records name a handful of distinct calls.
    events_in_scope = dict.fromkeys(map(_event_of, scope.records))
    events_in_scope.pop(None, None)
    origins = _Origins(events_in_scope)
    fetches: list[tuple[_Event, int]] | None = None  # worked out if a finding needs it
    causes: dict[tuple[Any, ...], _Cause] = {}
    signatures: dict[int, tuple[Any, ...]] = {}
    by_inputs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    canonical: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def signature_of(event: _Event) -> tuple[Any, ...]:
        """The event's signature, one shared tuple per distinct signature. An N+1 repeats
        one call on many instances: calls that followed the same field from instances
        loaded by the same call share a signature, worked out once."""
        found = signatures.get(id(event))
        if found is not None:
            return found
        inputs = None
        if event.queryset is None and event.owner is not None:
            detail = event.detail
            inputs = (
                event.kind,
                id(event.field),
                type(event.owner),
                id(origins.source(event.owner)),
                detail if isinstance(detail, _PLAIN) or detail is None else id(detail),
            )
            found = by_inputs.get(inputs)
        if found is None:
            origins.explain(event)
            signature = _signature(event)
            found = canonical.setdefault(signature, signature)
            if inputs is not None:
                by_inputs[inputs] = found
        signatures[id(event)] = found
        return found

    for group, finding in zip(groups, findings, strict=True):
        events = list(
            itertools.islice(
                (e for r in group.records if (e := r[EVENT]) is not None), MAX_ATTRIBUTED_CALLS
            )
        )
        first_index = group.first_index
        if events:
            keys = [signature_of(e) for e in events]
            top = Counter(map(id, keys)).most_common(1)[0][0]
            position = next(i for i, key in enumerate(keys) if id(key) == top)
            event, signature = events[position], keys[position]
            origins.explain(event)
            cause = causes.get(signature)
            if cause is None:
                cause = causes[signature] = _describe(event)
            nodes = Counter(id(e.node) for e in events if e.node is not None)
            if nodes:
                top = nodes.most_common(1)[0][0]
                finding.template = _template(next(e.node for e in events if id(e.node) == top))
            finding.model = cause.model or finding.model
            finding.field = cause.field
            if event.kind in _WRITE_KINDS:
                # A cascade's SELECTs belong to the same write as its DELETEs.
                finding.kind = "write"
            finding.suggestion = cause.suggestion
            finding.alternative = cause.alternative
            parent = cause.parent_site
        elif not _through_write(finding):
            sql = group.records[0][SQL] if group.records else ""
            finding.suggestion = _raw_fix(str(sql), group.alias, group.fp.verb)
            parent = None
        else:
            parent = None
        if parent is None:
            if fetches is None:
                fetches = _fetch_ends(scope)
            parent = _parent_site(fetches, group.stack, first_index)
        if parent is not None:
            finding.parent_callsite = render_frame(*parent)
        _place_fix(finding, parent, group.stack)
    return _merge(_without_through_reads(findings))


def _without_through_reads(findings: list[NPlusOne]) -> list[NPlusOne]:
    """One finding for a many-to-many write loop: ``add()`` reads the rows already there
    before it inserts (when an ``m2m_changed`` receiver is connected), and that read is
    part of the same write, not a second N+1 on the relation."""
    writes = {
        (f.alias, f.model, f.field, f.callsite)
        for f in findings
        if f.kind == "write" and f.field is not None
    }
    if not writes:
        return findings
    return [
        f
        for f in findings
        if f.kind != "read" or (f.alias, f.model, f.field, f.callsite) not in writes
    ]


def _fetch_ends(scope: Scope) -> list[tuple[_Event, int]]:
    """Each queryset evaluation with the index just past its last statement, for
    :func:`_parent_site`; only loops with no instance to follow need it."""
    ends: dict[_Event, tuple[_Event, int]] = {}
    for index, record in enumerate(scope.records):
        event = record[EVENT]
        if event is not None and event.kind == "fetch":
            ends[event] = (event, index + 1)
    return list(ends.values())


def _signature(event: _Event) -> tuple[Any, ...]:
    origin = event.origin
    where = (id(origin.site[0]), origin.site[1]) if origin and origin.site else None
    return (
        event.kind,
        event.relation,
        event.model,
        where,
        origin.path if origin else None,
        origin.deferred if origin else None,
        event.detail if isinstance(event.detail, _PLAIN) else None,
    )


def _merge(findings: list[NPlusOne]) -> list[NPlusOne]:
    merged: dict[tuple[Any, ...], NPlusOne] = {}
    out: list[NPlusOne] = []
    for finding in sorted(findings, key=lambda f: -f.count):
        if not finding.suggestion:
            out.append(finding)
            continue
        key = (
            finding.kind,
            finding.alias,
            finding.model,
            finding.field,
            finding.callsite,
            finding.parent_callsite,
            finding.template,
            finding.suggestion,
        )
        into = merged.get(key)
        if into is None:
            merged[key] = finding
            out.append(finding)
        else:
            into.count += finding.count
            into.total_time_ms = round(into.total_time_ms + finding.total_time_ms, 3)
    return out


# --------------------------------------------------------------------------- unused eager


def _paths(select: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(select, dict):
        for name, below in select.items():
            path = f"{prefix}{name}"
            out.append(path)
            out.extend(_paths(below, path + "__"))
    return out


def _first_unused(
    model: type[models.Model], path: str, used: set[tuple[type[models.Model], str]]
) -> str | None:
    current: type[models.Model] | None = model._meta.concrete_model
    walked = []
    for name in path.split("__"):
        if current is None:
            return None
        walked.append(name)
        if (current, name) not in used:
            return "__".join(walked)
        current = _relations_by_name(current).get(name, (None, False))[0]
    return None


def unused_eager(scope: Scope) -> list[NPlusOne]:
    """``select_related``/``prefetch_related`` lookups no instance in the scope accessed.

    Opt-in (``REPORT_UNUSED_EAGER``): usage is known from descriptor ``__get__`` calls, a
    cost paid on every related attribute access while a scope is active, and an eager load
    "used" by any instance of the model in the scope counts as used. Prefetches with
    ``to_attr`` are skipped (the attribute is a plain list).
    """
    log: _EagerLog | None = scope.orm
    if log is None or not log.eager:
        return []
    first_sql: dict[int, Any] = {}
    for record in scope.records:
        event = record[EVENT]
        if event is not None and event.eager is not None and id(event) not in first_sql:
            first_sql[id(event)] = record[SQL]
    found: dict[tuple[Any, ...], NPlusOne] = {}
    for event in log.eager:
        if not event.rows or event.eager is None or event.model is None:
            continue
        select, lookups = event.eager
        candidates = [(p, "select_related") for p in _paths(select)]
        for lookup in lookups:
            if getattr(lookup, "to_attr", None):
                continue
            through = getattr(lookup, "prefetch_through", lookup)
            if isinstance(through, str):
                candidates.append((through, "prefetch_related"))
        callsite = render_frame(*event.site) if event.site else "unknown"
        for path, method in candidates:
            unused = _first_unused(event.model, path, log.used)
            if unused is None:
                continue
            key = (callsite, event.model, unused, method)
            if key in found:
                found[key].count += 1
                continue
            sql = str(first_sql.get(id(event), ""))
            found[key] = NPlusOne(
                kind="unused_eager",
                model=event.model._meta.label,
                field=unused,
                count=1,
                fingerprint=fingerprint(sql).key if sql else "",
                sql=sql,
                callsite=callsite,
                stack=[callsite],
                suggestion=f'remove "{unused}" from .{method}(...): no instance accessed it',
                parent_callsite=None,
                template=None,
            )
    return list(found.values())
