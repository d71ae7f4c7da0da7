"""Stable finding ids: one name for one root cause, wherever and whenever it is seen.

A production log line, a Sentry issue, the toolbar panel, a test baseline, the audit's JSON
and a SARIF result must all call the same N+1 by the same name, across requests, processes,
machines and restarts, and across edits that only move lines. So an id is a hash of what
makes the root cause, and of nothing that varies from one run to the next:

- the rule: ``nplusone-read``, ``nplusone-write``, ``nplusone-unused-eager``,
  ``duplicate``, ``missing-index``;
- the subject: ``app.Model.field`` (or the model, or the table), and for a missing index
  the columns it needs;
- the statement's shape: its fingerprint with identifier quoting removed, so SQLite,
  PostgreSQL and MySQL runs of one loop agree;
- the call site's file, relative to the project (``settings.BASE_DIR``, else the working
  directory; a file of an installed package from its ``site-packages`` directory), and its
  function (``BookList.get_queryset``), comprehension frames folded into their function.

Line numbers, counts, timings, parameter values, the database alias and the request path
are left out. An id changes when the statement's shape changes (another filter, another
selected column), when the code moves to another function or file, or when the relation is
renamed: then it is another root cause as far as anyone reading a log can tell.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.signals import setting_changed

if TYPE_CHECKING:
    from .report import Finding

__all__ = ["RULES", "finding_id", "id_parts", "portable_path", "rule_of"]

#: Every rule a finding can break, as SARIF ``ruleId`` and the first part of an id.
RULES = (
    "nplusone-read",
    "nplusone-write",
    "nplusone-unused-eager",
    "duplicate",
    "missing-index",
)

_CALLSITE_RE = re.compile(r"^(?P<path>.+):(?P<line>\d+) in (?P<func>.+)$")
#: Python 3.12 inlined list comprehensions: a loop's function must not depend on the version.
_COMPREHENSION_RE = re.compile(r"(?:\.<locals>)?\.<(?:listcomp|dictcomp|setcomp|genexpr)>")
_PACKAGE_DIRS = ("site-packages", "dist-packages")
#: Hex digits of an id: 64 bits, so two root causes of one project never share one.
ID_LENGTH = 16

_ids: dict[tuple[str, ...], str] = {}
_MAX_CACHED_IDS = 4096
_root: str | None = None


def rule_of(finding: Finding) -> str:
    """The rule ``finding`` breaks, one of :data:`RULES`."""
    category = finding.category
    if category == "nplusone":
        kind = getattr(finding, "kind", "read")
        return "nplusone-unused-eager" if kind == "unused_eager" else f"nplusone-{kind}"
    return "missing-index" if category == "missing_index" else category


def id_parts(finding: Finding) -> dict[str, str]:
    """What the id of ``finding`` is made of, by name (shown by the baseline and the docs)."""
    path, _line, function = split_callsite(getattr(finding, "callsite", ""))
    return {
        "rule": rule_of(finding),
        "subject": _subject(finding),
        "shape": sql_shape(getattr(finding, "sql", "")),
        "file": portable_path(path),
        "function": _COMPREHENSION_RE.sub("", function),
    }


def finding_id(finding: Finding) -> str:
    """The stable id of ``finding``: :data:`ID_LENGTH` hex digits (see the module's text)."""
    # Cached on what the parts are computed from: a loop logged on every request costs a
    # lookup, not a fingerprint, a path resolution and a hash each time.
    callsite = getattr(finding, "callsite", "")
    key = (
        rule_of(finding),
        _subject(finding),
        getattr(finding, "sql", ""),
        callsite[: callsite.rfind(":")] if ":" in callsite else callsite,
        callsite[callsite.rfind(" in ") :],
        _project_root(),
        os.getcwd(),
    )
    found = _ids.get(key)
    if found is None:
        text = "\x1f".join(id_parts(finding).values()).encode("utf-8", "backslashreplace")
        found = hashlib.blake2b(text, digest_size=ID_LENGTH // 2).hexdigest()
        if len(_ids) >= _MAX_CACHED_IDS:
            _ids.clear()
        _ids[key] = found
    return found


def split_callsite(callsite: str) -> tuple[str, int | None, str]:
    """``("path.py", 12, "func")`` from ``"path.py:12 in func"``; lenient on odd input."""
    match = _CALLSITE_RE.match(callsite or "")
    if match is None:
        return callsite or "unknown", None, ""
    return match["path"], int(match["line"]), match["func"]


def sql_shape(sql: str) -> str:
    """A short hash of the statement's shape that survives a change of database backend."""
    from .fingerprint import fingerprint

    normalized = fingerprint(sql).normalized.replace('"', "").replace("`", "")
    return hashlib.blake2b(normalized.encode("utf-8", "replace"), digest_size=8).hexdigest()


def portable_path(path: str, root: str | os.PathLike[str] | None = None) -> str:
    """``path`` as it reads on any machine that checked out the project: relative to
    ``root`` (default: ``settings.BASE_DIR``, else the working directory), a file of an
    installed package from its package directory, forward slashes."""
    if path in ("", "unknown") or path.startswith("<"):
        return path
    absolute = Path(os.path.abspath(path))
    parts = absolute.parts
    # First: a virtualenv inside the project must not put its name and Python version in.
    for marker in _PACKAGE_DIRS:
        if marker in parts:
            return Path(*parts[len(parts) - parts[::-1].index(marker) :]).as_posix()
    for base in (root if root is not None else _project_root(), os.getcwd()):
        try:
            return absolute.relative_to(os.path.abspath(base)).as_posix()
        except ValueError:
            continue
    return absolute.as_posix()


def _project_root() -> str:
    global _root
    if _root is None:
        base = getattr(settings, "BASE_DIR", None) if settings.configured else None
        # "" stands for the working directory, which can change; BASE_DIR is read once
        # (an absent setting costs an exception per read) until the setting changes.
        _root = os.fspath(base) if base else ""
    return _root or os.getcwd()


def _base_dir_changed(*, setting: str, **kwargs: Any) -> None:
    global _root
    if setting == "BASE_DIR":
        _root = None


setting_changed.connect(_base_dir_changed, dispatch_uid="django_nplusone_guard.identity")


def _subject(finding: Finding) -> str:
    model = getattr(finding, "model", None)
    field = getattr(finding, "field", None)
    if finding.category == "missing_index":
        columns = ",".join(getattr(finding, "columns", ()))
        return f"{model or getattr(finding, 'table', '?')}({columns})"
    if model and field:
        return f"{model}.{field}"
    return model or "?"
