"""The benchmark's pages: the classic N+1 (a template touching ``book.author`` per row)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from benchmarks.benchapp.models import Book


def books(request: HttpRequest, queries: int) -> HttpResponse:
    """A page that runs exactly ``queries`` statements.

    One query lists the books with their authors joined; more than one lists ``queries - 1``
    books and lets the template load each author lazily, one query per row.
    """
    if queries <= 1:
        rows = list(Book.objects.select_related("author").order_by("id")[:20])
    else:
        rows = list(Book.objects.order_by("id")[: queries - 1])
    return render(request, "benchapp/books.html", {"books": rows})
