"""Threads started inside a scope: their statements count for it when they run in a copy of
its context (``contextvars.copy_context().run``), and not otherwise.

The threads open their own database connections, so the books must be committed for them
to see: ``transaction=True``. SQLite's in-memory test database is shared between the
process's connections (``cache=shared``), so this runs on every backend.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from django.test import Client

from django_nplusone_guard import NPlusOneDetected, capture, guarded
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.conftest import guard_records
from tests.testapp.models import Book

pytestmark = pytest.mark.django_db(transaction=True)


def test_threads_given_the_requests_context_count_for_the_request(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/threads/books/")
    assert len(response.json()["authors"]) == 5
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert report.query_count == 6  # the books, then one author per book from the threads
    [finding] = report.nplusones
    assert finding.count == 5
    assert finding.model == "testapp.Book"
    assert finding.field == "author"
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.callsite.endswith("in _author_names")
    assert finding.fix_at.endswith("in threaded_authors")  # where the books were loaded
    [record] = guard_records(caplog)
    assert record.getMessage().startswith(
        "GET /threads/books/: N+1 query on testapp.Book.author: 5 queries"
    )


def test_threads_without_the_context_are_not_counted(books, guard, caplog):
    guard(ACTION="raise")
    response = Client().get("/threads/books/without-context/")
    assert len(response.json()["authors"]) == 5
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert report.query_count == 1  # the books only: the threads ran outside any scope
    assert report.nplusones == []


def _names_in_a_thread(books: list[Book]) -> list[str]:
    names = []
    try:
        for book in books:
            names.append(book.author.name)
    finally:
        connections.close_all()
    return names


def test_a_plain_thread_in_a_capture(books):
    started_in = threading.get_ident()
    ran_in: list[int] = []

    def work() -> None:
        ran_in.append(threading.get_ident())
        _names_in_a_thread(list(Book.objects.order_by("id")))

    with capture() as report:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        thread.start()
        thread.join()
    assert ran_in and ran_in[0] != started_in
    assert report.query_count == 6
    [finding] = report.nplusones
    assert finding.count == 5
    assert finding.callsite.endswith("in _names_in_a_thread")


def test_a_guarded_job_that_fans_out_raises_per_action(books, guard):
    guard(ACTION="raise")

    @guarded(label="fan-out")
    def fan_out() -> None:
        all_books = list(Book.objects.order_by("id"))
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(contextvars.copy_context().run, _names_in_a_thread, share)
                for share in (all_books[0::2], all_books[1::2])
            ]
            for future in futures:
                future.result()

    with pytest.raises(NPlusOneDetected, match="in fan-out") as excinfo:
        fan_out()
    assert excinfo.value.report.nplusones[0].count == 5
