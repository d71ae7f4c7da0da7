"""System checks: each bad setting is a startup error naming the key and the fix."""

from __future__ import annotations

import pytest
from django.core.checks import Error

from django_nplusone_guard.checks import check_settings


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
        ("django_nplusone_guard.E009", Error)
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
