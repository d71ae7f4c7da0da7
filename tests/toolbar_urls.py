"""URLconf for the toolbar tests: the toolbar's own views plus a few HTML pages."""

from django.urls import include, path

from tests import toolbar_views

urlpatterns = [
    path("books/", toolbar_views.books),
    path("books/fixed/", toolbar_views.books_fixed),
    path("books/scopes/", toolbar_views.books_counting_scopes),
    path("library/", toolbar_views.library),
    path("async/books/", toolbar_views.async_books),
    path("duplicates/", toolbar_views.duplicates),
    path("own-queries/", toolbar_views.own_queries),
    # Not debug_toolbar_urls(): it returns nothing when DEBUG is False at import time.
    path("__debug__/", include("debug_toolbar.urls")),
]
