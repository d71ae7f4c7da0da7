"""Loop or repeat: which repeated statements are an N+1.

A statement shape that runs again and again from one call site is an N+1 only when a loop
over rows drives it: the count grows with the data. Everything else that repeats is not, and
calling it "N+1" in CI is what gets a tool switched off:

* **the same thing again**: one object saved twice, the same ``{{ user.thing_set.count }}``
  read twice in a template, a method called twice. Parameter equality alone cannot say
  this: a loop over five books of one author reads ``book.author`` five times with equal
  parameters, and it is an N+1. What separates them is *provenance*: in a loop, the calls
  are about different rows (instances) that came from one evaluation; in a repeat, about
  the same row again.
* **a fixed number of calls**: two calls that differ by a constant (a header and a footer).
* **a library's own loop**: one call from user code (``formset.is_valid()``, a DRF
  ``PrimaryKeyRelatedField(many=True)``) that looks items up one by one inside the library.

:func:`classify` decides per group of statements, after the scope, from what was recorded:
the ORM events (which instance each call was about), the parameters, the rows loaded earlier
in the scope, and which library function the user's line entered (``Scope.entries``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import models

from . import conf, orm, owners
from .capture import EVENT, PARAMS, SQL

if TYPE_CHECKING:
    from .capture import Scope
    from .detect import Group

__all__ = ["LOOP", "Provenance", "Verdict", "classify", "classify_all", "library_of"]

#: Calls of a group looked at to tell a loop from a repeat: a loop shows two rows early, a
#: repeat of a handful of calls is read whole.
MAX_CLASSIFIED_CALLS = 32
#: Rows of earlier evaluations whose values are remembered for provenance.
MAX_PROVENANCE_ROWS = 5_000
#: Distinct parameter sets that make a loop even when their values cannot be traced to rows
#: loaded in the scope (ids from a list built before it, raw SQL over ``range(n)``).
MIN_UNTRACED_LOOP = 3

#: Modules whose functions a user calls once per query: a repeated statement entered there
#: is the user's loop. Any other library function that a user line entered and that ran the
#: statement many times is that library's loop.
_PER_CALL_MODULES = (
    "django.db.models",
    "django.shortcuts",
    "django.template",  # rendering the user's own templates
    "django.contrib.contenttypes.fields",
    "django.db.backends",
    "asgiref",
    "django_nplusone_guard",  # its ORM hooks wrap the calls above
)

#: What to say about a library's loop or double call: (module prefix, advice).
_LIBRARY_ADVICE = (
    (
        "django.contrib.admin",
        "the admin runs it; see list_select_related, get_queryset() and "
        "show_full_result_count on the ModelAdmin",
    ),
    (
        "django.forms",
        "Django validates each form on its own (a formset looks up each posted form's row): "
        "one query per form posted, not per row in the table",
    ),
    (
        "rest_framework",
        "DRF runs it once per item it validates (PrimaryKeyRelatedField(many=True) looks up "
        "each posted pk); override to_internal_value on a ManyRelatedField to fetch them with "
        "one filter(pk__in=...)",
    ),
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a group of repeated statements is."""

    kind: str  # "loop", "repeat" (same rows again, or constants), "library", or "none"
    library: str | None = None
    suggestion: str = ""
    #: The relation read again, for a repeat about one row: (``app.Model``, field name).
    relation: tuple[str, str] | None = None
    #: For ``folded`` statements the same calls ran: the index of the group they count in.
    into: int | None = None


LOOP = Verdict("loop")
_NONE = Verdict("none")
_REPEAT = Verdict("repeat")
#: A repeat that follows from another one (the relation read on each of two fresh copies of
#: one row): reported with that one, not on its own.
_CAUSED = Verdict("folded")


