"""Pages of the library site. Each page with a problem has a fixed twin right below it.

The problem pages are written the way such code is usually written in a hurry; the twin
shows the fix the guard suggests. ``urls.DEMOS`` lists the pairs.
"""

from __future__ import annotations

import datetime

from django.db import connection
from django.db.models import Count, Exists, F, OuterRef, Prefetch, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from library.models import Author, Book, Comment, Loan, Profile, Publisher, Review, Tag

PAGE_SIZE = 20


def _newest_books() -> QuerySet[Book]:
    """Newest first: ``added`` is indexed, so list pages never sort without an index."""
    return Book.objects.order_by("-added")


def home(request: HttpRequest) -> HttpResponse:
    from library.urls import DEMOS, QUIET_PAGES

    return render(request, "library/home.html", {"demos": DEMOS, "quiet_pages": QUIET_PAGES})


# --- forward ForeignKey, read in the template --------------------------------------------


def book_list(request: HttpRequest) -> HttpResponse:
    books = _newest_books()[:PAGE_SIZE]
    return render(request, "library/book_list.html", {"title": "Books", "books": books})


def book_list_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().select_related("author")[:PAGE_SIZE]
    return render(request, "library/book_list.html", {"title": "Books", "books": books})


# --- reverse OneToOne -------------------------------------------------------------------


def author_profiles(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.order_by("slug")[:PAGE_SIZE]
    return render(
        request, "library/author_profiles.html", {"title": "Authors", "authors": authors}
    )


def author_profiles_fixed(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.select_related("profile").order_by("slug")[:PAGE_SIZE]
    return render(
        request, "library/author_profiles.html", {"title": "Authors", "authors": authors}
    )


# --- forward OneToOne -------------------------------------------------------------------


def profile_list(request: HttpRequest) -> HttpResponse:
    profiles = Profile.objects.order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/profile_list.html", {"title": "Profiles", "profiles": profiles}
    )


def profile_list_fixed(request: HttpRequest) -> HttpResponse:
    profiles = Profile.objects.select_related("author").order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/profile_list.html", {"title": "Profiles", "profiles": profiles}
    )


# --- reverse ForeignKey manager -----------------------------------------------------------


def author_books(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.order_by("slug")[:PAGE_SIZE]
    return render(
        request,
        "library/author_books.html",
        {"title": "Authors and their books", "authors": authors},
    )


def author_books_fixed(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.prefetch_related("book_set").order_by("slug")[:PAGE_SIZE]
    return render(
        request,
        "library/author_books.html",
        {"title": "Authors and their books", "authors": authors},
    )


# --- ManyToMany, both directions ----------------------------------------------------------


def book_tags(request: HttpRequest) -> HttpResponse:
    books = _newest_books()[:PAGE_SIZE]
    return render(request, "library/book_tags.html", {"title": "Books by tag", "books": books})


def book_tags_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().prefetch_related("tags")[:PAGE_SIZE]
    return render(request, "library/book_tags.html", {"title": "Books by tag", "books": books})


def tag_books(request: HttpRequest) -> HttpResponse:
    tags = Tag.objects.order_by("name")
    return render(request, "library/tag_books.html", {"title": "Tags", "tags": tags})


def tag_books_fixed(request: HttpRequest) -> HttpResponse:
    tags = Tag.objects.prefetch_related("book_set").order_by("name")
    return render(request, "library/tag_books.html", {"title": "Tags", "tags": tags})


# --- a chain of ForeignKeys, and a partial select_related -----------------------------------


def review_list(request: HttpRequest) -> HttpResponse:
    reviews = Review.objects.order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/review_list.html", {"title": "Latest reviews", "reviews": reviews}
    )


def review_list_fixed(request: HttpRequest) -> HttpResponse:
    reviews = Review.objects.select_related("book__author").order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/review_list.html", {"title": "Latest reviews", "reviews": reviews}
    )


def book_author_bios(request: HttpRequest) -> HttpResponse:
    books = _newest_books().select_related("author")[:PAGE_SIZE]
    return render(
        request,
        "library/book_author_bios.html",
        {"title": "Books and their authors", "books": books},
    )


def book_author_bios_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().select_related("author__profile")[:PAGE_SIZE]
    return render(
        request,
        "library/book_author_bios.html",
        {"title": "Books and their authors", "books": books},
    )


# --- generic relations --------------------------------------------------------------------


def comment_list(request: HttpRequest) -> HttpResponse:
    comments = Comment.objects.order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/comment_list.html", {"title": "Latest comments", "comments": comments}
    )


def comment_list_fixed(request: HttpRequest) -> HttpResponse:
    comments = Comment.objects.prefetch_related("content_object").order_by("pk")[:PAGE_SIZE]
    return render(
        request, "library/comment_list.html", {"title": "Latest comments", "comments": comments}
    )


def book_comments(request: HttpRequest) -> HttpResponse:
    books = _newest_books()[:PAGE_SIZE]
    return render(
        request, "library/book_comments.html", {"title": "What readers say", "books": books}
    )


