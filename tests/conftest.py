from __future__ import annotations

import pytest

from tests.factories import AuthorFactory, BookFactory


@pytest.fixture
def books(db):
    """Five books by five different authors: the smallest honest N+1."""
    return [BookFactory(author=AuthorFactory()) for _ in range(5)]
