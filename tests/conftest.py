from __future__ import annotations

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
