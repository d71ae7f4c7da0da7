"""Precision: an N+1 is a loop over rows, and library-driven code points at the user's class.

A statement repeated for another reason (the same call made twice, one object saved twice,
a library validating each posted value) is not an N+1: a false "N+1" in CI costs more trust
than a missed one. When the loop runs inside library machinery (the admin's changelist, a
DRF generic view, a Django generic view), the finding names the class member the user
edits: ``BookAdmin.list_display``, ``BookApiList.queryset``. Every N+1 here has a fixed
twin that must be clean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import django
import pytest
from django.db.models.signals import m2m_changed
from django.test import Client

from django_nplusone_guard import capture
from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.report import Duplicate, NPlusOne, Report
from tests.factories import AuthorFactory, BookFactory, TagFactory
from tests.orm_expect import only_nplusone, site
from tests.testapp import admin as test_admin
from tests.testapp import library_views, models, views
from tests.testapp.models import Author, Book

if TYPE_CHECKING:
    # What django-stubs calls the test client's response (``.json()``, ``.wsgi_request``).
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.precision_urls")]

TEMPLATES = Path(__file__).parent / "testapp" / "templates"


def at(marker: str, function: str) -> str:
    return site(__file__, marker, function)


def gained(finding: NPlusOne | Duplicate, name: str) -> Any:
    """A field the detector is gaining (``NPlusOne.fix_at``, ``NPlusOne.alternative``,
    ``Duplicate.kind``), read by name so this module type-checks before and after it
    lands; ``None`` while it is missing."""
    return getattr(finding, name, None)


def report_of(response: TestResponse) -> Report:
    assert response.status_code == 200, response.content[:500]
    report: Report = getattr(response.wsgi_request, REQUEST_ATTR)
    return report


def template_line(name: str, text: str) -> str:
    """``name:line`` of the first line of a test template containing ``text``."""
    lines = (TEMPLATES / name).read_text().splitlines()
    return f"{name}:{next(n for n, line in enumerate(lines, 1) if text in line)}"


def assert_clean(report: Report) -> None:
    assert report.nplusones == [], str(report)
    assert report.duplicates == [], str(report)


def assert_precise_suggestion(finding: NPlusOne, code: str) -> None:
    """The suggestion is the code to type and nothing else; Django 6.1's FETCH_PEERS
    alternative lives in its own field."""
    assert finding.suggestion == code, str(finding)
    assert "  #" not in finding.suggestion


@pytest.fixture
def one_author_books(db):
    """Five books by one author."""
    author = AuthorFactory()
    return [BookFactory(author=author) for _ in range(5)]


@pytest.fixture
def authors(db):
    return AuthorFactory.create_batch(5)


@pytest.fixture
def tags(db):
    return TagFactory.create_batch(5)


# --------------------------------------------------------------------------- loops vs repeats


def test_loop_over_rows_sharing_one_author_is_an_nplusone(one_author_books):
    """A list of one author's books reads ``book.author`` per row: every query has the
    same parameters, but it is still one query per row, fixed by ``select_related``."""
    with capture() as report:
        for book in Book.objects.order_by("id"):
            _ = book.author.name
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5


def test_loop_over_rows_sharing_one_author_fixed(one_author_books):
    """The same list with the author joined."""
    with capture() as report:
        for book in Book.objects.select_related("author").order_by("id"):
            _ = book.author.name
    assert_clean(report)


def _matching_authors() -> int:
    return Author.objects.filter(name="x").count()  # matching-authors


def test_same_call_twice_is_a_duplicate_not_an_nplusone(authors):
    """A page asks a helper for the same badge count in its header and its footer: one
    statement run twice with the same parameters is a duplicate to cache, not an N+1."""
    with capture() as report:
        for _section in ("header", "footer"):
            _matching_authors()
    assert report.nplusones == [], str(report)
    [duplicate] = report.duplicates
    assert duplicate.count == 2
    assert duplicate.callsite == at("matching-authors", "_matching_authors")


def test_template_calling_a_method_twice_is_one_duplicate(books):
    """A template calls ``view.featured_book`` in its header and its footer: the method
    fetches the book (and the template then its author) twice. One root cause, one
    duplicate: the book fetched twice, not a second finding for its author."""
    report = report_of(Client().get(f"/books/{books[0].pk}/featured/"))
    assert report.nplusones == [], str(report)
    assert [(d.model, d.count) for d in report.duplicates] == [("testapp.Book", 2)], str(report)
    assert report.duplicates[0].callsite == site(
        library_views.__file__, "featured-book", "FeaturedBookView.featured_book"
    )


def test_saving_one_object_twice_is_not_an_nplusone(books):
    """A view saves an object, then saves it again after changing nothing."""
    book = books[0]
    with capture() as report:
        book.save()
        book.save()
    assert report.nplusones == [], str(report)


def _touch(book: Book) -> None:
    book.save()  # touch


def test_saving_one_object_twice_through_one_helper_is_not_an_nplusone(books):
    """Two signal receivers each call one ``touch(book)`` helper on the same book: the
    same row written twice from one line is not a loop over rows."""
    book = books[0]
    with capture() as report:
        for _receiver in ("on_review", "on_rating"):
            _touch(book)
    assert report.nplusones == [], str(report)


def _titled(title: str) -> int:
    return Book.objects.filter(title=title).count()


def test_one_helper_called_with_two_constants_is_not_an_nplusone(books):
    """A page counts the books titled "header" and those titled "footer" through one
    helper: two statements that differ by a constant written in the code, not by row."""
    with capture() as report:
        for title in ("header", "footer"):
            _titled(title)
    assert report.nplusones == [], str(report)


def test_property_reading_a_relation_in_a_loop(books):
    """A model property (``Book.author_name``) reads a relation, and a loop calls it per
    row: the reading line is the property, the edit point is the loop's queryset."""
    with capture() as report:
        for book in Book.objects.order_by("id"):  # property-parent
            _ = book.author_name
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.callsite == site(models.__file__, "book-author-name", "Book.author_name")
    assert finding.parent_callsite == at(
        "property-parent", "test_property_reading_a_relation_in_a_loop"
    )


