"""System checks: each bad setting is a startup error naming the key and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.checks import Error, Warning

from django_nplusone_guard.checks import check_setting_name, check_settings
from django_nplusone_guard.conf import SETTINGS_DOCS_URL

ROOT = Path(__file__).resolve().parent.parent


def _ids(settings, value):
    settings.NPLUSONE_GUARD = value
    return [(m.id, type(m)) for m in check_settings()]


def test_default_settings_pass(settings):
    settings.NPLUSONE_GUARD = {}
    assert check_settings() == []
    del settings.NPLUSONE_GUARD
    assert check_settings() == []


def test_valid_full_settings_pass(settings):
    settings.NPLUSONE_GUARD = {
        "ENABLED": True,
        "ACTION": "warn",
        "THRESHOLD": 3,
        "EXPLAIN": False,
        "ALLOW": [
            {"model": "testapp.Book", "field": "author"},
            {"model": "testapp.*"},
            {"callsite": "*/legacy/*"},
            {"sql": r"^SELECT .* FROM \"django_session\""},
        ],
        "IGNORE_URLS": [r"^/admin/"],
        "STACK_IGNORE": ["myproject.utils.cache"],
        "MAX_QUERIES": 500,
        "HEADER": True,
    }
    assert check_settings() == []


@pytest.mark.parametrize(
    ("value", "expected_id", "words"),
    [
        ([1, 2], "django_nplusone_guard.E001", "must be a dict"),
        ({"TRESHOLD": 3}, "django_nplusone_guard.E001", "unknown key 'TRESHOLD'"),
        ({"ENABLED": "yes"}, "django_nplusone_guard.E002", "'ENABLED'] must be a bool"),
        ({"THRESHOLD": 0}, "django_nplusone_guard.E002", "positive int"),
        ({"THRESHOLD": True}, "django_nplusone_guard.E002", "positive int"),
        ({"MAX_QUERIES": "10"}, "django_nplusone_guard.E002", "'MAX_QUERIES']"),
        ({"IGNORE_URLS": "^/admin/"}, "django_nplusone_guard.E002", "list of regular"),
        ({"STACK_IGNORE": [1]}, "django_nplusone_guard.E002", "module prefixes"),
        ({"ACTION": "explode"}, "django_nplusone_guard.E003", "'explode'"),
        ({"IGNORE_URLS": ["(unclosed"]}, "django_nplusone_guard.E004", "invalid regex"),
        ({"ALLOW": [{"modle": "x.Y"}]}, "django_nplusone_guard.E005", "unknown key(s) 'modle'"),
        ({"ALLOW": ["testapp.Book"]}, "django_nplusone_guard.E005", "non-empty dict"),
        ({"ALLOW": [{"model": 3}]}, "django_nplusone_guard.E005", "must be a string"),
        ({"ALLOW": [{"sql": "(("}]}, "django_nplusone_guard.E006", "not a valid regular"),
        ({"ALLOW": [{"model": "testapp.Nope"}]}, "django_nplusone_guard.E007", "unknown model"),
    ],
)
def test_each_problem_is_an_error_with_a_hint(settings, value, expected_id, words):
    settings.NPLUSONE_GUARD = value
    messages = check_settings()
    assert [m.id for m in messages] == [expected_id]
    [message] = messages
    assert isinstance(message, Error)
    assert words in message.msg
    assert message.hint


def test_a_close_typo_gets_a_did_you_mean(settings):
    settings.NPLUSONE_GUARD = {"max_queries": 10}
    [message] = check_settings()
    assert "Did you mean 'MAX_QUERIES'?" in str(message.hint)


def test_raise_with_debug_off_is_refused_unless_forced(settings):
    settings.DEBUG = False
    assert _ids(settings, {"ACTION": "raise", "ENABLED": True}) == [
        ("django_nplusone_guard.E010", Error)
    ]
    assert _ids(settings, {"ACTION": "raise"}) == []  # ENABLED follows DEBUG: off
    forced = {"ACTION": "raise", "ENABLED": True, "ALLOW_RAISE_IN_PRODUCTION": True}
    assert _ids(settings, forced) == []


def test_checks_are_registered_with_django(settings):
    from django.core import checks

    settings.NPLUSONE_GUARD = {"ACTION": "nope"}
    # Only our tag: Django 6.1 runs database checks (JSONField) for every tag otherwise.
    ids = [m.id for m in checks.run_checks(tags=[checks.Tags.compatibility])]
    assert "django_nplusone_guard.E003" in ids


def test_bad_values_fall_back_to_defaults_at_runtime(settings, caplog):
    from django_nplusone_guard.conf import get_config

    settings.NPLUSONE_GUARD = {"ACTION": "explode", "THRESHOLD": 5, "IGNORE_URLS": ["("]}
    config = get_config()
    assert config.ACTION == "log"
    assert config.THRESHOLD == 5
    assert config.IGNORE_URLS == ()
    assert "Ignoring bad setting" in caplog.text


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("ACTOIN", "ACTION"), ("TRESHOLD", "THRESHOLD"), ("log_param", "LOG_PARAMS")],
)
def test_a_misspelt_key_gets_the_closest_known_key(settings, key, suggestion):
    settings.NPLUSONE_GUARD = {key: 1}
    [message] = check_settings()
    assert message.msg == f"NPLUSONE_GUARD has unknown key {key!r}."
    assert str(message.hint).startswith(f"Did you mean {suggestion!r}? Known keys: ENABLED")


def test_an_unrelated_key_gets_no_guess(settings):
    settings.NPLUSONE_GUARD = {"COLOUR": "blue"}
    [message] = check_settings()
    assert "Did you mean" not in str(message.hint)


def test_hints_link_the_documentation_not_a_file_path(settings):
    settings.NPLUSONE_GUARD = {"EXPLAIN_TIMEOUT_MS": "fast", "NOPE": 1}
    hints = [str(m.hint) for m in check_settings()]
    assert len(hints) == 2
    for hint in hints:
        assert f"See {SETTINGS_DOCS_URL}" in hint
        assert "docs/settings.md" not in hint.replace(SETTINGS_DOCS_URL, "")
    assert hints[1].endswith(f"{SETTINGS_DOCS_URL}#explain_timeout_ms")
    # The anchor is the heading of that key in the settings page.
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert "\n### `EXPLAIN_TIMEOUT_MS`\n" in page
    assert SETTINGS_DOCS_URL.startswith("https://")


def test_a_misspelt_setting_name_is_a_warning(settings):
    settings.NPLUSONE_GAURD = {"ACTION": "raise"}
    settings.NPLUSONE_RAISE = True  # django-nplusone's own setting: not a typo of ours
    [message] = check_setting_name()
    assert isinstance(message, Warning)
    assert message.id == "django_nplusone_guard.W003"
    assert message.msg == (
        "Setting NPLUSONE_GAURD is not read by django-nplusone-guard; did you mean NPLUSONE_GUARD?"
    )
    assert str(message.hint).startswith("Rename it to NPLUSONE_GUARD.")


def test_no_warning_without_a_misspelt_setting_name(settings):
    settings.NPLUSONE_RAISE = True
    assert check_setting_name() == []


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.misspelt_settings",
        "PYTHONPATH": str(ROOT),
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_each_settings_problem_is_printed_once_by_manage_py_check():
    result = _manage("check")
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert output.count("unknown key 'ACTOIN'") == 1, output
    assert output.count("'THRESHOLD'] must be a positive int") == 1, output
    assert "Ignoring bad setting" not in output
    assert output.count("django_nplusone_guard.W003") == 1, output
    assert "Did you mean 'ACTION'?" in output


def test_without_the_checks_each_problem_is_logged_once_at_run_time():
    code = (
        "import django; django.setup()\n"
        "from django_nplusone_guard import conf\n"
        "conf.get_config(); conf.clear_cache(); conf.get_config()\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.misspelt_settings",
        "PYTHONPATH": str(ROOT),
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("Ignoring bad setting") == 2, result.stderr
    assert result.stderr.count("unknown key 'ACTOIN'") == 1, result.stderr
