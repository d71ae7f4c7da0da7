from __future__ import annotations

import logging

import pytest
from asgiref.sync import SyncToAsync
from django.db import connections

from tests.factories import AuthorFactory, BookFactory


@pytest.fixture
def books(db):
    """Five books by five different authors: the smallest honest N+1."""
    return [BookFactory(author=AuthorFactory()) for _ in range(5)]


@pytest.fixture(autouse=True)
def _close_worker_thread_connections():
    """Async tests run ORM calls in asgiref's worker thread, whose connections outlive the
    test and would keep PostgreSQL from dropping the test database; close them."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture
def guard(settings):
    """Turn the guard on explicitly (the test settings' DEBUG says nothing), with options."""

    def configure(**options):
        settings.NPLUSONE_GUARD = {"ENABLED": True, **options}

    return configure


@pytest.fixture(autouse=True)
def _forget_reported_ids():
    """``REPORT_INTERVAL`` is 300 s with DEBUG off, as under pytest: one test's findings
    must not silence the same ids in the next test."""
    from django_nplusone_guard.ratelimit import limiter

    limiter.clear()


def guard_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The log records the guard wrote."""
    return [r for r in caplog.records if r.name == "django_nplusone_guard"]
