"""Settings with mistakes a new user makes, for the subprocess tests of the system checks:
an unknown key, a bad value, and the whole setting misspelt once more beside it."""

from tests.settings import *  # noqa: F403

NPLUSONE_GUARD = {"ENABLED": True, "ACTOIN": "log", "THRESHOLD": 0}
NPLUSONE_GAURD = {"ACTION": "raise"}
