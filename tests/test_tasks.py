"""Django's tasks framework (6.0+): one scope per task execution, run on the
``ImmediateBackend``, delivered per ``ACTION`` with the task's name."""

from __future__ import annotations

import logging
import sys
import warnings

import pytest

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, assert_no_nplusone
from django_nplusone_guard.checks import check_settings
from django_nplusone_guard.tasks import has_tasks_framework
from tests.conftest import guard_records

pytestmark = pytest.mark.django_db
needs_tasks = pytest.mark.skipif(
    not has_tasks_framework(), reason="django.tasks is new in Django 6.0"
)

if has_tasks_framework():
    from django.tasks import TaskResultStatus

    from tests.testapp import tasks


@pytest.fixture(autouse=True)
def _immediate_backend(settings):
    if has_tasks_framework():
        settings.TASKS = {
            "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}
        }


@needs_tasks
def test_a_guarded_task_logs_its_nplusone_with_its_name(books, guard, caplog):
    guard(TASKS=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        result = tasks.author_names.enqueue()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert len(result.return_value) == 5
    [record] = guard_records(caplog)
    message = record.getMessage()
    assert message.startswith("author_names: N+1 query on testapp.Book.author: 5 queries")
    assert "tests/testapp/tasks.py:" in message


@needs_tasks
def test_the_fixed_task_logs_nothing(books, guard, caplog):
    guard(TASKS=True, ACTION="raise")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        result = tasks.author_names_fixed.enqueue()
    assert len(result.return_value) == 5
    assert guard_records(caplog) == []


@needs_tasks
def test_warn_points_at_the_tasks_line(books, guard):
    guard(TASKS=True, ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks.author_names.enqueue()
    [warning] = [w for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert warning.filename == "tests/testapp/tasks.py"


@needs_tasks
def test_raise_fails_the_enqueue_on_the_immediate_backend(books, guard):
    guard(TASKS=True, ACTION="raise")
    with pytest.raises(NPlusOneDetected, match="in author_names") as excinfo:
        tasks.author_names.enqueue()
    [finding] = excinfo.value.report.nplusones
    assert finding.count == 5
    assert finding.callsite.startswith("tests/testapp/tasks.py:")
    assert finding.callsite.endswith("in author_names")


@needs_tasks
def test_a_task_that_fails_keeps_its_own_error(books, guard, caplog):
    guard(TASKS=True, ACTION="raise")
    result = tasks.failing_author_names.enqueue()  # raise mode: quiet, the task failed on its own
    assert result.status == TaskResultStatus.FAILED
    assert "the task's own error" in result.errors[0].traceback
    guard(TASKS=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        tasks.failing_author_names.enqueue()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("failing_author_names: N+1 query")


@needs_tasks
@pytest.mark.parametrize(
    "options",
    [{}, {"TASKS": False}, {"TASKS": True, "ENABLED": False}],
    ids=["unset", "false", "disabled"],
)
def test_not_guarded_unless_asked(books, settings, options):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "raise", **options}
    assert len(tasks.author_names.enqueue().return_value) == 5


@needs_tasks
def test_a_task_run_by_a_task_is_reported_once(books, guard, caplog):
    guard(TASKS=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        tasks.nightly.enqueue()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("nightly: N+1 query on testapp.Book.author: 5 queries")


@needs_tasks
def test_a_task_inside_a_test_helper_is_reported_once(books, guard, caplog):
    guard(TASKS=True, ACTION="log")
    with (
        caplog.at_level(logging.WARNING, logger="django_nplusone_guard"),
        pytest.raises(NPlusOneDetected) as excinfo,
        assert_no_nplusone(),
    ):
        tasks.author_names.enqueue()
    assert len(excinfo.value.findings) == 1
    assert guard_records(caplog) == []


@needs_tasks
def test_an_async_task(books, guard):
    guard(TASKS=True, ACTION="raise")
    with pytest.raises(NPlusOneDetected, match="in async_author_names") as excinfo:
        tasks.async_author_names.enqueue()
    [finding] = excinfo.value.report.nplusones
    assert finding.count == 5
    assert finding.callsite.startswith("tests/testapp/tasks.py:")
    assert finding.callsite.endswith("in async_author_names")  # the await, not the backend


def test_a_bad_tasks_value_is_a_system_check_error(settings):
    settings.NPLUSONE_GUARD = {"TASKS": "yes"}
    [message] = check_settings()
    assert message.id == "django_nplusone_guard.E002"
    assert "'TASKS'] must be a bool" in message.msg


@pytest.mark.skipif(has_tasks_framework(), reason="for Django < 6.0, without django.tasks")
def test_tasks_is_accepted_and_inert_before_django_6(books, guard):
    guard(TASKS=True)  # connects nothing, imports nothing, fails nothing
    assert "django.tasks" not in sys.modules
    assert check_settings() == []


@needs_tasks
def test_tasks_are_sampled_like_requests(books, guard, caplog, monkeypatch):
    import random

    from django_nplusone_guard import sampling

    guard(TASKS=True, ACTION="log", SAMPLE_RATE=0.5, REPORT_INTERVAL=0)
    monkeypatch.setattr(sampling, "source", random.Random(4))
    twin = random.Random(4)
    expected = sum(twin.random() < 0.5 for _ in range(10))
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        for _ in range(10):
            tasks.author_names.enqueue()
    assert len(guard_records(caplog)) == expected
    assert 0 < expected < 10
