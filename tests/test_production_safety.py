"""Production safety and failure isolation.

The guard ships in a project's settings, so a wrong setting or an internal bug must not turn
into a broken page, a leaked email address in the logs, or a file on disk.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core import checks
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client
from django.urls import path

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, capture
from django_nplusone_guard.checks import check_app_installed, check_settings
from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.report import MissingIndex, format_finding, redact_literals
from tests.factories import AuthorFactory, BookFactory
from tests.statements import all_statements
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db

capture_module = importlib.import_module("django_nplusone_guard.capture")
detect_module = importlib.import_module("django_nplusone_guard.detect")
middleware_module = importlib.import_module("django_nplusone_guard.middleware")
delivery_module = importlib.import_module("django_nplusone_guard.delivery")
log_exporter_module = importlib.import_module("django_nplusone_guard.exporters.log")

SECRET_EMAIL = "alice.secret@example.com"
INLINE_SECRET = "bob.inline@example.com"


# --------------------------------------------------------------------------- views


def duplicates_with_personal_data(request: HttpRequest) -> HttpResponse:
    # Two lines each, not a loop: a loop would be an N+1, reported as such.
    Author.objects.filter(email=SECRET_EMAIL).first()
    Author.objects.filter(email=SECRET_EMAIL).first()
    _inline_literal_query()
    _inline_literal_query()
    return HttpResponse("ok")


def _inline_literal_query() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT id FROM testapp_author WHERE email = '{INLINE_SECRET}'")


def nplusone(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"authors": [book.author.name for book in Book.objects.order_by("id")]})


async def async_nplusone(request: HttpRequest) -> HttpResponse:
    names = [
        (await Author.objects.aget(pk=book.author_id)).name
        async for book in Book.objects.order_by("id")
    ]
    return JsonResponse({"authors": names})


def count(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"books": Book.objects.count()})


urlpatterns = [
    path("duplicates/", duplicates_with_personal_data),
    path("nplusone/", nplusone),
    path("async/nplusone/", async_nplusone),
    path("count/", count),
]


@pytest.fixture
def guard(settings):
    """Route requests to this module's views and configure the guard."""
    settings.ROOT_URLCONF = __name__

    def configure(**options: Any) -> None:
        settings.NPLUSONE_GUARD = {"ENABLED": True, **options}

    return configure


@pytest.fixture
def fresh_error_log(monkeypatch):
    """Internal errors are logged once per process; give this test its own 'once'."""
    monkeypatch.setattr(capture_module, "_failures_logged", set())


def _guard_log(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django_nplusone_guard"]


# --------------------------------------------------------------------------- ENABLED


def test_disabled_by_default_when_debug_is_off(books, settings):
    settings.ROOT_URLCONF = __name__
    settings.DEBUG = False
    settings.NPLUSONE_GUARD = {"HEADER": True, "ACTION": "raise"}
    response = Client().get("/nplusone/")
    assert response.status_code == 200
    assert "X-NPlusOne-Guard" not in response
    assert not hasattr(response.wsgi_request, REQUEST_ATTR)


# --------------------------------------------------------------------------- system checks


def _ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [m.id for m in messages if m.id]


@pytest.mark.parametrize(
    ("debug", "options", "warns"),
    [
        (False, {"ACTION": "raise", "ENABLED": True}, True),
        (False, {"ACTION": "raise"}, False),  # ENABLED follows DEBUG: off
        (False, {"ACTION": "raise", "ENABLED": False}, False),
        (True, {"ACTION": "raise"}, False),
        (False, {"ACTION": "log", "ENABLED": True}, False),
        (False, {"ACTION": "raise", "ENABLED": True, "ALLOW_RAISE_IN_PRODUCTION": True}, False),
    ],
)
def test_e010_only_when_raise_can_reach_production(settings, debug, options, warns):
    settings.DEBUG = debug
    settings.NPLUSONE_GUARD = options
    assert ("django_nplusone_guard.E010" in _ids(check_settings())) is warns


def test_w002_when_the_middleware_runs_without_the_app(settings):
    assert check_app_installed() == []
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_nplusone_guard"]
    [message] = check_app_installed()
    assert message.id == "django_nplusone_guard.W002"
    assert message.level == checks.WARNING
    assert "INSTALLED_APPS" in (message.hint or "")
    assert "django_nplusone_guard.W002" in _ids(
        checks.run_checks(tags=[checks.Tags.compatibility])
    )
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "nplusone" not in m]
    assert check_app_installed() == []


