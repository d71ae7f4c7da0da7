"""A graphene-django schema: the fields of each book are resolved by graphql-core, one
book at a time, with no line of the project's code on the stack."""

from __future__ import annotations

from typing import Any

import graphene
from django.db.models import QuerySet
from graphene_django import DjangoObjectType

from tests.testapp.models import Author, Book


class AuthorType(DjangoObjectType):
    class Meta:
        model = Author
        fields = ("id", "name")


class BookType(DjangoObjectType):
    class Meta:
        model = Book
        fields = ("id", "title", "author")  # book-type-fields


class Query(graphene.ObjectType):
    books = graphene.List(BookType)
    books_fixed = graphene.List(BookType)

    def resolve_books(root: Any, info: Any) -> QuerySet[Book]:  # resolve-books
        return Book.objects.order_by("id")

    def resolve_books_fixed(root: Any, info: Any) -> QuerySet[Book]:
        return Book.objects.select_related("author").order_by("id")


schema = graphene.Schema(query=Query)
