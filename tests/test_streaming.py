"""Streamed responses: what runs while the body is consumed belongs to the request."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import AsyncClient, Client

from django_nplusone_guard import NPlusOneDetected, capture
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.conftest import guard_records

pytestmark = pytest.mark.django_db


def _body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_a_generator_that_runs_an_nplusone_is_reported_when_the_body_is_done(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/audit/export.csv")
        report = getattr(response.wsgi_request, REQUEST_ATTR)
        assert report.query_count == 0  # nothing has streamed yet
        assert guard_records(caplog) == []
        assert _body(response).count(b"\n") == 5
    assert report.query_count == 6
    [finding] = report.nplusones
    assert finding.count == 5
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.callsite.endswith("in streamed_export.<locals>.rows")
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("GET /audit/export.csv: N+1 query on testapp.Book")


def test_the_fixed_export_logs_nothing(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/stream/fixed.csv")
        assert _body(response).count(b"\n") == 5
    assert guard_records(caplog) == []
    assert getattr(response.wsgi_request, REQUEST_ATTR).query_count == 1


def test_raise_mode_raises_when_the_response_is_closed(books, guard):
    guard(ACTION="raise")
    response = Client().get("/audit/export.csv")
    with pytest.raises(NPlusOneDetected, match=r"in GET /audit/export.csv"):
        _body(response)


def test_a_file_response(books, guard):
    guard(ACTION="raise")
    response = Client().get("/stream/file.csv")
    with pytest.raises(NPlusOneDetected) as excinfo:
        _body(response)
    [finding] = excinfo.value.report.nplusones
    assert finding.count == 5
    assert finding.callsite.startswith("tests/testapp/views.py:")


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_async_iterator_under_asgi(books, guard):
    guard(ACTION="off")
    response: Any = await AsyncClient().get("/stream/async.csv")
    report = getattr(response.asgi_request, REQUEST_ATTR)
    body = b"".join([chunk async for chunk in response.streaming_content])
    assert body.count(b"\n") == 5
    assert report.query_count == 6
    [finding] = report.nplusones
    assert finding.count == 5
    # The call site is the consumer's line, not the generator's: the walk follows an
    # awaiting chain into coroutines, not through one async generator into another.


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume synchronous")
async def test_a_sync_generator_under_asgi(books, guard):
    guard(ACTION="off")
    response: Any = await AsyncClient().get("/audit/export.csv")
    report = getattr(response.asgi_request, REQUEST_ATTR)
    body = b"".join([chunk async for chunk in response])  # how the ASGI handler reads it
    assert body.count(b"\n") == 5
    assert report.nplusones[0].count == 5


@pytest.mark.filterwarnings("ignore:StreamingHttpResponse must consume asynchronous")
def test_an_async_iterator_under_wsgi(books, guard):
    guard(ACTION="off")
    response = Client().get("/stream/async.csv")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert b"".join(response).count(b"\n") == 5  # Django consumes it in async_to_sync
    response.close()
    assert report.query_count == 6


def test_the_stream_never_leaks_into_other_code(books, guard):
    # Consumed after the request, by code with its own scope: the body's statements belong
    # to the request, never to whoever happens to read it.
    guard(ACTION="off")
    response = Client().get("/audit/export.csv")
    with capture() as outer:
        _body(response)
    assert outer.query_count == 0
    assert getattr(response.wsgi_request, REQUEST_ATTR).query_count == 6


def test_closing_early_still_reports_what_ran(books, guard, caplog):
    guard(ACTION="log")
    response: Any = Client().get("/audit/export.csv")
    chunks = iter(response.streaming_content)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        next(chunks)
        next(chunks)
        next(chunks)
        response.close()  # the client went away: the server closes the response
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert report.query_count == 4
    assert report.nplusones[0].count == 3
    assert len(guard_records(caplog)) == 1


def test_no_header_on_a_streamed_response(books, guard):
    guard(ACTION="off", HEADER=True)
    assert "X-NPlusOne-Guard" not in Client().get("/audit/export.csv")