class Provenance:
    """Where a group's values could have come from: the rows each evaluation of the scope
    loaded (by the position of its first statement), and which evaluation loaded an
    instance. Worked out on first use, only for the groups that ask."""

    def __init__(self, scope: Scope) -> None:
        self._scope = scope
        self._loads: list[tuple[int, Any, Any]] | None = None
        self._origins: Any = None

    def loaded_by(self, instance: Any) -> object | None:
        """The evaluation that loaded ``instance`` in the scope, if one did."""
        if self._origins is None:
            self._origins = orm.origins_of(self._scope)
        return orm.loaded_by(self._origins, instance)

    def loaded_before(self, index: int, wanted: set[Any]) -> tuple[set[Any], set[Any]]:
        """Which of ``wanted`` are values of rows loaded before the statement at ``index``,
        and the call sites of the evaluations that loaded them; stops as soon as all are
        found (a loop's first rows hold its first values)."""
        if self._loads is None:
            self._loads = self._collect()
        found: set[Any] = set()
        sites: set[Any] = set()
        budget = MAX_PROVENANCE_ROWS
        for start, site, rows in self._loads:
            if start >= index:
                break
            for row in rows:
                budget -= 1
                if budget < 0:
                    return found, sites
                hits = wanted.intersection(_row_values(row))
                if hits:
                    found.update(hits)
                    sites.add(site)
                    if len(found) == len(wanted):
                        return found, sites
        return found, sites

    def _collect(self) -> list[tuple[int, Any, Any]]:
        loads: list[tuple[int, Any, Any]] = []
        seen: set[int] = set()
        for index, record in enumerate(self._scope.records):
            event = record[EVENT]
            if event is None or id(event) in seen:
                continue
            seen.add(id(event))
            result = event.result
            if event.kind == "fetch" and result:
                loads.append((index, event.site, result))
            elif isinstance(result, models.Model):
                loads.append((index, event.site, (result,)))
        return loads


def _row_values(row: Any) -> Iterable[Any]:
    """The values of a loaded row: a model instance's fields (its pk, its foreign keys'
    ids), a ``values()`` dict or a ``values_list()`` tuple. Unhashable ones are skipped by
    the set they are intersected with."""
    if isinstance(row, models.Model):
        return [v for v in row.__dict__.values() if isinstance(v, int | str)]
    if isinstance(row, dict):
        return [v for v in row.values() if isinstance(v, int | str)]
    if isinstance(row, tuple | list):
        return [v for v in row if isinstance(v, int | str)]
    return (row,) if isinstance(row, int | str) else ()


def classify_all(scope: Scope, groups: list[Group]) -> list[Verdict]:
    """:func:`classify` for each group, then one finding per root cause: a repeat about
    rows that another repeat loaded (a method called twice returns two copies of one row,
    and each copy reads its author) is folded into that one."""
    provenance = Provenance(scope)
    verdicts = [classify(scope, group, provenance) for group in groups]
    _fold_shared_calls(groups, verdicts)
    repeats = [i for i, v in enumerate(verdicts) if v.kind in ("repeat", "library")]
    if len(repeats) < 2:
        return verdicts
    group_of_event: dict[int, int] = {}
    for i in repeats:
        for event in _events(groups[i]):
            group_of_event.setdefault(id(event), i)
    for i in repeats:
        sources = set()
        for event in _events(groups[i]):
            owner = event.owner
            loaded = provenance.loaded_by(owner) if owner is not None else None
            sources.add(group_of_event.get(id(loaded)) if loaded is not None else None)
        if len(sources) == 1:
            [source] = sources
            if source is not None and source != i and verdicts[source].kind != "folded":
                verdicts[i] = _CAUSED  # its statements follow from that repeat: said there
    return verdicts


def _fold_shared_calls(groups: list[Group], verdicts: list[Verdict]) -> None:
    """Statements that the very same ORM calls ran are one root cause: a queryset with
    ``prefetch_related`` evaluated once per row runs its query and each prefetch's query
    per row, all from one call. They are reported with the call's first statement (the
    queryset's own query), which is a loop when the call is made in one."""
    first_by_calls: dict[frozenset[int], int] = {}
    for i in sorted(range(len(groups)), key=lambda i: groups[i].first_index):
        if verdicts[i].kind not in ("loop", "repeat", "library"):
            continue
        calls = frozenset(map(id, _events(groups[i])))
        if len(calls) < 2:
            continue
        main = first_by_calls.setdefault(calls, i)
        if main != i:
            verdicts[i] = Verdict("folded", into=main)


def _events(group: Group) -> list[Any]:
    """The distinct ORM calls behind a group's first statements."""
    return list(_distinct_events(group))


def _distinct_events(group: Group) -> Iterator[Any]:
    seen: set[int] = set()
    for record in group.records:
        event = record[EVENT]
        if event is not None and id(event) not in seen:
            seen.add(id(event))
            yield event
            if len(seen) >= MAX_CLASSIFIED_CALLS:
                return


