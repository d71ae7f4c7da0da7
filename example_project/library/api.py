"""A small JSON API with Django REST framework: nested serializers are a classic N+1."""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import generics, serializers

from library.models import Author, Book, Tag

PAGE_SIZE = 20


class AuthorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ["id", "name", "slug"]


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]


class BookSerializer(serializers.ModelSerializer):
    author = AuthorSerializer()
    tags = TagSerializer(many=True)

    class Meta:
        model = Book
        fields = ["id", "title", "isbn", "published", "author", "tags"]


class BookListAPI(generics.ListAPIView):
    """``/api/books/``: each book's author and tags are fetched one book at a time."""

    serializer_class = BookSerializer

    def get_queryset(self) -> QuerySet[Book]:
        return Book.objects.order_by("-added")[:PAGE_SIZE]


class BookListFixedAPI(BookListAPI):
    """The same API with the queryset the serializer needs."""

    def get_queryset(self) -> QuerySet[Book]:
        books = Book.objects.select_related("author").prefetch_related("tags")
        return books.order_by("-added")[:PAGE_SIZE]
