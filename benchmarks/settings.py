"""Settings of the benchmark project; ``NPLUSONE_BENCH_VARIANT`` picks what is added to it.

``DEBUG`` is off unless ``NPLUSONE_BENCH_DEBUG=1``: with it on, Django keeps every query in
``connection.queries``, which makes the bare request slower and every ratio look better.
"""

from __future__ import annotations

import os

from django.http import HttpRequest

from benchmarks.variants import BY_NAME, TOOL_LOGGERS

VARIANT = BY_NAME[os.environ.get("NPLUSONE_BENCH_VARIANT", "bare")]

SECRET_KEY = "benchmark-only-not-secret"
DEBUG = os.environ.get("NPLUSONE_BENCH_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
INTERNAL_IPS = ["127.0.0.1"]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "benchmarks.urls"
STATIC_URL = "/static/"

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}

INSTALLED_APPS = ["django.contrib.contenttypes", "benchmarks.benchapp", *VARIANT.apps]
MIDDLEWARE = [*VARIANT.middleware]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {
        name: {"handlers": ["null"], "level": "INFO", "propagate": False} for name in TOOL_LOGGERS
    },
}


def show_toolbar(request: HttpRequest) -> bool:
    """Show the toolbar whatever ``DEBUG`` is, so toolbar variants measure the toolbar."""
    return True


globals().update(VARIANT.settings)

# Under valgrind (benchmarks.instructions) everything runs ~50x slower: give EXPLAIN and the
# analysis the time they would have at full speed, so the variant does the same work.
if os.environ.get("NPLUSONE_BENCH_SLOW") == "1" and "NPLUSONE_GUARD" in globals():
    NPLUSONE_GUARD = {
        **globals()["NPLUSONE_GUARD"],
        "EXPLAIN_TIMEOUT_MS": 60_000,
        "ANALYSIS_BUDGET_MS": 600_000,
    }