def test_w002_is_logged_once_when_the_middleware_is_loaded(settings, caplog, monkeypatch):
    monkeypatch.setattr(middleware_module, "_app_check_done", False)
    settings.ROOT_URLCONF = __name__
    settings.INSTALLED_APPS = [a for a in settings.INSTALLED_APPS if a != "django_nplusone_guard"]
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        for _ in range(3):
            assert Client().get("/count/").status_code == 200  # each Client loads middleware
    [record] = _guard_log(caplog)
    assert "django_nplusone_guard.W002" in record.getMessage()


# --------------------------------------------------------------------------- LOG_PARAMS


def test_parameters_and_inline_literals_stay_out_of_logs_by_default(guard, caplog):
    AuthorFactory(email=SECRET_EMAIL)
    guard(ACTION="log")
    with caplog.at_level(logging.DEBUG, logger="django_nplusone_guard"):
        assert Client().get("/duplicates/").status_code == 200
    logged = "\n".join(r.getMessage() for r in _guard_log(caplog))
    assert logged.count("Duplicate query") == 2
    assert SECRET_EMAIL not in logged
    assert INLINE_SECRET not in logged
    assert "email = '?'" in logged


def test_log_params_true_shows_them(guard, caplog):
    AuthorFactory(email=SECRET_EMAIL)
    guard(ACTION="log", LOG_PARAMS=True)
    with caplog.at_level(logging.DEBUG, logger="django_nplusone_guard"):
        Client().get("/duplicates/")
    logged = "\n".join(r.getMessage() for r in _guard_log(caplog))
    assert SECRET_EMAIL in logged
    assert INLINE_SECRET in logged


