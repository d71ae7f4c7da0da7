"""Fix text: the code a developer pastes for a finding, and where it goes.

:mod:`.attribution` finds the cause (a completed event: its relation, origin and detail,
or a raw statement); this module only words the fix for it: ``suggestion`` (code only),
``alternative`` (another way, in words) and ``fix_at`` (the line, or the member of the
user's class, to edit). Kept apart so that a new kind of fix (Django 6.1's
``FETCH_PEERS``, a ``ModelAdmin``'s ``list_select_related``) is written here without
touching how causes are found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.apps import apps

from .. import owners
from ..capture import render_frame
from ..report import NPlusOne
from .hooks import _PREFETCH_OBJECTS, Site, _Event, _Origin
from .relations import HAS_FETCH_MODES, _Relation


@dataclass(frozen=True)
class _Cause:
    model: str | None
    field: str | None
    suggestion: str  # code only: it is what a developer pastes
    parent_site: Site | None
    alternative: str | None = None  # another fix, or how to apply this one, in words


#: Django 6.1's other way out of a relation read per row, offered beside the eager load.
PEERS_ALTERNATIVE = "or .fetch_mode(models.FETCH_PEERS) on the queryset"


def _peers(rel: _Relation | None) -> str | None:
    if HAS_FETCH_MODES and rel is not None and rel.peers:
        return PEERS_ALTERNATIVE
    return None


def _path(origin: _Origin | None, rel: _Relation) -> tuple[str, bool]:
    if origin is None:
        return rel.name, rel.select
    return "__".join((*origin.path, rel.name)), origin.select_only and rel.select


def _eager(origin: _Origin | None, rel: _Relation) -> str:
    path, select = _path(origin, rel)
    method = "select_related" if select else "prefetch_related"
    return f'.{method}("{path}")'


def _lookup(origin: _Origin | None, name: str) -> str:
    return "__".join((*origin.path, name)) if origin is not None else name


def _describe(event: _Event) -> _Cause:
    kind, rel, origin, model = event.kind, event.relation, event.origin, event.model
    label = model._meta.label if model is not None else None
    name = model.__name__ if model is not None else "Model"
    parent = origin.site if origin is not None else None
    if rel is not None:
        if kind == "count" and rel.query_name:
            suggestion = (
                f'.annotate({rel.query_name}_count=Count("{_lookup(origin, rel.query_name)}"))'
            )
        elif kind == "exists" and rel.query_name:
            inner = (
                f'{rel.target}.objects.filter({rel.back_filter}=OuterRef("pk"))'
                if rel.back_filter
                else f"{rel.target}.objects.filter(...)"
            )
            suggestion = f".annotate(has_{rel.query_name}=Exists({inner}))"
        elif kind == "aggregate" and rel.query_name:
            suggestion = _annotate_aggregates(event.detail, _lookup(origin, rel.query_name))
        elif event.detail == _PREFETCH_OBJECTS:
            return _Cause(rel.owner, rel.name, _prefetch_objects_fix(rel), parent, _ONCE)
        elif event.detail == ("refiltered",):
            path, _ = _path(origin, rel)
            suggestion = (
                f'.prefetch_related(Prefetch("{path}", queryset={rel.target}.objects.filter(...), '
                f'to_attr="filtered_{rel.name}"))'
            )
        else:
            return _Cause(rel.owner, rel.name, _eager(origin, rel), parent, _peers(rel))
        return _Cause(rel.owner, rel.name, suggestion, parent)
    if kind == "deferred":
        field = str(event.detail)
        peers = PEERS_ALTERNATIVE if HAS_FETCH_MODES else None
        return _Cause(label, field, _deferred_fix(origin, field, model), parent, peers)
    if kind == "refresh":
        return _Cause(label, None, f"{name}.objects.in_bulk(ids)", parent)
    if kind == "save":
        adding, fields = event.detail or (False, ())
        if adding:
            return _Cause(label, None, f"{name}.objects.bulk_create(objs)", parent)
        listed = ", ".join(f'"{f}"' for f in fields) if fields else '"field", ...'
        return _Cause(label, None, f"{name}.objects.bulk_update(objs, [{listed}])", parent)
    if kind == "create":
        return _Cause(label, None, f"{name}.objects.bulk_create([{name}(...), ...])", parent)
    if kind in ("delete", "qs_delete"):
        return _Cause(label, None, f"{name}.objects.filter(pk__in=ids).delete()", parent)
    if kind == "update":
        fields = [d for d in event.detail or () if isinstance(d, str)]
        values = ", ".join(f"{f}=..." for f in fields) or "..."
        return _Cause(
            label,
            None,
            f"{name}.objects.filter(pk__in=ids).update({values})",
            parent,
            f"or {name}.objects.bulk_update(objs, [...]) when the values differ per row",
        )
    code, alternative = _lookup_fix(event, name)
    return _Cause(label, None, code, parent, alternative)


def _prefetch_objects_fix(rel: _Relation) -> str:
    """One call on every instance instead of one per instance. The variable holding them
    cannot be known, so the list is named by its model."""
    model = rel.owner.rpartition(".")[2]
    return f'prefetch_related_objects(<list of {model}>, "{rel.name}")'


_ONCE = "one call on the whole list, before the loop"


def _annotate_aggregates(detail: Any, prefix: str) -> str:
    parts = []
    for alias, function, source in detail or ():
        lookup = f"{prefix}__{source}" if source else prefix
        parts.append(f'{alias}={function}("{lookup}")')
    return f".annotate({', '.join(parts) or '...'})"


def _deferred_fix(origin: _Origin | None, field: str, model: Any) -> str:
    prefix = "__".join(origin.path) + "__" if origin is not None and origin.path else ""
    loading = origin.deferred if origin is not None else None
    wanted = prefix + field
    if loading is None:
        return f'add "{wanted}" to .only(...) or remove it from .defer(...)'
    names, defer = loading
    if not defer:
        listed = ", ".join(f'"{n}"' for n in sorted({*names, wanted}))
        return f".only({listed})"
    rest = sorted(n for n in names if n != wanted)
    if not rest:
        return f'remove .defer("{wanted}")'
    return f".defer({', '.join(repr(n).replace(chr(39), chr(34)) for n in rest)})"


_PK_KEYS = frozenset({"pk", "id", "pk__exact", "id__exact"})


def _lookup_fix(event: _Event, name: str) -> tuple[str, str | None]:
    """A repeated plain lookup (``get``, ``filter``, ``count``...) with no relation: the
    code to paste, and another way in words."""
    model = event.model
    detail = event.detail or ()
    targets = [d for d in detail if not isinstance(d, str)]
    keys = [d for d in detail if isinstance(d, str)]
    pk = model._meta.pk if model is not None else None
    fks = [t for t in targets if getattr(t, "many_to_one", False)]
    # Only a foreign key on the queried model itself spells the reverse lookup; one reached
    # through a join (``filter(book__author=a)``) does not say how.
    direct = [fk for fk in fks if model is not None and fk.model is model]
    if event.kind in ("count", "exists", "aggregate") and fks and not direct:
        parent = fks[0].related_model.__name__
        lower = name.lower()
        if event.kind == "exists":
            return (
                f"{parent}.objects.annotate(has_{lower}=Exists("
                f'{name}.objects.filter(<path to {parent}>=OuterRef("pk"))))',
                None,
            )
        return f'{parent}.objects.annotate({lower}_count=Count("<path to {name}>"))', None
    if event.kind in ("count", "exists", "aggregate") and len(direct) == 1:
        fk = direct[0]
        query_name = fk.related_query_name()
        parent = fk.related_model.__name__
        if event.kind == "count":
            return f'{parent}.objects.annotate({query_name}_count=Count("{query_name}"))', None
        if event.kind == "exists":
            return (
                f"{parent}.objects.annotate(has_{query_name}=Exists("
                f'{name}.objects.filter({fk.name}=OuterRef("pk"))))',
                None,
            )
        return f"{parent}.objects{_annotate_aggregates(event.detail, query_name)}", None
    before = "one query before the loop, then look each row up in its result"
    if event.kind == "get" and (set(keys) & _PK_KEYS or (pk is not None and pk in targets)):
        return f"{name}.objects.in_bulk(ids)", before
    if len(fks) == 1:
        fk = fks[0]
        accessor = fk.remote_field.get_accessor_name()
        return (
            f"{name}.objects.filter({fk.name}__in=...)",
            f'or .prefetch_related("{accessor}") on the {fk.related_model.__name__} queryset',
        )
    if pk is not None and pk in targets:
        return f"{name}.objects.in_bulk(ids)", before
    lookups = [t.name for t in targets if hasattr(t, "name")] or [
        k.split("__", 1)[0] for k in keys
    ]
    if len(lookups) == 1:
        return f"{name}.objects.filter({lookups[0]}__in=...)", before
    return f"{name}.objects.filter(pk__in=...)", before


# Bounded on purpose: SQL can be long, and this runs once per finding.
_RAW_PARAM = re.compile(r"""(?<![\w."`\[\]])([\w."`\[\]]{1,128})\s*=\s*(?:%s|\?|%\(\w+\)s)""")


_RAW_WHERE = re.compile(r"\bWHERE\b", re.IGNORECASE)


def _raw_fix(sql: str, alias: str, verb: str | None) -> str:
    from django.db import connections

    try:
        vendor = connections[alias].vendor
    except Exception:
        vendor = ""
    if verb == "INSERT":
        return "insert all rows with one executemany() or Model.objects.bulk_create(objs)"
    where = _RAW_WHERE.search(sql)
    match = _RAW_PARAM.search(sql, where.end(), where.end() + 1000) if where else None
    column = match.group(1) if match else "id"
    if vendor == "postgresql":
        return f"batch it: ... WHERE {column} = ANY(%s) with the list of values as one parameter"
    return f"batch it: ... WHERE {column} IN (%s, %s, ...) with one placeholder per value"


def _through_write(finding: NPlusOne) -> bool:
    """Name a write loop on an auto-created many-to-many table (``add()`` per object, which
    Django runs as a bulk insert the hooks do not see) by its relation, with its fix."""
    if finding.kind != "write" or not finding.model or "." not in finding.model:
        return False
    try:
        model = apps.get_model(finding.model)
    except LookupError:
        return False
    owner = model._meta.auto_created
    if not owner:
        return False
    for field in owner._meta.many_to_many:
        if field.remote_field.through is model:
            name = owner.__name__
            source, target = field.m2m_column_name(), field.m2m_reverse_name()
            finding.model, finding.field = owner._meta.label, field.name
            finding.suggestion = (
                f"{name}.{field.name}.through.objects.bulk_create([{name}.{field.name}"
                f".through({source}=..., {target}=...), ...], ignore_conflicts=True)"
            )
            finding.alternative = (
                f"or one add() per {field.related_model.__name__} with every "
                f"{name} at once: {field.related_model.__name__.lower()}"
                f".{field.remote_field.get_accessor_name()}.add(*objs)"
            )
            return True
    return False


_EAGER = re.compile(r'^\.(select_related|prefetch_related)\((".*")\)$')


def _place_fix(finding: NPlusOne, parent: Site | None, stack: tuple[Any, ...]) -> None:
    """Say where the fix goes: the line that built the queryset, or, when a library built
    it (the admin's changelist, a generic view), the member of the user's class that
    configures it, in that class's own words: ``list_select_related`` on a ``ModelAdmin``
    rather than a ``.select_related()`` nobody can chain."""
    owner = owners.owner_of(parent[0]) if parent is not None else None
    if owner is None:
        owner = _configuring(stack, parent, finding.model)
        if owner is None:
            if parent is not None:
                finding.fix_at = render_frame(*parent)
            return
    site = owners.fix_site(owner) or parent
    if site is not None:
        finding.fix_at = render_frame(*site)
    eager = _EAGER.match(finding.suggestion)
    if owner.role != "admin" or eager is None:
        return
    method, paths = eager.groups()
    if method == "select_related":
        finding.suggestion = f"list_select_related = [{_merged_list(owner.cls, paths)}]"
        finding.alternative = None
    else:
        finding.suggestion = (
            f"def get_queryset(self, request): "
            f"return super().get_queryset(request).prefetch_related({paths})"
        )


def _configuring(
    stack: tuple[Any, ...], parent: Site | None, model: str | None
) -> owners.OwnerSite | None:
    """The user's class on the stack that configures the rows, when the line that
    evaluated them is not where they are made: a method the view inherits from a base
    class (a ``get_context_data`` looping over ``object_list``) evaluating rows of the
    view's own model, which the subclass's ``model`` or ``queryset`` makes; or no line at
    all (a form field's ``<select>``)."""
    for code in stack[::2]:
        owner = owners.owner_of(code)
        if owner is None:
            continue
        if parent is None:
            return owner
        if owner.role in ("view", "template") and model == _model_of(owner.cls):
            defined_in = parent[0].co_qualname.partition(".")[0]
            inherited = [k for k in owner.cls.__mro__[1:] if k.__qualname__ == defined_in]
            if inherited and owner.cls.__qualname__ != defined_in:
                return owner
    return None


def _model_of(view: type) -> str | None:
    """The label of the model a generic view lists (``model`` or ``queryset.model``)."""
    model = getattr(view, "model", None) or getattr(getattr(view, "queryset", None), "model", None)
    meta = getattr(model, "_meta", None)
    return getattr(meta, "label", None)


def _merged_list(cls: type, paths: str) -> str:
    """``paths`` added to what ``list_select_related`` already lists, when it is a list."""
    current = getattr(cls, "list_select_related", False)
    if isinstance(current, list | tuple):
        quoted = [f'"{name}"' for name in current if isinstance(name, str)]
        return ", ".join(dict.fromkeys([*quoted, paths]))
    return paths
