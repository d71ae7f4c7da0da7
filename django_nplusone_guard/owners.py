"""The user's class behind library machinery: where a query run by the admin, a DRF generic
view or a Django generic view is fixed.

When the admin renders ``list_display`` or a ``ListAPIView`` serializes its queryset, no line
of the user's code is on the stack: the statements run in the library, and the nearest user
frame is a middleware the request passed through, or nothing. The edit point is still the
user's: the ``BookAdmin`` whose ``list_display`` reads a relation, the ``BookList`` whose
``queryset`` lacks ``select_related``. A handful of library functions hold such an object in
their locals (``View.dispatch``'s ``self``, ``items_for_result``'s ``cl.model_admin``); the
recorder's walk asks this module about those frames only (:data:`OWNER_FRAMES`, recognised
once per code object), and puts the user class's member in the stack as if it were a frame:
``library/admin.py:14 in BookAdmin.list_display``.

That stand-in is a real code object (a copy of an empty one, renamed), so everything that
renders, groups or compares stacks works on it unchanged. One is made per class and member,
with its line found once from the class's source.
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
from collections.abc import Callable, Sequence
from types import CodeType, FrameType
from typing import Any

__all__ = ["OWNER_FRAMES", "OwnerSite", "entry", "fix_site", "forget", "owner_of", "user_class"]

#: What an owner frame yields: the object that configures the machinery, its role, and the
#: member being used at that moment when the frame says (the serializer field being read).
Found = tuple[Any, str, str | None]


def _self_as(role: str) -> Callable[[FrameType], Found | None]:
    def read(frame: FrameType) -> Found | None:
        return frame.f_locals.get("self"), role, None

    return read


def _model_admin_of_cl(member: str | None) -> Callable[[FrameType], Found | None]:
    def read(frame: FrameType) -> Found | None:
        local = frame.f_locals
        changelist = local.get("cl") or local.get("self")
        return getattr(changelist, "model_admin", None), "admin", member

    return read


def _serializer_field(frame: FrameType) -> Found | None:
    local = frame.f_locals
    field = local.get("field")
    return local.get("self"), "serializer", getattr(field, "field_name", None)


def _bound_field(frame: FrameType) -> Found | None:
    bound = frame.f_locals.get("self")
    return getattr(bound, "form", None), "form", getattr(bound, "name", None)


def _graphql_field(frame: FrameType) -> Found | None:
    """graphql-core resolving one field of an object type: graphene-django keeps the user's
    ``DjangoObjectType`` (or ``ObjectType``) class on the type as ``graphene_type``."""
    local = frame.f_locals
    owner = getattr(local.get("parent_type"), "graphene_type", None)
    nodes = local.get("field_nodes") or ()
    name = getattr(getattr(nodes[0], "name", None), "value", None) if nodes else None
    return owner, "graphql", _snake_case(name) if isinstance(name, str) else None


def _snake_case(name: str) -> str:
    """graphene's ``authorName`` is the Python ``author_name``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _template_response_view(frame: FrameType) -> Found | None:
    context = getattr(frame.f_locals.get("self"), "context_data", None)
    if not isinstance(context, dict):
        return None
    view = context.get("view")
    if view is not None:
        return view, "template", None
    changelist = context.get("cl")
    return getattr(changelist, "model_admin", None), "admin", None


#: Library functions whose locals name the user's object, by (module, qualified name): only
#: these frames are looked into, and only when the walk passes them.
OWNER_FRAMES: dict[tuple[str, str], Callable[[FrameType], Found | None]] = {
    ("django.views.generic.base", "View.dispatch"): _self_as("view"),
    ("django.template.response", "SimpleTemplateResponse.render"): _template_response_view,
    ("django.contrib.admin.options", "ModelAdmin.changelist_view"): _self_as("admin"),
    ("django.contrib.admin.options", "ModelAdmin.changeform_view"): _self_as("admin"),
    ("django.contrib.admin.options", "ModelAdmin.delete_view"): _self_as("admin"),
    ("django.contrib.admin.options", "ModelAdmin.history_view"): _self_as("admin"),
    ("django.contrib.admin.views.main", "ChangeList.get_results"): _model_admin_of_cl(None),
    ("django.contrib.admin.templatetags.admin_list", "items_for_result"): _model_admin_of_cl(
        "list_display"
    ),
    ("django.forms.boundfield", "BoundField.as_widget"): _bound_field,
    ("rest_framework.views", "APIView.dispatch"): _self_as("view"),
    ("rest_framework.serializers", "Serializer.to_representation"): _serializer_field,
    ("graphql.execution.execute", "ExecutionContext.execute_field"): _graphql_field,
}

#: Members that say where each role's queryset is made, in the order they are looked for.
_QUERYSET_MEMBERS = {
    "view": ("queryset", "get_queryset", "model"),
    "template": ("queryset", "get_queryset", "model"),  # a view's template, rendered later
    "admin": ("list_select_related", "get_queryset"),
    "serializer": (),
    "form": (),
    "graphql": (),
}
#: How a role's member is spelled in its class, most specific first: a GraphQL field is
#: best named by its resolver, else by its declaration.
_SPELLINGS = {"graphql": ("resolve_{}", "{}")}


