"""What silences a finding, and whether it still does: inline ``# nplusone: allow`` comments,
and a ledger of the suppressions that matched, to list the stale ones.

An inline comment on the call site's line, or on the line that evaluated the queryset::

    for book in Book.objects.all():  # nplusone: allow[read] the admin caps this list at 10
        book.author.name

silences findings of those kinds there, in every front door (the analysis in
:mod:`.detect` asks :func:`allowed_inline` for each finding, never per query). Kinds:
``read`` (N+1 reads, unused eager loads), ``write``, ``duplicate``, ``index``, or a comma
list; ``allow`` alone allows every kind. A comment without a reason still works, with a
warning: a suppression nobody can explain is one nobody dares remove.

The :data:`ledger` remembers which ``ALLOW`` rules and which comments matched something.
A run that covers the whole suite (the pytest plugin) or the whole site (``nplusone_audit
--all``) lists the suppressions that matched nothing: the code they excused was fixed or
moved, and they now hide the next regression.
"""

from __future__ import annotations

import linecache
import logging
import os
import re
import tokenize
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from .identity import rule_of, split_callsite
from .report import Finding

__all__ = [
    "INLINE_KINDS",
    "InlineAllow",
    "Ledger",
    "allowed_inline",
    "inline_allow_at",
    "ledger",
    "rule_key",
    "scan_file",
    "stale_inline",
    "stale_lines",
    "stale_rules",
    "tracked",
]

logger = logging.getLogger("django_nplusone_guard")

#: Kinds an inline comment names, and the rules (:data:`.identity.RULES`) each covers.
INLINE_KINDS: dict[str, frozenset[str]] = {
    "read": frozenset({"nplusone-read", "nplusone-unused-eager"}),
    "write": frozenset({"nplusone-write"}),
    "duplicate": frozenset({"duplicate"}),
    "index": frozenset({"missing-index"}),
}
_COMMENT_RE = re.compile(r"#\s*nplusone:\s*allow\b(?:\[(?P<kinds>[^\]]*)\])?(?P<reason>.*)$")
_REASON_STRIP = " \t-:;,.\u2013\u2014"
_MAX_CACHED_SITES = 4096


@dataclass(frozen=True)
class InlineAllow:
    """One ``# nplusone: allow[...] reason`` comment."""

    path: str  # absolute
    line: int
    rules: frozenset[str]  # the rules it allows
    reason: str
    #: Kinds it named that are not kinds: the comment is ignored, with a warning.
    unknown: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{_shown(self.path)}:{self.line}"


def parse_comment(text: str, path: str, line: int) -> InlineAllow | None:
    """The allow comment on a source line, or None."""
    if "nplusone" not in text:
        return None
    match = _COMMENT_RE.search(text)
    if match is None:
        return None
    named = match["kinds"]
    reason = match["reason"].strip(_REASON_STRIP)
    if named is None:
        return InlineAllow(path, line, frozenset().union(*INLINE_KINDS.values()), reason)
    kinds = [k.strip().lower() for k in named.split(",") if k.strip()]
    unknown = tuple(k for k in kinds if k not in INLINE_KINDS)
    rules = frozenset().union(*(INLINE_KINDS[k] for k in kinds if k in INLINE_KINDS))
    return InlineAllow(path, line, rules, reason, unknown)


_at_callsite: dict[str, InlineAllow | None] = {}


def inline_allow_at(callsite: str) -> InlineAllow | None:
    """The allow comment on a call site's line (``path.py:12 in func``), read once per call
    site (:mod:`linecache`); None when there is none, or no line of a file."""
    try:
        return _at_callsite[callsite]
    except KeyError:
        pass
    path, line, _func = split_callsite(callsite)
    found = None
    if line is not None and not path.startswith("<") and path != "unknown":
        absolute = os.path.abspath(path)
        found = parse_comment(linecache.getline(absolute, line), absolute, line)
    if len(_at_callsite) >= _MAX_CACHED_SITES:
        _at_callsite.clear()
    _at_callsite[callsite] = found
    return found


def allowed_inline(finding: Finding) -> bool:
    """True when an allow comment on the finding's call site (any of a duplicate's) or
    queryset line allows its kind. Each such comment is noted in the :data:`ledger`, and
    warned about once when it gives no reason or names an unknown kind."""
    allowed = False
    rule = None
    for site in _sites(finding):
        comment = inline_allow_at(site)
        if comment is None:
            continue
        if comment.unknown:
            _warn_once(
                comment,
                f"nplusone-guard: the allow comment at {comment} names unknown kind(s) "
                f"{', '.join(comment.unknown)} and is ignored; use "
                f"{', '.join(INLINE_KINDS)}, e.g. # nplusone: allow[read] <why>.",
            )
            continue
        rule = rule or rule_of(finding)
        if rule in comment.rules:
            allowed = True
            ledger.matched_inline.add((comment.path, comment.line))
            if not comment.reason:
                ledger.reasonless.add((comment.path, comment.line))
                _warn_once(
                    comment,
                    f"nplusone-guard: the allow comment at {comment} gives no reason; say "
                    "why the finding is accepted: # nplusone: allow[read] <why>.",
                )
    return allowed


