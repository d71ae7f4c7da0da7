"""Helpers the ORM attribution tests share: where a marked line is, what a fix reads."""

from __future__ import annotations

import os

from django_nplusone_guard.orm import HAS_FETCH_MODES
from django_nplusone_guard.report import NPlusOne, Report

#: The ``alternative`` a finding offers on Django 6.1+ where FETCH_PEERS applies.
PEERS = "or .fetch_mode(models.FETCH_PEERS) on the queryset" if HAS_FETCH_MODES else None


def line_of(path: str, marker: str) -> int:
    """The line of ``path`` that ends with ``# marker``."""
    with open(path) as source:
        for number, text in enumerate(source, 1):
            if text.rstrip().endswith(f"# {marker}"):
                return number
    raise AssertionError(f"no line marked {marker!r} in {path}")


def site(path: str, marker: str, function: str) -> str:
    """A rendered call site, as findings print it."""
    return f"{os.path.relpath(path)}:{line_of(path, marker)} in {function}"


def only_nplusone(report: Report) -> NPlusOne:
    assert len(report.nplusones) == 1, str(report)
    assert report.duplicates == [], str(report)
    return report.nplusones[0]
