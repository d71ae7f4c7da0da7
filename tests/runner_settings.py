"""Settings for the subprocesses of the tests (``manage.py test``, ``manage.py <command>``):
the suite's own, with ``NPLUSONE_GUARD`` taken from the environment."""

from __future__ import annotations

import ast
import os

from tests.settings import *  # noqa: F403

NPLUSONE_GUARD = ast.literal_eval(os.environ.get("NPLUSONE_GUARD_RUNNER_SETTING", "{}"))
