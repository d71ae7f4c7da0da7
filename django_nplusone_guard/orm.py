"""ORM attribution: which relation, field or queryset caused a repeated statement.

The SQL layer (:mod:`.capture`) sees every repeat, so it decides *whether* something is an
N+1. This module only explains findings the SQL layer already made, in the words a Django
developer uses: ``testapp.Book.author``, where the parent queryset was evaluated, which
template line asked for it, and the ``.select_related("author")`` that fixes it. It never
creates a second finding for the same statements: :func:`attribute` fills and merges the
SQL-level findings (one root cause, one finding).

How it knows
------------
:func:`install` (called once from ``AppConfig.ready``) wraps a handful of Django methods:
the forward related descriptors' ``get_object`` (only called on a cache miss),
``QuerySet._fetch_all`` (every evaluation; ``get()`` is recognised from its frame above it
rather than wrapped, so a relation read passes through two wrappers, not three), generic
foreign keys, ``Model.refresh_from_db`` (how deferred fields load), ``Model.save_base``
and ``Model.delete``, the other ``QuerySet`` methods that run SQL (``count``, ``exists``,
``aggregate``, ``update``, ``delete``, ``create``), and the factory of generic-relation
managers. With no capture scope active each wrapper costs a ``ContextVar.get()`` and a
call. With a scope active, a call made by user code becomes an :class:`_Event` holding only
what it was called with and what it returned; calls Django makes while serving it (``get``
-> ``_fetch_all``) record nothing. The recorder's own stack walk ties each statement to its
event, with the user line and template node, so this module never walks the stack. Only
with ``REPORT_UNUSED_EAGER`` on are the related descriptors' ``__get__`` wrapped too, to
see which eager loads were used.

Everything else (which relation a queryset followed, which evaluation loaded an instance,
paths such as ``select_related("book__author")``) is worked out by :func:`attribute` after
the scope, only for the calls behind a finding. Nothing is stored on instances or
querysets, so pickling, caching libraries and models with a custom ``__eq__``/``__hash__``
are unaffected.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import operator
import re
import sys
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from django.apps import apps
from django.db import models
from django.db.models.query import MAX_GET_RESULTS

from . import conf, owners
from .capture import (
    EVENT,
    MAX_ATTRIBUTED_CALLS,
    MAX_WALK,
    SQL,
    _current,
    current_call,
    log_internal_error,
    render_frame,
)
from .capture import is_user_frame as _is_user
from .fingerprint import fingerprint
from .report import NPlusOne

if TYPE_CHECKING:
    from .capture import Scope
    from .detect import Group

__all__ = ["attribute", "install", "model_for_table", "unused_eager"]


# --------------------------------------------------------------------------- tables


@lru_cache(maxsize=1)
def _tables_to_models() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for model in apps.get_models(include_auto_created=True):
        mapping.setdefault(model._meta.db_table.lower(), model._meta.label)
    return mapping


def model_for_table(table: str | None) -> str | None:
    """``"app_label.ModelName"`` for a table name, or ``None`` when no model owns it."""
    if not table:
        return None
    return _tables_to_models().get(table.lower())


# --------------------------------------------------------------------------- relations

#: Django 6.1 added ``QuerySet.fetch_mode(models.FETCH_PEERS)``; mention it where it applies.
HAS_FETCH_MODES = hasattr(models.QuerySet, "fetch_mode")


@dataclass(frozen=True, slots=True)
class _Relation:
    """A relation as the user names it, and what eager-loads it."""

    owner: str  # "testapp.Book"
    name: str  # the attribute: "author", "book_set", "tags", "content_object"
    query_name: str | None  # the lookup name for annotate(): "author", "book", "tags"
    target: str | None  # the related model's class name, for code snippets
    select: bool  # select_related can load it (else prefetch_related)
    back_filter: str | None  # lookup on the target pointing back, for Exists(...)
    peers: bool  # Django 6.1's FETCH_PEERS batches it


_relations: dict[tuple[int, type[models.Model]], _Relation] = {}


def _relation(field: Any, owner: type[models.Model]) -> _Relation:
    """Describe ``field`` (a Field, a reverse ``ForeignObjectRel``, a GenericForeignKey or a
    GenericRelation) as seen from an instance of ``owner``; cached, fields live forever."""
    key = (id(field), owner)
    found = _relations.get(key)
    if found is not None:
        return found
    from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation

    related = getattr(field, "related_model", None)
    target = related.__name__ if isinstance(related, type) else None
    label = owner._meta.label
    if isinstance(field, GenericForeignKey):
        rel = _Relation(label, field.name, None, None, False, None, True)
    elif isinstance(field, GenericRelation):
        rel = _Relation(label, field.name, field.name, target, False, None, False)
    elif isinstance(field, models.ForeignObjectRel):
        accessor = field.get_accessor_name() or field.name
        rel = _Relation(
            label,
            accessor,
            field.name,
            target,
            field.one_to_one,
            field.field.name,
            field.one_to_one,
        )
    elif field.many_to_many:
        rel = _Relation(
            label, field.name, field.name, target, False, _m2m_back_filter(field), False
        )
    else:
        rel = _Relation(label, field.name, field.name, target, True, None, True)
    _relations[key] = rel
    return rel


def _m2m_back_filter(field: Any) -> str | None:
    """The lookup on the target model that leads back along a forward many-to-many, for
    ``Exists(...)``: a symmetrical relation is its own way back; a hidden ``+`` reverse
    has no lookup to spell."""
    if field.remote_field.symmetrical and field.related_model is field.model:
        return field.name  # type: ignore[no-any-return]
    if field.remote_field.hidden:
        return None
    return field.related_query_name()  # type: ignore[no-any-return]


@lru_cache(maxsize=1024)
def _candidates(owner: Any, target: Any) -> tuple[Any, ...]:
    """Relations of ``owner`` whose rows are ``target`` rows. Forward foreign keys and
    one-to-ones come last: their reads are attributed by their descriptor, so a queryset
    names them only when it is their prefetch (``prefetch_related_objects``)."""
    found, forward = [], []
    for field in owner._meta.get_fields(include_hidden=False):
        related: Any = getattr(field, "related_model", None)
        if not field.is_relation or not hasattr(related, "_meta"):
            continue  # "self"-style strings are resolved by now; generic FKs have no model
        if related._meta.concrete_model is not target._meta.concrete_model:
            continue
        if field.many_to_many or field.one_to_many or field.auto_created:
            found.append(field)
        elif getattr(field, "target_field", None) is not None:
            forward.append(field)
    return (*found, *forward)


def _where_targets(queryset: Any) -> tuple[Any, ...]:
    """Fields the queryset filters on at the top level (``filter(author=a)`` -> author)."""
    targets = []
    for child in queryset.query.where.children:
        target = getattr(getattr(child, "lhs", None), "target", None)
        if target is not None:
            targets.append(target)
    return tuple(targets)


def _where_lookups(queryset: Any) -> tuple[tuple[Any, str], ...]:
    """``(field, lookup name)`` for each condition of the queryset, nested ones included:
    a generic relation's prefetch wraps its filter in ``Q(...) | Q(...)``, one per
    content type, and a forward relation's prefetch filters on a tuple of columns
    (``TupleIn(ColPairs(...))``)."""
    found: list[tuple[Any, str]] = []
    pending = list(queryset.query.where.children)
    while pending:
        child = pending.pop()
        if hasattr(child, "children"):
            pending.extend(child.children)
            continue
        lhs = getattr(child, "lhs", None)
        target = getattr(lhs, "target", None)
        targets = (target,) if target is not None else getattr(lhs, "targets", None) or ()
        name = getattr(child, "lookup_name", None) or ""
        found.extend((t, name) for t in targets)
    return tuple(found)


def _relation_for_queryset(
    owner: models.Model, queryset: Any, lookups: Iterable[str] = ()
) -> tuple[_Relation, bool] | None:
    """Which relation of ``owner`` produced ``queryset`` (a related manager's queryset, a
    reverse one-to-one ``get``, or a prefetch query), and whether it was a prefetch. Django
    marks such querysets with ``_hints["instance"]`` (a prefetch: its first instance); the
    candidate is confirmed by the filter the manager added, on the field the relation
    joins by, so a coincidental hint (``refresh_from_db``, a router hint) is never mistaken
    for a relation. A prefetch filters that field with ``__in``; a manager with ``=``."""
    owner_cls = type(owner)
    candidates = _candidates(owner_cls, queryset.model)
    if not candidates:
        return None
    conditions = _where_lookups(queryset)
    keys = {lookup.split("__", 1)[0] for lookup in lookups}
    for field in candidates:
        joined_by = _joining_field(field)
        found = [name for target, name in conditions if target == joined_by]
        prefetch = "in" in found
        if field.many_to_one or (field.one_to_one and not field.auto_created):
            confirmed = prefetch  # a forward read is its descriptor's, not a queryset's
        elif field.one_to_many and not field.auto_created:  # generic relation
            confirmed = bool(found)
        elif field.one_to_many:
            confirmed = bool(found) or field.field in queryset._known_related_objects
        elif field.one_to_one:  # reverse one-to-one
            confirmed = bool(found) or field.field.name in keys
        else:
            confirmed = bool(found)
        if confirmed:
            return _relation(field, owner_cls), prefetch
    return None


def _joining_field(field: Any) -> Any:
    """The field of the queried model that a relation's manager or prefetch filters on:
    the reverse side's foreign key, the through table's foreign key for a many-to-many
    side, the object id of a generic relation, the target of a forward foreign key."""
    from django.contrib.contenttypes.fields import GenericRelation

    if isinstance(field, GenericRelation):
        return field.related_model._meta.get_field(field.object_id_field_name)
    if field.many_to_many:
        through = field.through if field.auto_created else field.remote_field.through
        return through._meta.get_field(_m2m_side_name(field))
    if field.auto_created:  # reverse foreign key or one-to-one
        return field.field
    return field.target_field


def _m2m_side_name(field: Any) -> str:
    """The through table's foreign key a many-to-many side's manager filters on: the
    source one for the forward field, the target one for its reverse (``ManyToManyRel``).
    On a self-referential relation both point at the same model, so only this name tells
    ``following`` from ``followers``."""
    if isinstance(field, models.ManyToManyRel):
        return field.field.m2m_reverse_field_name()
    return field.m2m_field_name()  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- origins

Site = tuple[CodeType, int]


class _Origin(NamedTuple):
    """Where an instance came from: the queryset evaluation at ``site`` and the relation
    path from that queryset's model (``("book", "author")``). A tuple: thousands are made
    per analysis, and a tuple is the cheapest immutable record to build."""

    seq: int
    site: Site | None
    path: tuple[str, ...] = ()
    select_only: bool = True  # every step of ``path`` can be select_related
    deferred: tuple[frozenset[str], bool] | None = None  # query.deferred_loading

    def child(self, name: str, select: bool) -> _Origin:
        # ``deferred`` is the root queryset's only()/defer(), spelled with paths: keep it.
        path = (*self.path, name)
        return _Origin(self.seq, self.site, path, self.select_only and select, self.deferred)


_MAX_TAG_DEPTH = 6
_by_seq = operator.attrgetter("seq")


class _Origins:
    """Which event loaded each instance, worked out after the scope from the events'
    results, and only when an N+1 needs it: nothing is tagged while the queries run.

    Keyed by ``id``; every tagged instance stays alive while its id is a key (the events
    hold the rows they returned, ``_held`` the nested rows), so an id is never reused by
    another object meanwhile. Nothing is stored on instances (pickling, caches, custom
    ``__eq__``/``__hash__`` stay unaffected). The first event to load an instance wins: an
    enclosing evaluation knows the full path, the prefetch queries it runs do not. What an
    instance's rows carry (``select_related`` and prefetched rows) is only looked at when
    an instance is not found among the rows the events returned.
    """

    def __init__(self, events: Iterable[_Event]) -> None:
        # id -> the event that loaded the instance, or the origin of a nested row
        self._tags: dict[int, _Event | _Origin] = {}
        self._held: list[Any] = []  # nested rows, kept alive while their ids are keys
        self._roots: dict[int, _Origin] = {}
        self._busy: set[int] = set()
        # Events whose rows are not tagged yet, last called first; tagged on demand (those
        # that returned nothing are skipped then, rather than filtered here in Python).
        self._pending = sorted(events, key=_by_seq, reverse=True)
        self._nested: list[_Event] = []
        self._expanding = False

    def explain(self, event: _Event) -> None:
        """Fill what the hot path left out: the relation and the owner's origin."""
        _complete(event)
        if event.owner is not None and event.origin is None:
            event.origin = self.get(event.owner)

    def source(self, instance: Any) -> object | None:
        """What tagged ``instance`` (an event, or a nested row's origin), or ``None``."""
        tags = self._tags
        found = tags.get(id(instance))
        while found is None and self._pending:
            self._tag_rows(self._pending.pop())
            found = tags.get(id(instance))
        if found is None and self._nested and not self._expanding:
            self._expand()
            found = tags.get(id(instance))
        return found

    def get(self, instance: Any) -> _Origin | None:
        source = self.source(instance)
        if source is None or isinstance(source, _Origin):
            return source
        return self._root(source)  # type: ignore[arg-type]

    def _tag_rows(self, event: _Event) -> None:
        tags = self._tags
        result = event.result
        if event.kind == "fetch":
            rows = result
        elif isinstance(result, models.Model):
            rows = (result,)
        else:
            return  # nothing loaded, or a count, an aggregate, a number of rows updated
        # Built and merged at C speed: a page's first evaluation often holds every row.
        tagged = dict.fromkeys(map(id, rows), event)
        if tags:
            for key in tagged.keys() & tags.keys():
                del tagged[key]  # the earliest event to load an instance names its origin
        tags.update(tagged)
        self._nested.append(event)

    def _root(self, event: _Event) -> _Origin:
        """The origin of the rows ``event`` loaded, memoised. An event whose owner leads
        back to itself (an owner first seen in the rows the event loaded, e.g. the cached
        back-reference of a reverse one-to-one) gets a plain root."""
        found = self._roots.get(id(event))
        if found is not None:
            return found
        if id(event) in self._busy:
            return _Origin(event.seq, event.site)
        self._busy.add(id(event))
        try:
            self.explain(event)
            loading = event.loading
            deferred = (frozenset(loading[0]), bool(loading[1])) if loading else None
            root = event.root_origin(deferred)
        finally:
            self._busy.discard(id(event))
        self._roots[id(event)] = root
        return root

    def _expand(self) -> None:
        """Tag what the loaded rows carry, up to ``_MAX_TAG_DEPTH`` levels down; done on
        the first miss, one event at a time in call order so that, as with the rows
        themselves, the earliest event to reach an instance names its origin."""
        while self._pending:
            self._tag_rows(self._pending.pop())
        tags, held = self._tags, self._held
        children: dict[tuple[int, str, bool], _Origin] = {}
        nested, self._nested = self._nested, []
        self._expanding = True
        try:
            for event in nested:
                root = self._root(event)
                rows = event.result if event.kind == "fetch" else (event.result,)
                pending = [(row, root, 0) for row in rows]
                while pending:
                    instance, here, depth = pending.pop()
                    if depth >= _MAX_TAG_DEPTH or not isinstance(instance, models.Model):
                        continue
                    state = instance.__dict__.get("_state")
                    if state is None:
                        continue
                    for name, child in state.__dict__.get("fields_cache", {}).items():
                        if isinstance(child, models.Model):
                            key = (id(here), name, True)
                            sub = children.get(key) or children.setdefault(
                                key, here.child(name, True)
                            )
                            if id(child) not in tags:
                                tags[id(child)] = sub
                                held.append(child)
                            pending.append((child, sub, depth + 1))
                    prefetched = instance.__dict__.get("_prefetched_objects_cache")
                    for name, cached in (prefetched or {}).items():
                        rows = getattr(cached, "_result_cache", None)
                        if rows is None and isinstance(cached, list | tuple):
                            rows = cached
                        key = (id(here), name, False)
                        sub = children.get(key) or children.setdefault(
                            key, here.child(name, False)
                        )
                        for row in rows or ():
                            if id(row) not in tags:
                                tags[id(row)] = sub
                                held.append(row)
                            pending.append((row, sub, depth + 1))
        finally:
            self._expanding = False


