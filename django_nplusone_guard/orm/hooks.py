"""The hooks: the wrapped Django methods, and the :class:`_Event` each records.

This is the only part of the package on the per-query path, so it is self-contained:
every wrapper reads what it needs (``_active``, ``_scope_var``, ``_track_usage``,
``_get_code``) as a plain global of this module, never through another module.
``_track_usage`` is rebound by :func:`_settings_changed`: read it here, or as
``hooks._track_usage``, never through ``from .hooks import _track_usage`` (a frozen copy).

:func:`_complete` and :func:`subject` run after the scope: they finish an event from what
it was called with. :class:`_Origin` (where an instance came from) lives here rather than
in :mod:`.origins` because :meth:`_Event.root_origin` builds it and :mod:`.origins`
imports this module: defining it there would make the two modules import each other.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import sys
import threading
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from django.db import models
from django.db.models.query import MAX_GET_RESULTS

from .. import conf
from ..capture import MAX_WALK, _current, current_call, log_internal_error
from ..capture import is_user_frame as _is_user
from .relations import (
    _Relation,
    _relation,
    _relation_for_queryset,
    _through_relation,
    _where_targets,
)

if TYPE_CHECKING:
    from ..capture import Scope


# --------------------------------------------------------------------------- events


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


#: ``_Event.detail`` of a ``prefetch_related_objects([obj], ...)`` call: one per instance.
_PREFETCH_OBJECTS = ("prefetch_related_objects",)


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
                    # A copy (``obj.pk = None; obj.save()``) is not "adding" to Django's
                    # state, but it is inserted all the same.
                    adding = self._state.adding or self.pk is None
                    event.detail = (adding, tuple(fields or ()))
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