def test_warn_action_follows_log_params_too(guard):
    guard(ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Client().get("/duplicates/")
    messages = [str(w.message) for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert len(messages) == 2
    assert not any(SECRET_EMAIL in m or INLINE_SECRET in m for m in messages)


def test_the_report_keeps_parameters_for_the_developer(guard):
    """Only logs hide them; the request's report (panel, tests) still has them."""
    guard(ACTION="off")
    response = Client().get("/duplicates/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert any(q.params and SECRET_EMAIL in list(q.params) for q in report.queries)
    assert json.dumps(report.to_dict())


def test_missing_index_plans_are_redacted_in_logs():
    finding = MissingIndex(
        model="testapp.Author",
        table="testapp_author",
        columns=("email",),
        fields=("email",),
        reason="sequential scan",
        plan=f"Seq Scan on testapp_author  Filter: ((email)::text = '{SECRET_EMAIL}'::text)",
        sql=f"SELECT * FROM testapp_author WHERE email = '{SECRET_EMAIL}'",
        callsite="app/views.py:1 in view",
    )
    assert SECRET_EMAIL not in format_finding(finding, params=False)
    assert SECRET_EMAIL in format_finding(finding, params=True)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("WHERE a = 'x' AND b = 'it''s'", "WHERE a = '?' AND b = '?'"),
        ("WHERE a = E'\\n' OR b = N'y'", "WHERE a = '?' OR b = '?'"),
        ("WHERE a = 'unterminated", "WHERE a = '?'"),
        ("WHERE a = %s AND b = 1", "WHERE a = %s AND b = 1"),
    ],
)
def test_redact_literals(sql, expected):
    assert redact_literals(sql) == expected


# --------------------------------------------------------------------------- nothing written


_write_events: list[tuple[str, tuple[Any, ...]]] | None = None
_hook_lock = threading.Lock()
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


_FILE_EVENTS = frozenset({"os.remove", "os.rename", "os.mkdir", "os.truncate", "shutil.copyfile"})


def _writes_to_disk(event: str, args: tuple[Any, ...]) -> bool:
    if event == "open":
        mode, flags = args[1], args[2]
        if isinstance(mode, str) and any(c in mode for c in "wax+"):
            return True
        return isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
    if event == "sqlite3.connect":
        return bool(args) and args[0] not in (":memory:", b":memory:")
    return event in _FILE_EVENTS


def _audit(event: str, args: tuple[Any, ...]) -> None:
    events = _write_events
    if events is not None and _writes_to_disk(event, args):
        events.append((event, args))


_hook_installed = False


@contextmanager
def _disk_writes() -> Iterator[list[tuple[str, tuple[Any, ...]]]]:
    """Every write-mode open, file removal/rename/mkdir and sqlite file opened meanwhile."""
    global _write_events, _hook_installed
    with _hook_lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # audit hooks cannot be removed: gate it instead
            _hook_installed = True
    events: list[tuple[str, tuple[Any, ...]]] = []
    _write_events = events
    try:
        yield events
    finally:
        _write_events = None


@pytest.mark.parametrize("action", ["log", "warn", "off"])
def test_nothing_is_written_to_disk_or_the_database_by_default(books, guard, action):
    guard(ACTION=action, HEADER=True)
    client = Client()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NPlusOneWarning)
        client.get("/nplusone/")  # warm up: lazy imports may write bytecode caches
        with _disk_writes() as writes, all_statements() as executed:
            response = client.get("/nplusone/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert response["X-NPlusOne-Guard"].startswith("nplusone=1;")
    assert writes == []
    # The guard ran nothing of its own: every statement is one the view ran.
    assert executed == [q.sql for q in report.queries]


# --------------------------------------------------------------------------- failure isolation


def _explode(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("injected failure")


def _internal_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in _guard_log(caplog) if r.levelno == logging.ERROR]


@pytest.mark.parametrize("action", ["log", "warn", "raise"])
def test_an_analysis_failure_is_logged_once_and_the_request_completes(
    books, guard, caplog, monkeypatch, fresh_error_log, action
):
    guard(ACTION=action)
    monkeypatch.setattr(detect_module, "fingerprint", _explode)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        responses = [client.get("/nplusone/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert len(responses[0].json()["authors"]) == 5
    [record] = _internal_errors(caplog)
    assert "analysis" in record.getMessage()
    assert record.exc_info is not None
    assert "injected failure" in str(record.exc_info[1])
    report = getattr(responses[-1].wsgi_request, REQUEST_ATTR)
    assert report.query_count == 6
    assert report.errors == ["analysis failed: RuntimeError('injected failure')"]


def test_raise_mode_still_raises_for_a_real_finding(books, guard, monkeypatch, fresh_error_log):
    """A failure while logging findings is isolated; raise mode does not log, it raises."""
    guard(ACTION="raise")
    monkeypatch.setattr(delivery_module, "format_finding", _explode)
    with pytest.raises(NPlusOneDetected) as raised:
        Client().get("/nplusone/")
    assert raised.value.report.nplusones[0].count == 5


@pytest.mark.parametrize(
    ("module", "name", "logged"),
    [
        (delivery_module, "deliver", "delivering findings"),
        (log_exporter_module, "format_finding", "the exporter 'log' failed"),
    ],
)
def test_a_failure_while_delivering_findings_is_logged_once(
    books, guard, caplog, monkeypatch, fresh_error_log, module, name, logged
):
    guard(ACTION="log", REPORT_INTERVAL=0)
    monkeypatch.setattr(module, name, _explode)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        statuses = [Client().get("/nplusone/").status_code for _ in range(2)]
    assert statuses == [200, 200]
    [record] = _internal_errors(caplog)
    assert logged in record.getMessage()
    assert record.exc_info is not None


def test_a_failure_while_recording_leaves_the_query_untouched(
    books, guard, caplog, monkeypatch, fresh_error_log
):
    guard(ACTION="log")
    monkeypatch.setattr(capture_module, "_walk", _explode)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/nplusone/")
    assert response.status_code == 200
    assert response.json()["authors"] == [b.author.name for b in books]
    [record] = _internal_errors(caplog)
    assert "execute wrapper" in record.getMessage()
    assert record.exc_info is not None


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_analysis_failure_in_an_async_request_is_isolated(
    guard, caplog, monkeypatch, fresh_error_log
):
    await sync_to_async(BookFactory.create_batch)(3)
    guard(ACTION="raise")
    monkeypatch.setattr(detect_module, "fingerprint", _explode)
    try:
        with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
            response = await AsyncClient().get("/async/nplusone/")
    finally:
        # The ORM ran in sync_to_async's thread: close its connection there, or the test
        # database cannot be dropped.
        await sync_to_async(connections.close_all)()
    assert response.status_code == 200
    [record] = _internal_errors(caplog)
    assert record.exc_info is not None


def _fail_after_a_query(guard: capture) -> None:
    with guard:
        list(Book.objects.all())
        raise ZeroDivisionError


def test_a_failure_inside_capture_does_not_hide_the_users_exception(
    books, monkeypatch, fresh_error_log
):
    monkeypatch.setattr(detect_module, "fingerprint", _explode)
    guard = capture()
    with pytest.raises(ZeroDivisionError):
        _fail_after_a_query(guard)
    report = guard.report
    assert report.query_count == 1
    assert report.errors


@pytest.mark.parametrize("path", ["/nplusone/", "/async/nplusone/"])
def test_a_failure_to_start_capturing_leaves_the_request_unguarded(
    books, guard, caplog, monkeypatch, fresh_error_log, path
):
    guard(ACTION="raise", HEADER=True)
    monkeypatch.setattr(middleware_module, "capture", _explode)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get(path)
    assert response.status_code == 200
    assert "X-NPlusOne-Guard" not in response
    [record] = _internal_errors(caplog)
    assert "starting the request's capture" in record.getMessage()
