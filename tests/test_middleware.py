"""NPlusOneGuardMiddleware: every action, the header, URL ignores, sync and async views."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest
from django.test import AsyncClient, Client

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.conftest import guard_records

pytestmark = pytest.mark.django_db


def test_log_action_writes_one_warning_per_finding(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/books/")
    assert response.status_code == 200
    [record] = guard_records(caplog)
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("GET /books/: N+1 query on testapp.Book.author: 5 queries")
    assert "tests/testapp/views.py:" in message


def test_fixed_view_logs_nothing(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        Client().get("/books/fixed/")
    assert guard_records(caplog) == []


def test_warn_action_warns_at_the_offending_line(books, guard):
    guard(ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Client().get("/books/")
    [warning] = [w for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert warning.filename == "tests/testapp/views.py"
    source = Path("tests/testapp/views.py").read_text().splitlines()
    assert "book.author.name" in source[warning.lineno - 1]


def test_raise_action_raises_after_the_view(books, guard):
    guard(ACTION="raise")
    client = Client(raise_request_exception=True)
    with pytest.raises(NPlusOneDetected) as excinfo:
        client.get("/books/")
    assert "1 N+1 finding in GET /books/" in str(excinfo.value)
    assert excinfo.value.report.nplusones[0].count == 5
    assert client.get("/books/fixed/").status_code == 200


def test_off_action_and_disabled_guard_do_nothing(books, guard, caplog):
    for options in ({"ACTION": "off"}, {"ENABLED": False, "ACTION": "raise"}):
        guard(**options)
        with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
            response = Client().get("/books/")
        assert response.status_code == 200
        assert guard_records(caplog) == []


def test_enabled_defaults_to_debug(books, settings):
    settings.NPLUSONE_GUARD = {"ACTION": "raise"}
    settings.DEBUG = False
    assert Client().get("/books/").status_code == 200
    settings.DEBUG = True
    with pytest.raises(NPlusOneDetected):
        Client().get("/books/")


def test_header_summarises_the_request(books, guard):
    guard(ACTION="off", HEADER=True)
    response = Client().get("/books/")
    assert response["X-NPlusOne-Guard"] == "nplusone=1; duplicates=0; missing_indexes=0; queries=6"
    assert "X-NPlusOne-Guard" in Client().get("/clean/")


def test_no_header_unless_asked(books, guard):
    guard(ACTION="off")
    assert "X-NPlusOne-Guard" not in Client().get("/books/")


def test_ignore_urls_skips_matching_paths(books, guard):
    guard(ACTION="raise", IGNORE_URLS=[r"^/ignored/"], HEADER=True)
    response = Client().get("/ignored/books/")
    assert response.status_code == 200
    assert "X-NPlusOne-Guard" not in response


def test_report_is_attached_to_the_request(books, guard):
    guard(ACTION="off")
    response = Client().get("/books/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert report.query_count == 6
    assert [f.count for f in report.nplusones] == [5]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_view_nplusone_is_found(guard):
    from asgiref.sync import sync_to_async

    from tests.factories import BookFactory

    await sync_to_async(BookFactory.create_batch)(4)
    guard(ACTION="off", HEADER=True)
    response = await AsyncClient().get("/async/books/")
    assert response.status_code == 200
    assert response["X-NPlusOne-Guard"].startswith("nplusone=1; duplicates=0;")
    report = getattr(response.asgi_request, REQUEST_ATTR)
    [finding] = report.nplusones
    assert finding.count == 4
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.callsite.endswith("in async_book_list")
    fixed = await AsyncClient().get("/async/books/fixed/")
    assert fixed["X-NPlusOne-Guard"].startswith("nplusone=0; duplicates=0;")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_raise_mode(guard):
    from asgiref.sync import sync_to_async

    from tests.factories import BookFactory

    await sync_to_async(BookFactory.create_batch)(3)
    guard(ACTION="raise")
    with pytest.raises(NPlusOneDetected):
        await AsyncClient(raise_request_exception=True).get("/async/books/")


def test_a_failing_view_still_propagates_its_own_error(guard, settings):
    guard(ACTION="raise")
    with pytest.raises(ZeroDivisionError):
        Client().get("/boom/")


@pytest.mark.django_db(transaction=True)
def test_async_view_under_wsgi_names_the_awaiting_line(guard):
    """runserver and the WSGI test client run async views through async_to_sync: the
    request's capture is opened in sync code, the user's await is in another thread's loop."""
    from tests.factories import BookFactory

    BookFactory.create_batch(3)
    guard(ACTION="off")
    response = Client().get("/async/books/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    [finding] = report.nplusones
    assert finding.count == 3
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.callsite.endswith("in async_book_list")
