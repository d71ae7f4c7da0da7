"""``EXPORTERS: ["log"]``: one ``WARNING`` per finding on the ``django_nplusone_guard``
logger, the same text the console, the panel and the tests show, and the same facts as
fields of the ``LogRecord`` (``extra=``), so a JSON formatter (python-json-logger,
structlog's ``ProcessorFormatter``) writes them as keys without parsing any text:
``finding_id``, ``kind``, ``model``, ``field``, ``callsite``, ``count``, ``total_time_ms``,
``label``, ``seen``, ``worst_count`` and ``sql_shape``.
"""

from __future__ import annotations

import logging

from ..report import format_finding
from .base import Export

__all__ = ["export"]

logger = logging.getLogger("django_nplusone_guard")


def export(export: Export) -> None:
    text = format_finding(export.finding, verbose=False, params=export.params)
    if export.seen > 1:
        text += (
            f"\n  seen {export.seen} times since last reported, worst {export.worst_count} queries"
        )
    prefix = f"{export.label}: " if export.label else ""
    logger.warning("%s%s", prefix, text, extra=export.fields())
