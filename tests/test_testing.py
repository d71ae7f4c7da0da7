"""Test helpers: assert_no_nplusone, allow_nplusone, the unittest mixin, and
assert_constant_queries, each against the real database."""

from __future__ import annotations

import inspect
import re
import unittest

import pytest
from asgiref.sync import async_to_sync
from django.test import RequestFactory, TestCase, TransactionTestCase

from django_nplusone_guard import NPlusOneDetected, assert_no_nplusone, capture
from django_nplusone_guard.testing import (
    NPlusOneGuardMixin,
    allow_nplusone,
    assert_constant_queries,
    is_test_code,
)
from tests.factories import AuthorFactory, BookFactory, ListingFactory
from tests.testapp import views
from tests.testapp.models import Author, Book, Listing

pytestmark = pytest.mark.django_db


def _view_line(function: str, text: str) -> int:
    """Line of ``text`` inside ``views.<function>``, so assertions survive edits above it."""
    lines, start = inspect.getsourcelines(getattr(views, function))
    for offset, line in enumerate(lines):
        if text in line:
            return start + offset
    raise AssertionError(f"{text!r} not in views.{function}")


BOOK_LIST_SITE = (
    f"tests/testapp/views.py:{_view_line('book_list', 'book.author.name')} in book_list"
)


def _request():
    return RequestFactory().get("/books/")


def _rows(n: int) -> None:
    for _ in range(n):
        BookFactory(author=AuthorFactory())


# --------------------------------------------------------------------------- assert_no_nplusone


def test_block_with_an_nplusone_fails_with_every_detail(books):
    with pytest.raises(NPlusOneDetected) as caught, assert_no_nplusone():
        views.book_list(_request())
    message = str(caught.value)
    first_line = message.splitlines()[0]
    assert first_line.startswith("1 N+1 finding in the block at tests/test_testing.py:")
    assert re.search(r"N\+1 query on testapp\.(Author|Book\.author): 5 queries", message)
    assert "5 queries" in message
    assert f"at {BOOK_LIST_SITE}" in message
    assert "SQL: SELECT" in message and "testapp_author" in message
    assert isinstance(caught.value, AssertionError)
    [finding] = caught.value.report.nplusones
    assert finding.count == 5
    assert finding.callsite.startswith(BOOK_LIST_SITE)
    assert caught.value.report.query_count == 6


def test_clean_block_passes_and_returns_the_filled_report(books):
    with assert_no_nplusone() as report:
        views.book_list_fixed(_request())
    assert report.query_count == 1
    assert report.nplusones == []


def test_an_error_in_the_block_is_never_masked(books):
    def fails_after_an_nplusone():
        views.book_list(_request())
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError), assert_no_nplusone():
        fails_after_an_nplusone()


def test_decorator_names_the_function_and_keeps_the_return_value(books):
    @assert_no_nplusone()
    def render_names():
        return views.book_list(_request())

    @assert_no_nplusone()
    def render_names_fixed():
        return views.book_list_fixed(_request())

    with pytest.raises(NPlusOneDetected) as caught:
        render_names()
    assert (
        "in test_decorator_names_the_function_and_keeps_the_return_value.<locals>."
        in str(caught.value).splitlines()[0]
    )
    assert render_names_fixed().status_code == 200


def test_decorator_on_an_async_function(books):
    @assert_no_nplusone()
    async def render():
        return await views.async_book_list(_request())

    @assert_no_nplusone()
    async def render_fixed():
        return await views.async_book_list_fixed(_request())

    assert inspect.iscoroutinefunction(render)
    with pytest.raises(NPlusOneDetected) as caught:
        async_to_sync(render)()
    [finding] = caught.value.report.nplusones
    assert finding.count == 5
    assert finding.relation in ("testapp.Author", "testapp.Book.author")
    assert async_to_sync(render_fixed)().status_code == 200


def test_async_with_block(books):
    async def scenario():
        async with assert_no_nplusone():
            await views.async_book_list(_request())

    with pytest.raises(NPlusOneDetected, match="5 queries"):
        async_to_sync(scenario)()


def test_threshold_is_how_many_calls_make_an_nplusone(books):
    with assert_no_nplusone(threshold=6):
        views.book_list(_request())
    with pytest.raises(NPlusOneDetected), assert_no_nplusone(threshold=5):
        views.book_list(_request())


