"""Settings for the test suite. ``NPLUSONE_GUARD_TEST_DB`` picks the backend:
``sqlite`` (default), ``postgres`` or ``mysql`` (MariaDB/MySQL on 127.0.0.1)."""

from __future__ import annotations

import os

BACKEND = os.environ.get("NPLUSONE_GUARD_TEST_DB", "sqlite")

SECRET_KEY = "tests-only-not-secret"
DEBUG = True
USE_TZ = True
ALLOWED_HOSTS = ["*"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# Several test runs may share one server (developers, helpers, CI): a per-process suffix
# keeps their test databases apart. pytest-xdist adds its own _gwN on top.
_SUFFIX = os.environ.get("NPLUSONE_GUARD_TEST_DB_SUFFIX", f"p{os.getpid()}")


def _database(name: str) -> dict[str, object]:
    if BACKEND == "postgres":
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": os.environ.get("PGUSER", "root"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "TEST": {"NAME": f"test_{name}_{_SUFFIX}"},
        }
    if BACKEND == "mysql":
        return {
            "ENGINE": "django.db.backends.mysql",
            "NAME": name,
            "USER": os.environ.get("MYSQL_USER", "root"),
            "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
            "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
            "PORT": os.environ.get("MYSQL_PORT", "3306"),
            "OPTIONS": {"charset": "utf8mb4"},
            "TEST": {"NAME": f"test_{name}_{_SUFFIX}", "CHARSET": "utf8mb4"},
        }
    if BACKEND != "sqlite":
        raise ValueError(
            f"NPLUSONE_GUARD_TEST_DB must be sqlite, postgres or mysql, not {BACKEND!r}"
        )
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "TEST": {"NAME": ""}}


DATABASES = {"default": _database("nplusone_guard"), "other": _database("nplusone_guard_other")}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "debug_toolbar",
    "django_nplusone_guard",
    "tests.testapp",
]

MIDDLEWARE = [
    "django_nplusone_guard.middleware.NPlusOneGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"
STATIC_URL = "/static/"

# The toolbar is installed but inert: no middleware, no URLs. The toolbar tests switch it on
# with ``tests.toolbar_settings``. DatabaseStore here only makes the toolbar create its
# history table in the test database; the tests pick their store per test.
DEBUG_TOOLBAR_CONFIG = {"TOOLBAR_STORE_CLASS": "debug_toolbar.store.DatabaseStore"}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "debug": True,
            # The last two are what the admin's system checks ask for (tests.testapp.admin).
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_nplusone_guard": {"level": "INFO"}},
}
