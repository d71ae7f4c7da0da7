"""capture(): what is recorded, where, and for whom."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from django_nplusone_guard import capture, ignore
from django_nplusone_guard.capture import active_scope, suppressed
from tests.factories import BookFactory
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db


def _select(tag: int, alias: str = "default") -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT {tag}")


def test_records_sql_params_alias_and_callsite():
    BookFactory()
    with capture() as report:
        Author.objects.filter(name="x").first()  # marker-line
    assert report.query_count == 1
    [query] = report.queries
    assert query.alias == "default"
    assert "testapp_author" in query.sql and "%s" in query.sql
    assert list(query.params)[0] == "x"
    assert query.many is False
    assert query.duration_ms >= 0
    assert query.callsite.startswith("tests/test_capture.py:")
    assert query.callsite.endswith("in test_records_sql_params_alias_and_callsite")
    assert query.stack[0] == query.callsite


def test_report_is_filled_only_when_the_block_exits():
    with capture() as report:
        _select(1)
        assert report.query_count == 0
    assert report.query_count == 1


def test_nothing_is_recorded_outside_a_scope():
    assert active_scope() is None
    with capture() as report:
        pass
    _select(1)
    assert report.query_count == 0


def test_executemany_is_recorded_once_with_many_flag():
    with capture() as report, connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE testapp_author SET name = %s WHERE id = %s", [("a", 1), ("b", 2)]
        )
    [query] = report.queries
    assert query.many is True


def test_a_failing_statement_is_recorded_and_its_error_untouched():
    from django.db import DatabaseError, transaction

    with (
        capture() as report,
        pytest.raises(DatabaseError),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SELECT * FROM table_that_does_not_exist")
    assert any("table_that_does_not_exist" in q.sql for q in report.queries)


@pytest.mark.django_db(databases=["default", "other"])
def test_every_alias_is_captured_by_default():
    with capture() as report:
        _select(1, "default")
        _select(2, "other")
    assert sorted(q.alias for q in report.queries) == ["default", "other"]


@pytest.mark.django_db(databases=["default", "other"])
@pytest.mark.parametrize(("using", "expected"), [("other", ["other"]), (["default"], ["default"])])
def test_using_limits_capture_to_aliases(using, expected):
    with capture(using=using) as report:
        _select(1, "default")
        _select(2, "other")
    assert [q.alias for q in report.queries] == expected


@pytest.mark.django_db(databases=["default", "other"])
def test_n_plus_one_on_a_second_alias_is_reported_for_that_alias():
    with capture() as report:
        for i in range(3):
            Author.objects.using("other").filter(pk=i).first()
    [finding] = report.nplusones
    assert finding.alias == "other"
    assert finding.count == 3


def test_nested_scopes_count_inner_queries_for_both():
    with capture() as outer:
        _select(1)
        with capture() as inner:
            _select(2)
        _select(3)
    assert inner.query_count == 1
    assert outer.query_count == 3


def test_ignore_keeps_counting_but_silences_findings():
    BookFactory.create_batch(3)
    with capture() as report, ignore():
        for book in Book.objects.all():
            _ = book.author
    assert report.query_count == 4
    assert report.nplusones == []


def test_ignore_as_decorator():
    BookFactory.create_batch(3)

    @ignore()
    def lazy_loop() -> None:
        for book in Book.objects.all():
            _ = book.author

    with capture() as report:
        lazy_loop()
    assert report.nplusones == []


def test_nested_ignore_restores_recording_for_findings():
    BookFactory.create_batch(3)
    with capture() as report:
        with ignore(), ignore():
            pass
        for book in Book.objects.all():
            _ = book.author
    assert len(report.nplusones) == 1


def test_suppressed_queries_are_not_recorded():
    with capture() as report:
        with suppressed():
            _select(1)
        _select(2)
    assert [q.sql for q in report.queries] == ["SELECT 2"]


def test_max_queries_stops_storing_but_keeps_counting():
    with capture(max_queries=5) as report:
        for _ in range(20):
            _select(7)
    assert report.query_count == 20
    assert len(report.queries) == 5
    assert report.truncated is True
    # The same statement with the same parameters each time: repeated, not a loop over rows.
    assert report.nplusones == []
    [finding] = report.duplicates
    assert finding.count == 20


@pytest.mark.django_db(transaction=True)
def test_concurrent_threads_never_see_each_others_queries():
    results: dict[int, list[str]] = {}
    barrier = threading.Barrier(4)

    def work(n: int) -> None:
        try:
            with capture() as report:
                barrier.wait(timeout=10)
                for _ in range(n):
                    _select(n)
            results[n] = [q.sql for q in report.queries]
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {n: sorted(set(sqls)) for n, sqls in results.items()} == {
        n: [f"SELECT {n}"] for n in (1, 2, 3, 4)
    }
    assert {n: len(sqls) for n, sqls in results.items()} == {n: n for n in (1, 2, 3, 4)}


@pytest.mark.django_db(transaction=True)
def test_a_thread_started_outside_the_scope_is_not_captured():
    with capture() as report:
        thread = threading.Thread(target=lambda: (_select(9), connection.close()))
        thread.start()
        thread.join()
        _select(1)
    # MySQL may also log its connection set-up (SET SESSION ...) for the main thread.
    assert [q.sql for q in report.queries if q.sql.startswith("SELECT")] == ["SELECT 1"]


@pytest.mark.django_db(transaction=True)
def test_sync_to_async_threads_and_async_orm_are_captured():
    BookFactory.create_batch(3)

    async def view() -> list[str]:
        names = []
        async for book in Book.objects.order_by("id"):
            author = await Author.objects.aget(pk=book.author_id)  # async-line
            names.append(author.name)
        await sync_to_async(_select)(5)
        return names

    async def main():
        async with capture() as report:
            await view()
        await sync_to_async(connections.close_all)()
        return report

    report = asyncio.run(main())
    assert sum(q.sql.startswith("SELECT") for q in report.queries) == 1 + 3 + 1
    [finding] = report.nplusones
    assert finding.count == 3
    assert finding.model == "testapp.Author"
    line = _line_of("# async-line")
    assert finding.callsite == f"tests/test_capture.py:{line} in {_qualname('view')}"


@pytest.mark.django_db(transaction=True)
def test_concurrent_async_tasks_have_separate_scopes():
    BookFactory.create_batch(2)

    async def task(n: int):
        with capture() as report:
            for _ in range(n):
                await Author.objects.filter(pk=n).afirst()
                await asyncio.sleep(0)
        return n, report

    async def main():
        results = await asyncio.gather(*(task(n) for n in (1, 2, 3, 4, 5)))
        await sync_to_async(connections.close_all)()
        return results

    for n, report in asyncio.run(main()):
        selects = [q for q in report.queries if q.sql.startswith("SELECT")]
        assert len(selects) == n
        assert all(list(q.params) == [n] for q in selects)


def _line_of(marker: str) -> int:
    with open(__file__) as source:
        for number, line in enumerate(source, 1):
            if marker in line and "_line_of" not in line:
                return number
    raise AssertionError(marker)


def _qualname(func: str) -> str:
    return f"test_sync_to_async_threads_and_async_orm_are_captured.<locals>.{func}"


@pytest.mark.django_db(transaction=True)
def test_async_callsite_is_the_awaiting_line_not_the_sync_caller():
    """Under async_to_sync (Django's async TestCase, ASGI servers), sync_to_async runs the
    query back in the calling thread, whose stack ends in the sync caller's line."""
    from asgiref.sync import async_to_sync

    BookFactory.create_batch(3)

    async def view() -> None:
        async with capture() as report:
            async for book in Book.objects.order_by("id"):
                await Author.objects.aget(pk=book.author_id)  # hop-line
        results.append(report)

    results: list = []
    async_to_sync(view)()  # the sync caller
    [finding] = results[0].nplusones
    line = _line_of("# hop-line")
    assert finding.callsite.startswith(f"tests/test_capture.py:{line} ")
    caller = f"tests/test_capture.py:{_line_of('# the sync caller')} "
    assert not any(frame.startswith(caller) for frame in finding.stack)


# --------------------------------------------------------------------------- remembered walks
# The recorder walks the frames of a statement once and reuses that walk while the same
# user frame, suspended at the same instruction, is at the same depth. These tests pin
# down that a reuse never gives a statement another statement's call site.


def _site(marker: str, function: str) -> str:
    from tests.orm_expect import site

    return site(__file__, marker, function)


def _load_author(pk: int) -> None:
    list(Author.objects.filter(pk=pk))  # helper-line


def test_one_statement_from_two_lines_of_one_loop_keeps_both_call_sites():
    books = BookFactory.create_batch(3)
    with capture() as report:
        for book in books:
            list(Author.objects.filter(pk=book.author_id))  # first-line
            list(Author.objects.filter(pk=book.author_id))  # second-line
    function = "test_one_statement_from_two_lines_of_one_loop_keeps_both_call_sites"
    sites = [q.callsite for q in report.queries]
    assert sites == [_site("first-line", function), _site("second-line", function)] * 3
    assert sorted(f.callsite for f in report.nplusones) == sorted(set(sites))


def test_one_statement_at_another_depth_keeps_its_own_stack():
    books = BookFactory.create_batch(3)
    with capture() as report:
        for book in books:
            list(Author.objects.filter(pk=book.author_id))  # direct-line
            _load_author(book.author_id)  # through-helper
    function = "test_one_statement_at_another_depth_keeps_its_own_stack"
    direct, helper = report.queries[0], report.queries[1]
    assert [q.stack for q in report.queries[::2]] == [direct.stack] * 3
    assert [q.stack for q in report.queries[1::2]] == [helper.stack] * 3
    assert direct.callsite == _site("direct-line", function)
    assert helper.stack[:2] == [
        _site("helper-line", "_load_author"),
        _site("through-helper", function),
    ]


def test_a_walk_is_not_reused_in_another_call_of_the_same_function():
    books = BookFactory.create_batch(2)

    def load(book: Book) -> None:
        list(Author.objects.filter(pk=book.author_id))  # inner-line

    with capture() as report:
        for book in books:
            load(book)  # first-caller
        for book in books:
            load(book)  # second-caller
    function = "test_a_walk_is_not_reused_in_another_call_of_the_same_function"
    callers = [q.stack[1] for q in report.queries]
    assert (
        callers == [_site("first-caller", function)] * 2 + [_site("second-caller", function)] * 2
    )


def test_a_batching_calls_walk_is_never_remembered():
    from django_nplusone_guard.capture import active_scope as scope_of

    # Its statements share one call id, which a remembered walk would not give them.
    with capture() as report:
        for _ in range(2):
            Author.objects.bulk_create([Author(name="a"), Author(name="b")])
            walks = dict(scope_of().walks)
    assert report.query_count == 2
    assert not any("INSERT" in str(sql) for sql in walks)


# --------------------------------------------------------------------------- report.queries
# The analysis leaves each statement as a plain tuple and ``Report.queries`` builds the
# ``CapturedQuery`` list on first read: the middleware never reads it, and building it cost
# as much as the rest of the analysis of a statement.


def test_statements_are_built_on_first_read_and_then_kept(books):
    with capture() as report:
        for book in Book.objects.order_by("pk"):  # parent-line
            _ = book.author.name  # loop-line
    assert "_queries" not in report.__dict__, "built before anyone asked for them"
    queries = report.queries
    assert report.queries is queries
    assert len(queries) == report.query_count == 1 + len(books)
    first, *loads = queries
    assert "testapp_book" in first.sql and "testapp_author" in loads[0].sql
    assert {q.fingerprint for q in loads} == {report.nplusones[0].fingerprint}
    assert [q.callsite for q in loads] == [report.nplusones[0].callsite] * len(books)
    assert [list(q.params) for q in loads] == [[b.author_id] for b in books]
    assert all(q.duration_ms >= 0 and q.alias == "default" and not q.many for q in queries)


def test_interleaved_statements_each_keep_their_own_stack_and_fingerprint(books):
    # The analysis hands statements over in runs (one entry per stretch of equal statements
    # from one stack); statements that alternate make a run each and must not borrow their
    # neighbour's stack or fingerprint.
    from django_nplusone_guard import ignore

    with capture() as report:
        for book in Book.objects.order_by("pk"):
            _ = book.author.name  # author-line
            with connection.cursor() as cursor:
                cursor.execute("SELECT %s", [book.pk])  # raw-line
            with ignore():
                Author.objects.filter(pk=book.author_id).exists()  # ignored-line
    _parent, *rest = report.queries
    source = Path(__file__).read_text().splitlines()
    assert len(rest) == 3 * len(books) == report.query_count - 1
    by_kind = [rest[0::3], rest[1::3], rest[2::3]]
    for statements, needle, line in zip(
        by_kind,
        ("testapp_author", "SELECT ", "LIMIT 1"),
        ("# author-line", "# raw-line", "# ignored-line"),
        strict=True,
    ):
        assert all(needle in q.sql for q in statements)
        assert len({q.fingerprint for q in statements}) == 1
        assert {q.callsite for q in statements} == {statements[0].callsite}
        number = int(statements[0].callsite.split(":")[1].split()[0])
        assert line in source[number - 1]
    assert len({q.fingerprint for q in rest[:3]}) == 3
    assert [q.params[0] for q in by_kind[1]] == [b.pk for b in books]


def test_a_kept_report_does_not_keep_the_scopes_model_instances_alive(books):
    import gc
    import weakref

    with capture() as report:
        loaded = list(Book.objects.order_by("pk"))
        for book in loaded:
            _ = book.author.name
    assert report.nplusones
    refs = [weakref.ref(book) for book in loaded] + [weakref.ref(b.author) for b in loaded]
    del loaded, book
    gc.collect()
    assert [ref() for ref in refs] == [None] * len(refs)
    assert len(report.queries) == 1 + len(books)


def test_queries_behaves_as_a_plain_dataclass_field():
    import dataclasses

    from django_nplusone_guard.report import CapturedQuery, Report

    query = CapturedQuery(
        "default", "SELECT 1", None, False, 0.5, "app.py:1 in f", ["app.py:1 in f"]
    )
    a, b = Report(), Report()
    a.queries.append(query)
    assert b.queries == [], "reports must not share a default list"
    assert Report(queries=[query]) == a
    assert Report(queries=(query,)).queries == [query]
    assert dataclasses.replace(a, queries=[]).queries == []
    assert Report.from_dict(a.to_dict()) == a
    assert [f.name for f in dataclasses.fields(Report)][0] == "queries"
    # ``__init__`` is written by hand (cheaper): it must keep taking every field, in order,
    # with the dataclass's defaults, and never share a default list between reports.
    import inspect

    params = list(inspect.signature(Report).parameters)
    assert params == [f.name for f in dataclasses.fields(Report)]
    fresh = Report()
    assert dataclasses.astuple(fresh) == ([], [], [], [], 0, 0.0, False, [])
    lists = [name for name in params if isinstance(getattr(fresh, name), list)]
    assert len(lists) == 5 and all(getattr(fresh, n) is not getattr(b, n) for n in lists)
    full = Report([query], [], [], [], 3, 1.5, True, ["x"])
    assert (full.queries, full.query_count, full.total_time_ms, full.truncated, full.errors) == (
        [query],
        3,
        1.5,
        True,
        ["x"],
    )
    a.queries = []
    assert a.queries == [] and a != Report(queries=[query])


def test_to_dict_without_queries_never_builds_them_and_findings_copy_like_asdict(books):
    # The toolbar panel stores findings only: the statements must not be built for that.
    import dataclasses

    from django_nplusone_guard.report import MissingIndex, Report

    with capture() as report:
        for book in Book.objects.order_by("pk"):
            _ = book.author.name
    data = report.to_dict(params=False, queries=False)
    assert "_queries" not in report.__dict__
    assert data["queries"] == [] and data["query_count"] == 1 + len(books)
    [finding] = report.nplusones
    assert data["nplusones"] == [
        {**dataclasses.asdict(finding), "category": "nplusone", "id": finding.id}
    ]
    assert data["nplusones"][0]["stack"] is not finding.stack, "a copy, not the list itself"
    index = MissingIndex(
        model="testapp.Book",
        table="testapp_book",
        columns=("title",),
        fields=("title",),
        sql="SELECT 1",
        callsite="x.py:1 in f",
        suggestion="models.Index(fields=['title'])",
        reason="full scan",
        plan="SCAN testapp_book",
    )
    assert Report.from_dict({"missing_indexes": [index.to_dict()]}).missing_indexes == [index]
    assert Report.from_dict(report.to_dict()).nplusones == report.nplusones
    assert len(report.queries) == 1 + len(books)


# --------------------------------------------------------------------------- shells

SHELL_LOOP = """
with capture() as report:
    for book in Book.objects.order_by("id"):
        book.author.name
"""


@pytest.mark.parametrize(
    ("filename", "module"),
    [
        ("<console>", "__console__"),  # code.interact, Django's shell
        ("<stdin>", "__main__"),  # python < script, python at a terminal
        ("<python-input-3>", "__main__"),  # Python 3.13's REPL
        ("<ipython-input-7-0b4f2c>", "__main__"),  # IPython
        ("<string>", "django.core.management.commands.shell"),  # manage.py shell -c / < file
    ],
)
@pytest.mark.django_db
def test_code_typed_into_a_shell_is_the_call_site(filename, module):
    for _ in range(3):
        BookFactory()
    namespace: dict[str, Any] = {"__name__": module, "capture": capture, "Book": Book}
    exec(compile(SHELL_LOOP, filename, "exec"), namespace)
    [finding] = namespace["report"].nplusones
    assert finding.callsite == f"{filename}:4 in <module>"


@pytest.mark.django_db
def test_code_a_library_generates_is_not_the_users():
    """``<string>`` is also what libraries compile generated code as (dataclasses,
    namedtuple): in a library's module it stays the library's."""
    for _ in range(3):
        BookFactory()
    namespace: dict[str, Any] = {
        "__name__": "django.db.models.generated",
        "capture": capture,
        "Book": Book,
    }
    exec(compile(SHELL_LOOP, "<string>", "exec"), namespace)
    [finding] = namespace["report"].nplusones
    assert not finding.callsite.startswith("<string>")


SHELL_SCRIPT = """
from django.core.management import call_command
call_command("migrate", run_syncdb=True, verbosity=0)
from tests.factories import BookFactory
from tests.testapp.models import Book
from django_nplusone_guard import capture
for _ in range(3):
    BookFactory()
with capture() as report:
    for book in Book.objects.order_by("id"):
        book.author.name
print("CALLSITES", [f.callsite for f in report.nplusones])
"""


@pytest.mark.parametrize("how", ["-c", "stdin"])
def test_manage_py_shell_names_the_shell_line(how):
    """``manage.py shell -c`` and ``manage.py shell < script`` run the code in the shell
    command's module, a library's: it was reported at ``unknown``."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(root),
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
    }
    command = [sys.executable, "-m", "django", "shell"]
    result = subprocess.run(
        [*command, "-c", SHELL_SCRIPT] if how == "-c" else command,
        input=None if how == "-c" else SHELL_SCRIPT,
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "CALLSITES ['<string>:11 in <module>']" in result.stdout, result.stdout
