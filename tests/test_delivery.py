"""Delivering findings: one finding, one report, whoever else is looking."""

from __future__ import annotations

import logging
import unittest
import warnings

import pytest
from django.test import Client, TestCase

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, assert_no_nplusone, capture
from django_nplusone_guard.delivery import act, reporter, reporting
from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.testing import NPlusOneGuardMixin
from tests.conftest import guard_records
from tests.factories import AuthorFactory, BookFactory
from tests.testapp.models import Book

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("action", ["log", "warn", "raise"])
def test_a_request_inside_assert_no_nplusone_is_reported_once(books, settings, caplog, action):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": action}
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        with pytest.raises(NPlusOneDetected) as excinfo, assert_no_nplusone():
            response = Client(raise_request_exception=True).get("/books/")
    assert len(excinfo.value.findings) == 1
    assert "the block at tests/test_delivery.py" in str(excinfo.value)
    assert guard_records(caplog) == []
    assert [w for w in caught if issubclass(w.category, NPlusOneWarning)] == []
    # The middleware still built its report: the header and the panel keep working.
    assert len(getattr(response.wsgi_request, REQUEST_ATTR).nplusones) == 1


def test_a_request_inside_a_plain_capture_is_still_delivered(books, settings, caplog):
    # capture() only records; nobody reports its findings, so the middleware does.
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}
    with caplog.at_level(logging.WARNING), capture() as report:
        Client().get("/books/")
    assert len(report.nplusones) == 1
    assert len(guard_records(caplog)) == 1


def test_the_decorator_form_reports_once(books, settings, caplog):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}

    @assert_no_nplusone()
    def page() -> None:
        Client().get("/books/")

    with caplog.at_level(logging.WARNING), pytest.raises(NPlusOneDetected):
        page()
    assert guard_records(caplog) == []


class _GuardedPage(NPlusOneGuardMixin, TestCase):
    __test__ = False  # run by the test below through unittest, where it fails

    def test_page(self) -> None:
        for _ in range(3):
            BookFactory(author=AuthorFactory())
        self.client.get("/books/")


@pytest.mark.django_db(transaction=True)
def test_the_mixin_reports_once(settings, caplog):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}
    result = unittest.TestResult()
    with caplog.at_level(logging.WARNING):
        unittest.TestSuite([_GuardedPage("test_page")]).run(result)
    [(_test, failure)] = result.failures
    assert "NPlusOneDetected" in failure
    assert guard_records(caplog) == []


def test_reporting_nests_and_the_outermost_wins():
    assert reporter() is None
    with reporting("outer"):
        with reporting("inner"):
            assert reporter() == "outer"
        assert reporter() == "outer"
    assert reporter() is None


def test_act_delivers_nothing_while_something_reports(books, caplog):
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author
    with caplog.at_level(logging.WARNING), reporting("a test"):
        act(report, "log", label="job")
        act(report, "raise", label="job")
    assert guard_records(caplog) == []
    with caplog.at_level(logging.WARNING):
        act(report, "log", label="job")
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("job: N+1 query on testapp.Book.author")
