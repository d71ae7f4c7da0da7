"""URL arguments for ``nplusone_audit --all``: detail pages are where most N+1s live, and
their URLs take a ``pk`` or a ``slug`` that only the database knows.

For a class-based view that names its rows (Django's ``DetailView``, ``UpdateView``,
``DeleteView``, any ``SingleObjectMixin``; Django REST framework's generic views and
viewset detail routes; the admin's change pages), the arguments it looks rows up by are
filled from existing rows: the first by primary key, or the first ``samples`` of them. A
route that cannot be filled gets the reason, so the audit can list it with the fix. A page
that only redirects to the login page is recognised too, since ``--user`` is the fix there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.http import HttpResponseBase
from django.shortcuts import resolve_url
from django.urls import NoReverseMatch, Resolver404, resolve
from django.utils.regex_helper import normalize

__all__ = ["Filled", "fill_arguments", "login_redirect_note", "path_template"]

#: What a page that redirects to the login page says in the audit's output.
LOGIN_NOTE = "redirected to login: use --user"
_PLACEHOLDER_RE = re.compile(r"%\((\w+)\)s")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class Filled:
    """The paths to request for one route, or why there are none."""

    paths: tuple[str, ...] = ()
    reason: str | None = None


def path_template(pattern: Any) -> str | None:
    """The text a ``path()``/``re_path()`` pattern matches with ``%(name)s`` where each
    argument goes, as Django's own ``reverse()`` builds it; None for other pattern types."""
    regex = getattr(pattern, "regex", None)
    if regex is None:
        return None
    possibilities = normalize(regex.pattern)
    return possibilities[0][0] if possibilities else ""


def fill_arguments(
    callback: Callable[..., Any],
    template: str,
    arguments: Sequence[str],
    converters: Mapping[str, Any],
    *,
    samples: int = 1,
    urlconf: str | None = None,
) -> Filled:
    """Paths for a route whose ``template`` needs ``arguments``, from up to ``samples``
    rows of the model its view reads; ``Filled.reason`` says why when there are none."""
    source = _row_source(callback)
    if isinstance(source, str):
        return Filled(reason=source)
    queryset, lookups, view_name = source
    label = queryset.model._meta.label
    unknown = [name for name in arguments if name not in lookups]
    if unknown:
        return Filled(
            reason=f"{view_name} looks rows up by {', '.join(sorted(set(lookups)))}; "
            f"cannot fill {', '.join(unknown)}: give the URL"
        )
    try:
        with transaction.atomic(using=queryset.db):  # a failed read leaves no broken transaction
            rows = list(queryset.order_by("pk")[:samples])
    except DatabaseError as exc:
        return Filled(reason=f"could not read {label} rows: {exc}".strip())
    if not rows:
        return Filled(reason=f"no {label} rows to fill {', '.join(arguments)} from")
    paths = []
    for row in rows:
        values = {}
        for name in arguments:
            value = _attribute(row, lookups[name])
            converter = converters.get(name)
            try:
                values[name] = str(converter.to_url(value) if converter is not None else value)
            except ValueError:  # a converter's own refusal (Django's way of saying "no match")
                return Filled(reason=f"{label} {name}={value!r} does not match the URL pattern")
        path = "/" + _substitute(template, values)
        if not _resolves_to(path, callback, urlconf):
            return Filled(
                reason=f"{label} {', '.join(f'{k}={v!r}' for k, v in values.items())} "
                "does not match the URL pattern"
            )
        paths.append(path)
    return Filled(paths=tuple(dict.fromkeys(paths)))


def _substitute(template: str, values: Mapping[str, str]) -> str:
    return _PLACEHOLDER_RE.sub(lambda match: values[match[1]], template)


def _row_source(
    callback: Callable[..., Any],
) -> tuple[models.QuerySet[Any], dict[str, str], str] | str:
    """The rows a view reads and the URL keyword -> row attribute it looks them up by, or
    the reason it cannot be told without a request."""
    model_admin = getattr(callback, "model_admin", None)  # the admin's per-model views
    if model_admin is not None:
        queryset = model_admin.model._default_manager.all()
        return queryset, {"object_id": "pk"}, type(model_admin).__name__
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        name = getattr(callback, "__qualname__", repr(callback))
        return f"{name} is a function view: give its URL to nplusone_audit"
    initkwargs: Mapping[str, Any] = (
        getattr(callback, "view_initkwargs", None) or getattr(callback, "initkwargs", None) or {}
    )

    def option(name: str, default: Any = None) -> Any:
        return initkwargs.get(name, getattr(view_class, name, default))

    queryset = option("queryset")
    model = option("model")
    if isinstance(queryset, models.Manager):
        queryset = queryset.all()
    if not isinstance(queryset, models.QuerySet):
        if not (isinstance(model, type) and issubclass(model, models.Model)):
            return (
                f"{view_class.__name__} has no model or queryset "
                "(get_queryset() needs a request): give the URL"
            )
        queryset = model._default_manager.all()
    lookups = {"pk": "pk", "slug": "slug"}
    if hasattr(view_class, "pk_url_kwarg"):  # Django's SingleObjectMixin
        lookups[option("pk_url_kwarg", "pk")] = "pk"
        lookups[option("slug_url_kwarg", "slug")] = option("slug_field", "slug")
    if hasattr(view_class, "lookup_field"):  # Django REST framework's GenericAPIView
        field = option("lookup_field", "pk")
        lookups[option("lookup_url_kwarg") or field] = field
    return queryset.all(), lookups, view_class.__name__


def _attribute(row: models.Model, path: str) -> Any:
    """``row.author.name`` for ``author__name``, as a lookup field spells it."""
    value: Any = row
    for part in path.split("__"):
        value = getattr(value, part)
    return value


def _resolves_to(path: str, callback: Callable[..., Any], urlconf: str | None) -> bool:
    try:
        return resolve(path, urlconf).func is callback
    except Resolver404:
        return False


def login_redirect_note(response: HttpResponseBase, urlconf: str | None = None) -> str | None:
    """:data:`LOGIN_NOTE` when ``response`` redirects to ``LOGIN_URL`` or to any view named
    ``login`` (the admin's), else None."""
    if response.status_code not in _REDIRECTS:
        return None
    location = urlsplit(response.get("Location", "")).path
    if not location:
        return None
    try:
        login_url = urlsplit(str(resolve_url(settings.LOGIN_URL))).path
    except NoReverseMatch:
        login_url = None
    if location == login_url:
        return LOGIN_NOTE
    try:
        match = resolve(location, urlconf)
    except Resolver404:
        return None
    return LOGIN_NOTE if match.url_name == "login" else None