# --------------------------------------------------------------------------- events

_sequence = itertools.count(1)
# The hooked ORM call being made; the recorder reads it to tie statements to their call.
_active = current_call
_WRITE_KINDS = frozenset({"save", "create", "delete", "qs_delete", "update"})


class _Event:
    """One hooked ORM call made while a scope was active.

    The hot path stores only what the call was made with (``owner``, ``field``,
    ``queryset``, ``args``) and what it returned (``result``); ``relation``, ``detail``
    and ``origin`` are worked out after the scope (:func:`_complete`, :class:`_Origins`),
    and only for calls that ended up in a finding. The recorder fills ``site`` and ``node``
    from the walk it makes for the call's first statement, passing ``frame`` (the hook's
    own frame, dropped when the call returns so no stack is kept alive).
    """

    # Class defaults: the hot path assigns only what differs.
    owner: Any = None
    field: Any = None
    queryset: Any = None
    args: Any = None
    result: Any = None
    loading: Any = None
    prefetched: tuple[str, ...] | None = None
    site: Site | None = None
    node: Any = None
    relation: _Relation | None = None
    origin: _Origin | None = None
    detail: Any = None
    eager: tuple[Any, tuple[Any, ...]] | None = None
    completed = False

    def __init__(
        self, kind: str, model: Any, frame: FrameType | None, parent: _Event | None
    ) -> None:
        self.seq = next(_sequence)
        self.kind = kind
        self.model = model
        self.frame: FrameType | None = frame
        # The write whose signal handlers made this call, if any.
        self.parent = parent

    @property
    def rows(self) -> int:
        result = self.result
        return len(result) if self.kind == "fetch" and result is not None else 0

    def root_origin(self, deferred: tuple[frozenset[str], bool] | None = None) -> _Origin:
        """Origin for rows this event loads: below the owner's origin when it followed a
        relation from a known instance, else a new root at this event's call site."""
        owner, rel = self.origin, self.relation
        if owner is not None and rel is not None:
            child = owner.child(rel.name, rel.select)
            return _Origin(self.seq, child.site, child.path, child.select_only, deferred)
        return _Origin(self.seq, self.site, (), True, deferred)


