"""HTML pages for the toolbar tests (the toolbar only inserts itself into HTML)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from django_nplusone_guard.capture import active_scope, suppressed
from tests.testapp.models import Author, Book, Publisher

HOSTILE = "<script>alert('owned')</script>"


def _page(heading: str, body: str = "") -> HttpResponse:
    return HttpResponse(
        f"<!doctype html><html><head><title>{heading}</title></head>"
        f"<body><h1>{heading}</h1>{body}</body></html>"
    )


def books(request: HttpRequest) -> HttpResponse:
    """The N+1 happens in the template: ``{{ book.author.name }}`` per book."""
    context = {"heading": "Books", "books": Book.objects.order_by("id")}
    return render(request, "toolbar/books.html", context)


def library(request: HttpRequest) -> HttpResponse:
    """One of each: the template N+1 of ``books``, a repeated count, and a filter on an
    unindexed column (a missing index when ``EXPLAIN`` is on)."""
    context = {
        "heading": f"Library of {Publisher.objects.count()} publishers",
        "books": Book.objects.order_by("id"),
        "publishers": Publisher.objects.count(),
        "first_in_print": Book.objects.filter(isbn="978-000000001").first(),
    }
    return render(request, "toolbar/books.html", context)


def books_counting_scopes(request: HttpRequest) -> HttpResponse:
    """``books``, saying in a header how many capture scopes recorded its queries."""
    response = books(request)
    depth, scope = 0, active_scope()
    while scope is not None:
        depth, scope = depth + 1, scope.parent
    response["X-Capture-Scopes"] = str(depth)
    return response


def books_fixed(request: HttpRequest) -> HttpResponse:
    context = {"heading": "Books", "books": Book.objects.select_related("author").order_by("id")}
    return render(request, "toolbar/books.html", context)


async def async_books(request: HttpRequest) -> HttpResponse:
    names = []
    async for book in Book.objects.order_by("id"):
        author = await Author.objects.aget(pk=book.author_id)
        names.append(author.name)
    return _page("Async books", f"<p>{len(names)} books</p>")


def duplicates(request: HttpRequest) -> HttpResponse:
    """The same statement twice, with a parameter that is an HTML injection attempt."""
    first = Author.objects.filter(name=HOSTILE).count()
    second = Author.objects.filter(name=HOSTILE).count()
    return _page("Duplicates", f"<p>{first + second}</p>")


def own_queries(request: HttpRequest) -> HttpResponse:
    """One query of the view's, one run like the guard runs its own (EXPLAIN, introspection)."""
    count = Book.objects.count()
    with suppressed():
        Author.objects.count()
    return _page("Own queries", f"<p>{count}</p>")