class OwnerSite:
    """What a stand-in code object stands for: the class, its role, the member named."""

    __slots__ = ("cls", "member", "role")

    def __init__(self, cls: type, role: str, member: str | None) -> None:
        self.cls = cls
        self.role = role
        self.member = member


_TEMPLATE: CodeType = compile("", "<owner>", "exec")
_lock = threading.Lock()
# (class, role, member) -> the stand-in entry; the class is held, so ids stay unique.
_entries: dict[tuple[type, str, str | None], tuple[CodeType, int] | None] = {}
# id(stand-in code) -> what it stands for; the code is held in ``_entries``.
_owners: dict[int, OwnerSite] = {}
_user_classes: dict[type, bool] = {}
#: Set by :mod:`.capture`: whether a module (by name and file) is the user's code.
is_user_module: Callable[[str, str], bool] = lambda module, filename: False  # noqa: E731


def user_class(cls: type) -> bool:
    """Whether ``cls`` is defined in the user's code (not Django's, not site-packages')."""
    found = _user_classes.get(cls)
    if found is None:
        module = sys.modules.get(cls.__module__)
        filename = getattr(module, "__file__", None) or ""
        found = bool(filename) and is_user_module(cls.__module__, filename)
        _user_classes[cls] = found
    return found


def entry(frame: FrameType, read: Callable[[FrameType], Found | None]) -> tuple[Any, ...]:
    """The stand-in ``(code, line)`` for the user's class behind an owner frame, or ``()``
    when the object there is not the user's (``admin.site.register(Book)`` with no
    ``ModelAdmin`` of their own)."""
    found = read(frame)
    if found is None or found[0] is None:
        return ()
    instance, role, member = found
    cls = instance if isinstance(instance, type) else type(instance)
    if not user_class(cls):
        return ()
    return _entry(cls, role, member) or ()


def forget() -> None:
    """Drop what was worked out about classes: what counts as user code changed."""
    with _lock:
        _user_classes.clear()
        _entries.clear()
        _owners.clear()


def owner_of(code: Any) -> OwnerSite | None:
    """What a stack entry's code stands for, when it is a stand-in made here."""
    return _owners.get(id(code))


def fix_site(owner: OwnerSite) -> tuple[CodeType, int] | None:
    """The member of the owner's class where its queryset is made (``BookList.queryset``,
    ``BookAdmin.list_select_related``, a form's field), or the class itself when it
    defines none."""
    member = owner.member if owner.role in ("form", "graphql") else None
    return _entry(owner.cls, owner.role, member)


def _entry(cls: type, role: str, member: str | None) -> tuple[CodeType, int] | None:
    key = (cls, role, member)
    if key in _entries:
        return _entries[key]
    made = _make(cls, role, member)
    with _lock:
        _entries[key] = made
    return made


def _make(cls: type, role: str, member: str | None) -> tuple[CodeType, int] | None:
    if member:
        wanted: Sequence[str] = [s.format(member) for s in _SPELLINGS.get(role, ("{}",))]
    else:
        wanted = _QUERYSET_MEMBERS.get(role, ())
    for name in wanted:
        found = _member_line(cls, name)
        if found is not None:
            owner, filename, line = found
            return _stand_in(cls, role, member or name, name, owner, filename, line)
    spelled = _class_line(cls)
    if spelled is None:
        return None
    filename, line = spelled
    return _stand_in(cls, role, member, None, cls, filename, line)


def _stand_in(
    cls: type,
    role: str,
    member: str | None,
    spelled: str | None,
    owner: type,
    filename: str,
    line: int,
) -> tuple[CodeType, int]:
    """A code object rendering as ``file:line in Owner.spelled``, standing for ``member``
    of ``cls`` in ``role``."""
    qualname = f"{owner.__qualname__}.{spelled}" if spelled else owner.__qualname__
    code = _TEMPLATE.replace(
        co_filename=filename, co_name=spelled or owner.__name__, co_qualname=qualname
    )
    with _lock:
        _owners[id(code)] = OwnerSite(cls, role, member)
    return code, line


def _class_line(cls: type) -> tuple[str, int] | None:
    try:
        filename = inspect.getsourcefile(cls)
        _lines, start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return None
    return (filename, start) if filename else None


def _member_line(cls: type, name: str) -> tuple[type, str, int] | None:
    """Where the first user class in ``cls``'s MRO that spells ``name`` spells it: an
    assignment or ``def`` in its body, or the name quoted in it (``fields = ["author"]``)."""
    for klass in cls.__mro__:
        if not user_class(klass):
            continue
        try:
            filename = inspect.getsourcefile(klass)
            lines, start = inspect.getsourcelines(klass)
        except (OSError, TypeError):
            continue
        if not filename:
            continue
        defined = re.compile(rf"^\s+(?:async\s+def\s+|def\s+)?{re.escape(name)}\b\s*[:=(]")
        quoted = re.compile(rf"""["']{re.escape(name)}["']""")
        for pattern in (defined, quoted):
            for offset, text in enumerate(lines):
                if offset and pattern.search(text):
                    return klass, filename, start + offset
    return None
