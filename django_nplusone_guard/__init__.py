"""Find N+1 queries and missing indexes in Django apps.

The public API is deliberately small; everything else is an implementation detail.
"""

from __future__ import annotations

from .capture import capture, ignore
from .exceptions import NPlusOneDetected, NPlusOneWarning
from .guarded import guarded
from .report import Report
from .testing import assert_no_nplusone

__all__ = [
    "NPlusOneDetected",
    "NPlusOneWarning",
    "Report",
    "assert_no_nplusone",
    "capture",
    "guarded",
    "ignore",
]

__version__ = "0.1.0"
