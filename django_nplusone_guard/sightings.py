"""Findings as CI reports see them: one root cause, where it was seen, and whether it fails.

SARIF, GitHub annotations and JUnit all answer the same questions about a finding: which
rule, which file and line of the repository, which other lines matter (the queryset, the
place for the fix, the template), what to do, and which tests or pages saw it. This module
answers them once from the findings' plain data (``Finding.to_dict()``, which is also what
pytest-xdist workers send), so the renderers stay small and agree with each other.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .identity import portable_path, rule_of, split_callsite
from .report import DUPLICATE_FIX, Duplicate, Finding, NPlusOne, finding_from_dict

__all__ = ["Place", "SightedFinding", "Sighting", "group_sightings", "repository_root"]


@dataclass(frozen=True)
class Place:
    """A line of a file, the file relative to the repository root (forward slashes)."""

    path: str
    line: int | None
    #: What this line is to the finding: "call site", "queryset evaluated here", ...
    role: str = "call site"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


@dataclass(frozen=True)
class Sighting:
    """One finding as one test or one page saw it."""

    finding: Mapping[str, Any]  # ``Finding.to_dict()``, with its ``id``
    where: str  # a test's node id or a page's URL
    failing: bool = False  # it failed that test or page (or would, with --fail-on)


@dataclass
class SightedFinding:
    """One root cause (one finding id) with every test or page that saw it."""

    finding: Finding
    seen_in: list[str] = field(default_factory=list)
    failing: bool = False
    count: int = 0  # the most statements it ran in one test or page

    @property
    def id(self) -> str:
        return self.finding.id

    @property
    def rule(self) -> str:
        return rule_of(self.finding)

    @property
    def level(self) -> str:
        """``error`` when it failed a test or page, else ``warning``."""
        return "error" if self.failing else "warning"

    def location(self, root: str | os.PathLike[str] | None = None) -> Place | None:
        """The user's line, where the finding fired; None when no line of the user's ran it."""
        return _place(self.finding_callsite, "call site", root)

    @property
    def finding_callsite(self) -> str:
        return str(getattr(self.finding, "callsite", "") or "")

    def related(self, root: str | os.PathLike[str] | None = None) -> list[Place]:
        """Other lines that matter: the queryset's line, where the fix goes, the template
        line, a duplicate's other call sites."""
        finding = self.finding
        places: list[Place | None] = []
        if isinstance(finding, NPlusOne):
            places.append(_place(finding.parent_callsite, "queryset evaluated here", root))
            if finding.fix_at and finding.fix_at != finding.parent_callsite:
                places.append(_place(finding.fix_at, "the fix goes here", root))
            if finding.template:
                places.append(_template_place(finding.template, root))
        elif isinstance(finding, Duplicate):
            places.extend(
                _place(site, "also run from here", root) for site in finding.callsites[1:]
            )
            places.extend(_template_place(line, root) for line in finding.templates)
        primary = self.location(root)
        unique: list[Place] = []
        for place in places:
            if place is None or (
                primary is not None and (place.path, place.line) == (primary.path, primary.line)
            ):
                continue
            if all((p.path, p.line) != (place.path, place.line) for p in unique):
                unique.append(place)
        return unique

    @property
    def fix(self) -> str:
        """What to change, in words, or "" when nothing should (a fixed repeat)."""
        finding = self.finding
        suggestion = str(getattr(finding, "suggestion", "") or "")
        if isinstance(finding, Duplicate) and not suggestion:
            suggestion = DUPLICATE_FIX
        if isinstance(finding, NPlusOne):
            if finding.fix_at and finding.fix_at != finding.parent_callsite and suggestion:
                suggestion += f" (in {finding.fix_at})"
            if finding.alternative:
                suggestion = (
                    f"{suggestion}; {finding.alternative}" if suggestion else finding.alternative
                )
        return suggestion

    @property
    def message(self) -> str:
        """The title, and the fix on a line of its own: for an annotation or a SARIF result."""
        fix = self.fix
        text = self.finding.title
        return f"{text}\nFix: {fix}" if fix else text


def group_sightings(sightings: Iterable[Sighting]) -> list[SightedFinding]:
    """One :class:`SightedFinding` per finding id, in a stable order (rule, file, line,
    id), with the tests or pages that saw it sorted."""
    by_id: dict[str, SightedFinding] = {}
    for sighting in sightings:
        data = sighting.finding
        finding = None
        key = str(data.get("id") or "")
        if not key:  # plain data written before ids existed: the id is computed
            finding = finding_from_dict(data)
            key = finding.id
        found = by_id.get(key)
        if found is None:
            found = by_id[key] = SightedFinding(finding or finding_from_dict(data))
        if sighting.where and sighting.where not in found.seen_in:
            found.seen_in.append(sighting.where)
        found.failing = found.failing or sighting.failing
        found.count = max(found.count, int(data.get("count") or 0))
    for found in by_id.values():
        found.seen_in.sort()

    def order(found: SightedFinding) -> tuple[str, str, int, str]:
        path, line, _func = split_callsite(found.finding_callsite)
        return (found.rule, path, line or 0, found.id)

    return sorted(by_id.values(), key=order)


def repository_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: the working directory) that
    holds ``.git``; ``start`` itself when none does. CI services resolve a report's
    relative paths against the checkout's root."""
    here = Path(os.path.abspath(start if start is not None else os.getcwd()))
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return here


def _place(callsite: str | None, role: str, root: str | os.PathLike[str] | None) -> Place | None:
    if not callsite:
        return None
    path, line, _func = split_callsite(callsite)
    if path in ("", "unknown") or path.startswith("<"):
        return None
    if line is None:  # a class member (``BookAdmin.list_select_related``), not a file
        return None
    return Place(_relative(path, root), line, role)


def _relative(path: str, root: str | os.PathLike[str] | None) -> str:
    if root is None:
        return portable_path(path)
    return portable_path(path, root)


def _template_place(template_line: str, root: str | os.PathLike[str] | None) -> Place | None:
    """``books/list.html:7`` as the template file's place in the repository: template names
    are resolved through Django's loaders, once per name."""
    name, _, line = template_line.rpartition(":")
    if not name or not line.isdigit():
        return None
    return Place(_relative(_template_file(name), root), int(line), "template line")


_template_files: dict[str, str] = {}


def _template_file(name: str) -> str:
    found = _template_files.get(name)
    if found is None:
        found = name
        try:
            from django.template.loader import get_template

            origin = get_template(name).origin  # type: ignore[attr-defined]
            if origin is not None and origin.name and os.path.isfile(origin.name):
                found = origin.name
        except Exception:  # not found, no engine, a broken template: keep the name
            found = name
        _template_files[name] = found
    return found
