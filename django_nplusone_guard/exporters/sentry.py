"""``EXPORTERS: ["sentry"]``: each finding as a Sentry event grouped by its id, or as a
breadcrumb (``SENTRY_MODE``); ``pip install 'django-nplusone-guard[sentry]'``.

An event carries ``fingerprint=["django-nplusone-guard", <id>]``, so Sentry makes one issue
per root cause, whatever the request, the count or the line number, and the rate limit
(``REPORT_INTERVAL``) sends it at most once per id and interval from each process. Its tags
(``nplusone.kind``, ``nplusone.model``, ``nplusone.relation``, ``nplusone.label``) are what
Sentry's search and issue lists filter on; the call site, the fix and the statement's shape
are the ``nplusone`` context on the issue's page, and the user's frames that fired the
queries its stack trace. Level ``warning``: an N+1 is not a crash.

``capture_event`` and ``add_breadcrumb`` only queue: the SDK's transport sends from its own
background thread. Without ``sentry_sdk.init()`` (or without a DSN) both do nothing.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk

from .. import conf
from ..identity import split_callsite
from .base import Export

__all__ = ["FINGERPRINT_PREFIX", "context", "export"]

FINGERPRINT_PREFIX = "django-nplusone-guard"
_LOGGER = "django_nplusone_guard"
#: Sentry truncates tag values at 200 characters; a long path is cut here, visibly.
_TAG_CHARS = 200


def context(export: Export) -> dict[str, Any]:
    """The ``nplusone`` context: what an issue's page shows. No parameter values."""
    values: dict[str, Any] = {
        "id": export.id,
        "kind": export.kind,
        "title": export.title,
        "relation": export.relation,
        "callsite": export.callsite,
        "count": export.count,
        "total_time_ms": export.total_time_ms,
        "seen": export.seen,
        "worst_count": export.worst_count,
        "fix": export.fix,
        "fix_at": export.fix_at,
        "sql_shape": export.sql,
        "db_system": export.db_system,
        "label": export.label,
    }
    return {key: value for key, value in values.items() if value not in (None, "")}


def _tags(export: Export) -> dict[str, str]:
    values = {
        "nplusone.kind": export.kind,
        "nplusone.model": export.model,
        "nplusone.relation": export.relation,
        "nplusone.label": export.label,
    }
    return {key: _tag(value) for key, value in values.items() if value}


def _stacktrace(export: Export) -> dict[str, Any]:
    """Where the queries were fired, as Sentry frames (oldest first): the user's lines the
    guard recorded, without source or local variables. Given, so the SDK does not attach
    the stack of the moment of delivery (the middleware's, with its locals)."""
    finding = export.finding
    stack = list(getattr(finding, "stack", None) or ()) or [export.callsite]
    frames = []
    for rendered in reversed(stack):
        path, line, function = split_callsite(rendered)
        frame: dict[str, Any] = {"filename": path, "function": function or "?", "in_app": True}
        if line is not None:
            frame["lineno"] = line
        frames.append(frame)
    return {"frames": frames}


def _tag(value: str) -> str:
    return value if len(value) <= _TAG_CHARS else value[: _TAG_CHARS - 3] + "..."


def export(export: Export) -> None:
    if conf.get_config().SENTRY_MODE == "breadcrumb":
        sentry_sdk.add_breadcrumb(
            category=_LOGGER, message=export.title, level="warning", data=context(export)
        )
        return
    sentry_sdk.capture_event(
        {
            "message": export.title,
            "level": "warning",
            "logger": _LOGGER,
            "fingerprint": [FINGERPRINT_PREFIX, export.id],
            "tags": _tags(export),
            "contexts": {"nplusone": context(export)},
            "stacktrace": _stacktrace(export),
        }
    )
