"""Missing indexes: EXPLAIN each distinct SELECT once, and suggest the ``models.Index`` that
would serve it.

:func:`find_missing_indexes` is what analysis calls (``capture(explain=True)`` or the
``EXPLAIN`` setting). It EXPLAINs each distinct (alias, fingerprint) once per process with
the first real parameters seen; the verdict is cached in a bounded LRU, so a request that
runs the same statements again costs nothing. The vendor modules (:mod:`.sqlite`,
:mod:`.postgresql`, :mod:`.mysql`) sit behind :class:`~.base.ExplainBackend`, like Django's
``db/backends/<vendor>/``.

Never harmful: a failing EXPLAIN is logged once and skipped; a broken transaction, a closed
connection or a running event loop (where the sync ORM must not be used) skip it without
touching the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from django.core.signals import setting_changed
from django.db import connections
from django.db.models.signals import post_migrate

from .. import conf
from ..capture import MANY, PARAMS
from ..report import MissingIndex
from .base import ExplainBackend, Unexplainable, clear_index_cache
from .mysql import MySQLExplain
from .postgresql import PostgreSQLExplain
from .sqlite import SQLiteExplain

if TYPE_CHECKING:
    from ..detect import Group

__all__ = ["backend_for", "clear_cache", "explain_statement", "find_missing_indexes"]

logger = logging.getLogger("django_nplusone_guard")

#: Verdicts kept per process, least recently used evicted first.
MAX_CACHED_VERDICTS = 2048
#: Problems logged once per (alias, fingerprint) or per kind of skip.
MAX_LOGGED = 512

_BACKENDS: dict[str, ExplainBackend] = {
    "sqlite": SQLiteExplain(),
    "postgresql": PostgreSQLExplain(),
    "mysql": MySQLExplain(),
}

_lock = threading.Lock()
_verdicts: OrderedDict[tuple[str, str], tuple[MissingIndex, ...]] = OrderedDict()
_logged: set[Any] = set()


def backend_for(vendor: str) -> ExplainBackend | None:
    """The EXPLAIN backend for a connection vendor; ``None`` for vendors without one."""
    return _BACKENDS.get(vendor)


def clear_cache(**kwargs: Any) -> None:
    """Forget every verdict. Runs after ``migrate``; call it after changing indexes by other
    means in a long-lived process (tests that apply a schema change do)."""
    with _lock:
        _verdicts.clear()
    clear_index_cache()


post_migrate.connect(clear_cache, dispatch_uid="django_nplusone_guard.explain")
setting_changed.connect(clear_cache, dispatch_uid="django_nplusone_guard.explain.settings")


def _log_once(key: Any, level: int, message: str, *args: Any) -> None:
    with _lock:
        if key in _logged or len(_logged) >= MAX_LOGGED:
            return
        _logged.add(key)
    logger.log(level, message, *args)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")


def explain_statement(
    alias: str, fingerprint_key: str, sql: str, params: Any, *, timeout_ms: int
) -> tuple[MissingIndex, ...]:
    """Cached verdict for one statement shape. ``callsite`` is left empty."""
    key = (alias, fingerprint_key)
    with _lock:
        cached = _verdicts.get(key)
        if cached is not None:
            _verdicts.move_to_end(key)
            return cached
    connection = connections[alias]
    backend = backend_for(connection.vendor)
    verdict: tuple[MissingIndex, ...] = ()
    if backend is not None:
        try:
            verdict = tuple(backend.analyse(connection, sql, params, timeout_ms))
        except Unexplainable as why:
            _log_once(
                ("skip", alias, str(why)), logging.INFO,
                "django-nplusone-guard skipped EXPLAIN on %r: %s.", alias, why,
            )  # fmt: skip
            return ()
        except Exception as exc:
            # Cached as "no finding" below, so it is neither retried nor logged again.
            _log_once(
                ("error", alias, fingerprint_key), logging.WARNING,
                "django-nplusone-guard could not EXPLAIN a statement on %r and skipped it "
                "(%s: %s). SQL: %.300s",
                alias, type(exc).__name__, exc, sql,
            )  # fmt: skip
    with _lock:
        _verdicts[key] = verdict
        while len(_verdicts) > MAX_CACHED_VERDICTS:
            _verdicts.popitem(last=False)
    return verdict


def find_missing_indexes(
    groups: Iterable[Group],
    frames_of: Callable[[tuple[Any, ...]], list[str]],
    *,
    should_stop: Callable[[], bool] | None = None,
) -> list[MissingIndex]:
    """One finding per (alias, table, columns) across a scope's SELECT groups;
    ``frames_of`` gives a group's rendered stack (its first frame is the finding's call
    site)."""
    select_groups = [g for g in groups if g.fp.verb == "SELECT" and g.records]
    if not select_groups:
        return []
    if _in_event_loop():
        _log_once(
            ("event-loop",), logging.INFO,
            "django-nplusone-guard skipped EXPLAIN: the capture ended inside a running event "
            "loop, where Django forbids sync database access. Use `async with capture(...)`.",
        )  # fmt: skip
        return []
    timeout_ms = conf.get_config().EXPLAIN_TIMEOUT_MS
    findings: list[MissingIndex] = []
    seen: set[tuple[Any, ...]] = set()
    for group in select_groups:
        if should_stop is not None and should_stop():
            break
        record = next((r for r in group.records if not r[MANY]), None)
        if record is None:
            continue
        sql = group.sample_sql
        verdict = explain_statement(
            group.alias, group.fp.key, sql, record[PARAMS], timeout_ms=timeout_ms
        )
        frames = frames_of(group.stack)
        for finding in verdict:
            key = (finding.alias, finding.table, finding.columns)
            if key in seen:
                continue
            seen.add(key)
            findings.append(
                replace(
                    finding,
                    sql=sql,
                    callsite=frames[0] if frames else "unknown",
                    fingerprint=group.fp.key,
                )
            )
    return findings
