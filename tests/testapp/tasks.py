"""Tasks of Django's tasks framework (Django 6.0+; imported only there): each N+1 next to
its fixed twin."""

from __future__ import annotations

from django.tasks import task

from tests.testapp.models import Author, Book


@task
def author_names() -> list[str]:
    names = []
    for book in Book.objects.order_by("id"):
        names.append(book.author.name)  # task-nplusone
    return names


@task
def author_names_fixed() -> list[str]:
    return [book.author.name for book in Book.objects.select_related("author").order_by("id")]


@task
def failing_author_names() -> None:
    author_names.call()
    raise ValueError("the task's own error")


@task
def nightly() -> list[str]:
    """A task that runs another one on the immediate backend: one report, the outer's."""
    return author_names.enqueue().return_value


@task
async def async_author_names() -> list[str]:
    names = []
    async for book in Book.objects.order_by("id"):
        author = await Author.objects.aget(pk=book.author_id)  # async-task-nplusone
        names.append(author.name)
    return names
