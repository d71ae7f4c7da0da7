"""A nightly-report style command with an N+1: the author of each book, one by one."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from tests.testapp.models import Book


class Command(BaseCommand):
    help = "Print each book with its author."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--fixed", action="store_true", help="select_related the author")
        parser.add_argument("--fail", action="store_true", help="raise after the report")

    def handle(self, *args: Any, **options: Any) -> None:
        books = Book.objects.order_by("id")
        if options["fixed"]:
            books = books.select_related("author")
        for book in books:
            self.stdout.write(f"{book.title}: {book.author.name}")  # command-nplusone
        if options["fail"]:
            raise RuntimeError("the report failed on its own")