def book_comments_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().prefetch_related("comments")[:PAGE_SIZE]
    return render(
        request, "library/book_comments.html", {"title": "What readers say", "books": books}
    )


# --- a deferred field -----------------------------------------------------------------------


def book_isbns(request: HttpRequest) -> HttpResponse:
    books = _newest_books().only("title")[:PAGE_SIZE]
    return render(request, "library/book_isbns.html", {"title": "ISBNs", "books": books})


def book_isbns_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().only("title", "isbn")[:PAGE_SIZE]
    return render(request, "library/book_isbns.html", {"title": "ISBNs", "books": books})


# --- .count(), .exists() and .aggregate() on a relation, per row ----------------------------


def publisher_counts(request: HttpRequest) -> HttpResponse:
    rows = [
        {"name": p.name, "value": p.book_set.count()} for p in Publisher.objects.order_by("pk")
    ]
    return render(request, "library/table.html", {"title": "Books per publisher", "rows": rows})


def publisher_counts_fixed(request: HttpRequest) -> HttpResponse:
    publishers = Publisher.objects.annotate(book_count=Count("book")).order_by("pk")
    rows = [{"name": p.name, "value": p.book_count} for p in publishers]
    return render(request, "library/table.html", {"title": "Books per publisher", "rows": rows})


