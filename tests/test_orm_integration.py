"""ORM attribution where other code sits between the user and the ORM: Django templates,
DRF serializers, async views; and what the hooks must never break: pickling, caches,
models with odd equality, nested and ignored scopes, the JSON round trip."""

from __future__ import annotations

import asyncio
import json
import os
import pickle

import pytest
from django.core.cache import caches
from django.template.loader import render_to_string
from django.test import Client
from rest_framework import serializers

from django_nplusone_guard import capture, ignore
from django_nplusone_guard.report import Report
from tests.factories import AuthorFactory, BookFactory, TagFactory
from tests.orm_expect import PEERS, line_of, only_nplusone, site
from tests.testapp.models import Author, Book, QuirkyNote
from tests.testapp.views import AuthorWithBooksSerializer

pytestmark = pytest.mark.django_db


def at(marker: str, function: str) -> str:
    return site(__file__, marker, function)


@pytest.fixture
def books(db):
    tags = TagFactory.create_batch(2)
    return [BookFactory(author=AuthorFactory(), tags=tags) for _ in range(5)]


# --------------------------------------------------------------------------- templates


def _template_line(name: str, marker: str) -> int:
    from pathlib import Path

    path = Path(__file__).parent / "testapp" / "templates" / name
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if marker in text:
            return number
    raise AssertionError(marker)


def test_template_nplusone_reports_the_template_line(books):
    with capture() as report:
        render_to_string("orm/book_list.html", {"books": Book.objects.order_by("id")})  # tpl
    by_relation = {f.relation: f for f in report.nplusones}
    assert set(by_relation) == {"testapp.Book.author", "testapp.Book.tags"}, str(report)
    author, tags = by_relation["testapp.Book.author"], by_relation["testapp.Book.tags"]
    function = "test_template_nplusone_reports_the_template_line"
    assert author.template == (
        f"orm/book_list.html:{_template_line('orm/book_list.html', 'book.author.name')}"
    )
    assert tags.template == (
        f"orm/tag_list.html:{_template_line('orm/tag_list.html', 'book.tags.all')}"
    )
    for finding in (author, tags):
        assert finding.count == 5
        assert finding.callsite == at("tpl", function)
        assert finding.parent_callsite == at("tpl", function)
    assert author.suggestion == '.select_related("author")'
    assert author.alternative == PEERS
    assert tags.suggestion == '.prefetch_related("tags")'
    assert "in template orm/book_list.html:" in str(report)


def test_template_nplusone_through_the_middleware(books):
    response = Client().get("/orm/books/template/")
    assert response.status_code == 200
    report = response.wsgi_request.nplusone_guard_report  # type: ignore[attr-defined]
    relations = {f.relation: f for f in report.nplusones}
    assert set(relations) == {"testapp.Book.author", "testapp.Book.tags"}
    assert relations["testapp.Book.author"].template.startswith("orm/book_list.html:")
    assert relations["testapp.Book.author"].callsite.startswith("tests/testapp/views.py:")


def test_template_fixed_is_clean(books):
    response = Client().get("/orm/books/template/?fixed=1")
    assert response.status_code == 200
    assert response.wsgi_request.nplusone_guard_report.nplusones == []  # type: ignore[attr-defined]


def test_template_single_object_is_not_flagged(books):
    with capture() as report:
        render_to_string("orm/book_list.html", {"books": Book.objects.filter(pk=books[0].pk)})
    assert report.nplusones == []


# --------------------------------------------------------------------------- DRF


class AuthorNameSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ["name"]


class BookWithAuthorSerializer(serializers.ModelSerializer):
    author = AuthorNameSerializer()  # drf-fk-field

    class Meta:
        model = Book
        fields = ["id", "author"]


def test_drf_nested_many_serializer(books):
    with capture() as report:
        serializer = AuthorWithBooksSerializer(Author.objects.order_by("id"), many=True)
        data = serializer.data  # drf-many
    assert len(data) == 5
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.book_set"
    assert finding.count == 5
    # The line that reads the relation is the serializer's field; the test's line that
    # asked for the data comes next, and is where the queryset was evaluated.
    views = os.path.join(os.path.dirname(__file__), "testapp", "views.py")
    assert finding.callsite == site(views, "drf-many-field", "AuthorWithBooksSerializer.books")
    assert finding.stack[1] == at("drf-many", "test_drf_nested_many_serializer")
    assert finding.parent_callsite == at("drf-many", "test_drf_nested_many_serializer")
    assert finding.suggestion == '.prefetch_related("book_set")'


