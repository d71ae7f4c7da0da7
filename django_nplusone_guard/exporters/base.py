"""What an exporter receives, and the one loop that hands findings to every exporter.

An exporter is a callable taking one :class:`Export`: a finding that passed the rate limit
(``REPORT_INTERVAL``), with its stable id, the label of the request, command or task it was
seen in, and how often it was seen since it was last reported. ``EXPORTERS`` lists them by
name (``"log"``, ``"opentelemetry"``, ``"sentry"``) or by the dotted path of your own::

    def to_my_queue(export: Export) -> None:
        my_queue.put_nowait(export.fields())

    NPLUSONE_GUARD = {"EXPORTERS": ["log", "myproject.monitoring.to_my_queue"]}

Exporters run on the request's thread, after the response is built: they must hand data
over, never wait for a network (the OpenTelemetry and Sentry SDKs queue it for their own
background threads). One that raises is logged once, with its traceback, and skipped for
that finding; the request, and the other exporters, carry on.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.utils.module_loading import import_string

from .. import conf
from ..fingerprint import fingerprint
from ..identity import rule_of, split_callsite
from ..ratelimit import limiter, report_interval
from ..report import Finding

__all__ = ["Export", "Exporter", "deliver", "exporter_problem", "resolve"]

logger = logging.getLogger("django_nplusone_guard")

#: Where each built-in name lives; anything else in ``EXPORTERS`` is a dotted path.
BUILTIN_PATHS = {
    "log": "django_nplusone_guard.exporters.log.export",
    "opentelemetry": "django_nplusone_guard.exporters.opentelemetry.export",
    "sentry": "django_nplusone_guard.exporters.sentry.export",
}
#: The library each built-in exporter needs, and the extra that installs it.
REQUIRED_LIBRARIES = {
    "opentelemetry": ("opentelemetry.trace", "django-nplusone-guard[otel]"),
    "sentry": ("sentry_sdk", "django-nplusone-guard[sentry]"),
}


@dataclass(frozen=True, slots=True)
class Export:
    """One finding as exporters see it.

    ``params`` is ``LOG_PARAMS``: unless it is on, nothing here carries a parameter value.
    Use :attr:`sql` (the statement's shape) and :meth:`fields`, not the finding's own
    ``sql``, ``params`` or ``plan``, in anything that leaves the process.
    """

    finding: Finding
    id: str
    label: str
    #: Sightings of this id since it was last reported, this one included.
    seen: int
    #: The most queries one of those sightings ran.
    worst_count: int
    params: bool = False

    @property
    def kind(self) -> str:
        """The rule broken: ``nplusone-read``, ``nplusone-write``, ``nplusone-unused-eager``,
        ``duplicate`` or ``missing-index``."""
        return rule_of(self.finding)

    @property
    def model(self) -> str | None:
        return getattr(self.finding, "model", None)

    @property
    def field(self) -> str | None:
        """The relation or field name; for a missing index, the fields it needs."""
        field = getattr(self.finding, "field", None)
        if field is None and self.finding.category == "missing_index":
            field = ",".join(getattr(self.finding, "fields", ()) or ()) or None
        return field

    @property
    def relation(self) -> str | None:
        """``app.Model.field``, or the model alone."""
        if self.model and self.field:
            return f"{self.model}.{self.field}"
        return self.model

    @property
    def callsite(self) -> str:
        return str(getattr(self.finding, "callsite", "") or "unknown")

    @property
    def count(self) -> int:
        """Statements this sighting ran (1 for a missing index)."""
        return int(getattr(self.finding, "count", 1))

    @property
    def total_time_ms(self) -> float:
        return round(float(getattr(self.finding, "total_time_ms", 0.0)), 3)

    @property
    def title(self) -> str:
        return self.finding.title

    @property
    def fix(self) -> str:
        """What to change, as the finding says it (code, never values)."""
        return str(getattr(self.finding, "suggestion", "") or "")

    @property
    def fix_at(self) -> str | None:
        return getattr(self.finding, "fix_at", None) or getattr(
            self.finding, "parent_callsite", None
        )

    @property
    def sql(self) -> str:
        """The statement's shape: values and placeholders as ``?``, ``IN`` lists as
        ``(...)``, comments dropped; with ``LOG_PARAMS``, the statement as it ran."""
        sql = str(getattr(self.finding, "sql", "") or "")
        return sql if self.params else fingerprint(sql).normalized

    @property
    def db_system(self) -> str:
        """The database, as OpenTelemetry's ``db.system`` names it (``postgresql``,
        ``mysql``, ``mariadb``, ``sqlite``, ``oracle``)."""
        from django.db import connections

        try:
            connection = connections[getattr(self.finding, "alias", "default")]
        except Exception:
            return "other_sql"
        if connection.vendor == "mysql" and getattr(connection, "mysql_is_mariadb", False):
            return "mariadb"
        return str(connection.vendor)

    def code_location(self) -> tuple[str, int | None, str]:
        """``(path, line, function)`` of the call site."""
        return split_callsite(self.callsite)

    def fields(self) -> dict[str, Any]:
        """Flat, JSON-able fields: what the log exporter puts on its ``LogRecord``."""
        return {
            "finding_id": self.id,
            "kind": self.kind,
            "model": self.model,
            "field": self.field,
            "callsite": self.callsite,
            "count": self.count,
            "total_time_ms": self.total_time_ms,
            "label": self.label,
            "seen": self.seen,
            "worst_count": self.worst_count,
            "sql_shape": self.sql,
        }


Exporter = Callable[[Export], None]

_resolved: dict[tuple[str, ...], list[tuple[str, Exporter]]] = {}
_failed: set[str] = set()


def resolve(names: Iterable[str]) -> list[tuple[str, Exporter]]:
    """``(name, callable)`` for each exporter that imports; one that does not is logged
    once and left out (the system check ``E011`` reports it at start-up)."""
    key = tuple(names)
    found = _resolved.get(key)
    if found is None:
        found = []
        for name in key:
            try:
                exporter = import_string(BUILTIN_PATHS.get(name, name))
                if not callable(exporter):
                    raise TypeError(f"{name!r} is not callable")
            except Exception:
                _log_failure_once(name, "could not be loaded and is skipped")
                continue
            found.append((name, exporter))
        _resolved[key] = found
    return found


def deliver(findings: Iterable[Finding], *, label: str, config: conf.Config) -> None:
    """Hand each finding the rate limit lets through to every exporter; never raises."""
    interval = report_interval(config)
    exporters = resolve(config.EXPORTERS)
    params = config.LOG_PARAMS
    for finding in findings:
        finding_id = finding.id
        admitted = limiter.admit(finding_id, int(getattr(finding, "count", 1)), interval)
        if admitted is None:
            continue
        export = Export(finding, finding_id, label, admitted.seen, admitted.worst_count, params)
        for name, exporter in exporters:
            try:
                exporter(export)
            except Exception:
                _log_failure_once(name, "failed; its findings are skipped")


def _log_failure_once(name: str, what: str) -> None:
    if name in _failed:
        return
    _failed.add(name)
    logger.error(
        "django-nplusone-guard: the exporter %r %s (logged once per exporter; the request "
        "is not affected).",
        name,
        what,
        exc_info=True,
    )


def exporter_problem(name: str) -> str | None:
    """Why ``name`` cannot be an exporter here, or ``None``: for the system check."""
    required = REQUIRED_LIBRARIES.get(name)
    if required is not None:
        module, extra = required
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        return None if found else f"needs {module.partition('.')[0]}: pip install '{extra}'"
    if name in BUILTIN_PATHS:
        return None
    if "." not in name:
        return (
            f"is neither a built-in exporter ({', '.join(map(repr, BUILTIN_PATHS))}) nor a "
            "dotted path to a callable"
        )
    try:
        exporter = import_string(name)
    except ImportError as exc:
        return f"cannot be imported: {exc}"
    return None if callable(exporter) else "is not callable"


def _clear() -> None:
    _resolved.clear()
    _failed.clear()


conf.on_settings_change(_clear)