def test_property_reading_a_relation_in_a_loop_fixed(books):
    """The same loop with the author joined."""
    with capture() as report:
        for book in Book.objects.select_related("author").order_by("id"):
            _ = book.author_name
    assert_clean(report)


def _reindex(**kwargs: Any) -> None:
    """An ``m2m_changed`` receiver, as search indexes and caches connect."""


@pytest.fixture(params=[False, True], ids=["fast-add", "m2m-changed-receiver"])
def tagging(request, books, tags):
    """How ``add()`` writes: with no ``m2m_changed`` receiver, one ``INSERT ... ON CONFLICT
    DO NOTHING`` (or its vendor's spelling); with one, a ``SELECT`` of the rows already
    there, then the ``INSERT``."""
    through = Book.tags.through
    if request.param:
        m2m_changed.connect(_reindex, sender=through)
    yield books, tags[0]
    m2m_changed.disconnect(_reindex, sender=through)


def test_many_to_many_add_in_a_loop_is_one_write_finding(tagging):
    """Tagging each book in turn: one cause, one finding on the relation (whether or not
    ``add()`` also reads the through table first), not a second one for the table."""
    books, tag = tagging
    with capture() as report:
        for book in books:
            book.tags.add(tag)
    assert len(report.nplusones) == 1, str(report)
    [finding] = report.nplusones
    assert finding.kind == "write"
    assert finding.relation == "testapp.Book.tags"
    assert finding.count == 5
    assert report.duplicates == [], str(report)


def test_many_to_many_add_in_a_loop_fixed(tagging):
    """The same tagging from the other side: one ``add()`` for all the books."""
    books, tag = tagging
    with capture() as report:
        tag.book_set.add(*books)
    assert_clean(report)


# --------------------------------------------------------------------------- library loops


def test_formset_validation_is_a_library_duplicate_not_an_nplusone(books):
    """A model formset editing five books validates each form's hidden ``id`` with its own
    ``get(pk=...)``: Django's loop, which the user cannot change, is not an N+1."""
    data = {"form-TOTAL_FORMS": "5", "form-INITIAL_FORMS": "5"}
    for index, book in enumerate(sorted(books, key=lambda b: b.pk)):
        data[f"form-{index}-id"] = str(book.pk)
        data[f"form-{index}-title"] = book.title
    response = Client().post("/books/titles/", data)
    assert response.json() == {"valid": True}
    report = report_of(response)
    assert report.nplusones == [], str(report)
    library = [d for d in report.duplicates if gained(d, "kind") == "library"]
    assert [d.count for d in library] == [5], str(report)


