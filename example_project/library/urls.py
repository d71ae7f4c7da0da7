"""Every demo page next to its fixed twin; ``DEMOS`` also feeds the home page and
``manage.py demo``'s check that each problem page has findings and each twin has none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.urls import URLPattern, path

from library import api, views


@dataclass(frozen=True)
class Demo:
    path: str  # the problem page, without the leading slash
    fixed_path: str  # its twin
    title: str
    problem: str  # what the guard should report on the problem page
    category: str  # "nplusone" or "missing_index": the report list it lands in
    view: Callable[..., Any]
    fixed_view: Callable[..., Any]

    @property
    def url(self) -> str:
        return f"/{self.path}"

    @property
    def fixed_url(self) -> str:
        return f"/{self.fixed_path}"


def _nplusone(route: str, title: str, problem: str, view: Any, fixed: Any) -> Demo:
    return Demo(route, f"{route}fixed/", title, problem, "nplusone", view, fixed)


DEMOS = [
    _nplusone("books/", "Books and authors (template)", "forward ForeignKey Book.author",
              views.book_list, views.book_list_fixed),
    _nplusone("profiles/", "Profiles and their authors", "forward OneToOne Profile.author",
              views.profile_list, views.profile_list_fixed),
    _nplusone("authors/profiles/", "Author bios", "reverse OneToOne Author.profile",
              views.author_profiles, views.author_profiles_fixed),
    _nplusone("authors/books/", "Authors and their books", "reverse ForeignKey Author.book_set",
              views.author_books, views.author_books_fixed),
    _nplusone("books/tags/", "Books and their tags", "ManyToMany Book.tags",
              views.book_tags, views.book_tags_fixed),
    _nplusone("tags/", "Tags and their books", "reverse ManyToMany Tag.book_set",
              views.tag_books, views.tag_books_fixed),
    _nplusone("reviews/", "Reviews with book and author", "chain Review.book.author",
              views.review_list, views.review_list_fixed),
    _nplusone("books/author-bios/", "Books with author bios",
              "partial select_related: Author.profile", views.book_author_bios,
              views.book_author_bios_fixed),
    _nplusone("comments/", "Comments on anything", "GenericForeignKey Comment.content_object",
              views.comment_list, views.comment_list_fixed),
    _nplusone("books/comments/", "Books and their comments", "GenericRelation Book.comments",
              views.book_comments, views.book_comments_fixed),
    _nplusone("books/isbns/", "ISBNs", "deferred field Book.isbn after .only()",
              views.book_isbns, views.book_isbns_fixed),
    _nplusone("publishers/counts/", "Books per publisher", ".count() per publisher",
              views.publisher_counts, views.publisher_counts_fixed),
    _nplusone("authors/reviewed/", "Reviewed authors", ".exists() per author",
              views.reviewed_authors, views.reviewed_authors_fixed),
    _nplusone("authors/pages/", "Pages per author", ".aggregate() per author",
              views.author_page_totals, views.author_page_totals_fixed),
    _nplusone("books/top-reviews/", "Best reviews", "prefetched Book.reviews filtered again",
              views.top_reviews, views.top_reviews_fixed),
    _nplusone("books/authors-by-id/", "Authors by id", "Author.objects.get() per id",
              views.author_lookup, views.author_lookup_fixed),
    _nplusone("books/views/", "View counter", "save() per book (N+1 write)",
              views.book_views, views.book_views_fixed),
    _nplusone("publishers/prices/", "Prices per publisher", "raw SQL per publisher",
              views.publisher_prices, views.publisher_prices_fixed),
    _nplusone("api/books/", "JSON API (DRF)", "nested serializers Book.author, Book.tags",
              api.BookListAPI.as_view(), api.BookListFixedAPI.as_view()),
    _nplusone("async/books/", "Async view", "aget() per book in an async for loop",
              views.async_book_authors, views.async_book_authors_fixed),
    Demo("authors/by-email/", "authors/by-slug/", "Find an author", "filter on Author.email",
         "missing_index", views.author_by_email, views.author_by_slug),
    Demo("books/recently-published/", "books/recently-added/", "Newest books",
         "ORDER BY Book.published LIMIT 10", "missing_index", views.recently_published,
         views.recently_added),
    Demo("books/catalogue/", "loans/due/", "Filter on two columns",
         "Book.language + Book.format (one composite index)", "missing_index",
         views.catalogue, views.loans_due),
]  # fmt: skip

#: Pages the guard must stay quiet on: (path, what they do, why nothing is reported).
QUIET_PAGES = [
    ("books/search/", views.book_search, "title__icontains: no B-tree index can serve it"),
    ("books/in-print/", views.books_in_print, "a boolean alone is too coarse to index"),
]

urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path("books/<int:pk>/", views.book_detail, name="book-detail"),
]
for demo in DEMOS:
    urlpatterns.append(path(demo.path, demo.view))
    urlpatterns.append(path(demo.fixed_path, demo.fixed_view))
for route, view, _why in QUIET_PAGES:
    urlpatterns.append(path(route, view))
