"""``manage.py seed [--size N]``: replace the library's rows with a fresh, repeatable data set."""

from __future__ import annotations

import random
from typing import Any

import factory.random
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from library.factories import (
    AuthorFactory,
    BookFactory,
    CommentFactory,
    LoanFactory,
    ProfileFactory,
    PublisherFactory,
    ReviewFactory,
    TagFactory,
)
from library.models import Author, Book, Comment, Loan, Profile, Publisher, Review, Tag

TAG_NAMES = [
    "classic", "crime", "essay", "fantasy", "history", "poetry",
    "romance", "science", "sci-fi", "thriller", "travel", "young-adult",
]  # fmt: skip


class Command(BaseCommand):
    help = "Delete the library's rows and create a repeatable data set of --size books."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--size", type=int, default=60, help="Number of books (default 60); authors, "
            "reviews, comments and loans scale with it."
        )  # fmt: skip
        parser.add_argument("--seed", type=int, default=42, help="Random seed (default 42).")

    def handle(self, *args: Any, size: int, seed: int, **options: Any) -> None:
        if size < 1:
            raise CommandError("--size must be at least 1.", returncode=2)
        factory.random.reseed_random(seed)
        rng = random.Random(seed)
        with transaction.atomic():
            for model in (Comment, Loan, Review, Book, Profile, Author, Publisher, Tag):
                model.objects.all().delete()
            tags = [TagFactory(name=name) for name in TAG_NAMES]
            publishers = PublisherFactory.create_batch(max(3, size // 10))
            authors = AuthorFactory.create_batch(max(4, size // 3))
            for author in authors:
                ProfileFactory(author=author)
            books = [
                BookFactory(
                    author=rng.choice(authors),
                    publisher=rng.choice(publishers),
                    tags=rng.sample(tags, rng.randint(0, 3)),
                )
                for _ in range(size)
            ]
            reviews = [
                ReviewFactory(book=book) for book in books for _ in range(rng.randint(0, 4))
            ]
            commented = [*books, *authors, *reviews]
            for target in rng.sample(commented, min(len(commented), size)):
                CommentFactory(content_object=target)
            for book in rng.sample(books, max(1, size // 2)):
                LoanFactory(book=book)
        self.stdout.write(
            f"Seeded {Book.objects.count()} books, {Author.objects.count()} authors, "
            f"{Publisher.objects.count()} publishers, {Review.objects.count()} reviews, "
            f"{Comment.objects.count()} comments, {Loan.objects.count()} loans."
        )
