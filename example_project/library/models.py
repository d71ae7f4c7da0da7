"""A small library: the models every page of the demo is built on.

Some columns are deliberately left without an index (``Author.email``, ``Book.published``,
``Book.language`` + ``Book.format``) so the guard has something real to find; their indexed
counterparts (``Author.slug``, ``Book.added``, ``Loan.branch`` + ``Loan.due``) back the fixed
twins of those pages. No model has a default ``Meta.ordering``: pages sort on indexed columns,
so a list page never hides a sort without index.
"""

from __future__ import annotations

from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Publisher(models.Model):
    name = models.CharField(max_length=100)
    country = models.CharField(max_length=2)
    website = models.URLField(blank=True)

    def __str__(self) -> str:
        return self.name


class Author(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=120, unique=True)
    email = models.CharField(max_length=200)  # looked up by the sign-in page; no index
    active = models.BooleanField(default=True)

    def __str__(self) -> str:
        return self.name


class Profile(models.Model):
    author = models.OneToOneField(Author, on_delete=models.CASCADE, related_name="profile")
    bio = models.TextField()
    website = models.URLField(blank=True)

    def __str__(self) -> str:
        return f"Profile of {self.author_id}"


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)

    def __str__(self) -> str:
        return self.name


class Comment(models.Model):
    """A comment on anything: a book, an author, a review."""

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.PositiveBigIntegerField()
    content_object = GenericForeignKey("content_type", "object_id")
    name = models.CharField(max_length=100)
    text = models.TextField()
    created = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["content_type", "object_id"])]

    def __str__(self) -> str:
        return f"Comment by {self.name}"


class Book(models.Model):
    FORMATS = [("hardcover", "Hardcover"), ("paperback", "Paperback"), ("ebook", "E-book")]

    title = models.CharField(max_length=200)
    isbn = models.CharField(max_length=20)
    language = models.CharField(max_length=8)  # filtered with `format`; no index
    format = models.CharField(max_length=10, choices=FORMATS)
    pages = models.PositiveIntegerField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    published = models.DateField()  # sorted on by "recent books"; no index
    added = models.DateTimeField(db_index=True)
    in_print = models.BooleanField(default=True)
    views = models.PositiveIntegerField(default=0)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    publisher = models.ForeignKey(Publisher, on_delete=models.PROTECT)
    tags = models.ManyToManyField(Tag, blank=True)
    comments = GenericRelation(Comment)

    def __str__(self) -> str:
        return self.title


class Review(models.Model):
    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.CharField(max_length=100)
    rating = models.PositiveSmallIntegerField()
    body = models.TextField()
    created = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.rating}/5 for {self.book_id}"


class Loan(models.Model):
    """A copy of a book lent from a branch; the due-list filters on branch and due date."""

    book = models.ForeignKey(Book, on_delete=models.CASCADE, related_name="loans")
    borrower = models.CharField(max_length=100)
    branch = models.CharField(max_length=20)
    due = models.DateField()
    returned = models.BooleanField(default=False)

    class Meta:
        indexes = [models.Index(fields=["branch", "due"], name="library_loan_branch_due")]

    def __str__(self) -> str:
        return f"{self.book_id} to {self.borrower}"
