"""Findings as GitHub Actions workflow commands: ``::warning file=...,line=...::message``.

A line printed in this form by any step becomes an annotation on the pull request's diff,
at that file and line, without uploading anything. Failing findings are ``::error``, the
rest ``::warning``; one annotation per finding id, however many tests or pages saw it
(GitHub shows at most 10 of each level per step, so repeats would crowd out the others).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from .sightings import SightedFinding, Sighting, group_sightings, repository_root

__all__ = ["annotation_lines", "escape_data", "escape_property", "in_github_actions"]


def in_github_actions(environ: Mapping[str, str] | None = None) -> bool:
    """True inside a GitHub Actions job, which sets ``GITHUB_ACTIONS=true``."""
    return (environ if environ is not None else os.environ).get("GITHUB_ACTIONS") == "true"


def escape_data(text: str) -> str:
    """A command's message, escaped as GitHub's runner reads it back (``%``, CR, LF)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A command's property value (``file=``, ``title=``): also ``:`` and ``,``, which
    would end the value."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation_lines(
    sightings: Iterable[Sighting], *, root: str | os.PathLike[str] | None = None
) -> list[str]:
    """One workflow command per finding id; paths relative to ``root`` (default: the
    repository's root, which is the checkout directory the runner resolves them from)."""
    base = root if root is not None else repository_root()
    return [_line(found, base) for found in group_sightings(sightings)]


def _line(found: SightedFinding, root: str | os.PathLike[str]) -> str:
    properties = []
    location = found.location(root)
    if location is not None:
        properties.append(f"file={escape_property(location.path)}")
        if location.line:
            properties.append(f"line={location.line}")
    properties.append(f"title={escape_property(f'nplusone-guard: {found.rule}')}")
    message = found.message
    related = found.related(root)
    if related:
        message += "\n" + "\n".join(f"{place.role}: {place}" for place in related)
    if found.seen_in:
        shown = ", ".join(found.seen_in[:3])
        more = len(found.seen_in) - 3
        message += f"\nseen in {shown}" + (f" and {more} more" if more > 0 else "")
    message += f"\nid: {found.id}"
    return f"::{found.level} {','.join(properties)}::{escape_data(message)}"
