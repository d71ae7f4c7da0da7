"""django-debug-toolbar panel: every N+1, missing index and duplicate of the page, with the fix.

Add ``"django_nplusone_guard.panels.NPlusOnePanel"`` to ``DEBUG_TOOLBAR_PANELS``.

The panel is a thin front door like the middleware: it records the request through the same
capture scope (one capture per request even when both are installed, see
:func:`~django_nplusone_guard.middleware.join_request_capture`), stores the report as plain
JSON with ``record_stats`` so the toolbar's history works with every store, and renders it
back with :meth:`Report.from_dict <django_nplusone_guard.report.Report.from_dict>`. Anything
costly (SQL formatting) waits until someone opens the panel.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Awaitable
from functools import lru_cache
from html import escape
from inspect import iscoroutine
from typing import Any

import sqlparse
from debug_toolbar.panels import Panel
from django.http import HttpRequest, HttpResponseBase
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.utils.safestring import SafeString, mark_safe
from sqlparse import tokens

from . import conf
from .capture import capture, log_internal_error
from .middleware import analyse_from_async, join_request_capture, leave_request_capture
from .report import Finding, Report, finding_order, format_finding

__all__ = ["NPlusOnePanel", "format_sql"]

logger = logging.getLogger("django_nplusone_guard")

#: Statements up to this many characters are reindented with sqlparse; longer ones are shown
#: as they ran.
SQL_REINDENT_LIMIT = 4_000
#: Statements are cut at this many characters in the panel (a 2 MB ``IN`` list helps nobody).
SQL_DISPLAY_LIMIT = 20_000

_STATS_KEY = "report"
# The line to paste: a Meta.indexes entry, or the RunSQL operation for a model the user
# does not own.
_INDEX_RE = re.compile(r"(?:models\.\w*Index|migrations\.RunSQL)\(.*\)")


def hide_from_toolbar_stacks() -> None:
    """Keep the guard's own frames (its ORM hooks) out of the SQL panel's stack traces.

    They are noise to the reader, and the SQL panel looks up the module and source line of
    every frame it keeps, so three hook frames per statement cost more than the guard's
    whole recording. The toolbar caches its merged config in one dict; the guard's package
    is appended to its ``HIDE_IN_STACKTRACES`` there (the project's settings are untouched),
    again whenever a settings change rebuilds that dict.
    """
    try:
        from debug_toolbar import settings as toolbar_settings

        config = toolbar_settings.get_config()
        hidden = config.get("HIDE_IN_STACKTRACES")
        if hidden is not None and _PACKAGE not in hidden:
            config["HIDE_IN_STACKTRACES"] = (*hidden, _PACKAGE)
    except Exception:
        log_internal_error("hiding the guard's frames from the toolbar")


_PACKAGE = __name__.rpartition(".")[0]


class NPlusOnePanel(Panel):  # type: ignore[misc]  # debug_toolbar is untyped
    """N+1 queries, missing indexes and duplicate queries of one request."""

    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hide_from_toolbar_stacks()

    nav_title = "N+1 Guard"
    template = "django_nplusone_guard/panel.html"

    _capture: capture | None = None
    _stored_report: dict[str, Any] | None = None

    # ---------------------------------------------------------------- recording

    def process_request(self, request: HttpRequest) -> Any:
        try:
            scope = join_request_capture(request, sys._getframe(0))
        except Exception:
            log_internal_error("the toolbar panel")
            return super().process_request(request)
        try:
            response = super().process_request(request)
        except BaseException:
            leave_request_capture(request, scope)
            raise
        if iscoroutine(response):
            return self._aprocess_request(request, scope, response)
        if leave_request_capture(request, scope):
            scope.analyse()
        self._capture = scope
        return response

    async def _aprocess_request(
        self, request: HttpRequest, scope: capture, response: Awaitable[HttpResponseBase]
    ) -> HttpResponseBase:
        try:
            result = await response
        finally:
            stopped_here = leave_request_capture(request, scope)
        if stopped_here:
            await analyse_from_async(scope)
        self._capture = scope
        return result

    def generate_stats(self, request: HttpRequest, response: HttpResponseBase) -> None:
        if self._capture is not None:
            report = self._capture.report
        else:
            report = Report(
                errors=["this request was not recorded (see the django_nplusone_guard log)"]
            )
        # The SQL panel already keeps every statement; the findings are what this panel adds.
        # Leaving ``queries`` out keeps the stored JSON small and ``generate_stats`` cheap:
        # the report's statements are never even built.
        data = report.to_dict(params=False, queries=False)
        if not panel_shows_params():
            for finding in (*data["nplusones"], *data["duplicates"]):
                finding["params"] = None
        self.record_stats({_STATS_KEY: data})

    # ---------------------------------------------------------------- side bar

    def _stored(self) -> dict[str, Any]:
        # The side bar asks for the title, subtitle and icon, some twice: the stored report
        # is looked up once per panel instance (each request, or history entry, has its own).
        stored = self._stored_report
        if stored is None:
            found = self.get_stats().get(_STATS_KEY)
            if not isinstance(found, dict):
                return {}  # not recorded yet: ask again later
            stored = self._stored_report = found
        return stored

    def _counts(self) -> tuple[int, int, int]:
        stored = self._stored()
        return (
            len(stored.get("nplusones", ())),
            len(stored.get("missing_indexes", ())),
            len(stored.get("duplicates", ())),
        )

    @property
    def nav_subtitle(self) -> str:
        if not self._stored():
            return ""
        nplusones, indexes, duplicates = self._counts()
        parts = []
        if nplusones:
            parts.append(f"{nplusones} N+1")
        if indexes:
            parts.append(f"{indexes} index")
        if duplicates:
            parts.append(f"{duplicates} dup")
        if self._stored().get("errors"):
            parts.append("incomplete")  # never "clean" when the analysis could not finish
        return " · ".join(parts) or "clean"

    @property
    def nav_icon(self) -> str:
        """A warning sign when there is something to fix (toolbar 8+ shows nav icons)."""
        if any(self._counts()):
            return "django_nplusone_guard/img/warning.svg"
        return "django_nplusone_guard/img/clean.svg"

    @property
    def title(self) -> str:
        stored = self._stored()
        queries = stored.get("query_count", 0)
        return (
            f"N+1 Guard: {queries} {'query' if queries == 1 else 'queries'} "
            f"in {float(stored.get('total_time_ms', 0.0)):.1f} ms"
        )

    @property
    def scripts(self) -> list[str]:
        scripts: list[str] = super().scripts
        scripts.append(static("django_nplusone_guard/js/panel.js"))
        return scripts

    # ---------------------------------------------------------------- content

    @property
    def content(self) -> SafeString:
        report = Report.from_dict(self._stored())
        nplusones = [_finding_context(f) for f in sorted(report.nplusones, key=finding_order)]
        missing_indexes = [
            _finding_context(f)
            for f in sorted(report.missing_indexes, key=lambda f: -(f.rows_estimate or 0))
        ]
        duplicates = [_finding_context(f) for f in sorted(report.duplicates, key=finding_order)]
        context = {
            "report": report,
            "stylesheet": static("django_nplusone_guard/css/panel.css"),
            "nplusones": nplusones,
            "missing_indexes": missing_indexes,
            "duplicates": duplicates,
            # Grouped by kind, in the order a developer should fix them.
            "groups": [
                _group("djng-nplusones", "N+1 queries", "nplusone", nplusones),
                _group(
                    "djng-missing-indexes", "Missing indexes", "missing_index", missing_indexes
                ),
                _group("djng-duplicates", "Duplicate queries", "duplicate", duplicates),
            ],
        }
        return render_to_string(self.template, context)


def panel_shows_params() -> bool:
    """Whether the panel shows findings' parameter values: yes, like the SQL panel beside it
    (a development tool, on the developer's own data), unless ``LOG_PARAMS`` is set to
    ``False`` explicitly, which keeps them out of everything the guard renders."""
    return conf.get_config().raw.get("LOG_PARAMS") is not False


def _group(html_id: str, heading: str, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    template = f"django_nplusone_guard/findings/{kind}.html"
    return {"id": html_id, "heading": heading, "template": template, "items": items}


def _finding_context(finding: Finding) -> dict[str, Any]:
    text = format_finding(finding)
    return {
        "finding": finding,
        "text": text,
        # The producer's own code snippet when it has one, else the shared formatter's advice.
        "fix": getattr(finding, "suggestion", "") or _fix_line(text),
        "sql": format_sql(getattr(finding, "sql", "") or ""),
        # What to paste (into ``Meta.indexes``, or a migration), without the advice around it.
        "index_line": _index_line(getattr(finding, "suggestion", "") or ""),
    }


def _index_line(suggestion: str) -> str:
    match = _INDEX_RE.search(suggestion)
    return match[0] if match else ""


def _fix_line(text: str) -> str:
    """The ``Fix:`` advice of a :func:`format_finding` text, so every front door gives the
    same words."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Fix: "):
            return stripped.removeprefix("Fix: ")
    return ""


@lru_cache(maxsize=256)
def format_sql(sql: str) -> SafeString:
    """Reindented, keyword-bold, HTML-escaped SQL.

    Long statements are shown as they ran (keywords still bold), cut at
    :data:`SQL_DISPLAY_LIMIT`: sqlparse's reindenting is superlinear (a 12,000-character
    ``IN`` list takes most of a second) and refuses very long or deeply nested statements.
    """
    if len(sql) <= SQL_REINDENT_LIMIT:
        try:
            return _bold_keywords(sqlparse.format(sql, reindent=True, keyword_case="upper"))
        except Exception:  # sqlparse's own limits (SQLParseError) or a bug of its own
            logger.debug("Could not reindent SQL for the toolbar panel", exc_info=True)
    shown = str(_bold_keywords(sql[:SQL_DISPLAY_LIMIT]))
    if len(sql) > SQL_DISPLAY_LIMIT:
        shown += escape(f"\n… {len(sql) - SQL_DISPLAY_LIMIT:,} more characters not shown")
    return mark_safe(shown)  # both parts are escaped


def _bold_keywords(sql: str) -> SafeString:
    pieces = []
    for token_type, value in sqlparse.lexer.tokenize(sql):  # type: ignore[no-untyped-call]
        if token_type in tokens.Keyword:
            pieces.append(f"<strong>{escape(value, quote=False)}</strong>")
        else:
            pieces.append(escape(value, quote=False))
    return mark_safe("".join(pieces))  # every piece is escaped above