def test_formset_save_is_a_library_loop_of_writes(books):
    """``formset.save()`` saves each changed form's row: Django's loop over the forms
    posted, which the user's code cannot batch. Named after the library, with the line
    that called it; not an N+1 that would fail a test."""
    from tests.testapp.library_views import BookTitleFormSet

    data = {"form-TOTAL_FORMS": "5", "form-INITIAL_FORMS": "5"}
    for index, book in enumerate(sorted(books, key=lambda b: b.pk)):
        data[f"form-{index}-id"] = str(book.pk)
        data[f"form-{index}-title"] = f"{book.title} (2nd edition)"
    formset = BookTitleFormSet(data, queryset=Book.objects.order_by("id"))
    assert formset.is_valid()
    with capture() as report:
        formset.save()  # formset-save
    assert report.nplusones == [], str(report)
    [saves] = [d for d in report.duplicates if d.sql.startswith("UPDATE")]
    assert (saves.kind, saves.library, saves.count) == ("library", "django.forms", 5)
    assert saves.callsite == at("formset-save", "test_formset_save_is_a_library_loop_of_writes")


def test_a_save_override_that_a_library_calls_per_item_is_the_librarys_loop(books):
    """A model's own ``save()`` override is the first line of the user's code on the stack,
    but ``formset.save()`` is what calls it once per form: the loop is Django's (as
    django-taggit's is when it saves one tagged item per tag)."""
    from django.forms import modelformset_factory

    from tests.testapp.models import TrimmedBook

    formset_class = modelformset_factory(TrimmedBook, fields=["title"], extra=0)
    data = {"form-TOTAL_FORMS": "5", "form-INITIAL_FORMS": "5"}
    for index, book in enumerate(sorted(books, key=lambda b: b.pk)):
        data[f"form-{index}-id"] = str(book.pk)
        data[f"form-{index}-title"] = f"  {book.title} (revised)  "
    formset = formset_class(data, queryset=TrimmedBook.objects.order_by("id"))
    assert formset.is_valid()
    with capture() as report:
        formset.save()
    assert report.nplusones == [], str(report)
    [saves] = [d for d in report.duplicates if d.sql.startswith("UPDATE")]
    assert (saves.kind, saves.library, saves.count) == ("library", "django.forms", 5)
    assert saves.callsite == site(models.__file__, "trimmed-save", "TrimmedBook.save")


def test_a_save_loop_of_the_users_own_stays_an_nplusone(books):
    """The same writes from the user's own loop: theirs to batch with ``bulk_update``."""
    with capture() as report:
        for book in Book.objects.order_by("id"):
            book.title += " (2nd edition)"
            book.save()
    finding = only_nplusone(report)
    assert (finding.kind, finding.count) == ("write", 5)
    assert finding.suggestion == 'Book.objects.bulk_update(objs, ["field", ...])'


def test_drf_primary_key_validation_is_a_library_duplicate_not_an_nplusone(tags):
    """A DRF serializer with ``PrimaryKeyRelatedField(many=True)`` validates five posted
    tag ids with one ``get(pk=...)`` each: DRF's loop, not an N+1."""
    pks = [tag.pk for tag in tags]
    response = Client().post("/api/book-tags/", {"tags": pks}, content_type="application/json")
    report = report_of(response)
    assert response.json() == {"tags": pks}
    assert report.nplusones == [], str(report)
    library = [d for d in report.duplicates if gained(d, "kind") == "library"]
    assert [d.count for d in library] == [5], str(report)


# --------------------------------------------------------------------------- admin

ADMIN = test_admin.__file__


def changelist(client: Client, prefix: str, model: str) -> Report:
    """The report of a changelist page; its only repeats besides an N+1 are the admin's
    two ``COUNT(*)`` (filtered, then full), which are never an N+1."""
    report = report_of(client.get(f"/admin/{prefix}/testapp/{model}/"))
    assert all(d.sql.startswith("SELECT COUNT(*)") for d in report.duplicates), str(report)
    return report


def test_admin_changelist_without_relations_is_clean(admin_client, authors):
    """An author changelist showing names only: its two ``COUNT(*)`` (filtered and full)
    are how the admin counts, not an N+1."""
    report = changelist(admin_client, "authors", "author")
    assert report.nplusones == [], str(report)