def classify(scope: Scope, group: Group, provenance: Provenance) -> Verdict:
    """Whether ``group`` (one statement shape from one call stack, run by several calls) is
    a loop over rows, a repeat, or a library's loop. Never raises for odd events: the ORM
    layer's own failures make it fall back to the parameters."""
    events: list[Any] = []
    about_rows: list[tuple[tuple[Any, Any], Any]] = []
    rows_of: dict[Any, set[Any]] = {}
    for event in _distinct_events(group):
        events.append(event)
        found = orm.subject(event)
        if found is None:
            continue
        about_rows.append((found, event.owner))
        rows = rows_of.setdefault(found[1], set())
        rows.add(found[0])
        if len(rows) >= MIN_UNTRACED_LOOP:
            break  # enough to call it a loop: a loop of 10,000 reads costs what 3 do
    if about_rows and len(about_rows) * 2 >= len(events):
        verdict = _by_rows(about_rows, provenance)
        if verdict is not LOOP:
            return verdict
        if _in_one_cascade(events):
            return Verdict("library", CASCADE, CASCADE_ADVICE)
        if not group.fp.is_read:
            # Writes a library makes per item cannot be batched from the user's code; reads
            # of the user's rows in a library's loop can, in the user's queryset.
            library = library_writing(scope, group.stack)
            if library is not None:
                return Verdict("library", library, _advice(library, group))
        return verdict
    verdict, sources = _by_parameters(group, provenance)
    library = library_of(scope, group.stack)
    if library is None:
        return verdict
    if group.stack and owners.owner_of(group.stack[0]) is None:
        if verdict is _REPEAT:
            return verdict  # a line of the user's asked a library the same thing again
        if _loops_here(sources, group.stack):
            # The library was called once per row of a queryset that a function on this
            # stack evaluated (``for u in users: u.has_perm(...)``): the user's loop.
            return verdict
    return Verdict("library", library, _advice(library, group))


def _loops_here(sources: set[Any], stack: tuple[Any, ...]) -> bool:
    """Whether rows the parameters came from were evaluated by a line of the user's own
    code on this stack, other than the line that called the library: that function loops
    over them. Rows a library loaded (a stand-in's site) do not count."""
    codes = {id(code) for code in stack[::2] if owners.owner_of(code) is None}
    return any(site is not None and id(site[0]) in codes and site != stack[:2] for site in sources)


#: The library behind a cascade: Django deletes related rows and signals each one.
CASCADE = "django.db.models.deletion"
CASCADE_ADVICE = (
    "Django's cascade delete sends the signals of each deleted row one by one, so a "
    "receiver that reads a relation runs once per row: read the id (instance.<field>_id) "
    "instead, or do the work once for the object whose delete() started it"
)


def _in_one_cascade(events: list[Any]) -> bool:
    """Whether every call was made by a signal receiver inside one and the same delete."""
    parents = {id(e.parent) for e in events if e.parent is not None}
    return (
        len(parents) == 1
        and all(e.parent is not None for e in events)
        and events[0].parent.kind in ("delete", "qs_delete")
    )


def _by_rows(subjects: list[tuple[tuple[Any, Any], Any]], provenance: Provenance) -> Verdict:
    """Calls about instances: a loop when one relation (or one write) was asked of
    different rows that came from one evaluation (or from outside the scope, where that
    cannot be told), or of more rows than a handful of constants make; the same row asked
    again is a repeat; single reads of different relations that happen to share SQL are
    nothing at all."""
    rows_by_question: dict[Any, dict[Any, Any]] = {}
    for (row, question), instance in subjects:
        rows_by_question.setdefault(question, {}).setdefault(row, instance)
    most = max(len(rows) for rows in rows_by_question.values())
    if most >= MIN_UNTRACED_LOOP:
        return LOOP
    if most == 2:
        for rows in rows_by_question.values():
            if len(rows) == 2:
                first, second = (provenance.loaded_by(i) for i in rows.values())
                if first is None or second is None or first is second:
                    return LOOP
        return _REPEAT  # two rows, each loaded on its own: a fixed pair, not a loop
    if len(rows_by_question) == 1:
        relation = next(iter(rows_by_question))[1]
        if relation is None:
            return _REPEAT
        return Verdict("repeat", relation=(relation.owner, relation.name))
    return _NONE


def _by_parameters(group: Group, provenance: Provenance) -> tuple[Verdict, set[Any]]:
    """Calls about no instance (``get(pk=...)``, ``filter(...)``, raw SQL): equal parameters
    are a repeat; varying ones are a loop when they are values of rows loaded earlier in the
    scope, or when there are too many of them to be a handful of constants. Also says
    where the rows the values came from were loaded."""
    records = group.records[:MAX_CLASSIFIED_CALLS]
    params = [_flat(record[PARAMS]) for record in records]
    # Values written into the SQL text (``SELECT 1``, ``SELECT 2``) vary as much as bound
    # parameters do, and cannot be traced to rows.
    distinct = {(str(r[SQL]), p) for r, p in zip(records, params, strict=True) if p is not None}
    if len(distinct) <= 1 and None not in params:
        return _REPEAT, set()
    varying = _varying_values(params)
    if varying:
        wanted = {_hashable(v) for values in varying for v in values}
        loaded, sites = provenance.loaded_before(group.first_index, wanted)
        traced = sum(1 for values in varying if any(_hashable(v) in loaded for v in values))
        if traced * 2 >= len(varying):
            return LOOP, sites
    if len(distinct) >= MIN_UNTRACED_LOOP or None in params:
        return LOOP, set()
    return _REPEAT, set()


