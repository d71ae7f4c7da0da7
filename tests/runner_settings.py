"""Settings for the ``manage.py test`` run of :mod:`tests.test_enabled`: the suite's own,
with ``NPLUSONE_GUARD`` taken from the environment."""

from __future__ import annotations

import ast
import os

from tests.settings import *  # noqa: F403

NPLUSONE_GUARD = ast.literal_eval(os.environ.get("NPLUSONE_GUARD_RUNNER_SETTING", "{}"))