def _begin(kind: str, model: Any) -> _Event | None:
    """A new event for a hooked call made from user code, or ``None`` for a call Django
    makes while serving an outer hooked call (``get`` -> ``_fetch_all``, a prefetch inside
    an evaluation): the outer event already explains those statements. Writes are the
    exception when user code runs in between: signal handlers inside ``save()``."""
    active = _active.get()
    if active is not None and (
        active.kind not in _WRITE_KINDS or not _user_code_since(active.frame)
    ):
        return None
    # Frame 1 is the hook that called us; it is what the recorder's walk looks for.
    return _Event(kind, model, sys._getframe(1), active)


def _user_code_since(frame: FrameType | None) -> bool:
    """Whether user code runs between ``frame`` (an outer hooked call) and the caller of
    :func:`_begin`'s caller; only asked inside writes, where the walk is a few frames."""
    here: FrameType | None = sys._getframe(3)
    for _ in range(MAX_WALK):
        if here is None or here is frame:
            return False
        if _is_user(here):
            return True
        here = here.f_back
    return False


def _end(event: _Event, token: Any) -> None:
    event.frame = None  # keep no stack alive past the call
    try:
        _active.reset(token)
    except ValueError:  # a generator finalised in another context
        _active.set(None)


class _EagerLog:
    """Per-scope record for ``REPORT_UNUSED_EAGER``: evaluations that asked for eager
    loading, and which relations any instance read."""

    __slots__ = ("eager", "used")

    def __init__(self) -> None:
        self.eager: list[_Event] = []
        self.used: set[tuple[type[models.Model], str]] = set()


