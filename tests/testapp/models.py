"""Models shared by the test suite: a small library with every relation kind."""

from __future__ import annotations

from typing import Any

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Publisher(models.Model):
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2, default="GB")

    def __str__(self) -> str:
        return self.name


class Author(models.Model):
    name = models.CharField(max_length=100)
    email = models.CharField(max_length=200, default="")
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    author = models.OneToOneField(Author, on_delete=models.CASCADE, related_name="profile")
    bio = models.TextField(default="")


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Comment(models.Model):
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=200)


class Book(models.Model):
    title = models.CharField(max_length=200)
    isbn = models.CharField(max_length=20, default="")
    pages = models.IntegerField(default=100)
    price = models.DecimalField(max_digits=8, decimal_places=2, default=10)
    published = models.DateField(null=True)
    in_print = models.BooleanField(default=True)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    publisher = models.ForeignKey(Publisher, on_delete=models.SET_NULL, null=True, blank=True)
    tags = models.ManyToManyField(Tag, blank=True)
    comments = GenericRelation(Comment)

    def __str__(self) -> str:
        return self.title

    @property
    def author_name(self) -> str:
        """A relation read hidden behind a property, as models often do."""
        return self.author.name  # book-author-name


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    rating = models.IntegerField(default=3)
    body = models.TextField(default="")


class ReviewChoice(Review):
    """A review as a ``<select>`` shows it: its label reads the book, once per option."""

    class Meta:
        proxy = True

    def __str__(self) -> str:
        return f"{self.book.title}: {self.rating}/5"  # review-choice-label


class TrimmedBook(Book):
    """A book whose ``save()`` tidies its title: an override a library may call per item."""

    class Meta:
        proxy = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.title = self.title.strip()
        super().save(*args, **kwargs)  # trimmed-save


class Counter(models.Model):
    """For transaction tests: ``UPDATE ... SET n = n + 1`` must run exactly once."""

    name = models.CharField(max_length=50, unique=True)
    n = models.IntegerField(default=0)


class Listing(models.Model):
    """For missing-index tests: one column per kind of index Django can declare, and
    columns with none (``city``, ``zip_code``, ``price``, ``listed``)."""

    sku = models.CharField(max_length=32, unique=True)
    slug = models.CharField(max_length=50, db_index=True)
    city = models.CharField(max_length=50, default="")
    zip_code = models.CharField(max_length=10, default="")
    price = models.IntegerField(default=0)
    listed = models.DateTimeField(null=True)
    active = models.BooleanField(default=True)
    status = models.CharField(
        max_length=1,
        choices=[("d", "draft"), ("p", "published"), ("a", "archived")],
        default="d",
    )
    owner = models.ForeignKey(Author, on_delete=models.CASCADE, related_name="listings")


class QuirkyNote(models.Model):
    """A model whose instances are all "equal" and unhashable, like some in the wild:
    the ORM hooks must never compare or hash instances."""

    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    text = models.CharField(max_length=50, default="")

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = None  # type: ignore[assignment]


class Shelf(models.Model):
    """For missing-index tests: a join column with no index (and no constraint, which on
    MySQL would bring an index of its own)."""

    label = models.CharField(max_length=50, default="")
    owner = models.ForeignKey(
        Author, on_delete=models.DO_NOTHING, db_index=False, db_constraint=False
    )


class Member(models.Model):
    """For self-referential many-to-many tests: both sides of an asymmetrical relation
    (``following`` / ``followers``), a symmetrical one (``blocked``, whose reverse is a
    hidden ``+`` accessor) and one whose reverse accessor Django names (``member_set``)."""

    name = models.CharField(max_length=50, default="")
    following = models.ManyToManyField(
        "self", symmetrical=False, related_name="followers", blank=True
    )
    blocked = models.ManyToManyField("self", blank=True)
    mentors = models.ManyToManyField("self", symmetrical=False, blank=True)

    def __str__(self) -> str:
        return self.name
