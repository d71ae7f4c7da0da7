"""Celery tasks: each N+1 next to its fixed twin, run eagerly by the tests and by a real
worker."""

from __future__ import annotations

from typing import Any

from tests.celery_app import app
from tests.testapp.models import Book


@app.task
def author_names() -> list[str]:
    names = []
    for book in Book.objects.order_by("id"):
        names.append(book.author.name)  # celery-nplusone
    return names


@app.task
def author_names_fixed() -> list[str]:
    return [book.author.name for book in Book.objects.select_related("author").order_by("id")]


@app.task
def failing_author_names() -> None:
    author_names()  # called directly: this task's own statements
    raise ValueError("the task's own error")


@app.task
def nightly() -> list[str]:
    """A task that runs another one eagerly: one report, the outer's."""
    result: list[str] = author_names.apply().result
    return result


@app.task(bind=True, max_retries=1)
def retried_author_names(self: Any) -> list[str]:
    """Retried once: two runs under one task id."""
    names: list[str] = author_names()
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return names
