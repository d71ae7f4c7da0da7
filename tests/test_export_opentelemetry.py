"""The "opentelemetry" exporter with the real SDK in process: spans and metrics land in
in-memory exporters and readers; nothing leaves the machine."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from django_nplusone_guard.exporters.opentelemetry import EVENT_NAME, METRIC_NAME
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.factories import AuthorFactory

pytestmark = pytest.mark.django_db

# OpenTelemetry's global providers can be set once per process: set them once, here.
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
_providers_set = False


@pytest.fixture
def otel(guard) -> Iterator[trace.Tracer]:
    """Global tracer and meter providers of the SDK, in memory; the tracer an instrumented
    app would open its request spans with."""
    global _providers_set
    if not _providers_set:
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[METRICS]))
        _providers_set = True
    SPANS.clear()
    guard(EXPORTERS=["opentelemetry"], REPORT_INTERVAL=60)
    yield trace.get_tracer("tests")
    SPANS.clear()


def _findings_counted() -> dict[tuple[str, str], int]:
    """The counter's cumulative value by (kind, model)."""
    counted: dict[tuple[str, str], int] = {}
    data = METRICS.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == METRIC_NAME:
                    for point in metric.data.data_points:
                        attrs = point.attributes or {}
                        key = (str(attrs["nplusone.kind"]), str(attrs["nplusone.model"]))
                        counted[key] = int(point.value)
    return counted


def _db_system() -> str:
    """The suite's database as OpenTelemetry names it."""
    return "mariadb" if getattr(connection, "mysql_is_mariadb", False) else connection.vendor


def _span(name: str) -> ReadableSpan:
    [span] = [s for s in SPANS.get_finished_spans() if s.name == name]
    return span


def test_a_finding_is_an_event_on_the_request_span(books, otel):
    with otel.start_as_current_span("GET /books/"):
        response = Client().get("/books/")
    [finding] = getattr(response.wsgi_request, REQUEST_ATTR).nplusones
    [event] = _span("GET /books/").events
    assert event.name == EVENT_NAME
    attrs = dict(event.attributes or {})
    path, _, rest = finding.callsite.partition(":")
    line, _, function = rest.partition(" in ")
    assert attrs == {
        "db.system.name": _db_system(),
        "db.system": _db_system(),
        "db.query.text": attrs["db.query.text"],
        "code.file.path": path,
        "code.filepath": path,
        "code.line.number": int(line),
        "code.lineno": int(line),
        "code.function.name": function,
        "code.function": function,
        "nplusone.id": finding.id,
        "nplusone.kind": "nplusone-read",
        "nplusone.model": "testapp.Book",
        "nplusone.field": "author",
        "nplusone.relation": "testapp.Book.author",
        "nplusone.count": 5,
        "nplusone.total_time_ms": round(finding.total_time_ms, 3),
        "nplusone.seen": 1,
        "nplusone.worst_count": 5,
        "nplusone.label": "GET /books/",
        "nplusone.title": finding.title,
        "nplusone.fix": finding.suggestion,
        "nplusone.fix_at": finding.fix_at or finding.parent_callsite,
    }
    # The backend's own quoting (MySQL's backticks), values as placeholders.
    assert str(attrs["db.query.text"]).replace("`", '"').startswith('select "testapp_author"."id"')
    assert ".select_related(" in str(attrs["nplusone.fix"])


def test_findings_are_counted_by_kind_and_model_including_held_sightings(books, otel, guard):
    before = _findings_counted().get(("nplusone-read", "testapp.Book"), 0)
    client = Client()
    for _ in range(3):  # one report, two sightings held by REPORT_INTERVAL
        client.get("/books/")
    assert _findings_counted()[("nplusone-read", "testapp.Book")] == before + 1
    guard(EXPORTERS=["opentelemetry"], REPORT_INTERVAL=0)  # reports everything from now on
    client.get("/books/")
    assert _findings_counted()[("nplusone-read", "testapp.Book")] == before + 2


def test_a_rate_limited_request_adds_no_event(books, otel):
    for name in ("first", "second"):
        with otel.start_as_current_span(name):
            Client().get("/books/")
    assert len(_span("first").events) == 1
    assert _span("second").events == ()


def test_without_a_current_span_the_finding_gets_a_span_of_its_own(books, otel, guard):
    guard(EXPORTERS=["opentelemetry"], COMMANDS=["book_report"], REPORT_INTERVAL=0)
    call_command("book_report")
    span = _span(EVENT_NAME)
    assert span.attributes is not None
    assert span.attributes["nplusone.label"] == "book_report"
    assert [event.name for event in span.events] == [EVENT_NAME]


def test_no_parameter_value_reaches_a_span(otel):
    secret = "dave.private@example.com"
    AuthorFactory(email=secret)
    with otel.start_as_current_span("dup"):
        Client().get("/audit/duplicate/")
    [event] = _span("dup").events
    text = repr(dict(event.attributes or {}))
    assert "ada@private.example" not in text
    assert secret not in text
    assert "nplusone.kind': 'duplicate" in text


def test_without_an_sdk_the_exporter_is_a_silent_no_op():
    """A fresh process that has only the API: no provider, no error, nothing logged."""
    script = """
import logging, django
from django.conf import settings
settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                           "NAME": ":memory:"}})
django.setup()
logging.basicConfig(level=logging.DEBUG)
from django_nplusone_guard.exporters.base import Export
from django_nplusone_guard.exporters.opentelemetry import export
from django_nplusone_guard.report import NPlusOne
finding = NPlusOne(kind="read", model="app.Book", field="author", count=3, fingerprint="f",
                   sql="SELECT 1 FROM t WHERE id = %s", callsite="app/views.py:3 in index")
export(Export(finding, finding.id, "GET /", 1, 3))
from opentelemetry import trace
print(type(trace.get_tracer_provider()).__name__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "ProxyTracerProvider"
    assert "Traceback" not in done.stderr
    assert "ERROR" not in done.stderr
