"""Guarded management commands: ``call_command()`` and ``manage.py <command>``."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from django.core.management import call_command

from django_nplusone_guard import NPlusOneDetected, NPlusOneWarning, assert_no_nplusone
from django_nplusone_guard.checks import check_settings
from django_nplusone_guard.commands import is_guarded_command
from tests.conftest import guard_records

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def _report(*args: str) -> str:
    out = io.StringIO()
    call_command("book_report", *args, stdout=out)
    return out.getvalue()


def test_a_guarded_command_logs_its_nplusone_with_its_name(books, guard, caplog):
    guard(COMMANDS=["book_report"], ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        output = _report()
    assert output.count("\n") == 5  # the command ran as usual
    [record] = guard_records(caplog)
    message = record.getMessage()
    assert message.startswith("book_report: N+1 query on testapp.Book.author: 5 queries")
    assert "tests/testapp/management/commands/book_report.py:" in message


def test_the_fixed_command_logs_nothing(books, guard, caplog):
    guard(COMMANDS=["book_report"], ACTION="log")
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        _report("--fixed")
    assert guard_records(caplog) == []


def test_warn_points_at_the_commands_line(books, guard):
    guard(COMMANDS=True, ACTION="warn")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _report()
    [warning] = [w for w in caught if issubclass(w.category, NPlusOneWarning)]
    assert warning.filename == "tests/testapp/management/commands/book_report.py"
    source = Path(warning.filename).read_text().splitlines()
    assert "# command-nplusone" in source[warning.lineno - 1]


def test_raise_fails_the_command(books, guard):
    guard(COMMANDS=["book_*"], ACTION="raise")
    with pytest.raises(NPlusOneDetected) as excinfo:
        _report()
    assert "1 N+1 finding in book_report" in str(excinfo.value)
    _report("--fixed")


def test_a_command_that_fails_keeps_its_own_error(books, guard, caplog):
    guard(COMMANDS=["book_report"], ACTION="raise")
    with pytest.raises(RuntimeError, match="the report failed on its own"):
        _report("--fail")
    guard(COMMANDS=["book_report"], ACTION="log")
    with (
        caplog.at_level(logging.WARNING, logger="django_nplusone_guard"),
        pytest.raises(RuntimeError),
    ):
        _report("--fail")
    assert len(guard_records(caplog)) == 1  # its N+1 is still reported


@pytest.mark.parametrize(
    "options",
    [
        {},  # COMMANDS defaults to False
        {"COMMANDS": False},
        {"COMMANDS": ["other_*", "seed"]},
        {"COMMANDS": True, "ENABLED": False},
    ],
)
def test_not_guarded_unless_asked(books, settings, caplog, options):
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "raise", **options}
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        _report()
    assert guard_records(caplog) == []


def test_unset_enabled_follows_debug_when_the_command_starts(books, settings):
    settings.NPLUSONE_GUARD = {"COMMANDS": True, "ACTION": "raise"}
    settings.DEBUG = False
    _report()
    settings.DEBUG = True
    with pytest.raises(NPlusOneDetected):
        _report()


def test_a_command_inside_a_test_helper_is_reported_once(books, guard, caplog):
    guard(COMMANDS=True, ACTION="log")
    with (
        caplog.at_level(logging.WARNING, logger="django_nplusone_guard"),
        pytest.raises(NPlusOneDetected) as excinfo,
        assert_no_nplusone(),
    ):
        _report()
    assert len(excinfo.value.findings) == 1
    assert guard_records(caplog) == []


@pytest.mark.parametrize(
    ("name", "commands", "guarded"),
    [
        ("book_report", True, True),
        ("book_report", False, False),
        ("book_report", ("book_report",), True),
        ("book_report", ("book_*",), True),
        ("book_report", ("report",), False),
        ("runserver", True, False),
        ("migrate", True, False),
        ("test", ("*",), False),
        ("shell", True, False),
        ("nplusone_audit", True, False),
    ],
)
def test_which_commands_are_guarded(name, commands, guarded):
    assert is_guarded_command(name, commands) is guarded


@pytest.mark.parametrize(
    ("commands", "check_id", "text"),
    [
        ("yes", "django_nplusone_guard.E002", "'COMMANDS'] must be True, False or a list"),
        (["book_report", 3], "django_nplusone_guard.E002", "'COMMANDS'] must be True"),
        (["migrate"], "django_nplusone_guard.E008", "'migrate', which is never guarded"),
        ([" "], "django_nplusone_guard.E008", "an empty name"),
    ],
)
def test_a_bad_commands_value_is_a_system_check_error(settings, commands, check_id, text):
    settings.NPLUSONE_GUARD = {"COMMANDS": commands}
    [message] = check_settings()
    assert message.id == check_id
    assert text in message.msg


_MANAGE = textwrap.dedent(
    """
    import sys

    import django
    from django.core.management import ManagementUtility, call_command
    from django.core.management.base import BaseCommand

    django.setup()
    print("wrapped" if BaseCommand.execute.__module__.startswith("django_nplusone") else "plain")
    call_command("migrate", run_syncdb=True, verbosity=0)
    from tests.factories import AuthorFactory, BookFactory

    for _ in range(3):
        BookFactory(author=AuthorFactory())
    ManagementUtility(["manage.py", *sys.argv[1:]]).execute()
    """
)


def _manage(guard_setting: dict[str, object], *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.runner_settings",
        "NPLUSONE_GUARD_RUNNER_SETTING": repr(guard_setting),
        "NPLUSONE_GUARD_TEST_DB": "sqlite",  # in memory: this process's own database
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-c", _MANAGE, *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.mark.django_db(False)
@pytest.mark.parametrize("action", ["log", "warn"])
def test_manage_py_exit_status_is_unchanged_in_log_and_warn_mode(action):
    result = _manage(
        {"ENABLED": True, "COMMANDS": ["book_report"], "ACTION": action}, "book_report"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("wrapped\n")
    assert "N+1 query on testapp.Book.author: 3 queries" in result.stderr
    if action == "log":
        assert "book_report: N+1 query" in result.stderr


@pytest.mark.django_db(False)
def test_manage_py_fails_in_raise_mode():
    result = _manage({"ENABLED": True, "COMMANDS": True, "ACTION": "raise"}, "book_report")
    assert result.returncode == 1
    assert "NPlusOneDetected: 1 N+1 finding in book_report" in result.stderr


@pytest.mark.django_db(False)
def test_commands_are_not_wrapped_unless_asked():
    result = _manage({"ENABLED": True, "ACTION": "raise"}, "book_report")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("plain\n")