def _flat(params: Any) -> tuple[Any, ...] | None:
    """Parameters as a hashable tuple, or ``None`` when they cannot be compared."""
    try:
        if isinstance(params, dict):
            return tuple(sorted(params.items()))
        if params is None:
            return ()
        flat = tuple(params)
        hash(flat)
        return flat
    except Exception:
        return None


def _varying_values(params: list[tuple[Any, ...] | None]) -> list[tuple[Any, ...]]:
    """Per statement, the parameter values at the positions where the statements differ."""
    rows = [p for p in params if p is not None]
    if len(rows) < 2 or len({len(p) for p in rows}) != 1:
        return []
    positions = [i for i in range(len(rows[0])) if len({_hashable(p[i]) for p in rows}) > 1]
    return [tuple(p[i] for i in positions) for p in rows] if positions else []


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value


def library_of(scope: Scope, stack: tuple[Any, ...]) -> str | None:
    """The library that ran a statement on its own, or ``None`` when the user's code called
    the ORM for it. A library ran it when the stack's first entry is a stand-in for the
    user's class (no line of theirs ran in between: the admin's changelist, a DRF generic
    view), when the stack is empty, or when the user's line entered a library function
    that is not an ORM call (``formset.is_valid()``)."""
    if not stack:
        return "a library (no line of your code ran it)"
    owner = owners.owner_of(stack[0])
    if owner is not None:
        # A view's template, a serializer's fields and a form's fields are the user's own
        # code, run per row by the library: what they read per row is the user's loop.
        if owner.role in _PER_ROW_ROLES:
            return None
        return _package(_library_base(owner.cls))
    entries = scope.entries.get(id(stack))
    if not entries or not entries[0] or _per_call(entries[0][0]):
        return None
    return _package(entries[0][0])


def _per_call(module: str) -> bool:
    # Helpers of the user's own that STACK_IGNORE hides from call sites are theirs still.
    per_call = _PER_CALL_MODULES + conf.get_config().STACK_IGNORE
    return any(module == m or module.startswith(m + ".") for m in per_call)


def library_writing(scope: Scope, stack: tuple[Any, ...]) -> str | None:
    """The library whose loop saves the rows, when the user's lines on the stack only
    answer it: an override of ``save()`` that the library calls per item (django-taggit
    saving one ``Tagged`` per tag), or a library-driven view. ``None`` when every line of
    the user's calls the ORM itself, so the loop can be theirs."""
    entries = scope.entries.get(id(stack))
    if entries is None:
        return None
    called, above = entries
    first = owners.owner_of(stack[0]) if stack else None
    if first is None and above and _per_call(above[0]):
        # The user's first line is a callback the ORM made (a ``save()`` override), and
        # the ORM call came from library code: that library saves per item.
        for module in above:
            if not _per_call(module):
                return _package(module)
    for code, module in zip(stack[::2], called, strict=False):
        owner = owners.owner_of(code)
        if owner is not None and owner.role != "template":
            return _package(_library_base(owner.cls))
        if module and not _per_call(module):
            return _package(module)
    return None


_PER_ROW_ROLES = frozenset({"template", "serializer", "form", "graphql"})


def _library_base(cls: type) -> str:
    """The module of the first class in ``cls``'s MRO that is not the user's."""
    for base in cls.__mro__:
        if not owners.user_class(base):
            return base.__module__
    return cls.__module__


def _package(module: str) -> str:
    parts = module.split(".")
    if parts[:2] == ["django", "contrib"]:
        return ".".join(parts[:3])
    if parts[0] == "django":
        return ".".join(parts[:2])
    return parts[0]


def _advice(library: str, group: Group) -> str:
    owner = owners.owner_of(group.stack[0]) if group.stack else None
    if (
        owner is not None
        and owner.role == "admin"
        and group.fp.is_read
        and "COUNT(" in group.sample_sql.upper()
    ):
        return (
            f"show_full_result_count = False on {owner.cls.__name__}: the changelist counts "
            "the rows its filters match and all rows, the same query when nothing is filtered"
        )
    for prefix, advice in _LIBRARY_ADVICE:
        if library == prefix or library.startswith(prefix + "."):
            return advice
    return f"{library} runs it once per item: look for a batching option there, or leave it"
