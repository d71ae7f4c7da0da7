"""Stands for a third-party package of serializer fields (the precision tests list it in
``STACK_IGNORE``, so its frames count as library code, as django-taggit's would)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from tests.testapp.models import Review


class ReviewRatingsField(serializers.Field):
    """Reads a book's ratings with a query of its own per book, not through a relation
    Django knows (as a tagging library's manager does)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("source", "*")
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, book: Any) -> list[int]:
        return list(Review.objects.filter(book_id=book.pk).values_list("rating", flat=True))
