"""Naming relations: tables to models, and a relation as the user spells it.

Kept apart from the hooks because none of it runs while queries run: a :class:`_Relation`
is worked out after the scope, once per field (cached, fields live forever), from what a
hooked call was made with: the field a descriptor served, the ``instance`` hint and the
filters of a related manager's or a prefetch's queryset, the through table a
many-to-many's ``count()`` queried. It knows Django's model metadata and nothing of
events, scopes or findings, so every other module of the package can build on it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.apps import apps
from django.db import models

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
