"""URLconf for the precision tests: admin changelists, DRF and Django generic views,
formsets. Kept out of ``tests.urls`` so the audit's ``--all`` tests do not request them."""

from django.urls import path

from tests.testapp import library_views, views
from tests.testapp.admin import SITES

urlpatterns = [
    *[path(f"admin/{prefix}/", site.urls) for prefix, site in SITES.items()],
    path("api/books/", library_views.BookApiList.as_view()),
    path("api/books/fixed/", library_views.BookApiListFixed.as_view()),
    path("api/book-tags/", library_views.BookTagsCheck.as_view()),
    path("api/authors/", views.orm_author_api),
    path("api/authors/fixed/", views.orm_author_api_fixed),
    path("books/", library_views.BookListView.as_view()),
    path("books/fixed/", library_views.BookListViewFixed.as_view()),
    path("books/<int:pk>/featured/", library_views.FeaturedBookView.as_view()),
    path("books/titles/", library_views.book_titles_check),
    path("navigation/", library_views.NavigationView.as_view()),
    path("books/by-author/", library_views.BooksByAuthorView.as_view()),
    path("books/retitle/", library_views.retitle_books),
    path("authors/<int:pk>/detail/", library_views.AuthorDetailView.as_view()),
    path("two-relations/<int:book>/<int:profile>/", library_views.two_relations),
    path("authors/<int:pk>/count-twice/", library_views.author_count_twice),
]
