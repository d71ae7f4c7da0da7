"""Settings for the subprocesses of the tests (``manage.py test``, ``manage.py <command>``, a
Celery worker): the suite's own, with ``NPLUSONE_GUARD`` taken from the environment, and the
default database in the SQLite file ``NPLUSONE_GUARD_RUNNER_DB`` names, when it names one
(a worker and the process that fills it share it)."""

from __future__ import annotations

import ast
import os

from tests.settings import *  # noqa: F403

NPLUSONE_GUARD = ast.literal_eval(os.environ.get("NPLUSONE_GUARD_RUNNER_SETTING", "{}"))

if os.environ.get("NPLUSONE_GUARD_RUNNER_DB"):
    DATABASES = {
        **DATABASES,  # noqa: F405
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ["NPLUSONE_GUARD_RUNNER_DB"],
        },
    }
