"""Detection: every repeat the SQL layer can see, and nothing that is not one."""

from __future__ import annotations

import json

import pytest
from django.db import connection, transaction
from django.db.models import Sum

from django_nplusone_guard import capture
from django_nplusone_guard.report import Report
from tests.factories import AuthorFactory, BookFactory, TagFactory
from tests.testapp.models import Author, Book, Tag

pytestmark = pytest.mark.django_db


@pytest.fixture
def authors(books):
    return [b.author for b in books]


def _line(marker: str) -> int:
    with open(__file__) as source:
        for number, text in enumerate(source, 1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(marker)


def _only(report: Report):
    assert len(report.nplusones) == 1, str(report)
    assert report.duplicates == [], str(report)
    return report.nplusones[0]


def test_forward_fk_loop(books):
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author.name  # fk-line
    finding = _only(report)
    assert finding.kind == "read"
    assert finding.count == 5
    # ORM attribution names the relation the loop followed (issue 3), not the table read.
    assert finding.relation == "testapp.Book.author"
    assert finding.callsite == (f"tests/test_detect.py:{_line('fk-line')} in test_forward_fk_loop")
    assert "testapp_author" in finding.sql
    assert finding.total_time_ms > 0
    assert finding.fingerprint


@pytest.mark.parametrize(
    "loop",
    [
        pytest.param(lambda a: a.book_set.count(), id="count"),
        pytest.param(lambda a: a.book_set.exists(), id="exists"),
        pytest.param(lambda a: a.book_set.aggregate(total=Sum("pages")), id="aggregate"),
        pytest.param(
            lambda a: list(Book.objects.filter(author=a).values_list("id", flat=True)),
            id="values_list",
        ),
        pytest.param(lambda a: Author.objects.get(pk=a.pk), id="get"),
    ],
)
def test_sql_level_repeats_that_orm_hooks_miss(authors, loop):
    with capture() as report:
        for author in Author.objects.all():
            loop(author)
    finding = _only(report)
    assert finding.count == len(authors)
    assert finding.kind == "read"


def test_raw_sql_in_a_loop(authors):
    with capture() as report, connection.cursor() as cursor:
        for author in authors:
            cursor.execute("SELECT COUNT(*) FROM testapp_book WHERE author_id = %s", [author.pk])
    finding = _only(report)
    assert finding.count == 5
    assert finding.model == "testapp.Book"


_COUNT_BOOKS = "SELECT COUNT(*) FROM testapp_book WHERE author_id = %s"


def _count_books(cursor, author_id):
    cursor.execute(_COUNT_BOOKS, [author_id])


def _count_books_too(cursor, author_id):
    cursor.execute(_COUNT_BOOKS, [author_id])


def test_runs_of_one_statement_are_grouped_whatever_comes_between(authors):
    """The analysis reuses the previous statement's group for a run of equal statements
    from one place; the same text from another place right after it, ignored calls from
    the very same place and other statements between must still be told apart."""
    from contextlib import nullcontext

    from django_nplusone_guard import ignore

    with capture(threshold=3) as report, connection.cursor() as cursor:
        for i, author in enumerate(authors * 2):
            with ignore() if i % 2 else nullcontext():
                _count_books(cursor, author.pk)  # every other call ignored
            _count_books_too(cursor, author.pk)
            _count_books_too(cursor, author.pk)
            cursor.execute("SELECT COUNT(*) FROM testapp_author")
    found = {f.callsite.rsplit(" in ", 1)[1]: f.count for f in report.nplusones}
    assert found == {
        "_count_books": len(authors),  # ten calls, five of them ignored
        "_count_books_too": 4 * len(authors),
    }
    # The same statement with no parameters, ten times: a repeat, not a loop over rows.
    [repeat] = report.duplicates
    assert repeat.callsite.endswith(
        "in test_runs_of_one_statement_are_grouped_whatever_comes_between"
    )
    assert (repeat.kind, repeat.count) == ("identical", 2 * len(authors))
    assert report.query_count == 4 * 2 * len(authors)


@pytest.mark.parametrize(
    "write",
    [
        pytest.param(lambda a: (setattr(a, "name", a.name + "!"), a.save()), id="save"),
        pytest.param(lambda a: Tag.objects.create(name=f"t{a.pk}"), id="create"),
        pytest.param(lambda a: a.book_set.update(pages=1), id="update"),
    ],
)
def test_writes_in_a_loop(authors, write):
    with capture() as report:
        for author in authors:
            write(author)
    finding = _only(report)
    assert finding.kind == "write"
    assert finding.count == 5


def test_delete_in_a_loop_is_a_write_nplusone():
    tags = TagFactory.create_batch(4)
    with capture() as report:
        for tag in tags:
            tag.delete()
    assert report.nplusones
    # One root cause, one finding: the through-table DELETEs merge with the tag DELETEs.
    [finding] = report.nplusones
    assert finding.kind == "write"
    assert finding.model == "testapp.Tag"
    assert finding.count == 8


def test_threshold_counts_separate_calls(books):
    with capture(threshold=6) as report:
        for book in Book.objects.all():
            _ = book.author
    assert report.nplusones == []
    with capture(threshold=5) as report:
        for book in Book.objects.all():
            _ = book.author
    assert len(report.nplusones) == 1


def test_single_access_is_not_flagged(books):
    with capture() as report:
        book = Book.objects.first()
        _ = book.author
    assert report.nplusones == []
    assert report.duplicates == []


def test_select_related_is_clean(books):
    with capture() as report:
        for book in Book.objects.select_related("author"):
            _ = book.author.name
    assert report.nplusones == [] and report.duplicates == []
    assert report.query_count == 1


def test_bulk_create_batches_are_one_call():
    author = AuthorFactory()
    with capture() as report:
        Book.objects.bulk_create(
            [Book(title=str(i), author=author) for i in range(10)], batch_size=2
        )
    assert report.query_count >= 5
    assert report.nplusones == []


def test_bulk_update_batches_are_one_call(books):
    for book in books:
        book.pages = 7
    with capture() as report:
        Book.objects.bulk_update(books, ["pages"], batch_size=2)
    assert report.nplusones == []


def test_bulk_create_in_a_loop_is_an_nplusone():
    author = AuthorFactory()
    with capture() as report:
        for i in range(3):
            Book.objects.bulk_create([Book(title=str(i), author=author)])
    assert [f.count for f in report.nplusones] == [3]


def test_prefetch_related_is_clean(books):
    for book in books:
        book.tags.set(TagFactory.create_batch(2))
    with capture() as report:
        for book in Book.objects.prefetch_related("tags", "author"):
            _ = [t.name for t in book.tags.all()], book.author.name
    assert report.nplusones == [] and report.duplicates == []
    assert report.query_count == 3


def test_prefetch_per_chunk_of_iterator_is_clean(books):
    with capture() as report:
        for author in Author.objects.prefetch_related("book_set").iterator(chunk_size=2):
            _ = list(author.book_set.all())
    assert report.query_count >= 4  # one read + a prefetch per chunk of two
    assert report.nplusones == []


def test_two_queries_from_two_lines_are_not_an_nplusone(books):
    with capture() as report:
        first = Author.objects.filter(pk=books[0].author_id).first()
        second = Author.objects.filter(pk=books[1].author_id).first()
    assert first and second
    assert report.nplusones == [] and report.duplicates == []


def test_a_helper_called_from_two_lines_is_not_an_nplusone(books):
    def lookup(pk: int) -> Author | None:
        return Author.objects.filter(pk=pk).first()

    with capture() as report:
        lookup(books[0].author_id)
        lookup(books[1].author_id)
    assert report.nplusones == []


def test_a_helper_called_in_a_loop_is_an_nplusone(books):
    def lookup(pk: int) -> Author | None:
        return Author.objects.filter(pk=pk).first()  # helper-line

    with capture() as report:
        for book in books:
            lookup(book.author_id)  # loop-line
    finding = _only(report)
    assert finding.callsite.startswith(f"tests/test_detect.py:{_line('helper-line')} ")
    assert finding.stack[1].startswith(f"tests/test_detect.py:{_line('loop-line')} ")


def test_transaction_statements_are_never_findings(books):
    with capture() as report:
        for book in books:
            with transaction.atomic():
                book.title += "."
                book.save(update_fields=["title"])
    # The test runs inside a transaction, so each atomic() is a SAVEPOINT / RELEASE pair.
    assert sum(q.sql.upper().startswith("SAVEPOINT") for q in report.queries) == len(books)
    assert {f.kind for f in report.nplusones} == {"write"}
    assert all("SAVEPOINT" not in f.sql.upper() for f in report.nplusones)


def test_exact_repeats_from_different_lines_are_duplicates(books):
    pk = books[0].pk
    with capture() as report:
        Book.objects.filter(pk=pk).first()  # dup-1
        Book.objects.filter(pk=pk).first()  # dup-2
    assert report.nplusones == []
    [dup] = report.duplicates
    assert dup.count == 2
    assert dup.model == "testapp.Book"
    assert [c.split(" in ")[0] for c in dup.callsites] == [
        f"tests/test_detect.py:{_line('dup-1')}",
        f"tests/test_detect.py:{_line('dup-2')}",
    ]


def test_one_statement_with_other_parameters_is_not_a_duplicate(books):
    first, second = books[0].pk, books[1].pk
    with capture() as report:
        Book.objects.filter(pk=first).first()  # params-1
        Book.objects.filter(pk=second).first()  # params-2
        Book.objects.filter(pk=first).first()  # params-3
    [dup] = report.duplicates
    assert dup.count == 2
    assert [c.split(" in ")[0] for c in dup.callsites] == [
        f"tests/test_detect.py:{_line('params-1')}",
        f"tests/test_detect.py:{_line('params-3')}",
    ]
    assert dup.params == repr(report.queries[0].params)


def test_an_nplusone_of_identical_queries_is_not_also_a_duplicate():
    author = AuthorFactory()
    BookFactory.create_batch(4, author=author)
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author  # same author every time: same SQL, same params
    finding = _only(report)
    assert finding.count == 4


def test_allow_rules_silence_matching_findings(books):
    rules = [
        {"model": "testapp.Book", "field": "author"},
        {"callsite": "tests/test_detect.py:*"},
        {"sql": r"testapp_author"},
        {"kind": "read"},
    ]
    for rule in rules:
        with capture(allow=[rule]) as report:
            for book in Book.objects.all():
                _ = book.author
        assert report.nplusones == [], rule
    with capture(allow=[{"model": "testapp.Author"}, {"sql": "nomatch"}]) as report:
        for book in Book.objects.all():
            _ = book.author
    assert len(report.nplusones) == 1


def test_report_round_trips_through_json(books):
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author
        Book.objects.filter(pk=books[0].pk).first()
        Book.objects.filter(pk=books[0].pk).first()
    data = json.loads(json.dumps(report.to_dict()))
    again = Report.from_dict(data)
    assert again.to_dict() == report.to_dict()
    assert str(again) == str(report)
    assert "N+1 query on testapp.Book.author" in str(report)
    assert "Duplicate query on testapp.Book" in str(report)


def _distinct_statements(books: list[Book]) -> None:
    """Statements of different shapes: ORM, raw SQL, an ignored one, a transaction block."""
    from django_nplusone_guard import ignore

    Book.objects.filter(pk=books[0].pk).first()
    list(Author.objects.filter(name__startswith="A"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM testapp_tag")
    with ignore():
        Book.objects.count()
    with transaction.atomic():
        Tag.objects.exists()


@pytest.mark.parametrize("threshold", [2, 3])
def test_a_scope_whose_statements_all_differ_reports_as_the_full_analysis_would(
    books, monkeypatch, threshold
):
    from django_nplusone_guard import detect

    reports = []
    for limit in (detect.MAX_LONE_STATEMENTS, 0):  # 0: the full analysis
        monkeypatch.setattr(detect, "MAX_LONE_STATEMENTS", limit)
        with capture(threshold=threshold) as report:
            _distinct_statements(books)  # from one line: equal stacks
        reports.append(report)
    lone, full = reports
    assert lone.query_count == full.query_count >= 6
    lone_data, full_data = lone.to_dict(), full.to_dict()
    for data in (lone_data, full_data):
        data.pop("total_time_ms")
        for query in data["queries"]:
            query.pop("duration_ms")
            if query["sql"].startswith(("SAVEPOINT", "RELEASE")):
                query["sql"] = query["fingerprint"] = "savepoint"  # a new name each time
    assert lone_data == full_data
    assert all(q["fingerprint"] and q["stack"] for q in lone_data["queries"])


def test_a_scope_whose_statements_all_differ_skips_grouping(books, monkeypatch):
    from django_nplusone_guard import detect

    def no_full_analysis(limit_ms: int) -> None:
        raise AssertionError("the full analysis ran")

    monkeypatch.setattr(detect, "Budget", no_full_analysis)
    with capture() as report:
        _distinct_statements(books)
    assert report.query_count >= 6
    assert report.errors == []
    # One repeated shape is enough to need the full analysis, which finds it.
    monkeypatch.undo()
    with capture() as report:
        _distinct_statements(books)
        Book.objects.filter(pk=books[0].pk).first()
    assert len(report.duplicates) == 1
