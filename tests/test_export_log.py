"""The "log" exporter: the text line, plus every fact as a LogRecord field that a JSON
formatter writes as a key; custom exporters by dotted path; exporter failures."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.test import Client
from pythonjsonlogger.json import JsonFormatter

from django_nplusone_guard.checks import check_settings
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests import custom_exporters
from tests.conftest import guard_records
from tests.factories import AuthorFactory

pytestmark = pytest.mark.django_db

FIELDS = {
    "finding_id",
    "kind",
    "model",
    "field",
    "callsite",
    "count",
    "total_time_ms",
    "label",
    "seen",
    "worst_count",
    "sql_shape",
}


def test_the_log_line_carries_the_finding_as_record_fields(books, guard, caplog):
    guard()
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/books/")
    [record] = guard_records(caplog)
    [finding] = getattr(response.wsgi_request, REQUEST_ATTR).nplusones
    fields = vars(record)
    assert record.getMessage().startswith("GET /books/: N+1 query on testapp.Book.author")
    assert {name: fields[name] for name in FIELDS} == {
        "finding_id": finding.id,
        "kind": "nplusone-read",
        "model": "testapp.Book",
        "field": "author",
        "callsite": finding.callsite,
        "count": 5,
        "total_time_ms": round(finding.total_time_ms, 3),
        "label": "GET /books/",
        "seen": 1,
        "worst_count": 5,
        "sql_shape": fields["sql_shape"],
    }
    assert fields["callsite"].startswith("tests/testapp/views.py:")
    # The backend's own quoting (MySQL's backticks), values as placeholders.
    assert fields["sql_shape"].replace("`", '"').startswith('select "testapp_author"."id"')
    assert "= ?" in fields["sql_shape"]
    assert f"id: {finding.id}" in record.getMessage()


def _json_lines(run) -> list[dict]:
    """What python-json-logger writes for the guard's logger while ``run`` runs."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{"))
    logger = logging.getLogger("django_nplusone_guard")
    logger.addHandler(handler)
    try:
        run()
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_python_json_logger_writes_the_fields_as_keys(books, guard):
    guard()
    [line] = _json_lines(lambda: Client().get("/books/"))
    assert line["levelname"] == "WARNING"
    assert line["name"] == "django_nplusone_guard"
    assert line["message"].startswith("GET /books/: N+1 query on testapp.Book.author")
    assert {key: line[key] for key in ("kind", "model", "field", "count", "seen")} == {
        "kind": "nplusone-read",
        "model": "testapp.Book",
        "field": "author",
        "count": 5,
        "seen": 1,
    }
    assert len(line["finding_id"]) == 16
    assert set(line) >= FIELDS


def test_no_parameter_value_reaches_the_fields_or_the_json(guard):
    secret = "carol.private@example.com"
    AuthorFactory(email=secret)
    guard()
    lines = _json_lines(lambda: Client().get("/audit/duplicate/"))
    assert lines  # a duplicate was reported
    text = json.dumps(lines)
    assert "ada@private.example" not in text
    assert secret not in text


def test_log_params_exports_the_statement_as_it_ran(guard, caplog):
    guard(LOG_PARAMS=True)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        Client().get("/audit/duplicate/")
    [record] = guard_records(caplog)
    assert "ada@private.example" in record.getMessage()
    assert "%s" in vars(record)["sql_shape"]  # Django's SQL text: values stay in the parameters


def test_a_custom_exporter_gets_each_finding(books, guard, caplog):
    custom_exporters.received.clear()
    guard(EXPORTERS=["tests.custom_exporters.keep"])
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/books/")
    [export] = custom_exporters.received
    assert export.finding is getattr(response.wsgi_request, REQUEST_ATTR).nplusones[0]
    assert (export.label, export.seen, export.worst_count) == ("GET /books/", 1, 5)
    assert export.relation == "testapp.Book.author"
    assert guard_records(caplog) == []  # "log" is not listed: no log line


def test_a_failing_exporter_is_logged_once_and_the_others_still_run(books, guard, caplog):
    custom_exporters.received.clear()
    guard(
        REPORT_INTERVAL=0,
        EXPORTERS=["tests.custom_exporters.explode", "tests.custom_exporters.keep", "nope.x"],
    )
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        statuses = [Client().get("/books/").status_code for _ in range(3)]
    assert statuses == [200] * 3
    assert len(custom_exporters.received) == 3
    errors = [r.getMessage() for r in guard_records(caplog) if r.levelno == logging.ERROR]
    assert errors == [
        "django-nplusone-guard: the exporter 'nope.x' could not be loaded and is skipped "
        "(logged once per exporter; the request is not affected).",
        "django-nplusone-guard: the exporter 'tests.custom_exporters.explode' failed; its "
        "findings are skipped (logged once per exporter; the request is not affected).",
    ]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("tests.custom_exporters.missing", "cannot be imported"),
        ("tests.custom_exporters.not_callable", "is not callable"),
        ("statsd", "neither a built-in exporter"),
    ],
)
def test_an_exporter_that_cannot_run_is_e010(settings, name, words):
    settings.NPLUSONE_GUARD = {"EXPORTERS": ["log", name]}
    [message] = check_settings()
    assert message.id == "django_nplusone_guard.E011"
    assert words in message.msg
    assert "dotted path" in str(message.hint)


def test_the_built_in_exporters_pass_the_check_where_their_library_is_installed(settings):
    settings.NPLUSONE_GUARD = {
        "EXPORTERS": ["log", "opentelemetry", "sentry", "tests.custom_exporters.keep"]
    }
    assert check_settings() == []


def test_a_built_in_exporter_without_its_library_is_e010(settings, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sentry_sdk" else real(name)
    )
    settings.NPLUSONE_GUARD = {"EXPORTERS": ["sentry"]}
    [message] = check_settings()
    assert message.id == "django_nplusone_guard.E011"
    assert "django-nplusone-guard[sentry]" in message.msg
