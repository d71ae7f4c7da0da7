"""A stand-in for a project's data-access helper, used to test ``STACK_IGNORE``."""

from __future__ import annotations

from tests.testapp.models import Author


def author_name(pk: int) -> str:
    author = Author.objects.filter(pk=pk).first()
    return author.name if author else ""