def _log(scope: Scope) -> _EagerLog:
    log = scope.orm
    if log is None:
        log = scope.orm = _EagerLog()
    return log  # type: ignore[no-any-return]


_scope_var = _current


def _fetch_all(original: Callable[..., Any]) -> Callable[..., Any]:
    """``QuerySet._fetch_all``: every evaluation, and ``get()`` too.

    A relation read in a loop (``book.author``) goes ``get_object`` -> ``get`` ->
    ``len(clone)`` -> ``_fetch_all``, and every wrapper on that path is a frame each read
    pays for, even one that only passes the call through (and one more frame for the debug
    toolbar to trace on every statement). So ``get`` is not wrapped: it is recognised here,
    by the row limit it sets and then by its frame two levels up, whose arguments are read
    only when the call is the user's own. Reading frames costs more than a wrapper frame,
    which is why ``get_object`` keeps its own wrapper (:func:`_forward_get_object`).
    """

    @functools.wraps(original)
    def wrapper(self: Any) -> Any:
        active = _active.get()
        if (active is not None and active.kind not in _WRITE_KINDS) or _scope_var.get() is None:
            return original(self)  # Django serving an outer call, or nothing recording
        if self._result_cache is not None and (
            self._prefetch_done or not self._prefetch_related_lookups
        ):
            return original(self)
        kind, queryset, kwargs = "fetch", self, None
        query = self.query
        if query.high_mark == MAX_GET_RESULTS or query.select_for_update:
            caller = _caller(2)  # __len__, then get
            if caller is not None and caller.f_code is _get_code:
                arguments = caller.f_locals  # get(self, *args, **kwargs)
                kind, queryset, kwargs = (
                    "get",
                    arguments.get("self", self),
                    arguments.get("kwargs"),
                )
        if active is None:
            event = _Event(kind, queryset.model, sys._getframe(), None)
        else:
            found = _begin(kind, queryset.model)
            if found is None:
                return original(self)
            event = found
        event.queryset = queryset
        event.args = kwargs
        if queryset._hints:
            _note_prefetched(event, queryset)
        token = _active.set(event)
        try:
            result = original(self)
        finally:
            _end(event, token)
        rows = self._result_cache
        if kind == "get":
            # What get() returns; nothing when it raises (no row, or several).
            event.result = rows[0] if rows is not None and len(rows) == 1 else None
            return result
        event.result = rows
        event.loading = query.deferred_loading if query.deferred_loading[0] else None
        if _track_usage:
            try:
                _note_eager(event, self)
            except Exception:
                log_internal_error("ORM attribution (fetch)")
        return result

    return wrapper