def test_drf_nested_foreign_key_serializer(books):
    with capture() as report:
        queryset = Book.objects.order_by("id")
        payload = BookWithAuthorSerializer(queryset, many=True).data  # drf-fk
    assert len(payload) == 5
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite == at("drf-fk-field", "BookWithAuthorSerializer.author")
    assert finding.stack[1] == at("drf-fk", "test_drf_nested_foreign_key_serializer")
    assert finding.suggestion == '.select_related("author")'
    assert finding.alternative == PEERS


def test_drf_fixed_querysets_are_clean(books):
    with capture() as report:
        AuthorWithBooksSerializer(Author.objects.prefetch_related("book_set"), many=True).data  # noqa: B018
        BookWithAuthorSerializer(Book.objects.select_related("author"), many=True).data  # noqa: B018
    assert report.nplusones == []


def test_drf_single_object_is_not_flagged(books):
    with capture() as report:
        AuthorWithBooksSerializer(Author.objects.get(pk=books[0].author_id)).data  # noqa: B018
    assert report.nplusones == []


# --------------------------------------------------------------------------- async


async def _async_loop() -> Report:
    async with capture() as report:
        async for book in Book.objects.order_by("id"):  # async-parent
            await Author.objects.aget(pk=book.author_id)  # async-access
    return report


async def _async_relation_loop() -> Report:
    async with capture() as report:
        async for author in Author.objects.order_by("id"):  # async-rel-parent
            await author.book_set.acount()  # async-rel-access
    return report


async def _async_fixed() -> Report:
    async with capture() as report:
        ids = [book.author_id async for book in Book.objects.order_by("id")]
        by_pk = await Author.objects.ain_bulk(ids)
        assert len(by_pk) == 5
    return report


@pytest.mark.django_db(transaction=True)
def test_async_orm_loop(books):
    # asyncio.run, not async_to_sync: the queries run in sync_to_async's worker thread,
    # whose stack has no user frames, as in an ASGI server.
    report = asyncio.run(_async_loop())
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author"
    assert finding.count == 5
    assert finding.callsite == at("async-access", "_async_loop")
    assert finding.parent_callsite == at("async-parent", "_async_loop")
    assert finding.suggestion.startswith("Author.objects.in_bulk(ids)")


@pytest.mark.django_db(transaction=True)
def test_async_related_count_loop(books):
    report = asyncio.run(_async_relation_loop())
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.book_set"
    assert finding.callsite == at("async-rel-access", "_async_relation_loop")
    assert finding.parent_callsite == at("async-rel-parent", "_async_relation_loop")
    assert finding.suggestion == '.annotate(book_count=Count("book"))'


@pytest.mark.django_db(transaction=True)
def test_async_fixed_is_clean(books):
    assert asyncio.run(_async_fixed()).nplusones == []


async def _async_single(pk: int) -> Report:
    async with capture() as report:
        book = await Book.objects.aget(pk=pk)
        await Author.objects.aget(pk=book.author_id)
    return report


@pytest.mark.django_db(transaction=True)
def test_async_single_object_is_not_flagged(books):
    assert asyncio.run(_async_single(books[0].pk)).nplusones == []


# --------------------------------------------------------------------------- unused eager


def test_unused_eager_is_off_by_default(books):
    with capture() as report:
        for book in Book.objects.select_related("publisher").prefetch_related("tags"):
            _ = book.title
    assert report.nplusones == []


def test_unused_eager_reports_relations_no_instance_touched(books, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "REPORT_UNUSED_EAGER": True}
    with capture() as report:
        queryset = Book.objects.select_related("author", "publisher").prefetch_related("tags")
        for book in queryset:  # eager-site
            _ = book.author.name
    unused = sorted((f.field, f.suggestion) for f in report.nplusones)
    assert unused == [
        ("publisher", 'remove "publisher" from .select_related(...): no instance accessed it'),
        ("tags", 'remove "tags" from .prefetch_related(...): no instance accessed it'),
    ]
    for finding in report.nplusones:
        assert finding.kind == "unused_eager"
        assert finding.model == "testapp.Book"
        assert finding.callsite == at(
            "eager-site", "test_unused_eager_reports_relations_no_instance_touched"
        )
        assert finding.title.startswith(f"Unused eager load testapp.Book.{finding.field}")


