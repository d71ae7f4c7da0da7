"""Code with ``# nplusone: allow`` comments, for tests/test_suppressions.py. Not a test
module: its queries are code under test, as an application's would be."""

from __future__ import annotations

from tests.testapp.models import Book


def allowed_with_reason() -> list[str]:
    books = Book.objects.order_by("id")
    return [b.author.name for b in books]  # nplusone: allow[read] at most 5 rows, by design


def allowed_on_the_queryset_line() -> list[str]:
    names = []
    for book in Book.objects.order_by("id"):  # nplusone: allow[read, write] -- fixture data
        names.append(book.author.name)
    return names


def allowed_without_reason() -> list[str]:
    return [b.author.name for b in Book.objects.order_by("id")]  # nplusone: allow


def allowed_for_another_kind() -> list[str]:
    return [b.author.name for b in Book.objects.order_by("id")]  # nplusone: allow[duplicate] no


def unknown_kind() -> list[str]:
    return [b.author.name for b in Book.objects.order_by("id")]  # nplusone: allow[reed] typo


def counted_twice() -> int:
    first = Book.objects.count()  # nplusone: allow[duplicate] the page shows both numbers
    return first + Book.objects.count()  # nplusone: allow[duplicate] the page shows both numbers


def no_longer_a_loop() -> list[str]:
    books = Book.objects.select_related("author").order_by("id")
    return [b.author.name for b in books]  # nplusone: allow[read] this loop used to be an N+1