def _caller(depth: int) -> FrameType | None:
    """The frame ``depth`` levels above this function's caller, if the stack is that deep."""
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None


# Django's own code, even if another tool wrapped it (functools.wraps leaves a trail).
_get_code = inspect.unwrap(models.QuerySet.get).__code__


def _note_prefetched(event: _Event, queryset: Any) -> None:
    """What the related manager's instance had prefetched when the call was made: a
    relation that was prefetched and is queried again was refiltered."""
    owner = queryset._hints.get("instance")
    cache = getattr(owner, "__dict__", {}).get("_prefetched_objects_cache")
    if cache:
        event.prefetched = tuple(cache)


def _note_eager(event: _Event, queryset: Any) -> None:
    select = queryset.query.select_related
    lookups = tuple(queryset._prefetch_related_lookups)
    if not (select or lookups) or not event.result:
        return
    event.eager = (select, lookups)
    node: Scope | None = _scope_var.get()
    while node is not None:
        if not node.ignoring:
            _log(node).eager.append(event)
        node = node.parent


def _complete(event: _Event) -> None:
    """Work out what a queryset call was about from what it was called with: which
    relation of which instance it followed, or which fields it filtered on."""
    if event.completed:
        return
    event.completed = True
    queryset = event.queryset
    if queryset is None:
        if event.field is not None and event.owner is not None:
            event.relation = _relation(event.field, type(event.owner))
        return
    kwargs = event.args or {}
    owner = queryset._hints.get("instance")
    generic = _generic_owners.get(queryset)
    prefetch = False
    if generic is not None:
        owner = generic[0]
        event.relation = _relation(generic[1], type(owner))
    elif isinstance(owner, models.Model):
        found = _relation_for_queryset(owner, queryset, kwargs)
        if found is not None:
            event.relation, prefetch = found
    if isinstance(owner, models.Model) and event.relation is not None:
        event.owner = owner
        rel = event.relation
        cache = event.prefetched or ()
        if prefetch:
            event.detail = _PREFETCH_OBJECTS
        elif rel.name in cache or (rel.query_name and rel.query_name in cache):
            event.detail = ("refiltered",)
    else:
        event.detail = tuple(_where_targets(queryset))
        if queryset.model._meta.auto_created:
            event.relation = _through_relation(queryset.model, event.detail)
        if event.kind in ("get", "update") and event.relation is None:
            event.detail = (*event.detail, *sorted(kwargs))
    if event.kind == "aggregate":
        event.detail = _describe_aggregates(kwargs)


def subject(event: _Event) -> tuple[Any, Any] | None:
    """``(row, question)`` for a call about one instance: which row (its model and pk, or
    the object itself before it has one) and what was asked of it (the relation read, the
    write made). ``None`` for calls about no instance (``get(pk=...)``, ``filter(...)``).
    :mod:`.loops` tells a loop from a repeat with it: one question asked of several rows
    is a loop; of one row again, a repeat."""
    try:
        _complete(event)
    except Exception:
        log_internal_error("ORM attribution (subject)")
        return None
    owner = event.owner
    if not isinstance(owner, models.Model):
        return None
    pk = owner.pk
    row = (owner._meta.concrete_model, pk) if pk is not None else id(owner)
    detail = event.detail if event.kind == "deferred" else None
    return row, (event.kind, event.relation, detail)