def reviewed_authors(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.order_by("slug")[:PAGE_SIZE]
    rows = [
        {"name": a.name, "value": Review.objects.filter(book__author=a).exists()} for a in authors
    ]
    return render(
        request, "library/table.html", {"title": "Has anyone reviewed them?", "rows": rows}
    )


def reviewed_authors_fixed(request: HttpRequest) -> HttpResponse:
    reviewed = Review.objects.filter(book__author=OuterRef("pk"))
    authors = Author.objects.annotate(reviewed=Exists(reviewed)).order_by("slug")[:PAGE_SIZE]
    rows = [{"name": a.name, "value": a.reviewed} for a in authors]
    return render(
        request, "library/table.html", {"title": "Has anyone reviewed them?", "rows": rows}
    )


def author_page_totals(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.order_by("slug")[:PAGE_SIZE]
    rows = [
        {"name": a.name, "value": a.book_set.aggregate(total=Sum("pages"))["total"] or 0}
        for a in authors
    ]
    return render(request, "library/table.html", {"title": "Pages written", "rows": rows})


def author_page_totals_fixed(request: HttpRequest) -> HttpResponse:
    authors = Author.objects.annotate(total=Sum("book__pages")).order_by("slug")[:PAGE_SIZE]
    rows = [{"name": a.name, "value": a.total or 0} for a in authors]
    return render(request, "library/table.html", {"title": "Pages written", "rows": rows})


# --- a prefetched relation filtered again in the loop --------------------------------------


def top_reviews(request: HttpRequest) -> HttpResponse:
    books = _newest_books().prefetch_related("reviews")[:PAGE_SIZE]
    rows = [
        {"name": b.title, "value": [r.reviewer for r in b.reviews.filter(rating__gte=4)]}
        for b in books
    ]
    return render(request, "library/table.html", {"title": "Best reviews", "rows": rows})


def top_reviews_fixed(request: HttpRequest) -> HttpResponse:
    good = Prefetch("reviews", queryset=Review.objects.filter(rating__gte=4), to_attr="good")
    books = _newest_books().prefetch_related(good)[:PAGE_SIZE]
    rows = [{"name": b.title, "value": [r.reviewer for r in b.good]} for b in books]
    return render(request, "library/table.html", {"title": "Best reviews", "rows": rows})


# --- get() per id ---------------------------------------------------------------------------


def author_lookup(request: HttpRequest) -> HttpResponse:
    ids = _newest_books().values_list("author_id", flat=True)[:PAGE_SIZE]
    rows = [{"name": Author.objects.get(pk=pk).name, "value": pk} for pk in ids]
    return render(request, "library/table.html", {"title": "Authors of new books", "rows": rows})


def author_lookup_fixed(request: HttpRequest) -> HttpResponse:
    ids = list(_newest_books().values_list("author_id", flat=True)[:PAGE_SIZE])
    authors = Author.objects.in_bulk(ids)
    rows = [{"name": authors[pk].name, "value": pk} for pk in ids]
    return render(request, "library/table.html", {"title": "Authors of new books", "rows": rows})


# --- save() per row (an N+1 write) ---------------------------------------------------------


def book_views(request: HttpRequest) -> HttpResponse:
    books = list(_newest_books()[:PAGE_SIZE])
    for book in books:  # count a view for each book shown
        book.views += 1
        book.save(update_fields=["views"])
    rows = [{"name": b.title, "value": b.views} for b in books]
    return render(
        request, "library/table.html", {"title": "New books and their view counts", "rows": rows}
    )


def book_views_fixed(request: HttpRequest) -> HttpResponse:
    books = list(_newest_books()[:PAGE_SIZE])
    Book.objects.filter(pk__in=[b.pk for b in books]).update(views=F("views") + 1)
    rows = [{"name": b.title, "value": b.views + 1} for b in books]
    return render(
        request, "library/table.html", {"title": "New books and their view counts", "rows": rows}
    )


# --- raw SQL per row ------------------------------------------------------------------------


def publisher_prices(request: HttpRequest) -> HttpResponse:
    table = Book._meta.db_table
    rows = []
    with connection.cursor() as cursor:
        for publisher in Publisher.objects.order_by("pk"):
            cursor.execute(
                f"SELECT MAX(price) FROM {table} WHERE publisher_id = %s", [publisher.pk]
            )
            rows.append({"name": publisher.name, "value": cursor.fetchone()[0]})
    return render(
        request, "library/table.html", {"title": "Most expensive book per publisher", "rows": rows}
    )


def publisher_prices_fixed(request: HttpRequest) -> HttpResponse:
    table = Book._meta.db_table
    publishers = list(Publisher.objects.order_by("pk"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT publisher_id, MAX(price) FROM {table} GROUP BY publisher_id")
        prices = dict(cursor.fetchall())
    rows = [{"name": p.name, "value": prices.get(p.pk)} for p in publishers]
    return render(
        request, "library/table.html", {"title": "Most expensive book per publisher", "rows": rows}
    )


# --- async views ----------------------------------------------------------------------------


async def async_book_authors(request: HttpRequest) -> HttpResponse:
    rows = []
    async for book in _newest_books()[:PAGE_SIZE]:
        author = await Author.objects.aget(pk=book.author_id)
        rows.append({"title": book.title, "author": author.name})
    return JsonResponse({"books": rows})


async def async_book_authors_fixed(request: HttpRequest) -> HttpResponse:
    books = _newest_books().select_related("author")[:PAGE_SIZE]
    rows = [{"title": b.title, "author": b.author.name} async for b in books]
    return JsonResponse({"books": rows})


# --- missing indexes ------------------------------------------------------------------------


def author_by_email(request: HttpRequest) -> HttpResponse:
    email = request.GET.get("email", "ada-lovelace-0@example.com")
    rows = [{"name": a.name, "value": a.email} for a in Author.objects.filter(email=email)]
    return render(
        request, "library/table.html", {"title": "Find an author by e-mail", "rows": rows}
    )


def author_by_slug(request: HttpRequest) -> HttpResponse:
    slug = request.GET.get("slug", "ada-lovelace-0")
    rows = [{"name": a.name, "value": a.slug} for a in Author.objects.filter(slug=slug)]
    return render(request, "library/table.html", {"title": "Find an author by slug", "rows": rows})


def recently_published(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("-published")[:10]
    rows = [{"name": b.title, "value": b.published} for b in books]
    return render(request, "library/table.html", {"title": "Recently published", "rows": rows})


def recently_added(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("-added")[:10]
    rows = [{"name": b.title, "value": b.added} for b in books]
    return render(request, "library/table.html", {"title": "Recently added", "rows": rows})


def catalogue(request: HttpRequest) -> HttpResponse:
    language = request.GET.get("language", "en")
    book_format = request.GET.get("format", "paperback")
    books = Book.objects.filter(language=language, format=book_format)
    rows = [{"name": b.title, "value": f"{b.language}, {b.format}"} for b in books]
    return render(request, "library/table.html", {"title": "Catalogue", "rows": rows})


def loans_due(request: HttpRequest) -> HttpResponse:
    branch = request.GET.get("branch", "central")
    day = datetime.date.fromisoformat(request.GET.get("due", datetime.date.today().isoformat()))
    loans = Loan.objects.filter(branch=branch, due=day)
    rows = [{"name": loan.borrower, "value": loan.due} for loan in loans]
    return render(request, "library/table.html", {"title": "Loans due today", "rows": rows})


def book_detail(request: HttpRequest, pk: int) -> HttpResponse:
    book = get_object_or_404(Book.objects.select_related("author", "publisher"), pk=pk)
    reviews = book.reviews.order_by("-created")
    return render(
        request,
        "library/book_detail.html",
        {"title": book.title, "book": book, "reviews": reviews},
    )


# --- queries the guard deliberately leaves alone ----------------------------------------------


def book_search(request: HttpRequest) -> HttpResponse:
    """A substring search: no B-tree index can serve ``icontains``, so no index is suggested."""
    query = request.GET.get("q", "war")
    books = Book.objects.filter(title__icontains=query)[:PAGE_SIZE]
    rows = [{"name": b.title, "value": b.published} for b in books]
    return render(request, "library/table.html", {"title": f"Search: {query}", "rows": rows})


def books_in_print(request: HttpRequest) -> HttpResponse:
    """A filter on a boolean alone: an index on it would rarely help, so none is suggested."""
    books = Book.objects.filter(in_print=True)
    rows = [{"name": b.title, "value": b.isbn} for b in books]
    return render(request, "library/table.html", {"title": "In print", "rows": rows})