#: Django 6.1's changelist joins every foreign key of ``list_display``, nullable ones too.
ADMIN_JOINS_NULLABLE_KEYS = django.VERSION >= (6, 1)


@pytest.mark.skipif(ADMIN_JOINS_NULLABLE_KEYS, reason="Django 6.1+ joins it by itself")
def test_admin_relation_in_list_display_points_at_the_admin(admin_client, books):
    """A book changelist with a nullable foreign key in ``list_display``: Django before 6.1
    joins non-null keys itself but not this one, so each row loads its publisher. The fix
    goes in the ``ModelAdmin``, so that is where the finding points."""
    report = changelist(admin_client, "books", "book")
    assert len(report.nplusones) == 1, str(report)
    [finding] = report.nplusones
    assert finding.relation == "testapp.Book.publisher"
    assert finding.count == 5
    assert finding.callsite == site(ADMIN, "book-admin-list-display", "BookAdmin.list_display")
    assert_precise_suggestion(finding, 'list_select_related = ["publisher"]')


@pytest.mark.skipif(not ADMIN_JOINS_NULLABLE_KEYS, reason="before 6.1, see the test above")
def test_admin_joins_a_nullable_key_of_list_display_on_django_6_1(admin_client, books):
    """On Django 6.1+ the same changelist is clean with no ``list_select_related``: the
    guard must not claim an N+1 that Django no longer makes."""
    report = changelist(admin_client, "books", "book")
    assert report.nplusones == [], str(report)


def test_admin_relation_in_list_display_fixed(admin_client, books):
    """The same changelist with ``list_select_related = ["publisher"]``."""
    report = changelist(admin_client, "books-fixed", "book")
    assert report.nplusones == [], str(report)


def test_admin_foreign_key_django_joins_is_clean(admin_client, books):
    """A book changelist with the non-null ``author`` in ``list_display``: the changelist
    joins it on its own (``list_select_related`` left at ``False``), so nothing repeats."""
    report = changelist(admin_client, "books-by-author", "book")
    assert report.nplusones == [], str(report)


def test_admin_list_display_method_points_at_the_method(admin_client, books):
    """A ``list_display`` method reads ``obj.author.name`` per row: the method is the
    reading line, ``list_select_related`` the fix."""
    report = changelist(admin_client, "books-method", "book")
    assert len(report.nplusones) == 1, str(report)
    [finding] = report.nplusones
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.callsite == site(
        ADMIN, "book-method-admin-author-name", "BookMethodAdmin.author_name"
    )
    assert_precise_suggestion(finding, 'list_select_related = ["author"]')


def test_admin_list_display_method_fixed(admin_client, books):
    """The same changelist with ``list_select_related = ["author"]``."""
    report = changelist(admin_client, "books-method-fixed", "book")
    assert report.nplusones == [], str(report)


# --------------------------------------------------------------------------- DRF


def test_drf_nested_serializer_points_at_the_view_queryset(books):
    """A ``ListAPIView`` whose serializer nests the author: the loop is DRF's, the fix is
    the view's ``queryset``."""
    report = report_of(Client().get("/api/books/"))
    finding = only_nplusone(report)
    queryset = site(library_views.__file__, "book-api-list-queryset", "BookApiList.queryset")
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.parent_callsite == queryset
    assert gained(finding, "fix_at") == queryset
    assert finding.callsite != "unknown"
    assert_precise_suggestion(finding, '.select_related("author")')


def test_drf_nested_serializer_fixed(books):
    """The same view with ``select_related("author")``."""
    assert_clean(report_of(Client().get("/api/books/fixed/")))


def test_drf_nested_many_serializer_points_at_the_view_queryset(books):
    """``OrmAuthorList`` nests each author's books (``many=True``): the fix is the view's
    ``queryset``."""
    report = report_of(Client().get("/api/authors/"))
    finding = only_nplusone(report)
    queryset = site(views.__file__, "orm-author-list-queryset", "OrmAuthorList.queryset")
    assert finding.relation == "testapp.Author.book_set"
    assert finding.parent_callsite == queryset
    assert gained(finding, "fix_at") == queryset
    assert finding.callsite != "unknown"
    assert_precise_suggestion(finding, '.prefetch_related("book_set")')


