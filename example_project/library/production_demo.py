"""``manage.py demo``'s last step: one page as production mode exports it, a JSON log line
(python-json-logger) and an OpenTelemetry span event (the SDK, in memory)."""

from __future__ import annotations

import io
import json
import logging
from typing import Any, TextIO

from django.test import Client, override_settings

PAGE = "/books/"


def show(stdout: TextIO) -> None:
    """Request ``PAGE`` once, guarded with EXPORTERS ["log", "opentelemetry"], and write
    what each exporter produced."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from pythonjsonlogger.json import JsonFormatter

    spans = InMemorySpanExporter()
    provider = TracerProvider()  # this function's own: the process's global one is untouched
    provider.add_span_processor(SimpleSpanProcessor(spans))
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{"))
    logger = logging.getLogger("django_nplusone_guard")
    production = {
        "ENABLED": True,
        "ACTION": "log",
        "SAMPLE_RATE": 1.0,  # 0.01 in production; every request here, to show one
        "REPORT_INTERVAL": 300,
        "EXPORTERS": ["log", "opentelemetry"],
    }
    # Shown once, as JSON in the demo's output: the console handler stays out of it.
    handlers, propagate = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        with (
            override_settings(NPLUSONE_GUARD=production),
            provider.get_tracer("demo").start_as_current_span(f"GET {PAGE}"),
        ):
            Client().get(PAGE)
    finally:
        logger.handlers, logger.propagate = handlers, propagate
    first_line = lines.getvalue().splitlines()[0]
    stdout.write("  A JSON log line (python-json-logger):\n\n")
    stdout.write(_indent(json.dumps(json.loads(first_line), indent=2)))
    event = spans.get_finished_spans()[0].events[0]
    shown: dict[str, Any] = {"name": event.name, "attributes": dict(event.attributes or {})}
    stdout.write(f"\n  An OpenTelemetry span event on the span 'GET {PAGE}':\n\n")
    stdout.write(_indent(json.dumps(shown, indent=2)))


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.splitlines())
