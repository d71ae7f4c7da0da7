"""Origins: which queryset evaluation loaded each instance, and by which relation path.

An N+1's fix is written on the queryset that loaded the instances the loop reads from
(``select_related("book__author")`` on the books' queryset), so that evaluation has to be
found. Nothing is tagged while queries run: :class:`_Origins` works it out after the
scope from the rows the events returned, and only when it is asked: by :mod:`.attribution`
for a finding's parent queryset, by :mod:`..loops` (through :func:`origins_of` and
:func:`loaded_by`) to tell a loop over rows from a repeat.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.db import models

from ..capture import EVENT
from .hooks import _complete, _Event, _Origin

if TYPE_CHECKING:
    from ..capture import Scope


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


_event_of = operator.itemgetter(EVENT)


def origins_of(scope: Scope) -> _Origins:
    """Which evaluation loaded each instance of ``scope`` (see :class:`_Origins`)."""
    events = dict.fromkeys(map(_event_of, scope.records))
    events.pop(None, None)
    return _Origins(events)


def loaded_by(origins: _Origins, instance: Any) -> object | None:
    """The evaluation (or nested row's origin) that loaded ``instance``, if it was loaded
    in the scope."""
    return origins.source(instance)
