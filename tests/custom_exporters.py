"""Custom exporters named by dotted path in the tests' EXPORTERS."""

from __future__ import annotations

from django_nplusone_guard.exporters.base import Export

received: list[Export] = []


def keep(export: Export) -> None:
    received.append(export)


def explode(export: Export) -> None:
    raise RuntimeError("exporter down")


not_callable = 42
