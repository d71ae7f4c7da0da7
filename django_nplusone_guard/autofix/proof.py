"""The proof: measure the pages before and after the edits, and judge each edit.

An edit is kept only when, on every page it was made for, its findings are gone, the page
ran no more queries than before, its status is the same, its body is of the same size class
(within :data:`BODY_TOLERANCE`), it did not raise, and no finding appeared that was not
there before. Pages are measured by :mod:`.probe` in a fresh process each time, before as
well as after, so both sides start from the same cold caches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from .plan import Edit
from .probe import MARK

__all__ = ["BODY_TOLERANCE", "Measurement", "PageMeasure", "environment", "judge", "measure"]

#: How much a page's body may grow or shrink and still be "the same page": a fix changes
#: how rows are loaded, not what is shown, but pages carry timestamps and tokens.
BODY_TOLERANCE = 0.10
#: Seconds one measurement may take before the proof gives up on it.
TIMEOUT = 600


@dataclass
class PageMeasure:
    url: str
    status: int | None
    error: str | None
    body_length: int | None
    query_count: int
    findings: dict[tuple[Any, ...], str]


@dataclass
class Measurement:
    pages: dict[str, PageMeasure]
    index_problems: list[str] = field(default_factory=list)


class ProofError(Exception):
    """The measurement could not be taken (the project did not start, say)."""


def environment() -> dict[str, str]:
    """This process's environment for a child that must load the same project: the same
    settings module, and this process's ``sys.path`` (manage.py puts the project there)."""
    env = dict(os.environ)
    # No .pyc of an edit being tried: two tries of equal size in one second would share
    # the timestamp and size a .pyc is checked against.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["DJANGO_SETTINGS_MODULE"] = settings.SETTINGS_MODULE
    env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
    return env


def measure(
    urls: list[str],
    options: dict[str, Any],
    indexes: Sequence[tuple[str, str]] = (),
) -> Measurement:
    """Request ``urls`` in a fresh process with the same settings, path and directory."""
    request = {
        "urls": urls,
        "options": {
            "user": options.get("user"),
            "explain": options.get("explain"),
            "threshold": options.get("threshold"),
            "rollback": True,
        },
        "indexes": [list(pair) for pair in indexes],
    }
    try:
        done = subprocess.run(
            [sys.executable, "-m", "django_nplusone_guard.autofix.probe"],
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env=environment(),
            cwd=os.getcwd(),
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProofError(f"the pages took more than {TIMEOUT} s") from exc
    answer = next(
        (line[len(MARK) :] for line in done.stdout.splitlines() if line.startswith(MARK)), None
    )
    if done.returncode != 0 or answer is None:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ProofError(f"the project did not run: {tail}")
    data = json.loads(answer)
    pages = {
        page["url"]: PageMeasure(
            url=page["url"],
            status=page["status"],
            error=page["error"],
            body_length=page["body_length"],
            query_count=page["query_count"],
            findings={tuple(key): title for key, title in page["findings"]},
        )
        for page in data["pages"]
    }
    return Measurement(pages, list(data["index_problems"]))


def _same_size(before: int | None, after: int | None) -> bool:
    if before is None or after is None:
        return before == after
    if before == after:
        return True
    return min(before, after) >= (1 - BODY_TOLERANCE) * max(before, after)


def _page_problem(before: PageMeasure, after: PageMeasure | None) -> str | None:
    """Why a page is worse after the edits, or None."""
    if after is None:
        return "the page was not measured again"
    if after.error:
        return f"the page raised {after.error}"
    if after.status != before.status:
        return f"the status changed from {before.status} to {after.status}"
    if after.query_count > before.query_count:
        return f"the page ran more queries ({before.query_count} -> {after.query_count})"
    if not _same_size(before.body_length, after.body_length):
        return (
            f"the page's body changed size ({before.body_length} -> {after.body_length} "
            "bytes): it no longer shows the same thing"
        )
    new = [title for key, title in after.findings.items() if key not in before.findings]
    if new:
        return f"a new finding appeared: {new[0]}"
    return None


def judge(edit: Edit, before: Measurement, after: Measurement) -> str | None:
    """Why ``edit`` has to be reverted, or None when it is proven."""
    if edit.kind == "index":
        name = edit.index_name or ""
        problem = next((p for p in after.index_problems if name in p), None)
        if problem is not None:
            return f"not proven: {problem}"
    for url in edit.urls:
        page_before = before.pages.get(url)
        if page_before is None:
            return f"{url} could not be measured before the edit"
        problem = _page_problem(page_before, after.pages.get(url))
        if problem:
            return f"{url}: {problem}"
    for ref in edit.findings:
        page = after.pages[ref.url]
        if ref.key in page.findings:
            return f"{ref.url}: the finding stayed{_stayed_hint(edit)}"
    return None


def _stayed_hint(edit: Edit) -> str:
    if any(code.startswith(".annotate(") for code in edit.codes):
        return (
            " (the loop still runs its query per row: read the annotated value there "
            "instead, by hand)"
        )
    if edit.kind == "index":
        return " (the database does not use the index for this query)"
    return " (the relation is read some other way: a property or method that queries again?)"