def test_drf_nested_many_serializer_fixed(books):
    """The same view with ``prefetch_related("book_set")``."""
    assert_clean(report_of(Client().get("/api/authors/fixed/")))


# --------------------------------------------------------------------------- generic views


def test_list_view_template_loop_points_at_the_view_queryset(books):
    """A ``ListView`` whose template reads ``book.author.name`` for each row: the line
    is in the template, the fix in the view's ``queryset``."""
    report = report_of(Client().get("/books/"))
    finding = only_nplusone(report)
    queryset = site(library_views.__file__, "book-list-view-queryset", "BookListView.queryset")
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.parent_callsite == queryset
    assert gained(finding, "fix_at") == queryset
    assert finding.callsite != "unknown"
    assert finding.template == template_line("precision/book_list.html", "book.author.name")
    assert_precise_suggestion(finding, '.select_related("author")')


def test_list_view_template_loop_fixed(books):
    """The same view with ``select_related("author")``."""
    assert_clean(report_of(Client().get("/books/fixed/")))


# --------------------------------------------------------------------------- from real apps
# Each case below was a false "N+1" on a real open-source app's test suite (docs/precision.md).

WITH_PROJECT_MIDDLEWARE = [
    "django_nplusone_guard.middleware.NPlusOneGuardMiddleware",
    "tests.testapp.middleware.LanguageMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]


def test_two_tags_counting_their_own_querysets_are_a_duplicate_not_at_the_middleware(
    books, settings
):
    """Two inclusion tags each run ``{% if authors.count > 1 %}``: the same statement with
    the same parameters twice. The project's middleware, the only line of its code on the
    stack, is not where it happens: the finding names the view class."""
    settings.MIDDLEWARE = WITH_PROJECT_MIDDLEWARE
    report = report_of(Client().get("/navigation/"))
    assert report.nplusones == [], str(report)
    [duplicate] = report.duplicates
    assert (duplicate.kind, duplicate.count, duplicate.model) == ("identical", 2, "testapp.Author")
    assert "middleware" not in duplicate.callsite
    assert duplicate.callsite == site(library_views.__file__, "navigation-view", "NavigationView")
    # The two tags' templates, which is where the same count runs twice.
    assert duplicate.templates == ["precision/author_nav.html:1", "precision/author_menu.html:1"]


def test_the_middleware_line_is_never_a_call_site(settings, books):
    """A view's own N+1 under the project's middleware still points at the view."""
    settings.MIDDLEWARE = WITH_PROJECT_MIDDLEWARE
    finding = only_nplusone(report_of(Client().get("/books/")))
    assert all("middleware" not in frame for frame in finding.stack), finding.stack


def test_two_foreign_keys_of_two_single_objects_are_nothing(db):
    """``book.author`` and ``profile.author`` read once each in one template: one SQL
    shape, two different relations of two objects. Not a loop, not a repeat."""
    from tests.factories import ProfileFactory

    book, profile = BookFactory(), ProfileFactory()
    report = report_of(Client().get(f"/two-relations/{book.pk}/{profile.pk}/"))
    assert_clean(report)


def test_a_related_count_read_twice_in_a_template_is_a_duplicate(db):
    """``{{ author.book_set.count }}`` and its ``|pluralize``: one author, asked twice."""
    author = AuthorFactory()
    BookFactory.create_batch(3, author=author)
    report = report_of(Client().get(f"/authors/{author.pk}/count-twice/"))
    assert report.nplusones == [], str(report)
    [duplicate] = report.duplicates
    assert (duplicate.model, duplicate.field) == ("testapp.Author", "book_set")
    assert duplicate.count == 2


# --------------------------------------------------------------------------- forms


def test_a_select_whose_labels_read_a_relation_points_at_the_form_field(db):
    """A ``ModelChoiceField`` renders one ``<option>`` per row, and the model's
    ``__str__`` reads a foreign key: an N+1 whose line is ``__str__`` and whose fix goes in
    the form field's queryset."""
    from tests.factories import ReviewFactory

    ReviewFactory.create_batch(4)
    with capture() as report:
        html = library_views.ReviewPickForm().as_p()
    assert html.count("<option") == 5  # the four reviews and the empty choice
    finding = only_nplusone(report)
    assert finding.relation.endswith(".book")
    assert finding.count == 4
    assert finding.callsite == site(models.__file__, "review-choice-label", "ReviewChoice.__str__")
    field = site(library_views.__file__, "pick-field", "ReviewPickForm.review")
    assert field in finding.stack
    assert gained(finding, "fix_at") == field
    assert_precise_suggestion(finding, '.select_related("book")')


def test_a_select_whose_queryset_joins_the_relation_is_clean(db):
    from tests.factories import ReviewFactory

    ReviewFactory.create_batch(4)
    with capture() as report:
        library_views.ReviewPickFormFixed().as_p()
    assert_clean(report)


# --------------------------------------------------------------------------- more real-app cases


def test_a_library_field_querying_per_row_in_a_serializer_is_an_nplusone(books, settings):
    """A field class from a package (here listed in ``STACK_IGNORE``) that queries once per
    serialized row, as django-taggit's tag field does: a loop over the user's rows, fixed in
    the user's queryset, even though no line of the user's code runs per row."""
    from rest_framework import serializers as drf

    from tests.testapp.fieldlib import ReviewRatingsField

    class BookRatingsSerializer(drf.ModelSerializer):
        ratings = ReviewRatingsField()  # ratings-field

        class Meta:
            model = Book
            fields = ["id", "ratings"]

    settings.NPLUSONE_GUARD = {"STACK_IGNORE": ["tests.testapp.fieldlib"]}
    with capture() as report:
        data = BookRatingsSerializer(Book.objects.order_by("id"), many=True).data
    assert len(data) == len(books)
    finding = only_nplusone(report)
    assert finding.model == "testapp.Review"
    assert finding.count == len(books)
    qualname = (
        "test_a_library_field_querying_per_row_in_a_serializer_is_an_nplusone."
        "<locals>.BookRatingsSerializer.ratings"
    )
    assert finding.callsite == at("ratings-field", qualname)


def test_signal_receivers_of_a_cascade_delete_are_djangos_loop(db):
    """Deleting one author cascades to its books' reviews, and Django sends ``post_delete``
    for each review; a receiver that reads ``review.book`` runs once per row of Django's
    loop, which no queryset of the user's can join."""
    from django.db.models.signals import post_delete

    from tests.factories import ReviewFactory
    from tests.testapp.models import Review

    author = AuthorFactory()
    for _ in range(4):
        ReviewFactory(book=BookFactory(author=author))
    titles: list[str] = []

    def note_title(sender: Any, instance: Review, **kwargs: Any) -> None:
        titles.append(instance.book.title)  # receiver-reads

    post_delete.connect(note_title, sender=Review)
    try:
        with capture() as report:
            author.delete()
    finally:
        post_delete.disconnect(note_title, sender=Review)
    assert len(titles) == 4
    assert report.nplusones == [], str(report)
    [cascade] = [d for d in report.duplicates if d.kind == "library"]
    assert (cascade.library, cascade.count) == ("django.db.models.deletion", 4)
    assert cascade.callsite == at(
        "receiver-reads",
        "test_signal_receivers_of_a_cascade_delete_are_djangos_loop.<locals>.note_title",
    )


def test_a_base_views_loop_over_object_list_is_fixed_in_the_subclass_model(books):
    """A base ``ListView`` whose ``get_context_data`` reads a relation of every row, and
    subclasses that only say ``model = Book``: the loop line is the base class's, but the
    rows, and so the fix, are each subclass's."""
    finding = only_nplusone(report_of(Client().get("/books/by-author/")))
    assert finding.relation == "testapp.Book.author"
    # Python 3.12 inlines comprehensions (PEP 709): the set's loop runs in the method.
    inlined = sys.version_info >= (3, 12)
    function = "AuthorNamesListView.get_context_data"
    assert finding.callsite == site(
        library_views.__file__,
        "base-loop",
        function if inlined else f"{function}.<locals>.<setcomp>",
    )
    model_line = site(library_views.__file__, "subclass-model", "BooksByAuthorView.model")
    assert gained(finding, "fix_at") == model_line


def test_a_line_of_yours_asking_a_library_the_same_thing_twice_is_a_repeat(books):
    """A library function called twice with the same arguments from one line (a form a
    settings library validates twice, a fresh paginator per call): the same statement with
    the same parameters, which the user's code can run once; not the library's loop."""
    from django.core.paginator import Paginator

    def page_count() -> int:
        return Paginator(Book.objects.order_by("id"), 2).num_pages  # paginator-count

    with capture() as report:
        assert page_count() == page_count() == 3
    assert report.nplusones == [], str(report)
    [repeat] = report.duplicates
    assert (repeat.kind, repeat.library, repeat.count) == ("identical", None, 2)
    assert repeat.callsite == at(
        "paginator-count",
        "test_a_line_of_yours_asking_a_library_the_same_thing_twice_is_a_repeat.<locals>.page_count",
    )


# --------------------------------------------------------------------------- GraphQL


def test_graphene_fields_resolved_per_row_point_at_the_type_and_the_resolver(books):
    """graphene-django resolves ``author`` for each book through the default resolver:
    the call site is the ``BookType`` field, the fix the query's resolver."""
    from tests.testapp import graphql_schema

    with capture() as report:
        result = graphql_schema.schema.execute("{ books { title author { name } } }")
    assert result.errors is None
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.count == len(books)
    path = graphql_schema.__file__
    assert finding.callsite == site(path, "book-type-fields", "BookType.author")
    assert finding.fix_at == site(path, "resolve-books", "Query.resolve_books")
    assert_precise_suggestion(finding, '.select_related("author")')


def test_graphene_resolver_with_the_join_is_clean(books):
    from tests.testapp import graphql_schema

    with capture() as report:
        result = graphql_schema.schema.execute("{ booksFixed { title author { name } } }")
    assert result.errors is None
    assert_clean(report)


def test_a_decorated_views_own_save_loop_stays_an_nplusone(books):
    """A view under one of Django's decorators saves each book in its own loop: the
    decorator above the view is library code, but it loops over nothing."""
    finding = only_nplusone(report_of(Client().get("/books/retitle/")))
    assert (finding.kind, finding.count) == ("write", len(books))
    assert finding.callsite == site(library_views.__file__, "retitle-save", "retitle_books")


def test_saving_copies_in_a_loop_suggests_bulk_create(books):
    """``obj.pk = None; obj.save()`` inserts a copy: the fix is ``bulk_create``, not the
    ``bulk_update`` an existing row's save would get."""
    with capture() as report:
        for book in Book.objects.order_by("id"):
            book.pk = None
            book.save()
    finding = only_nplusone(report)
    assert finding.suggestion == "Book.objects.bulk_create(objs)"


def test_a_detail_views_own_loop_over_other_rows_is_fixed_where_they_are_built(books):
    """The rows a ``DetailView``'s own ``get_context_data`` loops over are built on its own
    line, not by the view's ``model``: the fix goes there."""
    author = Author.objects.first()
    assert author is not None
    finding = only_nplusone(report_of(Client().get(f"/authors/{author.pk}/detail/")))
    assert finding.relation == "testapp.Book.author"
    assert finding.fix_at == site(
        library_views.__file__, "detail-loop", "AuthorDetailView.get_context_data"
    )


def test_a_prefetching_queryset_evaluated_per_row_is_one_finding(books):
    """Each author's books with their tags and reviews prefetched, evaluated once per
    author: three statements per author, one root cause (the queryset in the loop), so
    one N+1 that counts all of them, not one more per prefetch."""
    with capture() as report:
        for author in Author.objects.order_by("id"):
            list(Book.objects.filter(author=author).prefetch_related("tags", "reviews"))
    finding = only_nplusone(report)
    assert finding.model == "testapp.Book"
    assert finding.count == 3 * Author.objects.count()


def test_a_library_called_once_per_row_of_the_users_queryset_is_the_users_loop(db):
    """``for user in users: user.has_perm(...)``: Django's auth backend queries each user's
    group permissions, but it is called once per row of the user's own queryset, so the
    loop (and its fix) is the user's, not ``django.contrib.auth``'s."""
    from django.contrib.auth.models import User

    for index in range(4):
        User.objects.create_user(f"member{index}")
    with capture() as report:
        for user in User.objects.order_by("id"):  # users-loop
            user.has_perm("testapp.view_book")
    assert [d for d in report.duplicates if d.kind == "library"] == [], str(report)
    models_reported = {f.model for f in report.nplusones}
    assert "auth.Permission" in models_reported, str(report)
