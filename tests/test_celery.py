"""Celery: one scope per task execution, delivered per ``ACTION`` with the task's name; run
eagerly here and by a real worker process against the real broker (RabbitMQ)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import celery.exceptions
import pytest

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, assert_no_nplusone
from django_nplusone_guard.capture import active_scope
from django_nplusone_guard.checks import check_settings
from django_nplusone_guard.delivery import reporter
from tests.celery_app import BROKER_URL, app
from tests.conftest import guard_records
from tests.testapp import celery_tasks

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
NAME = "tests.testapp.celery_tasks.author_names"


@pytest.fixture
def eager():
    """``task_always_eager``, as projects set it in tests and development."""
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False


def test_an_eager_task_logs_its_nplusone_with_its_name(books, guard, eager, caplog):
    guard(CELERY=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        result = celery_tasks.author_names.delay()
    assert result.successful()
    assert len(result.get()) == 5
    [record] = guard_records(caplog)
    message = record.getMessage()
    assert message.startswith(f"{NAME}: N+1 query on testapp.Book.author: 5 queries")
    assert "at tests/testapp/celery_tasks.py:" in message
    assert "in author_names" in message


def test_the_fixed_task_logs_nothing(books, guard, eager, caplog):
    guard(CELERY=True, ACTION="raise")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        assert len(celery_tasks.author_names_fixed.delay().get()) == 5
    assert guard_records(caplog) == []


def test_apply_is_guarded_without_always_eager(books, guard, caplog):
    guard(CELERY=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        celery_tasks.author_names.apply()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith(f"{NAME}: N+1 query")


def test_warn_points_at_the_tasks_line(books, guard, eager):
    guard(CELERY=True, ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        celery_tasks.author_names.delay()
    [warning] = [w for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert warning.filename == "tests/testapp/celery_tasks.py"


def test_raise_is_logged_as_an_error_since_celery_swallows_signal_errors(
    books, guard, eager, caplog
):
    guard(CELERY=True, ACTION="raise")
    with caplog.at_level(logging.WARNING):
        result = celery_tasks.author_names.delay()
    assert result.successful()  # Celery would not let a signal receiver fail the task
    [record] = guard_records(caplog)
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith(f"1 N+1 finding in {NAME}:")
    # Said by the guard, not by Celery as a failed signal receiver.
    assert not [r for r in caplog.records if "Signal handler" in r.getMessage()]


@pytest.mark.parametrize("action", ["log", "raise"])
def test_a_task_that_fails_keeps_its_own_error_and_its_findings_are_logged(
    books, guard, eager, caplog, action
):
    guard(CELERY=True, ACTION=action)
    with (
        caplog.at_level(logging.WARNING, logger="django_nplusone_guard"),
        pytest.raises(ValueError, match="the task's own error"),
    ):
        celery_tasks.failing_author_names.delay()
    [record] = guard_records(caplog)
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith(
        "tests.testapp.celery_tasks.failing_author_names: N+1 query"
    )


def test_a_failure_stored_by_celery_is_noted_too(books, guard, caplog):
    guard(CELERY=True, ACTION="raise")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        result = celery_tasks.failing_author_names.apply(throw=False)  # stored: task_failure
    assert result.failed()
    [record] = guard_records(caplog)
    assert record.levelno == logging.WARNING  # the task's error is the error, not the N+1


@pytest.mark.parametrize(
    "options",
    [{}, {"CELERY": False}, {"CELERY": True, "ENABLED": False}, {"CELERY": True, "ACTION": "off"}],
    ids=["unset", "false", "disabled", "off"],
)
def test_not_guarded_unless_asked(books, settings, eager, caplog, options):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log", **options}
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        assert len(celery_tasks.author_names.delay().get()) == 5
    assert guard_records(caplog) == []


def test_tasks_are_sampled_like_requests(books, guard, eager, caplog, monkeypatch):
    import random

    from django_nplusone_guard import sampling

    guard(CELERY=True, ACTION="log", SAMPLE_RATE=0.5, REPORT_INTERVAL=0)
    monkeypatch.setattr(sampling, "source", random.Random(4))
    twin = random.Random(4)
    expected = sum(twin.random() < 0.5 for _ in range(10))
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        for _ in range(10):
            celery_tasks.author_names.delay()
    assert len(guard_records(caplog)) == expected
    assert 0 < expected < 10


def test_unset_enabled_follows_debug_when_the_task_starts(books, settings, eager, caplog):
    settings.NPLUSONE_GUARD = {"CELERY": True, "ACTION": "log"}
    settings.DEBUG = False
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        celery_tasks.author_names.delay()
        assert guard_records(caplog) == []
        settings.DEBUG = True
        celery_tasks.author_names.delay()
    assert len(guard_records(caplog)) == 1


def test_a_task_run_by_a_task_is_reported_once(books, guard, eager, caplog):
    guard(CELERY=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        celery_tasks.nightly.delay()
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("tests.testapp.celery_tasks.nightly: N+1 query")


def test_each_run_of_a_retried_task_is_reported_and_ended(books, guard, caplog):
    guard(CELERY=True, ACTION="log", REPORT_INTERVAL=0)  # each run, not once per interval
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        result = celery_tasks.retried_author_names.apply(throw=False)
    assert len(result.get()) == 5
    assert active_scope() is None
    assert reporter() is None
    records = guard_records(caplog)
    assert len(records) == 2  # the first run (retried) and the retry, one task id
    for record in records:
        assert record.getMessage().startswith(
            "tests.testapp.celery_tasks.retried_author_names: N+1 query"
        )


def test_a_task_inside_a_test_helper_is_reported_once(books, guard, eager, caplog):
    guard(CELERY=True, ACTION="log")
    with (
        caplog.at_level(logging.WARNING, logger="django_nplusone_guard"),
        pytest.raises(NPlusOneDetected) as excinfo,
        assert_no_nplusone(),
    ):
        celery_tasks.author_names.delay()
    assert len(excinfo.value.findings) == 1
    assert guard_records(caplog) == []


def test_a_task_run_by_a_request_is_reported_once_by_the_request(books, guard, client, caplog):
    guard(CELERY=True, ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        assert len(client.get("/guarded/celery/").json()["authors"]) == 5
    [record] = guard_records(caplog)
    assert record.getMessage().startswith("GET /guarded/celery/: N+1 query on testapp.Book")


def test_a_bad_celery_value_is_a_system_check_error(settings):
    settings.NPLUSONE_GUARD = {"CELERY": "yes"}
    [message] = check_settings()
    assert message.id == "django_nplusone_guard.E002"
    assert "'CELERY'] must be a bool" in message.msg


def test_celery_on_without_celery_installed_is_a_system_check_error(settings, monkeypatch):
    monkeypatch.setitem(sys.modules, "celery", None)  # how Python spells "not installed"
    settings.NPLUSONE_GUARD = {"CELERY": True}
    [message] = check_settings()
    assert message.id == "django_nplusone_guard.E009"
    assert "Celery is not installed" in message.msg
    assert "pip install django-nplusone-guard[celery]" in (message.hint or "")


@pytest.mark.django_db(False)
def test_celery_is_not_imported_unless_asked():
    code = "import sys, django; django.setup(); print('celery' in sys.modules)"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.runner_settings",
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
        "PYTHONPATH": str(ROOT),
    }
    for setting, imported in [({"ENABLED": True}, "False"), ({"CELERY": True}, "True")]:
        result = subprocess.run(
            [sys.executable, "-c", code],
            cwd=ROOT,
            env={**env, "NPLUSONE_GUARD_RUNNER_SETTING": repr(setting)},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert result.stdout.strip() == imported, result.stderr


# --------------------------------------------------------------------------- a real worker

#: The worker: its own SQLite file (filled here, before it starts), the guard on in log mode.
_WORKER = textwrap.dedent(
    """
    import sys

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    from tests.factories import AuthorFactory, BookFactory

    for _ in range(5):
        BookFactory(author=AuthorFactory())
    from tests.celery_app import app

    app.worker_main(sys.argv[1:])
    """
)


def _broker_reachable() -> bool:
    url = urlsplit(BROKER_URL)
    try:
        socket.create_connection((url.hostname or "127.0.0.1", url.port or 5672), 2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def broker() -> None:
    if _broker_reachable():
        return
    message = (
        f"no Celery broker at {BROKER_URL} (start RabbitMQ: rabbitmq-server -detached, "
        "or point NPLUSONE_GUARD_CELERY_BROKER at one)"
    )
    if os.environ.get("NPLUSONE_GUARD_REQUIRE_BROKER"):
        pytest.fail(message + "; NPLUSONE_GUARD_REQUIRE_BROKER is set")
    pytest.skip(message)


def _result(async_result, worker: subprocess.Popen[str], log: Path, deadline: float):
    while True:
        try:
            return async_result.get(timeout=1)
        except celery.exceptions.TimeoutError:
            if worker.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the worker gave no result; its log:\n{_read(log)}")


def _read(log: Path) -> str:
    return log.read_text() if log.exists() else "(no log)"


@pytest.mark.django_db(False)
def test_a_real_worker_logs_a_tasks_nplusone_with_its_name(broker, tmp_path):
    queue = f"nplusone_guard_{uuid.uuid4().hex}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.runner_settings",
        "NPLUSONE_GUARD_RUNNER_SETTING": repr({"ENABLED": True, "CELERY": True}),
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
        "NPLUSONE_GUARD_RUNNER_DB": str(tmp_path / "worker.sqlite3"),
        "NPLUSONE_GUARD_CELERY_QUEUE": queue,
        "PYTHONPATH": str(ROOT),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WORKER,
            "worker",
            "--pool=solo",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel=WARNING",
            f"--logfile={log}",
            f"--queues={queue}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.monotonic() + 60
    try:
        # One at a time, in this order: once the second's finding is logged, the first is done.
        fixed = celery_tasks.author_names_fixed.apply_async(queue=queue)
        assert len(_result(fixed, worker, log, deadline)) == 5
        nplusone = celery_tasks.author_names.apply_async(queue=queue)
        assert len(_result(nplusone, worker, log, deadline)) == 5
        while "N+1 query" not in _read(log) and time.monotonic() < deadline:
            time.sleep(0.1)  # the result is sent before task_postrun, the finding after
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    findings = [line for line in _read(log).splitlines() if "N+1 query" in line]
    assert len(findings) == 1, _read(log)
    assert f"{NAME}: N+1 query on testapp.Book.author: 5 queries" in findings[0]
    assert "at tests/testapp/celery_tasks.py:" in _read(log)
