"""Views the middleware tests request: each N+1 pattern next to its fixed twin."""

from __future__ import annotations

import contextvars
import io
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

from django.core.management import call_command
from django.db import connections
from django.http import (
    FileResponse,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views import View
from rest_framework import generics, serializers

from django_nplusone_guard import guarded
from tests.testapp.models import Author, Book, Counter


def book_list(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("id")
    names = [book.author.name for book in books]
    return JsonResponse({"authors": names})


def book_list_fixed(request: HttpRequest) -> HttpResponse:
    books = Book.objects.select_related("author").order_by("id")
    names = [book.author.name for book in books]
    return JsonResponse({"authors": names})


async def async_book_list(request: HttpRequest) -> HttpResponse:
    names = []
    async for book in Book.objects.order_by("id"):  # async-for
        author = await Author.objects.aget(pk=book.author_id)  # async-aget
        names.append(author.name)
    return JsonResponse({"authors": names})


async def async_book_list_fixed(request: HttpRequest) -> HttpResponse:
    names = [book.author.name async for book in Book.objects.select_related("author")]
    return JsonResponse({"authors": names})


def clean(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"books": Book.objects.count()})


def boom(request: HttpRequest) -> HttpResponse:
    Author.objects.count()
    raise ZeroDivisionError("view failed on its own")


# --- routes for the audit command's tests -----------------------------------------------


def book_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return JsonResponse({"title": Book.objects.get(pk=pk).title})


class PostOnly(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


def whoami(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return JsonResponse({"error": "log in first"}, status=403)
    return JsonResponse({"username": request.user.get_username()})


def create_counter(request: HttpRequest) -> HttpResponse:
    """A GET view that writes: the audit must roll it back."""
    Counter.objects.create(name=f"hit-{Counter.objects.count()}")
    return JsonResponse({"counters": Counter.objects.count()})


def orm_book_list_template(request: HttpRequest) -> HttpResponse:
    """An N+1 that happens while a template renders (ORM attribution tests)."""
    from django.shortcuts import render

    books = Book.objects.order_by("id")
    fixed = request.GET.get("fixed") == "1"
    if fixed:
        books = books.select_related("author").prefetch_related("tags")
    return render(request, "orm/book_list.html", {"books": books})


# --- routes for the missing-index tests ---------------------------------------------------


def listing_search(request: HttpRequest) -> HttpResponse:
    from tests.testapp.models import Listing

    city = request.GET.get("city", "")
    return JsonResponse(
        {"ids": list(Listing.objects.filter(city=city).values_list("id", flat=True))}
    )


async def async_listing_search(request: HttpRequest) -> HttpResponse:
    from tests.testapp.models import Listing

    city = request.GET.get("city", "")
    ids = [pk async for pk in Listing.objects.filter(city=city).values_list("id", flat=True)]
    return JsonResponse({"ids": ids})


def duplicate_lookup(request: HttpRequest) -> HttpResponse:
    """The same statement with the same (private) parameter, run from two places."""
    first = Author.objects.filter(email="ada@private.example").count()
    second = Author.objects.filter(email="ada@private.example").count()
    return JsonResponse({"matches": first + second})


def _author_names(books: list[Book]) -> list[str]:
    """One thread's share of the work: an N+1 over its books. The thread closes its own
    connection: Django closes only the request thread's."""
    names = []
    try:
        for book in books:
            names.append(book.author.name)  # thread-nplusone
    finally:
        connections.close_all()
    return names


def threaded_authors(request: HttpRequest) -> HttpResponse:
    """Reads each book's author in two worker threads, each run in a copy of the request's
    context, so its statements count for the request."""
    books = list(Book.objects.order_by("id"))
    shares = [books[0::2], books[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, _author_names, share) for share in shares
        ]
        names = [name for future in futures for name in future.result()]
    return JsonResponse({"authors": names})


def threaded_authors_without_context(request: HttpRequest) -> HttpResponse:
    """The same work in threads that do not get the request's context: not counted."""
    books = list(Book.objects.order_by("id"))
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_author_names, share) for share in (books[0::2], books[1::2])]
        names = [name for future in futures for name in future.result()]
    return JsonResponse({"authors": names})


def streamed_export(request: HttpRequest) -> StreamingHttpResponse:
    """A CSV-style export whose rows query the author while the response streams."""

    def rows() -> Iterator[str]:
        for book in Book.objects.order_by("id"):
            yield f"{book.title},{book.author.name}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


def streamed_export_fixed(request: HttpRequest) -> StreamingHttpResponse:
    def rows() -> Iterator[str]:
        for book in Book.objects.select_related("author").order_by("id"):
            yield f"{book.title},{book.author.name}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


async def async_streamed_export(request: HttpRequest) -> StreamingHttpResponse:
    """The same export from an async iterator."""

    async def rows() -> AsyncIterator[str]:
        async for book in Book.objects.order_by("id"):
            author = await Author.objects.aget(pk=book.author_id)  # async-stream-nplusone
            yield f"{book.title},{author.name}\n"

    return StreamingHttpResponse(rows(), content_type="text/csv")


class _BookLines(io.RawIOBase):
    """A file whose reads query the database: one line per book, its author read per line."""

    def __init__(self) -> None:
        self._books = iter(Book.objects.order_by("id"))

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        book = next(self._books, None)
        if book is None:
            return b""
        return f"{book.title},{book.author.name}\n".encode()  # file-nplusone


def file_export(request: HttpRequest) -> FileResponse:
    return FileResponse(_BookLines(), filename="books.csv", content_type="text/csv")


async def async_create_counter(request: HttpRequest) -> HttpResponse:
    """An async GET view that writes, then fails: the audit reports it and rolls it back."""
    await Counter.objects.acreate(name="async-hit")
    if request.GET.get("fail"):
        raise LookupError("async view failed on its own")
    return JsonResponse({"counters": await Counter.objects.acount()})


class BookTitleSerializer(serializers.ModelSerializer):
    class Meta:
        model = Book
        fields = ["id", "title"]


class AuthorWithBooksSerializer(serializers.ModelSerializer):
    """Nested ``many=True``: one query per author unless the queryset prefetches."""

    books = BookTitleSerializer(many=True, source="book_set")  # drf-many-field

    class Meta:
        model = Author
        fields = ["id", "name", "books"]


class OrmAuthorList(generics.ListAPIView):
    queryset = Author.objects.order_by("id")  # orm-author-list-queryset
    serializer_class = AuthorWithBooksSerializer


class OrmAuthorListFixed(OrmAuthorList):
    queryset = Author.objects.prefetch_related("book_set").order_by("id")


orm_author_api = OrmAuthorList.as_view()
orm_author_api_fixed = OrmAuthorListFixed.as_view()


@guarded(label="author_names_job")
def _guarded_author_names() -> list[str]:
    return [book.author.name for book in Book.objects.order_by("id")]  # guarded-in-request


def guarded_job(request: HttpRequest) -> HttpResponse:
    """A view calling guarded work: the request reports its findings, once."""
    return JsonResponse({"authors": _guarded_author_names()})


def guarded_command(request: HttpRequest) -> HttpResponse:
    """A view running a guarded command (``COMMANDS``) with ``call_command()``."""
    out = io.StringIO()
    call_command("book_report", stdout=out)
    return HttpResponse(out.getvalue(), content_type="text/plain")


def streamed_guarded_job(request: HttpRequest) -> StreamingHttpResponse:
    """A streamed body calling guarded work while the response is read."""

    def rows() -> Iterator[str]:
        yield from (f"{name}\n" for name in _guarded_author_names())

    return StreamingHttpResponse(rows(), content_type="text/plain")


def celery_task(request: HttpRequest) -> HttpResponse:
    """A view running a Celery task eagerly (``apply()``)."""
    from tests.testapp import celery_tasks  # Celery only for the tests that ask for it

    return JsonResponse({"authors": celery_tasks.author_names.apply().get()})