def test_allow_rules_exempt_matching_findings_only(books):
    with assert_no_nplusone(allow=[{"sql": "testapp_author"}]):
        views.book_list(_request())
    with pytest.raises(NPlusOneDetected), assert_no_nplusone(allow=[{"sql": "testapp_tag"}]):
        views.book_list(_request())
    with assert_no_nplusone(allow=[{"callsite": "tests/testapp/views.py:*"}]):
        views.book_list(_request())


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"allow": [{"modle": "testapp.Book"}]}, "unknown key(s) 'modle'"),
        ({"allow": [{"model": "testapp.Nope"}]}, "unknown model 'testapp.Nope'"),
        ({"allow": [{"sql": "("}]}, "not a valid regular expression"),
        ({"allow": {"model": "testapp.Book"}}, "must be a list of dicts"),
        ({"threshold": 0}, "threshold must be a positive int"),
    ],
)
def test_bad_options_fail_early_with_the_fix(kwargs, expected):
    with pytest.raises(ValueError, match="assert_no_nplusone") as caught:
        assert_no_nplusone(**kwargs)
    assert expected in str(caught.value)


def test_duplicates_fail_only_when_asked(books):
    def twice():
        Book.objects.filter(pk=books[0].pk).first()
        Book.objects.filter(pk=books[0].pk).first()

    with assert_no_nplusone():
        twice()
    with pytest.raises(NPlusOneDetected) as caught, assert_no_nplusone(duplicates=True):
        twice()
    message = str(caught.value)
    assert message.startswith("1 finding in the block at tests/test_testing.py:")
    assert "Duplicate query on testapp.Book: 2 identical queries" in message


def test_missing_indexes_fail_only_when_asked(db):
    from django_nplusone_guard.explain import clear_cache

    ListingFactory.create_batch(4)
    clear_cache()  # EXPLAIN verdicts are cached per statement; start from none
    with assert_no_nplusone() as report:
        list(Listing.objects.filter(city="Leeds"))
    assert report.missing_indexes == []  # not even looked for: EXPLAIN stays off
    with pytest.raises(NPlusOneDetected) as caught, assert_no_nplusone(missing_indexes=True):
        list(Listing.objects.filter(city="Leeds"))
    message = str(caught.value)
    assert message.startswith("1 finding in the block at tests/test_testing.py:")
    assert "Missing index on testapp.Listing (city)" in message
    assert 'models.Index(fields=["city"]' in message
    with assert_no_nplusone(missing_indexes=True):
        list(Listing.objects.filter(slug="indexed"))


def test_allow_nplusone_block_inside_a_guarded_block(books):
    with assert_no_nplusone() as report:
        with allow_nplusone():
            views.book_list(_request())
        views.book_list_fixed(_request())
    assert report.query_count == 7
    assert report.nplusones == []


def test_allow_nplusone_decorator_exempts_sync_and_async_functions(books):
    @allow_nplusone()
    def legacy():
        return views.book_list(_request())

    @allow_nplusone
    async def legacy_async():
        return await views.async_book_list(_request())

    with assert_no_nplusone():
        legacy()
        async_to_sync(legacy_async)()


def test_is_test_code_matches_file_names_and_directories():
    patterns = ("test*.py", "conftest.py", "*/factories/*.py")
    assert is_test_code("tests/test_views.py:3 in test_x", patterns)
    assert is_test_code("/abs/conftest.py:3 in fixture", patterns)
    assert is_test_code("app/factories/books.py:9 in build", patterns)
    assert not is_test_code("app/views.py:3 in book_list", patterns)
    assert not is_test_code("app/contest.py:3 in f", patterns)


# --------------------------------------------------------------------------- the mixin


class _GuardedCase(NPlusOneGuardMixin, TestCase):
    """Run by the tests below through unittest, where failing is the expected outcome."""

    __test__ = False  # pytest would collect it as a unittest case otherwise

    def setUp(self):
        # Set-up is not code under test: this loop of inserts never fails the test.
        for _ in range(5):
            BookFactory(author=AuthorFactory())

    def test_nplusone(self):
        views.book_list(_request())

    def test_clean(self):
        views.book_list_fixed(_request())

    def test_factory_loop_in_the_test_body(self):
        for _ in range(3):
            BookFactory(author=AuthorFactory())
        for book in Book.objects.all():
            _ = book.author.name

    @allow_nplusone()
    def test_exempt(self):
        views.book_list(_request())

    async def test_async_nplusone(self):
        await views.async_book_list(_request())


class _GuardedTransactionCase(NPlusOneGuardMixin, TransactionTestCase):
    __test__ = False

    def test_nplusone(self):
        _rows(3)
        views.book_list(_request())


