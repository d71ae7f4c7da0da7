"""``guarded``: the middleware's behaviour around any function or block (jobs, scripts)."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest
from django.core.signals import got_request_exception

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, capture, guarded
from tests.conftest import guard_records
from tests.testapp.models import Author, Book

pytestmark = pytest.mark.django_db


def _author_names() -> list[str]:
    return [book.author.name for book in Book.objects.order_by("id")]  # job-nplusone


@guarded(label="send_reminders")
def send_reminders() -> list[str]:
    return _author_names()


@guarded()
def unlabelled_job() -> list[str]:
    return _author_names()


@guarded(label="async_job")
async def async_job() -> list[str]:
    names = []
    async for book in Book.objects.order_by("id"):
        author = await Author.objects.aget(pk=book.author_id)
        names.append(author.name)
    return names


@guarded(label="fixed_job", action="raise")
def fixed_job() -> list[str]:
    return [book.author.name for book in Book.objects.select_related("author")]


def test_a_guarded_function_logs_with_its_label(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        assert len(send_reminders()) == 5
    [record] = guard_records(caplog)
    message = record.getMessage()
    assert message.startswith("send_reminders: N+1 query on testapp.Book.author: 5 queries")
    assert "tests/test_guarded.py:" in message


def test_the_label_defaults_to_the_functions_dotted_name(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        unlabelled_job()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("tests.test_guarded.unlabelled_job: N+1 query")


def test_action_follows_the_setting_or_the_argument(books, guard):
    guard(ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        send_reminders()
    [warning] = [w for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert warning.filename == "tests/test_guarded.py"
    with pytest.raises(NPlusOneDetected, match="in send_reminders"):
        guarded(label="send_reminders", action="raise")(_author_names)()
    assert len(fixed_job()) == 5  # a clean job under action="raise" just returns


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_async_function(books, guard, caplog):
    guard(ACTION="raise")
    with pytest.raises(NPlusOneDetected, match="in async_job") as excinfo:
        await async_job()
    assert excinfo.value.report.nplusones[0].count == 5


def test_a_block(books, guard):
    guard(ACTION="raise")
    with (
        pytest.raises(NPlusOneDetected, match="in nightly import"),
        guarded(label="nightly import"),
    ):
        _author_names()
    with (
        pytest.raises(NPlusOneDetected, match=r"in tests/test_guarded.py:\d+ in test_a_block"),
        guarded(),
    ):
        _author_names()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_an_async_block(books, guard):
    guard(ACTION="raise")

    async def block() -> None:
        async with guarded(label="async block"):
            async for book in Book.objects.order_by("id"):
                await Author.objects.aget(pk=book.author_id)

    with pytest.raises(NPlusOneDetected, match="in async block"):
        await block()


def test_nested_guards_report_once_from_the_outermost(books, guard, caplog):
    guard(ACTION="log")

    @guarded(label="outer")
    def outer() -> None:
        send_reminders()

    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        outer()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("outer: N+1 query")


def test_a_failing_function_keeps_its_error_and_its_findings_are_logged(books, guard, caplog):
    @guarded(label="failing")
    def failing() -> None:
        _author_names()
        raise KeyError("its own error")

    guard(ACTION="raise")
    with pytest.raises(KeyError):
        failing()
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"), pytest.raises(KeyError):
        failing()
    assert len(guard_records(caplog)) == 1


@pytest.mark.parametrize("options", [{"ENABLED": False}, {"ACTION": "off"}])
def test_off_when_the_guard_is(books, settings, caplog, options):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log", **options}
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        send_reminders()
    assert guard_records(caplog) == []


def test_unset_enabled_follows_debug_when_the_call_starts(books, settings):
    settings.NPLUSONE_GUARD = {"ACTION": "raise"}
    settings.DEBUG = False
    send_reminders()
    settings.DEBUG = True
    with pytest.raises(NPlusOneDetected):
        send_reminders()


def test_bad_arguments_say_how_to_fix_them():
    with pytest.raises(ValueError, match="use one of 'log', 'warn', 'raise', 'off'"):
        guarded(label="x", action="loud")
    with pytest.raises(TypeError, match="takes a string"):
        guarded(label=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "options"),
    [
        ("/guarded/job/", {}),
        ("/guarded/command/", {"COMMANDS": ["book_report"]}),
        ("/guarded/stream/", {}),
    ],
    ids=["guarded-function", "command", "streamed-body"],
)
def test_guarded_work_inside_a_request_is_reported_once_by_the_request(
    books, guard, client, caplog, url, options
):
    guard(ACTION="log", **options)
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = client.get(url)
        if response.streaming:
            b"".join(response.streaming_content)
        response.close()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith(f"GET {url}: N+1 query on testapp.Book.author: 5")


def test_guarded_work_inside_a_request_in_raise_mode_raises_once_from_the_request(
    books, guard, client
):
    guard(ACTION="raise")
    raised: list[BaseException | None] = []

    def note(sender: object, request: object, **kwargs: object) -> None:
        raised.append(sys.exc_info()[1])

    got_request_exception.connect(note)
    try:
        with pytest.raises(NPlusOneDetected, match="in GET /guarded/job/"):
            client.get("/guarded/job/")
    finally:
        got_request_exception.disconnect(note)
    # The view itself ran to its end: the only error Django handled is the request's.
    assert [str(exc).split(":")[0] for exc in raised] == ["1 N+1 finding in GET /guarded/job/"]


def test_guarded_work_inside_a_plain_capture_still_delivers(books, guard, caplog):
    guard(ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"), capture() as report:
        send_reminders()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("send_reminders: N+1 query")
    assert len(report.nplusones) == 1  # and the capture's own report has it too
