"""From an audit's findings to the edits ``--fix`` would make, and the findings it leaves to a
person with the reason.

Only the finding's own words are used: ``fix_at`` says where, ``suggestion`` says what. A
fix that is a queryset call (``.select_related(...)``, ``.prefetch_related(...)``,
``.only(...)``, ``.annotate(...)``), a ``ModelAdmin``'s ``list_select_related`` or
``get_queryset``, or a ``models.Index`` for a model's ``Meta.indexes`` becomes an
:class:`Edit`; anything else (a loop of writes, raw SQL, a lookup per row, a fix with a
placeholder in it) becomes :class:`ByHand`. No libcst here: planning needs none.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..report import Duplicate, Finding, MissingIndex, NPlusOne

__all__ = ["ByHand", "Edit", "EditError", "FindingRef", "finding_key", "plan_edits"]


class EditError(Exception):
    """The edit cannot be made at that place; the message says why, for a person."""


#: A finding as the proof recognises it on a page, whatever its count or timing.
FindingKey = tuple[str | None, ...]


def finding_key(finding: Finding) -> FindingKey:
    """What identifies a finding across two runs of the same page: its category and the
    relation (or model and columns) it is about, not its counts or statements."""
    if isinstance(finding, NPlusOne):
        return ("nplusone", finding.kind, finding.model, finding.field)
    if isinstance(finding, MissingIndex):
        return ("missing_index", finding.model or finding.table, *finding.fields)
    if isinstance(finding, Duplicate):
        # Not its call site: an edit can move it (the admin's stand-in line for
        # ``list_select_related`` once the class has one).
        return ("duplicate", finding.kind, finding.model, finding.field, finding.library)
    return (finding.category,)


@dataclass(frozen=True)
class FindingRef:
    """One finding on one page: what an edit must make go away."""

    url: str
    key: FindingKey
    title: str


@dataclass
class Edit:
    """One place to edit, and the findings (on one or more pages) it is meant to fix.

    ``kind`` is ``queryset`` (calls added to the expression at ``line``), ``admin_list``
    (``list_select_related`` of class ``qualname``), ``admin_prefetch`` (its
    ``get_queryset``), ``view_model`` (a ``queryset`` for a generic view that names only
    its ``model``) or ``index`` (``Meta.indexes`` of model class ``qualname``)."""

    kind: str
    path: Path
    line: int
    qualname: str
    codes: list[str]
    findings: list[FindingRef] = field(default_factory=list)
    #: For an ``.annotate()``: the per-row reads to turn into reads of the annotation,
    #: as (line, relation accessor, the suggestion).
    reads: list[tuple[int, str, str]] = field(default_factory=list)
    #: For ``index``: the model's label and the index's name (the proof creates it).
    model_label: str | None = None
    index_name: str | None = None

    @property
    def where(self) -> str:
        if self.kind == "index":
            return f"{_shown(self.path)} in {self.qualname}.Meta.indexes"
        return f"{_shown(self.path)}:{self.line} in {self.qualname}"

    @property
    def what(self) -> str:
        if self.kind == "admin_list":
            return f"list_select_related = {self.codes[-1]}"
        return " ".join(dict.fromkeys(self.codes))

    @property
    def urls(self) -> list[str]:
        return list(dict.fromkeys(ref.url for ref in self.findings))


#: ``plan_edits``' way of adding a finding to the edit at a place.
_Add = Callable[[str, Path, int, str, str, "FindingRef"], Edit]


@dataclass(frozen=True)
class ByHand:
    """A finding ``--fix`` does not edit, and why."""

    finding: FindingRef
    reason: str


_SITE = re.compile(r"^(?P<path>.+):(?P<line>\d+) in (?P<qualname>[\w.<>]+)$")
_INDEX = re.compile(
    r"^add to (?P<label>[\w.]+) Meta\.indexes \((?P<file>[^)]+)\): "
    r"(?P<index>models\.Index\(.*name=\"(?P<name>\w+)\"\))$"
)
_ADMIN_PREFETCH = "def get_queryset(self, request): return super().get_queryset(request)"
_STRING = re.compile(r"\"([^\"]+)\"|'([^']+)'")


_RANKS = (".select_related(", ".prefetch_related(", ".only(", ".defer(", ".annotate(")


def _rank(code: str) -> int:
    return next((i for i, start in enumerate(_RANKS) if code.startswith(start)), len(_RANKS))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _site(text: str | None) -> tuple[Path, int, str] | None:
    match = _SITE.match(text or "")
    if match is None:
        return None
    path = Path(match["path"])
    return (
        (path if path.is_absolute() else Path.cwd() / path),
        int(match["line"]),
        match["qualname"],
    )


def _owner_class(qualname: str, members: tuple[str, ...]) -> str:
    head, _, member = qualname.rpartition(".")
    return head if head and member in members else qualname


def _by_hand_reason(finding: NPlusOne) -> str:
    if finding.kind == "write":
        return "a loop of writes: the loop itself has to change (one bulk call)"
    if finding.kind == "unused_eager":
        return "an eager load nothing reads: remove it where the queryset is built"
    text = finding.suggestion
    if text.startswith("batch it"):
        return "raw SQL run per row: the statement has to be rewritten"
    if "..." in text or "<" in text:
        return "the fix has a part only a person can fill in"
    if text.startswith("prefetch_related_objects("):
        return "a call per instance: move it before the loop, on the whole list"
    if "in_bulk(" in text or ".objects.filter(" in text:
        return "a lookup per row: fetch the rows in one query before the loop"
    if finding.template and not finding.fix_at:
        return "a template calls a method per row: the method has to change"
    return "the fix is not an edit the audit makes"


def plan_edits(pages: list[tuple[str, list[Finding]]]) -> tuple[list[Edit], list[ByHand]]:
    """The edits for every page's findings, one per place (findings fixed at the same
    expression share it), and the findings left to a person."""
    edits: dict[tuple[str, Path, int | str], Edit] = {}
    by_hand: list[ByHand] = []

    def add(kind: str, path: Path, line: int, qualname: str, code: str, ref: FindingRef) -> Edit:
        # One edit per expression, per admin class, per index: each is kept or reverted
        # on its own proof.
        place: int | str = qualname
        if kind == "queryset":
            place = line
        elif kind == "index":
            place = f"{qualname} {code}"
        key = (kind, path, place)
        edit = edits.get(key)
        if edit is None:
            edit = edits[key] = Edit(kind, path, line, qualname, [])
        if code not in edit.codes:
            edit.codes.append(code)
            edit.codes.sort(key=_rank)  # the same edit whatever order the findings came in
        edit.findings.append(ref)
        return edit

    for url, findings in pages:
        for finding in findings:
            ref = FindingRef(url, finding_key(finding), finding.title)
            if isinstance(finding, NPlusOne):
                reason = _plan_nplusone(finding, ref, add)
            elif isinstance(finding, MissingIndex):
                reason = _plan_index(finding, ref, add)
            else:
                fix = getattr(finding, "suggestion", "") or "run it once and reuse the result"
                reason = f"a repeated query, not a loop: {fix}"
            if reason:
                by_hand.append(ByHand(ref, reason))
    return list(edits.values()), by_hand


def _plan_nplusone(finding: NPlusOne, ref: FindingRef, add: _Add) -> str | None:
    site = _site(finding.fix_at)
    text = finding.suggestion
    if finding.kind != "read" or not text:
        return _by_hand_reason(finding)
    if site is None:
        return "no line of yours builds the queryset (no fix_at)"
    path, line, qualname = site
    if text.startswith("list_select_related = "):
        owner = _owner_class(qualname, ("list_select_related", "get_queryset"))
        add("admin_list", path, line, owner, text.removeprefix("list_select_related = "), ref)
        return None
    if text.startswith(_ADMIN_PREFETCH):
        owner = _owner_class(qualname, ("list_select_related", "get_queryset"))
        add("admin_prefetch", path, line, owner, text.removeprefix(_ADMIN_PREFETCH), ref)
        return None
    if not text.startswith(".") or "..." in text or "<" in text:
        return _by_hand_reason(finding)
    if qualname.endswith(".model") and not text.startswith(".annotate("):
        add("view_model", path, line, qualname.removesuffix(".model"), text, ref)
        return None
    read = None
    if text.startswith(".annotate("):
        row = _site(finding.callsite)
        if row is None or row[0] != path or not finding.field:
            return "the query per row is not in the file that builds the queryset"
        read = (row[1], finding.field, text)
    edit = add("queryset", path, line, qualname, text, ref)
    if read is not None and read not in edit.reads:
        edit.reads.append(read)
    return None


def _plan_index(finding: MissingIndex, ref: FindingRef, add: _Add) -> str | None:
    match = _INDEX.match(finding.suggestion)
    if match is None:
        return "the index cannot go in a model's Meta.indexes: " + (
            finding.suggestion or "no index suggested"
        )
    label = match["label"]
    path = Path(match["file"])
    path = path if path.is_absolute() else Path.cwd() / path
    edit = add("index", path, 0, label.rpartition(".")[2], match["index"], ref)
    edit.model_label, edit.index_name = label, match["name"]
    return None


def admin_list_value(codes: list[str]) -> str:
    """``list_select_related`` as one list: the paths of every suggestion, in order (each
    suggestion already holds what the class lists)."""
    paths: list[str] = []
    for code in codes:
        for match in _STRING.finditer(code):
            paths.append(match[1] or match[2])
    return "[" + ", ".join(f'"{p}"' for p in dict.fromkeys(paths)) + "]"