class _LenientCase(_GuardedCase):
    nplusone_threshold = 6


class _AllowingCase(_GuardedCase):
    nplusone_allow = [{"sql": "testapp_author"}]


@allow_nplusone
class _ExemptCase(_GuardedCase):
    pass


def _run(case_class: type[unittest.TestCase], name: str) -> unittest.TestResult:
    result = unittest.TestResult()
    unittest.TestSuite([case_class(name)]).run(result)
    assert not result.errors, result.errors[0][1] if result.errors else ""
    return result


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("case_class", "name", "fails"),
    [
        (_GuardedCase, "test_nplusone", True),
        (_GuardedCase, "test_async_nplusone", True),
        (_GuardedCase, "test_clean", False),
        (_GuardedCase, "test_factory_loop_in_the_test_body", False),
        (_GuardedCase, "test_exempt", False),
        (_GuardedTransactionCase, "test_nplusone", True),
        (_LenientCase, "test_nplusone", False),
        (_AllowingCase, "test_nplusone", False),
        (_ExemptCase, "test_nplusone", False),
    ],
)
def test_mixin_guards_each_test_method(case_class, name, fails):
    result = _run(case_class, name)
    assert result.testsRun == 1
    assert len(result.failures) == int(fails), result.failures
    if fails:
        text = result.failures[0][1]
        assert "NPlusOneDetected" in text
        assert f"1 N+1 finding in tests.test_testing.{case_class.__qualname__}.{name}" in text
        assert re.search(r"N\+1 query on testapp\.(Author|Book\.author): ", text)
        if "async" not in name:  # async ORM call sites depend on the event loop's thread
            assert "at tests/testapp/views.py:" in text


# --------------------------------------------------------------------------- scaling


def test_constant_queries_catches_a_count_in_a_loop():
    def count_books_per_author():
        return [author.book_set.count() for author in Author.objects.order_by("id")]

    with pytest.raises(AssertionError) as caught:
        assert_constant_queries(count_books_per_author, setup=_rows)
    message = str(caught.value)
    assert message.startswith("1 statement shape(s) run more often as the data grows")
    assert "(total queries n=2: 3, n=6: 7)" in message
    assert "ran n=2: 2, n=6: 6" in message
    assert re.search(r"N\+1 query on testapp\.(Book|Author\.book_set): 6 queries", message)
    assert "COUNT(" in message.upper()
    assert "tests/test_testing.py:" in message


def test_constant_queries_counts_growth_below_the_threshold():
    # One extra query per row at n=1 is not an N+1 by threshold, but it still scales.
    with pytest.raises(AssertionError, match=r"ran n=1: 1, n=3: 3"):
        assert_constant_queries(lambda: views.book_list(_request()), setup=_rows, sizes=(1, 3))


def test_constant_queries_passes_select_related_and_prefetch():
    def with_prefetch():
        return [
            [book.title for book in author.book_set.all()]
            for author in Author.objects.prefetch_related("book_set")
        ]

    reports = assert_constant_queries(with_prefetch, setup=_rows)
    assert [reports[n].query_count for n in (2, 6)] == [2, 2]
    assert_constant_queries(lambda: views.book_list_fixed(_request()), setup=_rows)


def test_constant_queries_rolls_back_each_size():
    before = Book.objects.count()
    seen = []
    assert_constant_queries(lambda: seen.append(Book.objects.count()), setup=_rows, sizes=(1, 4))
    assert seen == [before + 1, before + 4]
    assert Book.objects.count() == before


def test_constant_queries_respects_allow_nplusone_blocks():
    def legacy():
        with allow_nplusone():
            views.book_list(_request())

    assert_constant_queries(legacy, setup=_rows)


@pytest.mark.parametrize("sizes", [(3,), (2, 2), (-1, 2)])
def test_constant_queries_needs_two_sizes(sizes):
    with pytest.raises(ValueError, match="sizes"):
        assert_constant_queries(lambda: None, setup=_rows, sizes=sizes)


def test_capture_sees_what_the_helpers_see(books):
    # The helpers are a thin layer: the same block gives the same finding through capture().
    with capture() as report:
        views.book_list(_request())
    with pytest.raises(NPlusOneDetected) as caught, assert_no_nplusone():
        views.book_list(_request())
    assert [f.fingerprint for f in caught.value.report.nplusones] == [
        f.fingerprint for f in report.nplusones
    ]
