"""Findings as a SARIF 2.1.0 log, for code scanning (GitHub's Security tab, GitLab, Azure).

One result per finding id, whichever tests or pages saw it (they are listed in the result's
``properties.seenIn``); ``ruleId`` is the finding's rule (:data:`.identity.RULES`); the
location is the user's line, relative to the repository root (``%SRCROOT%``); related
locations are the queryset's line, the line the fix goes on and the template line; the
message says what to do. ``partialFingerprints`` carries the stable id, so a code-scanning
service tracks one finding across commits that move its line, and closes it when a commit
fixes it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .identity import RULES
from .report import redact_literals, shorten_sql
from .sightings import Place, SightedFinding, Sighting, group_sightings, repository_root

__all__ = ["FINGERPRINT_KEY", "RULE_HELP", "SARIF_SCHEMA", "sarif_log", "write_sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
#: Versioned, as SARIF asks: a change in what the id hashes is a new key.
FINGERPRINT_KEY = "nplusoneGuard/v1"
TOOL_NAME = "django-nplusone-guard"
DOCS = "https://github.com/django-nplusone-guard/django-nplusone-guard/blob/main/docs/"
SRCROOT = "%SRCROOT%"

#: Per rule: name, short description, full description, help (the fix), help page.
RULE_HELP: dict[str, tuple[str, str, str, str, str]] = {
    "nplusone-read": (
        "NPlusOneRead",
        "N+1 query: one SELECT per row of a loop.",
        "The same SELECT ran once per item of something the code iterates (a queryset, a "
        "list of instances), so the page's query count grows with its data.",
        "Load the relation with the rows: select_related() for a foreign key or one-to-one, "
        "prefetch_related() for a reverse foreign key or many-to-many, annotate() for a "
        "count. The result's message names the relation and the exact call; its related "
        "locations show the queryset's line.",
        "fixing.md",
    ),
    "nplusone-write": (
        "NPlusOneWrite",
        "N+1 write: one INSERT, UPDATE or DELETE per row of a loop.",
        "A write statement ran once per item of a loop, one round trip each.",
        "Write the rows at once: bulk_create(), bulk_update(), or update()/delete() on a "
        "queryset (mind that these skip save() and signals).",
        "fixing.md",
    ),
    "nplusone-unused-eager": (
        "UnusedEagerLoad",
        "Eager load never used: select_related()/prefetch_related() loaded a relation "
        "nothing read.",
        "A relation was joined or prefetched for every row, and no code read it: the "
        "queries and the rows they carry are spent for nothing.",
        "Remove the relation from select_related()/prefetch_related(), or read it where "
        "it was meant to be used.",
        "fixing.md",
    ),
    "duplicate": (
        "DuplicateQuery",
        "Duplicate query: the same statement run more than once.",
        "A statement ran more than once where no loop over rows explains it: the same "
        "statement and parameters again, one place repeating it, or a library running it "
        "per item.",
        "Run it once and reuse the result (a variable, cached_property, {% with %} in a "
        "template), or follow the library setting the message names. A fixed number of "
        "repeats does not grow with data and can be left.",
        "fixing.md",
    ),
    "missing-index": (
        "MissingIndex",
        "Missing index: a filter or sort no index serves.",
        "EXPLAIN showed a full scan or a sort for a filter or ordering that an index would "
        "serve; it grows slower with the table.",
        "Add the index the message names (Meta.indexes or db_index=True) and make a migration.",
        "missing-indexes.md",
    ),
}
assert set(RULE_HELP) == set(RULES), "every rule needs its help text"


def sarif_log(
    sightings: Iterable[Sighting],
    *,
    root: str | os.PathLike[str] | None = None,
    category: str = "pytest",
    params: bool = False,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of ``sightings``: one run, one result per finding id.

    ``root`` is the directory paths are relative to (default: the repository's root, the
    nearest directory holding ``.git``); ``category`` tells runs of one commit apart
    (``runAutomationDetails.id``: the pytest plugin and the audit upload separately);
    ``params=False`` replaces string literals in the SQL shown (personal data, often)."""
    base = Path(root) if root is not None else repository_root()
    grouped = group_sightings(sightings)
    rule_index = {rule: index for index, rule in enumerate(RULES)}
    return {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": _version(),
                        "informationUri": DOCS + "index.md",
                        "rules": [_rule(rule) for rule in RULES],
                    }
                },
                "automationDetails": {"id": f"{TOOL_NAME}/{category}/"},
                "originalUriBaseIds": {SRCROOT: {"uri": base.resolve().as_uri() + "/"}},
                "columnKind": "utf16CodeUnits",
                "results": [_result(f, rule_index[f.rule], base, params) for f in grouped],
            }
        ],
    }


def write_sarif(path: str | os.PathLike[str], log: dict[str, Any]) -> None:
    """Write ``log`` to ``path`` (its directory created), replacing it whole."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps(log, indent=2) + "\n", encoding="utf-8")
    temporary.replace(target)


def _rule(rule: str) -> dict[str, Any]:
    name, short, full, help_text, page = RULE_HELP[rule]
    return {
        "id": rule,
        "name": name,
        "shortDescription": {"text": short},
        "fullDescription": {"text": full},
        "help": {"text": help_text, "markdown": help_text},
        "helpUri": DOCS + page,
        "defaultConfiguration": {"level": "warning"},
        "properties": {"tags": ["performance", "django", "database"]},
    }


def _result(found: SightedFinding, index: int, root: Path, params: bool) -> dict[str, Any]:
    sql = str(getattr(found.finding, "sql", "") or "")
    related = found.related(root)
    message = found.message
    if related:
        # Embedded links: code scanning shows "[text](id)" as a link to relatedLocations[id].
        links = ", ".join(f"[{_link_text(p)}]({n})" for n, p in enumerate(related, 1))
        message += f"\nSee {links}."
    result: dict[str, Any] = {
        "ruleId": found.rule,
        "ruleIndex": index,
        "level": found.level,
        "message": {"text": message},
        "partialFingerprints": {FINGERPRINT_KEY: found.id},
        "properties": {
            "id": found.id,
            "seenIn": list(found.seen_in),
            "sql": shorten_sql(sql if params else redact_literals(sql)),
        },
    }
    if found.count:
        result["properties"]["count"] = found.count
    location = found.location(root)
    if location is not None:
        result["locations"] = [{"physicalLocation": _physical(location)}]
    if related:
        result["relatedLocations"] = [
            {"id": n, "physicalLocation": _physical(p), "message": {"text": p.role}}
            for n, p in enumerate(related, 1)
        ]
    return result


def _physical(place: Place) -> dict[str, Any]:
    physical: dict[str, Any] = {
        "artifactLocation": {"uri": quote(place.path, safe="/"), "uriBaseId": SRCROOT}
    }
    if place.line:
        physical["region"] = {"startLine": place.line}
    return physical


def _link_text(place: Place) -> str:
    text = f"{place.role} ({place})"
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(TOOL_NAME)
    except PackageNotFoundError:  # run from a checkout without installing
        return "0"