def origins_of(scope: Scope) -> _Origins:
    """Which evaluation loaded each instance of ``scope`` (see :class:`_Origins`)."""
    events = dict.fromkeys(map(_event_of, scope.records))
    events.pop(None, None)
    return _Origins(events)


def loaded_by(origins: _Origins, instance: Any) -> object | None:
    """The evaluation (or nested row's origin) that loaded ``instance``, if it was loaded
    in the scope."""
    return origins.source(instance)


def _through_relation(through: Any, targets: tuple[Any, ...]) -> _Relation | None:
    """A many-to-many manager's ``count()``/``exists()`` queries the through table
    directly; name the many-to-many relation from the side the filter starts at."""
    owner_model = through._meta.auto_created
    for field in owner_model._meta.many_to_many:
        if field.remote_field.through is not through:
            continue
        for target in targets:
            start = getattr(target, "related_model", None)
            if not getattr(target, "many_to_one", False) or start is None:
                continue
            if target.name == field.m2m_field_name():
                return _relation(field, owner_model)
            if target.name != field.m2m_reverse_field_name():
                continue
            if not field.remote_field.hidden:
                return _relation(field.remote_field, start)
            if field.remote_field.symmetrical:
                # Rows go both ways: reading from the target side reads the field itself.
                return _relation(field, owner_model)
            return None  # a hidden "+" reverse has no accessor the code could have read
    return None


# A GenericRelation's manager adds no ``instance`` hint to its querysets (unlike every
# other related manager), so while a scope is active its querysets are remembered here,
# weakly, with their field, and given the hint, so that the querysets cloned from them
# (``.filter()``, ``.first()``, ``.values()``) are attributed like any related manager's.
_generic_owners: weakref.WeakKeyDictionary[Any, tuple[Any, Any]] = weakref.WeakKeyDictionary()


