"""nplusone_audit --all on detail pages: URL arguments filled from real rows (Django generic
views, Django REST framework, the admin), the reason for each route it cannot fill, and
pages that only redirect to the login page."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.factories import AuthorFactory, BookFactory, ListingFactory
from tests.testapp.models import Author, Book, Listing

pytestmark = pytest.mark.django_db(databases=["default", "other"])

LOGIN_NOTE = "redirected to login: use --user"


@pytest.fixture
def detail_urls(settings):
    settings.ROOT_URLCONF = "tests.audit_detail_urls"


@pytest.fixture
def rows(db):
    """Five books by five authors, and three listings: rows to take arguments from."""
    books = [BookFactory(author=AuthorFactory()) for _ in range(5)]
    listings = [ListingFactory() for _ in range(3)]
    return books, listings


def audit(*args: str) -> str:
    out = io.StringIO()
    call_command("nplusone_audit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def audit_json(*args: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(audit(*args, "--format", "json"))
    return document


def pages(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["url"]: p for p in document["pages"]}


def skipped(document: dict[str, Any]) -> dict[str, str]:
    return {s["pattern"]: s["reason"] for s in document["skipped"]}


def test_all_fills_pk_and_slug_arguments_from_the_first_row(detail_urls, rows):
    author = Author.objects.order_by("pk").first()
    book = Book.objects.order_by("pk").first()
    listing = Listing.objects.order_by("pk").first()
    found = pages(audit_json("--all"))
    expected = [
        f"/authors/{author.pk}/",  # DetailView
        f"/listings/{listing.slug}/",  # DetailView by slug
        f"/listings/sku/{listing.sku}/",  # slug_field + slug_url_kwarg
        f"/books/{book.pk}/edit/",  # UpdateView
        f"/books/{book.pk}/delete/",  # DeleteView: its confirmation page
        f"/api/books/{book.isbn}/",  # DRF RetrieveAPIView: lookup_field + lookup_url_kwarg
        f"/api/authors/{author.pk}/",  # DRF viewset detail route
    ]
    for url in expected:
        assert found[url]["status"] == 200, url
    # The detail page's own loop is found, which is what filling the arguments is for.
    [nplusone] = found[f"/authors/{author.pk}/"]["report"]["nplusones"]
    assert nplusone["count"] == 5
    assert nplusone["callsite"].startswith("tests/testapp/library_views.py:")
    # Nothing the audit did is left behind: the delete page was only requested.
    assert Book.objects.count() == 5


def test_samples_requests_the_first_n_rows(detail_urls, rows):
    first_three = list(Author.objects.order_by("pk").values_list("pk", flat=True)[:3])
    urls = list(pages(audit_json("--all", "--samples", "3")))
    assert [u for u in urls if u.startswith("/authors/") and "books" not in u] == [
        f"/authors/{pk}/" for pk in first_three
    ]
    assert len([u for u in urls if u.startswith("/api/authors/") and u != "/api/authors/"]) == 3


def test_routes_it_cannot_fill_are_listed_with_the_reason(detail_urls, rows):
    document = audit_json("--all")
    reasons = skipped(document)
    assert reasons["books/<int:pk>/raw/"] == (
        "needs URL argument(s): pk; book_detail is a function view: give its URL to nplusone_audit"
    )
    assert reasons["counters/<int:pk>/"] == (
        "needs URL argument(s): pk; no testapp.Counter rows to fill pk from"
    )
    assert reasons["authors/<int:pk>/books/<int:book>/"].startswith(
        "needs URL argument(s): pk, book; DetailView looks rows up by pk, slug; cannot fill book"
    )
    assert reasons["go/<int:pk>/"] == (
        "needs URL argument(s): pk; RedirectView has no model or queryset "
        "(get_queryset() needs a request): give the URL"
    )
    assert reasons["books/<int:pk>/post-only/"] == "view does not handle GET"
    letters = reasons["^listings/letters/(?P<slug>[a-z]+)/$"]
    assert letters.endswith("does not match the URL pattern")
    assert "slug='listing-" in letters
    output = audit("--all")
    assert "no testapp.Counter rows to fill pk from" in output


def test_a_route_is_filled_once_rows_exist(detail_urls, rows):
    assert "counters/<int:pk>/" in skipped(audit_json("--all"))
    from tests.testapp.models import Counter

    counter = Counter.objects.create()
    document = audit_json("--all")
    assert "counters/<int:pk>/" not in skipped(document)
    assert pages(document)[f"/counters/{counter.pk}/"]["status"] == 200


def test_admin_routes_are_skipped_unless_include_admin(detail_urls, rows):
    document = audit_json("--all")
    assert not [u for u in pages(document) if u.startswith("/admin/")]
    assert skipped(document)["admin/"] == "the admin site (--include-admin audits it)"

    author = Author.objects.order_by("pk").first()
    found = pages(audit_json("--all", "--include-admin"))
    change = found[f"/admin/testapp/author/{author.pk}/change/"]
    assert (change["status"], change["note"]) == (302, LOGIN_NOTE)
    assert found["/admin/login/"]["note"] is None


def test_a_redirect_to_the_login_page_says_use_user(detail_urls, rows):
    author = Author.objects.order_by("pk").first()
    url = f"/private/authors/{author.pk}/"
    page = pages(audit_json(url))[url]
    assert (page["status"], page["note"]) == (302, LOGIN_NOTE)
    assert f"GET {url} (302): 0 queries, no findings; {LOGIN_NOTE}." in audit(url)
    assert pages(audit_json("/clean/"))["/clean/"]["note"] is None

    get_user_model().objects.create_superuser("ada", password="unused")
    page = pages(audit_json(url, "--user", "ada"))[url]
    assert (page["status"], page["note"]) == (200, None)
    change = f"/admin/testapp/author/{author.pk}/change/"
    page = pages(audit_json(change, "--user", "ada"))[change]
    assert (page["status"], page["note"]) == (200, None)


def test_samples_must_be_positive(detail_urls):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--samples must be at least 1") as excinfo:
        audit("--all", "--samples", "0")
    assert excinfo.value.returncode == 2