def _sites(finding: Finding) -> list[str]:
    callsites = getattr(finding, "callsites", None)
    sites = list(callsites) if callsites else [getattr(finding, "callsite", "")]
    parent = getattr(finding, "parent_callsite", None)
    if parent:
        sites.append(parent)
    return sites


_warned: set[tuple[str, int]] = set()


def _warn_once(comment: InlineAllow, message: str) -> None:
    key = (comment.path, comment.line)
    if key not in _warned:
        _warned.add(key)
        logger.warning(message)


# --------------------------------------------------------------------------- the ledger


def rule_key(rule: Mapping[str, Any]) -> str:
    """An ``ALLOW`` rule as text that names it in a report (and keys it in the ledger)."""
    return "{" + ", ".join(f"{k!r}: {v!r}" for k, v in sorted(rule.items())) + "}"


@dataclass
class Ledger:
    """What matched in this process. ``tracking`` also notes the files whose lines ran
    queries (only a run that lists stale suppressions turns it on: it costs a little per
    analysed scope)."""

    matched_rules: set[str] = field(default_factory=set)
    matched_inline: set[tuple[str, int]] = field(default_factory=set)
    reasonless: set[tuple[str, int]] = field(default_factory=set)
    executed_files: set[str] = field(default_factory=set)
    tracking: bool = False

    def note_rule(self, rule: Mapping[str, Any]) -> None:
        self.matched_rules.add(rule_key(rule))

    def note_frames(self, frames: Iterable[str]) -> None:
        """Files of rendered frames (``path:line in func``) that ran a query."""
        files = self.executed_files
        for frame in frames:
            path = split_callsite(frame)[0]
            if path and not path.startswith("<") and path not in files:
                files.add(path)

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for pytest-xdist workers to send to the controller."""
        return {
            "matched_rules": sorted(self.matched_rules),
            "matched_inline": sorted(self.matched_inline),
            "reasonless": sorted(self.reasonless),
            "executed_files": sorted(self.executed_files),
        }

    def merge(self, data: Mapping[str, Any]) -> None:
        self.matched_rules.update(data.get("matched_rules", ()))
        self.matched_inline.update((p, int(n)) for p, n in data.get("matched_inline", ()))
        self.reasonless.update((p, int(n)) for p, n in data.get("reasonless", ()))
        self.executed_files.update(data.get("executed_files", ()))

    def clear(self) -> None:
        self.matched_rules.clear()
        self.matched_inline.clear()
        self.reasonless.clear()
        self.executed_files.clear()


#: This process's ledger.
ledger = Ledger()


def stale_rules(rules: Sequence[Mapping[str, Any]], seen: Ledger | None = None) -> list[str]:
    """``ALLOW`` rules that matched no finding, as :func:`rule_key` text."""
    matched = (seen or ledger).matched_rules
    return [key for key in dict.fromkeys(map(rule_key, rules)) if key not in matched]


def scan_file(path: str) -> list[InlineAllow]:
    """Every allow comment of a Python source file (comments only: a string that reads
    like one is not one)."""
    absolute = os.path.abspath(path)
    lines = linecache.getlines(absolute)
    if not any("nplusone" in line for line in lines):
        return []
    found = []
    try:
        for token in tokenize.generate_tokens(iter(lines).__next__):
            if token.type == tokenize.COMMENT:
                comment = parse_comment(token.string, absolute, token.start[0])
                if comment is not None:
                    found.append(comment)
    except (tokenize.TokenError, SyntaxError):  # not Python after all (a template)
        return []
    return found


def stale_inline(seen: Ledger | None = None) -> list[InlineAllow]:
    """Allow comments in files that ran queries in this run and that matched nothing.
    Installed packages' files are not the project's to clean."""
    ledger_ = seen or ledger
    stale = []
    files = {os.path.abspath(p) for p in ledger_.executed_files}
    for path in sorted(files):
        if any(part in ("site-packages", "dist-packages") for part in path.split(os.sep)):
            continue
        for comment in scan_file(path):
            if (comment.path, comment.line) not in ledger_.matched_inline:
                stale.append(comment)
    return stale


def reasonless(seen: Ledger | None = None) -> list[str]:
    """Locations of allow comments that silenced a finding without a reason."""
    return [f"{_shown(path)}:{line}" for path, line in sorted((seen or ledger).reasonless)]


def _shown(path: str) -> str:
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative


def stale_lines(
    rules: Sequence[Mapping[str, Any]],
    *,
    seen: Ledger | None = None,
    marks: Iterable[str] = (),
    baseline: Iterable[str] = (),
) -> list[str]:
    """One line per stale suppression, for a summary: ``ALLOW`` rules and allow comments
    that matched nothing, and the ``marks`` and ``baseline`` entries the caller found
    stale (already described)."""
    lines = [f"ALLOW rule {key}" for key in stale_rules(rules, seen)]
    lines += [f"# nplusone: allow comment at {comment}" for comment in stale_inline(seen)]
    lines += list(marks)
    lines += list(baseline)
    return lines


@contextmanager
def tracked() -> Iterator[Ledger]:
    """A fresh, tracking :data:`ledger` for a block (an audit of the whole site): what
    matched before it does not hide what is stale in it. Afterwards the process's ledger
    is back, with the block's matches added."""
    global ledger
    outer = ledger
    inner = ledger = Ledger(tracking=True)
    try:
        yield inner
    finally:
        ledger = outer
        outer.merge(inner.to_dict())