def test_unused_eager_checks_each_step_of_a_path(books, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "REPORT_UNUSED_EAGER": True}
    with capture() as report:
        for book in Book.objects.select_related("author__profile").prefetch_related(
            "author__book_set"
        ):
            _ = book.author.name
    assert sorted(str(f.field) for f in report.nplusones) == [
        "author__book_set",
        "author__profile",
    ]


def test_used_eager_loads_are_not_reported(books, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "REPORT_UNUSED_EAGER": True}
    with capture() as report:
        for book in Book.objects.select_related("author").prefetch_related("tags"):
            _ = (book.author.name, [t.name for t in book.tags.all()])
    assert report.nplusones == []


# --------------------------------------------------------------------------- safety


def test_pickled_querysets_and_instances_survive(books):
    with capture() as report:
        queryset = Book.objects.select_related("author").order_by("id")
        rows = list(queryset)
        restored = pickle.loads(pickle.dumps(queryset))
        assert [b.pk for b in restored] == [b.pk for b in rows]
        copies = pickle.loads(pickle.dumps(rows))
        assert [b.author.name for b in copies] == [b.author.name for b in rows]
        # Pickling a queryset evaluates it: that is the parent line.
        lazy = pickle.loads(pickle.dumps(Book.objects.order_by("id")))  # pickle-parent
        for book in lazy:
            _ = book.publisher.name  # pickle-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.publisher"
    assert finding.parent_callsite == at(
        "pickle-parent", "test_pickled_querysets_and_instances_survive"
    )
    for book in copies:
        assert "_nplusone" not in "".join(vars(book))
        assert set(vars(book._state)) <= {"db", "adding", "fields_cache", "fetch_mode", "peers"}


def test_cache_round_trip_inside_a_scope(books):
    cache = caches["default"]
    with capture() as report:
        cache.set("orm-books", list(Book.objects.order_by("id")))
        cached = cache.get("orm-books")
        for book in cached:
            _ = book.author.name  # cache-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert [b.pk for b in cached] == [b.pk for b in books]


def test_models_with_custom_equality_and_no_hash(books):
    for book in books:
        QuirkyNote.objects.create(author=book.author, text="odd")
    with capture() as report:
        for note in QuirkyNote.objects.order_by("id"):  # quirky-parent
            _ = note.author.name  # quirky-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.QuirkyNote.author"
    assert finding.count == 5
    assert finding.parent_callsite == at(
        "quirky-parent", "test_models_with_custom_equality_and_no_hash"
    )


def test_nested_scopes_both_attribute(books):
    with capture() as outer:
        with capture() as inner:
            for book in Book.objects.all():
                _ = book.author.name  # nested-access
        for book in Book.objects.all():
            _ = book.publisher.name
    assert only_nplusone(inner).relation == "testapp.Book.author"
    assert {f.relation for f in outer.nplusones} == {
        "testapp.Book.author",
        "testapp.Book.publisher",
    }


def test_ignored_block_stays_silent(books):
    with capture() as report, ignore():
        for book in Book.objects.all():
            _ = book.author.name
    assert report.nplusones == []
    assert report.query_count == 6


def test_no_scope_records_nothing(books):
    for book in Book.objects.all():
        _ = book.author.name
    with capture() as report:
        pass
    assert report.query_count == 0


def test_attribution_round_trips_through_json(books):
    with capture() as report:
        render_to_string("orm/book_list.html", {"books": Book.objects.order_by("id")})
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.to_dict() == report.to_dict()
    assert {(f.relation, f.template, f.parent_callsite) for f in again.nplusones} == {
        (f.relation, f.template, f.parent_callsite) for f in report.nplusones
    }


def test_line_helper_finds_markers():
    assert line_of(__file__, "pickle-parent") > 0


# --------------------------------------------------------------------------- never harm


def test_an_internal_error_in_a_hook_leaves_the_query_alone(books, monkeypatch, caplog):
    from django_nplusone_guard.orm import hooks

    def broken(*args, **kwargs):
        raise RuntimeError("attribution bug")

    monkeypatch.setattr(hooks, "_relation", broken)
    with capture() as report:
        names = [book.author.name for book in Book.objects.order_by("id")]
    assert names == [book.author.name for book in books]
    assert report.query_count == 6  # each statement ran exactly once
    finding = only_nplusone(report)  # the SQL layer still reports it
    assert finding.count == 5
    assert finding.field is None


