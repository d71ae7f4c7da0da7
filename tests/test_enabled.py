"""``ENABLED``: decided when each request starts, from the settings of that moment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client, override_settings

from django_nplusone_guard import NPlusOneDetected, conf
from django_nplusone_guard.middleware import REQUEST_ATTR

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def _guarded(response) -> bool:
    return hasattr(response.wsgi_request, REQUEST_ATTR)


def test_unset_enabled_follows_debug_as_it_is_when_the_request_starts(books, settings):
    settings.DEBUG = True  # pytest-django, like Django's runner, turned it off
    settings.NPLUSONE_GUARD = {"ACTION": "raise"}
    assert conf.is_enabled()  # parsed and cached with DEBUG on
    # Django's test runner switches DEBUG off like this: no setting_changed signal.
    django_settings.DEBUG = False
    try:
        assert not conf.is_enabled()
        assert not _guarded(Client().get("/books/"))
    finally:
        django_settings.DEBUG = True
    with pytest.raises(NPlusOneDetected):
        Client(raise_request_exception=True).get("/books/")


@pytest.mark.parametrize("enabled", [True, False])
def test_overriding_debug_mid_suite_does_not_change_an_explicit_enabled(books, settings, enabled):
    settings.NPLUSONE_GUARD = {"ENABLED": enabled, "ACTION": "off"}
    for debug in (False, True, False):
        with override_settings(DEBUG=debug):
            assert _guarded(Client().get("/books/")) is enabled, f"DEBUG={debug}"
    assert _guarded(Client().get("/books/")) is enabled


def test_config_no_longer_carries_debug():
    # The cached Config must not hold a value derived from DEBUG (see conf.is_enabled).
    assert conf.Config().ENABLED is None


@pytest.mark.parametrize(
    ("guard_setting", "expected"),
    [
        ("{}", "unguarded"),  # ENABLED follows DEBUG, which the runner turns off
        ('{"ENABLED": True}', "guarded"),
    ],
)
def test_under_manage_py_test(guard_setting, expected, tmp_path):
    """``manage.py test`` (Django's runner) sets ``DEBUG = False`` before the tests run."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.runner_settings",
        "NPLUSONE_GUARD_RUNNER_SETTING": guard_setting,
        "NPLUSONE_GUARD_RUNNER_OUT": str(tmp_path / "out.txt"),
        # What DEBUG does is the same on every backend; SQLite needs no server-side database.
        "NPLUSONE_GUARD_TEST_DB": "sqlite",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "test", "tests.runner_cases", "-v", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.txt").read_text() == expected