def _generic_manager_factory(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap ``create_generic_related_manager`` so its managers note their querysets."""

    @functools.wraps(original)
    def factory(superclass: Any, rel: Any) -> Any:
        manager_class = original(superclass, rel)

        class AttributedGenericManager(manager_class):  # type: ignore[misc, valid-type]
            def _apply_rel_filters(self, queryset: Any) -> Any:
                queryset = super()._apply_rel_filters(queryset)
                if _scope_var.get() is not None:
                    _generic_owners[queryset] = (self.instance, rel.field)
                    # A new dict: clones share theirs. Routers never see the hint: the
                    # manager has pinned the queryset's database with using().
                    queryset._hints = {**queryset._hints, "instance": self.instance}
                return queryset

        AttributedGenericManager.__name__ = manager_class.__name__
        AttributedGenericManager.__qualname__ = manager_class.__qualname__
        return AttributedGenericManager

    return factory


def _queryset_method(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _scope_var.get() is None:
                return original(self, *args, **kwargs)
            active = _active.get()
            if active is None:
                event = _Event(kind, self.model, sys._getframe(), None)
            elif active.kind not in _WRITE_KINDS:
                return original(self, *args, **kwargs)
            else:
                found = _begin(kind, self.model)
                if found is None:
                    return original(self, *args, **kwargs)
                event = found
            event.queryset = self
            event.args = kwargs
            if self._hints:
                _note_prefetched(event, self)
            token = _active.set(event)
            try:
                return original(self, *args, **kwargs)
            finally:
                _end(event, token)

        return wrapper

    return decorate


def _describe_aggregates(kwargs: dict[str, Any]) -> tuple[tuple[str, str, str], ...]:
    described = []
    for alias, expression in kwargs.items():
        sources = [getattr(source, "name", None) for source in expression.get_source_expressions()]
        names = [s for s in sources if isinstance(s, str)]
        described.append((alias, type(expression).__name__, names[0] if names else ""))
    return tuple(described)


def _forward_get_object(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ForwardManyToOneDescriptor.get_object``: Django calls it only on a cache miss."""

    @functools.wraps(original)
    def wrapper(self: Any, instance: models.Model) -> Any:
        if _scope_var.get() is None:
            return original(self, instance)
        # The common case inline (a relation read in a loop): the cost is per access.
        if _active.get() is None:
            event = _Event("forward", type(instance), sys._getframe(), None)
        else:
            found = _begin("forward", type(instance))
            if found is None:
                return original(self, instance)
            event = found
        event.owner = instance
        event.field = self.field
        token = _active.set(event)
        try:
            result = original(self, instance)
        finally:
            _end(event, token)
        event.result = result
        return result

    return wrapper


def _generic_foreign_key_get(original: Callable[..., Any]) -> Callable[..., Any]:
    """``GenericForeignKey.__get__`` (Django 6.1: ``GenericForeignKeyDescriptor.__get__``)."""

    @functools.wraps(original)
    def wrapper(self: Any, instance: Any, cls: Any = None) -> Any:
        scope = _scope_var.get()
        if scope is None or instance is None:
            return original(self, instance, cls)
        field = getattr(self, "field", self)  # the descriptor's field on 6.1
        if _track_usage:
            _note_use(scope, instance, field.name)
        if field.is_cached(instance):
            return original(self, instance, cls)
        event = _begin("forward", type(instance))
        if event is None:
            return original(self, instance, cls)
        event.owner = instance
        event.field = field
        token = _active.set(event)
        try:
            result = original(self, instance, cls)
        finally:
            _end(event, token)
        event.result = result
        return result

    return wrapper


def _generic_foreign_key_prefetch(original: Callable[..., Any]) -> Callable[..., Any]:
    """``get_prefetch_querysets`` of a generic foreign key (on its descriptor in Django
    6.1). Its queries carry no ``instance`` hint to name the relation by, so a
    ``prefetch_related_objects(...)`` called from user code is noted here; a
    ``prefetch_related()`` runs inside an evaluation and records nothing."""

    @functools.wraps(original)
    def wrapper(self: Any, instances: Any, *args: Any, **kwargs: Any) -> Any:
        if _scope_var.get() is None or not instances:
            return original(self, instances, *args, **kwargs)
        event = _begin("forward", type(instances[0]))
        if event is None:
            return original(self, instances, *args, **kwargs)
        event.owner = instances[0]
        event.field = getattr(self, "field", self)  # the descriptor's field on 6.1
        event.detail = _PREFETCH_OBJECTS
        token = _active.set(event)
        try:
            return original(self, instances, *args, **kwargs)
        finally:
            _end(event, token)

    return wrapper


def _describe_refresh(event: _Event, instance: models.Model, args: Any, kwargs: Any) -> None:
    """Deferred fields load through ``refresh_from_db(fields=[attname])``; any other
    ``refresh_from_db()`` in a loop is a plain reload."""
    fields = kwargs.get("fields", args[1] if len(args) > 1 else None)
    if fields and len(fields) == 1:
        attname = next(iter(fields))
        if attname in instance.get_deferred_fields():
            event.kind = "deferred"
            event.detail = _field_name(type(instance), attname)


def _field_name(model: type[models.Model], attname: str) -> str:
    for field in model._meta.concrete_fields:
        if field.attname == attname:
            return field.name
    return attname


def _model_method(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``Model.save_base`` / ``Model.delete`` (writes in a loop) and
    ``Model.refresh_from_db`` (deferred fields, reloads)."""

    def decorate(original: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(original)
        def wrapper(self: models.Model, *args: Any, **kwargs: Any) -> Any:
            if _scope_var.get() is None:
                return original(self, *args, **kwargs)
            event = _begin(kind, type(self))
            if event is None:
                return original(self, *args, **kwargs)
            event.owner = self
            event.completed = True  # nothing left to work out later
            try:
                # The state these read changes once the call has run.
                if kind == "save":
                    fields = kwargs.get("update_fields")
                    event.detail = (self._state.adding, tuple(fields or ()))
                elif kind == "refresh":
                    _describe_refresh(event, self, args, kwargs)
            except Exception:
                log_internal_error(f"ORM attribution ({kind})")
            token = _active.set(event)
            try:
                return original(self, *args, **kwargs)
            finally:
                _end(event, token)

        return wrapper

    return decorate


# --------------------------------------------------------------------------- usage (opt-in)

_track_usage = False
_descriptor_names: dict[int, tuple[Any, str]] = {}


def _note_use(scope: Scope, instance: Any, name: str) -> None:
    key = (type(instance)._meta.concrete_model, name)
    node: Scope | None = scope
    while node is not None:
        if not node.ignoring:
            _log(node).used.add(key)
        node = node.parent


def _descriptor_name(descriptor: Any) -> str:
    """The attribute name a related descriptor serves, as eager lookups spell it."""
    entry = _descriptor_names.get(id(descriptor))
    if entry is None or entry[0] is not descriptor:
        from django.contrib.contenttypes.fields import GenericRelation

        rel = getattr(descriptor, "rel", None)
        if rel is None and hasattr(descriptor, "related"):
            name = descriptor.related.get_accessor_name()  # reverse one-to-one
        elif rel is None:
            name = descriptor.field.name  # forward foreign key / one-to-one
        elif isinstance(rel.field, GenericRelation) or not getattr(descriptor, "reverse", True):
            name = rel.field.name  # generic relation, forward many-to-many
        else:
            name = rel.get_accessor_name()  # reverse foreign key / many-to-many
        entry = _descriptor_names[id(descriptor)] = (descriptor, name)
    return entry[1]


def _usage_get(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(self: Any, instance: Any, cls: Any = None) -> Any:
        if instance is not None and _track_usage:
            scope = _scope_var.get()
            # Accesses made inside a hooked ORM call are Django's own (prefetching sets
            # its caches through the descriptors), not the user reading the relation.
            if scope is not None and _active.get() is None:
                _note_use(scope, instance, _descriptor_name(self))
        return original(self, instance, cls)

    return wrapper


# --------------------------------------------------------------------------- install

_originals: list[tuple[Any, str, Any]] = []
_install_lock = threading.Lock()


Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]


def _patch(owner: Any, name: str, make: Wrap) -> None:
    original = owner.__dict__[name]
    _originals.append((owner, name, original))
    setattr(owner, name, make(original))


def install() -> None:
    """Wrap the ORM entry points once (idempotent). Called from ``AppConfig.ready``."""
    with _install_lock:
        if _originals:
            return
        from django.contrib.contenttypes import fields as generic
        from django.contrib.contenttypes.fields import GenericForeignKey
        from django.db.models.fields import related_descriptors as rd

        qs = models.QuerySet
        _patch(qs, "_fetch_all", _fetch_all)
        for kind, name in (
            ("count", "count"),
            ("exists", "exists"),
            ("aggregate", "aggregate"),
            ("update", "update"),
            ("qs_delete", "delete"),
            ("create", "create"),
        ):
            _patch(qs, name, _queryset_method(kind))
        _patch(rd.ForwardManyToOneDescriptor, "get_object", _forward_get_object)
        _patch(rd.ForwardOneToOneDescriptor, "get_object", _forward_get_object)
        gfk_descriptor = getattr(generic, "GenericForeignKeyDescriptor", GenericForeignKey)
        _patch(gfk_descriptor, "__get__", _generic_foreign_key_get)
        for gfk_prefetch in (gfk_descriptor, GenericForeignKey):
            if "get_prefetch_querysets" in gfk_prefetch.__dict__:
                _patch(gfk_prefetch, "get_prefetch_querysets", _generic_foreign_key_prefetch)
                break
        _patch(generic, "create_generic_related_manager", _generic_manager_factory)
        _patch(models.Model, "refresh_from_db", _model_method("refresh"))
        _patch(models.Model, "save_base", _model_method("save"))
        _patch(models.Model, "delete", _model_method("delete"))
        conf.on_settings_change(_settings_changed)
    _settings_changed()


_usage_originals: list[tuple[Any, str, Any]] = []


def _settings_changed() -> None:
    """Follow ``REPORT_UNUSED_EAGER``: its descriptor hooks run on every related attribute
    access, so they are only in place while the setting is on."""
    global _track_usage
    wanted = conf.get_config().REPORT_UNUSED_EAGER and bool(_originals)
    with _install_lock:
        if wanted and not _usage_originals:
            from django.db.models.fields import related_descriptors as rd

            for descriptor in (
                rd.ForwardManyToOneDescriptor,
                rd.ReverseOneToOneDescriptor,
                rd.ReverseManyToOneDescriptor,
            ):
                original = descriptor.__dict__["__get__"]
                _usage_originals.append((descriptor, "__get__", original))
                setattr(descriptor, "__get__", _usage_get(original))  # noqa: B010
        elif not wanted:
            _restore(_usage_originals)
    _track_usage = wanted


def _restore(patched: list[tuple[Any, str, Any]]) -> None:
    while patched:
        owner, name, original = patched.pop()
        setattr(owner, name, original)


def uninstall() -> None:
    """Restore Django's methods; for benchmarks that measure the hooks' cost."""
    global _track_usage
    with _install_lock:
        _restore(_usage_originals)
        _restore(_originals)
        _track_usage = False


# --------------------------------------------------------------------------- analysis


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


#: ``_Event.detail`` of a ``prefetch_related_objects([obj], ...)`` call: one per instance.
_PREFETCH_OBJECTS = ("prefetch_related_objects",)


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
            _place_fix(finding, parent)
    return _merge(_without_through_reads(findings))


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


_EAGER = re.compile(r'^\.(select_related|prefetch_related)\((".*")\)$')


def _place_fix(finding: NPlusOne, parent: Site) -> None:
    """Say where the fix goes: the line that built the queryset, or, when a library built
    it (the admin's changelist, a generic view), the member of the user's class that
    configures it, in that class's own words: ``list_select_related`` on a ``ModelAdmin``
    rather than a ``.select_related()`` nobody can chain."""
    owner = owners.owner_of(parent[0])
    if owner is None:
        finding.fix_at = render_frame(*parent)
        return
    site = owners.fix_site(owner) or parent
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


def _merged_list(cls: type, paths: str) -> str:
    """``paths`` added to what ``list_select_related`` already lists, when it is a list."""
    current = getattr(cls, "list_select_related", False)
    if isinstance(current, list | tuple):
        quoted = [f'"{name}"' for name in current if isinstance(name, str)]
        return ", ".join(dict.fromkeys([*quoted, paths]))
    return paths


_event_of = operator.itemgetter(EVENT)


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


@lru_cache(maxsize=1024)
def _relations_by_name(
    model: type[models.Model],
) -> dict[str, tuple[type[models.Model] | None, bool]]:
    """Relation name -> (target model, can be select_related), as eager lookups spell them."""
    from django.contrib.contenttypes.fields import GenericForeignKey

    names: dict[str, tuple[type[models.Model] | None, bool]] = {}
    for field in model._meta.get_fields():
        if isinstance(field, GenericForeignKey):
            names[field.name] = (None, False)
            continue
        if not field.is_relation:
            continue
        related = field.related_model if isinstance(field.related_model, type) else None
        target = related._meta.concrete_model if related is not None else None
        if isinstance(field, models.ForeignObjectRel):
            accessor = field.get_accessor_name()
            if accessor:
                names[accessor] = (target, field.one_to_one)
        else:
            names[field.name] = (target, not field.many_to_many and not field.one_to_many)
    return names


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
