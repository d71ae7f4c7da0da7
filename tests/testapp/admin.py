"""ModelAdmins whose changelists the precision tests request, each on its own site.

A model registers once per ``AdminSite``, so each admin under test gets a site of its own
(mounted by ``tests.precision_urls``); nothing registers on the default ``admin.site``.
Django's changelist already joins the non-null foreign keys named in ``list_display``
(``ChangeList.apply_select_related``), but not nullable ones such as ``Book.publisher``, and
not what a ``list_display`` method reads.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Model

from tests.testapp.models import Author, Book


class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name"]


class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "publisher"]  # book-admin-list-display


class BookAdminFixed(BookAdmin):
    list_select_related = ["publisher"]


class BookAuthorAdmin(admin.ModelAdmin):
    """A non-null foreign key in ``list_display``: Django joins it by itself."""

    list_display = ["title", "author"]


class BookMethodAdmin(admin.ModelAdmin):
    list_display = ["title", "author_name"]

    @admin.display(description="author")
    def author_name(self, obj: Book) -> str:
        return obj.author.name  # book-method-admin-author-name


class BookMethodAdminFixed(BookMethodAdmin):
    list_select_related = ["author"]


def _site(prefix: str, model: type[Model], model_admin: type[admin.ModelAdmin]) -> admin.AdminSite:
    site = admin.AdminSite(name=f"admin-{prefix}")
    site.register(model, model_admin)
    return site


#: URL prefix (under ``admin/``) -> the site that holds one admin under test.
SITES = {
    "authors": _site("authors", Author, AuthorAdmin),
    "books": _site("books", Book, BookAdmin),
    "books-fixed": _site("books-fixed", Book, BookAdminFixed),
    "books-by-author": _site("books-by-author", Book, BookAuthorAdmin),
    "books-method": _site("books-method", Book, BookMethodAdmin),
    "books-method-fixed": _site("books-method-fixed", Book, BookMethodAdminFixed),
}