def test_orm_exceptions_pass_through_unchanged(books):
    from django_nplusone_guard.orm import hooks

    with capture() as report:
        with pytest.raises(Author.DoesNotExist):
            Author.objects.get(pk=-1)
        assert hooks._active.get() is None
    assert report.query_count == 1


def test_wrapped_methods_keep_django_markers():
    from django.db.models import Model, QuerySet

    assert getattr(QuerySet.delete, "alters_data", None) is True
    assert getattr(QuerySet.delete, "queryset_only", None) is True
    assert getattr(QuerySet.update, "alters_data", None) is True
    assert getattr(QuerySet.create, "alters_data", None) is True
    assert getattr(Model.delete, "alters_data", None) is True
    assert Model.save_base.__name__ == "save_base"


def test_usage_hooks_are_installed_only_while_unused_eager_is_on(settings):
    from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor

    def hooked() -> bool:
        return hasattr(ForwardManyToOneDescriptor.__dict__["__get__"], "__wrapped__")

    assert not hooked()
    settings.NPLUSONE_GUARD = {"ENABLED": True, "REPORT_UNUSED_EAGER": True}
    assert hooked()
    settings.NPLUSONE_GUARD = {"ENABLED": True}
    assert not hooked()


# --------------------------------------------------------------------------- middleware


def test_drf_generic_view_through_the_middleware(books):
    response = Client().get("/orm/api/authors/")
    assert response.status_code == 200
    report = response.wsgi_request.nplusone_guard_report  # type: ignore[attr-defined]
    finding = only_nplusone(report)
    # No user code is on the stack inside a generic view: the relation and the fix still are.
    assert finding.relation == "testapp.Author.book_set"
    assert finding.suggestion == '.prefetch_related("book_set")'
    fixed = Client().get("/orm/api/authors/fixed/")
    assert fixed.wsgi_request.nplusone_guard_report.nplusones == []  # type: ignore[attr-defined]


@pytest.mark.django_db(transaction=True)
def test_async_view_through_the_middleware(books):
    from django.test import AsyncClient

    from tests.testapp import views

    # An ASGI request on a running loop, as under uvicorn/daphne: the ORM calls run in
    # sync_to_async's worker thread and the call site comes from the view's coroutine.
    response = asyncio.run(AsyncClient().get("/async/books/"))
    assert response.status_code == 200
    report = response.asgi_request.nplusone_guard_report  # type: ignore[attr-defined]
    finding = only_nplusone(report)
    views_file = views.__file__
    assert finding.relation == "testapp.Author"
    assert finding.callsite == site(views_file, "async-aget", "async_book_list")
    assert finding.parent_callsite == site(views_file, "async-for", "async_book_list")
    assert finding.suggestion.startswith("Author.objects.in_bulk(ids)")


def test_a_long_template_loop_reads_template_nodes_only_for_the_calls_it_explains(db, monkeypatch):
    import sys

    recorder = sys.modules["django_nplusone_guard.capture"]
    reads: list[object] = []
    original = recorder._render_node

    def counted(depth: int) -> object:
        # ``original`` counts frames from its own, and this function is one more of them.
        node = original(depth + 1)
        reads.append(node)
        return node

    monkeypatch.setattr(recorder, "_render_node", counted)
    for _ in range(40):
        BookFactory(author=AuthorFactory())
    with capture() as report:
        render_to_string("orm/book_list.html", {"books": Book.objects.order_by("id")})  # tpl
    author = next(f for f in report.nplusones if f.relation == "testapp.Book.author")
    assert author.count == 40
    assert author.template == (
        f"orm/book_list.html:{_template_line('orm/book_list.html', 'book.author.name')}"
    )
    # The first call of each relation walks in full; later ones reuse that walk and read
    # the node only while it can still count (the first calls of a finding).
    assert 0 < len(reads) <= 2 * recorder.MAX_ATTRIBUTED_CALLS
    # ... and a reused walk finds the node being rendered, not just the full walk before it.
    assert None not in reads, {type(node).__name__ for node in reads}
