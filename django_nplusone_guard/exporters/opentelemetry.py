"""``EXPORTERS: ["opentelemetry"]``: each finding as a ``db.nplusone`` span event, and a
counter of findings by kind and model (``pip install 'django-nplusone-guard[otel]'``).

Only ``opentelemetry-api`` is imported: the application's own SDK set-up (a
``TracerProvider``, a ``MeterProvider``, their exporters, or ``opentelemetry-instrument``)
decides where the data goes, and without one every call here is the API's no-op. The event
goes on the current span, the request's span when the Django instrumentation (or Sentry's
SDK, which is built on OpenTelemetry) opened one; where none is recording (a command, a
task, a request nobody traces), on a short span of its own, ``db.nplusone``, so the
finding is not lost. The SDK's span and metric processors batch and send from their own
threads: nothing here waits for a network.

Attributes follow OpenTelemetry's semantic conventions where one exists, under both the
current names and the older ones many backends still index (``code.file.path`` and
``code.filepath``, ``db.system.name`` and ``db.system``); the rest are ``nplusone.*``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace

from .base import Export

__all__ = ["EVENT_NAME", "METRIC_NAME", "attributes", "export"]

EVENT_NAME = "db.nplusone"
METRIC_NAME = "nplusone.findings"
_SCOPE = "django_nplusone_guard"

_tracer: trace.Tracer | None = None
_counter: metrics.Counter | None = None


def attributes(export: Export) -> dict[str, Any]:
    """The event's attributes: no ``None`` values (OpenTelemetry drops them with a warning)
    and no parameter values (``db.query.text`` is the statement's shape)."""
    path, line, function = export.code_location()
    system = export.db_system
    values: dict[str, Any] = {
        "db.system.name": system,
        "db.system": system,
        "db.query.text": export.sql,
        "code.file.path": path,
        "code.filepath": path,
        "code.function.name": function,
        "code.function": function,
        "nplusone.id": export.id,
        "nplusone.kind": export.kind,
        "nplusone.model": export.model,
        "nplusone.field": export.field,
        "nplusone.relation": export.relation,
        "nplusone.count": export.count,
        "nplusone.total_time_ms": export.total_time_ms,
        "nplusone.seen": export.seen,
        "nplusone.worst_count": export.worst_count,
        "nplusone.label": export.label,
        "nplusone.title": export.title,
        "nplusone.fix": export.fix,
        "nplusone.fix_at": export.fix_at,
    }
    if line is not None:
        values["code.line.number"] = values["code.lineno"] = line
    return {key: value for key, value in values.items() if value not in (None, "")}


def export(export: Export) -> None:
    global _tracer, _counter
    values = attributes(export)
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(EVENT_NAME, values)
    else:
        if _tracer is None:
            _tracer = trace.get_tracer(_SCOPE)
        with _tracer.start_as_current_span(EVENT_NAME, attributes=values) as own:
            own.add_event(EVENT_NAME, values)
    if _counter is None:
        # A proxy until the application sets its MeterProvider, then the real counter.
        _counter = metrics.get_meter(_SCOPE).create_counter(
            METRIC_NAME,
            unit="{finding}",
            description="Sightings of N+1 queries, duplicates and missing indexes found by "
            "django-nplusone-guard, by kind and model (added when a finding id is reported).",
        )
    _counter.add(
        export.seen,
        {
            "nplusone.kind": export.kind,
            "nplusone.model": export.model or "unknown",
            "db.system.name": values["db.system.name"],
        },
    )
