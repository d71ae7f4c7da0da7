"""Attribution of repeated queries that are not a relation load: related ``.count()``,
``.exists()``, ``.aggregate()``, re-filtered prefetches, ``get``/``filter`` in a loop,
writes in a loop and raw SQL. Each: detected with its fix, fixed version clean, one object
not flagged."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.models import Count, Exists, OuterRef, Prefetch, Sum

from django_nplusone_guard import capture
from tests.factories import AuthorFactory, BookFactory, ReviewFactory
from tests.orm_expect import line_of, only_nplusone, site
from tests.testapp.models import Author, Book, Counter, Review, Tag

BEFORE_THE_LOOP = "one query before the loop, then look each row up in its result"

pytestmark = pytest.mark.django_db


def at(marker: str, function: str) -> str:
    return site(__file__, marker, function)


@pytest.fixture
def authors(db):
    """Four authors with two books each."""
    found = []
    for _ in range(4):
        author = AuthorFactory()
        BookFactory.create_batch(2, author=author, pages=120)
        found.append(author)
    return found


# --------------------------------------------------------------------------- aggregates


@pytest.mark.parametrize(
    ("method", "arguments", "fix"),
    [
        pytest.param("count", {}, '.annotate(book_count=Count("book"))', id="count"),
        pytest.param(
            "exists",
            {},
            '.annotate(has_book=Exists(Book.objects.filter(author=OuterRef("pk"))))',
            id="exists",
        ),
        pytest.param(
            "aggregate",
            {"total": Sum("pages")},
            '.annotate(total=Sum("book__pages"))',
            id="aggregate",
        ),
    ],
)
def test_related_aggregate_in_a_loop(authors, method, arguments, fix):
    with capture() as report:
        for author in Author.objects.order_by("id"):  # agg-parent
            getattr(author.book_set, method)(**arguments)  # agg-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.book_set"
    assert finding.count == 4
    assert finding.callsite == at("agg-access", "test_related_aggregate_in_a_loop")
    assert finding.parent_callsite == at("agg-parent", "test_related_aggregate_in_a_loop")
    assert finding.suggestion == fix


def test_related_aggregates_fixed(authors):
    with capture() as report:
        rows = Author.objects.annotate(
            book_count=Count("book"),
            has_book=Exists(Book.objects.filter(author=OuterRef("pk"))),
            total=Sum("book__pages"),
        )
        values = [(a.book_count, a.has_book, a.total) for a in rows]
    assert values == [(2, True, 240)] * 4
    assert report.nplusones == []


def test_related_count_single_object(authors):
    with capture() as report:
        assert authors[0].book_set.count() == 2
    assert report.nplusones == []


def test_count_through_many_to_many(db):
    tags = [Tag.objects.create(name=f"t{n}") for n in range(3)]
    for tag in tags:
        BookFactory(tags=[tag])
    with capture() as report:
        for tag in Tag.objects.order_by("id"):  # m2m-parent
            tag.book_set.count()  # m2m-count
        for book in Book.objects.order_by("id"):
            book.tags.exists()  # m2m-exists
    counts, exists = sorted(report.nplusones, key=lambda f: f.relation, reverse=True)
    assert counts.relation == "testapp.Tag.book_set"
    assert counts.parent_callsite == at("m2m-parent", "test_count_through_many_to_many")
    assert counts.suggestion == '.annotate(book_count=Count("book"))'
    assert exists.relation == "testapp.Book.tags"
    assert exists.suggestion == (
        '.annotate(has_tags=Exists(Tag.objects.filter(book=OuterRef("pk"))))'
    )


def test_plain_filter_count_in_a_loop_names_the_reverse_relation(authors):
    with capture() as report:
        for author in Author.objects.order_by("id"):  # fcount-parent
            Book.objects.filter(author=author).count()  # fcount-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book"
    assert finding.parent_callsite == at(
        "fcount-parent", "test_plain_filter_count_in_a_loop_names_the_reverse_relation"
    )
    assert finding.suggestion == 'Author.objects.annotate(book_count=Count("book"))'


# --------------------------------------------------------------------------- re-filtered


def test_prefetched_relation_refiltered_in_the_loop(authors):
    with capture() as report:
        for author in Author.objects.prefetch_related("book_set"):  # refilter-parent
            _ = list(author.book_set.filter(in_print=True))  # refilter-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.book_set"
    assert finding.count == 4
    assert finding.callsite == at(
        "refilter-access", "test_prefetched_relation_refiltered_in_the_loop"
    )
    assert finding.parent_callsite == at(
        "refilter-parent", "test_prefetched_relation_refiltered_in_the_loop"
    )
    assert finding.suggestion == (
        '.prefetch_related(Prefetch("book_set", queryset=Book.objects.filter(...), '
        'to_attr="filtered_book_set"))'
    )


def test_prefetched_relation_refiltered_fixed(authors):
    with capture() as report:
        prefetch = Prefetch(
            "book_set", queryset=Book.objects.filter(in_print=True), to_attr="in_print_books"
        )
        for author in Author.objects.prefetch_related(prefetch):
            assert len(author.in_print_books) == 2
    assert report.nplusones == []


# --------------------------------------------------------------------------- lookups


def test_get_by_pk_in_a_loop(authors):
    with capture() as report:
        books = list(Book.objects.order_by("id"))  # get-parent
        for book in books:
            Author.objects.get(pk=book.author_id)  # get-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author"
    assert finding.count == 8
    assert finding.callsite == at("get-access", "test_get_by_pk_in_a_loop")
    assert finding.parent_callsite == at("get-parent", "test_get_by_pk_in_a_loop")
    assert finding.suggestion == "Author.objects.in_bulk(ids)"
    assert finding.alternative == BEFORE_THE_LOOP


def test_get_is_recognised_under_another_tools_wrapper(authors, monkeypatch):
    # get() is recognised from its frame above the evaluation, not wrapped; a tool that
    # wraps QuerySet.get itself (functools.wraps, as profilers do) must not hide it.
    import functools

    from django.db.models import QuerySet

    original = QuerySet.get

    @functools.wraps(original)
    def traced(self, *args, **kwargs):
        return original(self, *args, **kwargs)

    monkeypatch.setattr(QuerySet, "get", traced)
    with capture() as report:
        for book in list(Book.objects.order_by("id")):
            Author.objects.get(pk=book.author_id)
    assert only_nplusone(report).suggestion == "Author.objects.in_bulk(ids)"


def test_a_relation_read_is_recognised_under_another_tools_wrapper(authors, monkeypatch):
    import functools

    from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor

    original = ForwardManyToOneDescriptor.get_object

    @functools.wraps(original)
    def traced(self, instance):
        return original(self, instance)

    monkeypatch.setattr(ForwardManyToOneDescriptor, "get_object", traced)
    with capture() as report:
        for book in Book.objects.order_by("id"):
            _ = book.author.name
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.suggestion == '.select_related("author")'


def test_a_relation_read_runs_under_two_guard_wrappers_not_three(authors):
    # The hot path of an N+1: each guard frame between the user's line and the statement
    # costs every read (and the debug toolbar traces each one per statement). A forward
    # read (get_object -> get -> _fetch_all) passes get_object's wrapper and _fetch_all's,
    # and the statement the execute wrapper; wrapping get() again would add a frame.
    import sys
    from types import FrameType

    seen: list[list[str]] = []

    def spy(execute, sql, params, many, context):
        names: list[str] = []
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_globals.get("__name__", "").startswith("django_nplusone_guard"):
                names.append(frame.f_code.co_name)
            frame = frame.f_back
        seen.append(names)
        return execute(sql, params, many, context)

    book = Book.objects.first()
    with capture(), connection.execute_wrapper(spy):
        _ = book.author
    [names] = seen
    assert names == ["_execute_wrapper", "wrapper", "wrapper"], names


def test_get_by_pk_fixed(authors):
    with capture() as report:
        books = list(Book.objects.order_by("id"))
        by_pk = Author.objects.in_bulk({book.author_id for book in books})
        names = [by_pk[book.author_id].name for book in books]
    assert len(names) == 8
    assert report.nplusones == []


def test_get_single_object(authors):
    with capture() as report:
        Author.objects.get(pk=authors[0].pk)
    assert report.nplusones == []


def test_filter_by_foreign_key_in_a_loop(authors):
    with capture() as report:
        for author in Author.objects.order_by("id"):  # filter-parent
            _ = list(Book.objects.filter(author=author))  # filter-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book"
    assert finding.callsite == at("filter-access", "test_filter_by_foreign_key_in_a_loop")
    assert finding.parent_callsite == at("filter-parent", "test_filter_by_foreign_key_in_a_loop")
    assert finding.suggestion == "Book.objects.filter(author__in=...)"
    assert finding.alternative == 'or .prefetch_related("book_set") on the Author queryset'


def test_filter_by_foreign_key_fixed(authors):
    with capture() as report:
        books = Book.objects.filter(author__in=authors)
        by_author: dict[int, list[Book]] = {}
        for book in books:
            by_author.setdefault(book.author_id, []).append(book)
    assert len(by_author) == 4
    assert report.nplusones == []


def test_filter_by_plain_field_in_a_loop(authors):
    names = [a.name for a in authors]
    with capture() as report:
        for name in names:
            _ = list(Author.objects.filter(name=name))  # name-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author"
    assert finding.suggestion == "Author.objects.filter(name__in=...)"
    assert finding.alternative == BEFORE_THE_LOOP
    assert finding.parent_callsite is None  # the loop runs over a plain list


# --------------------------------------------------------------------------- writes


def test_save_in_a_loop(authors):
    with capture() as report:
        for book in Book.objects.order_by("id"):  # save-parent
            book.pages += 1
            book.save(update_fields=["pages"])  # save-access
    finding = only_nplusone(report)
    assert finding.kind == "write"
    assert finding.relation == "testapp.Book"
    assert finding.count == 8
    assert finding.callsite == at("save-access", "test_save_in_a_loop")
    assert finding.parent_callsite == at("save-parent", "test_save_in_a_loop")
    assert finding.suggestion == 'Book.objects.bulk_update(objs, ["pages"])'


def test_save_fixed(authors):
    with capture() as report:
        books = list(Book.objects.all())
        for book in books:
            book.pages += 1
        Book.objects.bulk_update(books, ["pages"])
    assert report.nplusones == []


def test_new_objects_saved_in_a_loop(db):
    with capture() as report:
        for n in range(3):
            Counter(name=f"c{n}").save()  # insert-access
    finding = only_nplusone(report)
    assert finding.kind == "write"
    assert finding.relation == "testapp.Counter"
    assert finding.suggestion == "Counter.objects.bulk_create(objs)"


def test_create_in_a_loop(db):
    with capture() as report:
        for n in range(3):
            Counter.objects.create(name=f"c{n}")  # create-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Counter"
    assert finding.callsite == at("create-access", "test_create_in_a_loop")
    assert finding.suggestion == "Counter.objects.bulk_create([Counter(...), ...])"


def test_create_fixed(db):
    with capture() as report:
        Counter.objects.bulk_create([Counter(name=f"c{n}") for n in range(3)])
    assert report.nplusones == []


def test_save_single_object(authors):
    with capture() as report:
        book = Book.objects.first()
        assert book is not None
        book.save()
    assert report.nplusones == []


def test_delete_in_a_loop_merges_the_cascade(authors):
    with capture() as report:
        for author in Author.objects.order_by("id"):  # delete-parent
            author.delete()  # delete-access
    finding = only_nplusone(report)
    assert finding.kind == "write"
    assert finding.relation == "testapp.Author"
    assert finding.callsite == at("delete-access", "test_delete_in_a_loop_merges_the_cascade")
    assert finding.parent_callsite == at(
        "delete-parent", "test_delete_in_a_loop_merges_the_cascade"
    )
    assert finding.suggestion == "Author.objects.filter(pk__in=ids).delete()"
    # Every statement of the cascade (books, profiles, the authors) is one root cause.
    assert finding.count >= 8


def test_delete_fixed(authors):
    with capture() as report:
        Author.objects.filter(pk__in=[a.pk for a in authors]).delete()
    assert report.nplusones == []
    assert Author.objects.count() == 0


def test_queryset_update_in_a_loop(authors):
    with capture() as report:
        for author in authors:
            Book.objects.filter(author=author).update(in_print=False)  # update-access
    finding = only_nplusone(report)
    assert finding.kind == "write"
    assert finding.relation == "testapp.Book"
    assert finding.suggestion == "Book.objects.filter(pk__in=ids).update(in_print=...)"
    assert finding.alternative == (
        "or Book.objects.bulk_update(objs, [...]) when the values differ per row"
    )


def test_queryset_update_fixed(authors):
    with capture() as report:
        Book.objects.filter(author__in=authors).update(in_print=False)
    assert report.nplusones == []


def test_queryset_delete_in_a_loop(authors):
    with capture() as report:
        for author in authors:
            Book.objects.filter(author=author).delete()  # qsdelete-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book"
    assert finding.suggestion == "Book.objects.filter(pk__in=ids).delete()"


# --------------------------------------------------------------------------- raw SQL


def test_raw_sql_in_a_loop(authors):
    with capture() as report, connection.cursor() as cursor:
        for author in Author.objects.order_by("id"):  # raw-parent
            cursor.execute(  # raw-access
                "SELECT COUNT(*) FROM testapp_book WHERE author_id = %s", [author.pk]
            )
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book"
    assert finding.parent_callsite == at("raw-parent", "test_raw_sql_in_a_loop")
    if connection.vendor == "postgresql":
        assert finding.suggestion == (
            "batch it: ... WHERE author_id = ANY(%s) with the list of values as one parameter"
        )
    else:
        assert finding.suggestion == (
            "batch it: ... WHERE author_id IN (%s, %s, ...) with one placeholder per value"
        )


def test_raw_sql_batched_is_clean(authors):
    ids = [a.pk for a in authors]
    with capture() as report, connection.cursor() as cursor:
        marks = ", ".join(["%s"] * len(ids))
        cursor.execute(
            f"SELECT author_id, COUNT(*) FROM testapp_book WHERE author_id IN ({marks}) "
            "GROUP BY author_id",
            ids,
        )
    assert report.nplusones == []


@pytest.mark.parametrize(
    "action",
    [
        pytest.param(lambda a: list(a.book_set.filter(in_print=True)), id="refiltered"),
        pytest.param(lambda a: a.book_set.aggregate(total=Sum("pages")), id="aggregate"),
        pytest.param(lambda a: Book.objects.filter(author=a).update(pages=1), id="update"),
        pytest.param(lambda a: a.delete(), id="delete"),
    ],
)
def test_single_object_lookups_and_writes_are_not_flagged(authors, action):
    with capture() as report:
        author = Author.objects.prefetch_related("book_set").get(pk=authors[0].pk)
        action(author)
    assert report.nplusones == []


def test_single_raw_statement_is_not_flagged(authors):
    with capture() as report, connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM testapp_book WHERE author_id = %s", [authors[0].pk])
    assert report.nplusones == []


def test_one_line_comprehension_has_its_parent_on_the_same_line(authors):
    with capture() as report:
        _ = [Book.objects.filter(author=a).count() for a in Author.objects.all()]  # comp
    finding = only_nplusone(report)
    line = f"tests/test_orm_queries.py:{line_of(__file__, 'comp')} in "
    assert finding.callsite.startswith(line)
    # 3.11 iterates the queryset in the function and loops in <listcomp>; 3.12 inlines.
    assert finding.parent_callsite is not None
    assert finding.parent_callsite.startswith(line)


def test_exists_through_a_join_does_not_guess_the_path(authors):
    for book in Book.objects.all():
        ReviewFactory(book=book)
    with capture() as report:
        for author in Author.objects.order_by("id"):
            Review.objects.filter(book__author=author).exists()  # join-exists
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Review"
    assert finding.suggestion == (
        "Author.objects.annotate(has_review=Exists("
        'Review.objects.filter(<path to Author>=OuterRef("pk"))))'
    )
