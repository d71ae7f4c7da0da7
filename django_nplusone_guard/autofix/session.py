"""One ``--fix`` run: plan the edits, show them as a diff, and with ``--apply`` write them,
prove them page by page, revert what the proof rejects, and print what happened.

Every file is rebuilt from its original text with the edits still kept, so reverting one
edit never disturbs another in the same file, and the original bytes come back exactly
when none is kept.
"""

from __future__ import annotations

import difflib
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import CommandError, OutputWrapper
from django.core.management.color import Style

from ..report import count_of
from . import proof, transforms
from .plan import ByHand, Edit, EditError, admin_list_value, plan_edits
from .safety import not_editable, uncommitted

__all__ = ["run"]


@dataclass
class Outcome:
    """What became of every finding, and each page's queries before and after."""

    verified: list[Edit] = field(default_factory=list)
    reverted: list[tuple[Edit, str]] = field(default_factory=list)
    by_hand: list[ByHand] = field(default_factory=list)
    queries: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    migrations: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- editing


def _read(path: Path) -> str:
    # Bytes, decoded as is: reading in text mode would turn CRLF files into LF ones.
    return path.read_bytes().decode("utf-8")


def _apply(source: str, edit: Edit) -> str:
    if edit.kind == "queryset":
        for line, accessor, code in edit.reads:
            source = transforms.read_annotations(source, line, accessor, code)
        for code in edit.codes:
            source = transforms.edit_queryset(source, edit.line, code, imports=False)
        return source
    if edit.kind == "admin_list":
        value = admin_list_value(edit.codes)
        return transforms.edit_class_attribute(source, edit.qualname, "list_select_related", value)
    if edit.kind == "view_model":
        return transforms.add_view_queryset(source, edit.qualname, edit.codes)
    if edit.kind == "admin_prefetch":
        for code in edit.codes:
            source = transforms.edit_admin_prefetch(source, edit.qualname, code)
        return source
    if edit.kind == "index":
        for code in edit.codes:
            source = transforms.add_model_index(source, edit.qualname, code)
        return source
    raise EditError(f"unknown edit {edit.kind}")


def _order(edit: Edit) -> tuple[int, int]:
    # Line-addressed edits bottom-up first (an edit never moves the lines above it), then
    # the ones that find their class by name and may add lines.
    return (0, -edit.line) if edit.kind == "queryset" else (1, 0)


_ALREADY = {
    "queryset": "the code already says so: the queryset is changed somewhere after that line",
    "index": "the index is in Meta.indexes already: apply its migration (manage.py migrate)",
}


def render(
    originals: dict[Path, str], edits: list[Edit]
) -> tuple[dict[Path, str], list[tuple[Edit, str]]]:
    """Each file's text with ``edits`` made, and the edits that could not be made."""
    sources = dict(originals)
    failed: list[tuple[Edit, str]] = []
    for edit in sorted(edits, key=_order):
        try:
            edited = _apply(sources[edit.path], edit)
        except EditError as exc:
            failed.append((edit, str(exc)))
            continue
        if edited == sources[edit.path]:
            failed.append((edit, _ALREADY.get(edit.kind, _ALREADY["queryset"])))
        sources[edit.path] = edited
    made = [edit for edit in edits if all(edit is not f for f, _ in failed)]
    for path in sources:
        codes = [
            code
            for e in made
            if e.path == path and e.kind in ("queryset", "view_model")
            for code in e.codes
        ]
        if codes:
            sources[path] = transforms.add_imports(sources[path], codes)
    return sources, failed


def _write(sources: dict[Path, str]) -> None:
    for path, text in sources.items():
        data = text.encode("utf-8")
        if path.read_bytes() != data:
            path.write_bytes(data)


def _diff(originals: dict[Path, str], sources: dict[Path, str]) -> str:
    chunks: list[str] = []
    for path in sorted(originals):
        shown = os.path.relpath(path)
        chunks.extend(
            difflib.unified_diff(
                originals[path].splitlines(keepends=True),
                sources[path].splitlines(keepends=True),
                fromfile=f"a/{shown}",
                tofile=f"b/{shown}",
            )
        )
    return "".join(chunks)


# --------------------------------------------------------------------------- the run


def run(results: list[Any], options: dict[str, Any], out: OutputWrapper, style: Style) -> None:
    pages = [(r.url, r.report.findings) for r in results if r.error is None]
    edits, by_hand = plan_edits(pages)
    outcome = Outcome(by_hand=by_hand)
    ready: list[Edit] = []
    for edit in edits:
        reason = not_editable(edit.path)
        if reason is None and not options.get("force") and uncommitted(edit.path):
            reason = f"{os.path.relpath(edit.path)} has uncommitted changes (--force to edit)"
        if reason is None:
            ready.append(edit)
        else:
            outcome.by_hand.extend(ByHand(ref, reason) for ref in edit.findings)
    originals = {path: _read(path) for path in {edit.path for edit in ready}}
    sources, failed = render(originals, ready)
    for edit, reason in failed:
        outcome.by_hand.extend(ByHand(ref, reason) for ref in edit.findings)
        ready.remove(edit)
    sources, _ = render(originals, ready)

    if not options.get("apply"):
        out.write(style.MIGRATE_HEADING("Fixes (not written)"))
        diff = _diff(originals, sources)
        out.write(diff if diff else "  Nothing to edit.\n")
        for edit in ready:
            outcome.queries.update({url: (_count(results, url), None) for url in edit.urls})
        _summary(out, style, outcome, planned=ready)
        if ready:
            out.write("Nothing was written: add --apply to write these edits and prove them.")
        return
    if ready:
        _prove(ready, originals, options, outcome)
    out.write(style.MIGRATE_HEADING("Fixes written (proven; the rest reverted)"))
    written = {path: _read(path) for path in originals}
    diff = _diff(originals, written)
    out.write(diff if diff else "  Nothing written.\n")
    _summary(out, style, outcome, planned=[])


def _count(results: list[Any], url: str) -> int:
    return next(int(r.report.query_count) for r in results if r.url == url)


def _prove(
    edits: list[Edit],
    originals: dict[Path, str],
    options: dict[str, Any],
    outcome: Outcome,
) -> None:
    urls = list(dict.fromkeys(url for edit in edits for url in edit.urls))
    tests = options.get("fix_tests")
    failure = _run_tests(tests) if tests is not None else None
    if failure is not None:
        raise CommandError(f"--fix-tests: the tests fail before any edit: {failure}")
    try:
        before = proof.measure(urls, options)
    except proof.ProofError as exc:
        raise CommandError(f"--fix: could not measure the pages before editing: {exc}") from exc
    kept = list(edits)
    after: proof.Measurement | None = None
    finished = False
    try:
        while kept:
            sources, _ = render(originals, kept)
            _write(sources)
            indexes = [
                (e.model_label or "", e.index_name or "") for e in kept if e.kind == "index"
            ]
            try:
                after = proof.measure(urls, options, indexes)
            except proof.ProofError as exc:
                outcome.reverted.extend((edit, str(exc)) for edit in kept)
                kept, after = [], None
                break
            rejected = [
                (edit, reason) for edit in kept if (reason := proof.judge(edit, before, after))
            ]
            if not rejected:
                break
            outcome.reverted.extend(rejected)
            gone = {id(edit) for edit, _ in rejected}
            kept = [edit for edit in kept if id(edit) not in gone]
            after = None
        if kept and tests is not None:
            failure = _run_tests(tests)
            if failure is not None:
                outcome.reverted.extend((edit, f"--fix-tests failed: {failure}") for edit in kept)
                kept, after = [], None
        finished = True
    finally:
        # Interrupted (Ctrl-C, a crash): every file back as it was, nothing unproven left.
        sources, _ = render(originals, kept if finished else [])
        _write(sources)
    outcome.verified = kept
    for url in urls:
        page_after = after.pages.get(url) if after is not None else None
        count_before = before.pages[url].query_count if url in before.pages else 0
        outcome.queries[url] = (
            count_before,
            page_after.query_count if page_after is not None else count_before,
        )
    apps = {e.model_label.partition(".")[0] for e in kept if e.kind == "index" and e.model_label}
    outcome.migrations.extend(_makemigrations(app) for app in sorted(apps))


def _run_tests(args: str) -> str | None:
    """None when the tests pass, else pytest's last line."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *shlex.split(args)],
        capture_output=True,
        text=True,
        env=proof.environment(),
        timeout=3600,
    )
    if done.returncode == 0:
        return None
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return lines[-1].strip("= ") if lines else f"exit status {done.returncode}"


def _makemigrations(app: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "django", "makemigrations", app],
        capture_output=True,
        text=True,
        env=proof.environment(),
        timeout=600,
    )
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0:
        return f"makemigrations {app} failed: {text.splitlines()[-1] if text else done.returncode}"
    return f"makemigrations {app}: " + " ".join(line.strip() for line in text.splitlines())


# --------------------------------------------------------------------------- summary


def _summary(out: OutputWrapper, style: Style, outcome: Outcome, planned: list[Edit]) -> None:
    write = out.write
    write(style.MIGRATE_HEADING("Fix summary"))
    for edit in planned:
        write(f"  would edit          {edit.where}: {edit.what}")
        for ref in edit.findings:
            write(f"      {ref.url}  {ref.title}")
        if edit.kind == "index" and edit.model_label:
            write(f"      then: manage.py makemigrations {edit.model_label.partition('.')[0]}")
    for edit in outcome.verified:
        write(style.SUCCESS(f"  fixed and verified  {edit.where}: {edit.what}"))
        for ref in edit.findings:
            write(f"      {ref.url}  {ref.title}")
    for edit, reason in outcome.reverted:
        write(style.WARNING(f"  reverted            {edit.where}: {edit.what}"))
        write(f"      why: {reason}")
    for item in outcome.by_hand:
        write(f"  by hand             {item.finding.url}  {item.finding.title}")
        write(f"      why: {item.reason}")
    for line in outcome.migrations:
        write(f"  {line}")
    if outcome.queries:
        write(style.MIGRATE_HEADING("Queries per page"))
        width = max(len(url) for url in outcome.queries)
        write(f"  {'URL':<{width}}  Before  After")
        for url, (before, after) in outcome.queries.items():
            shown = "-" if after is None else str(after)
            write(f"  {url:<{width}}  {before:>6}  {shown:>5}")
    by_hand = f"{count_of(len(outcome.by_hand), 'finding', 'findings')} to fix by hand."
    if planned:
        write(f"{count_of(len(planned), 'edit', 'edits')} planned, {by_hand}")
    else:
        verified = count_of(len(outcome.verified), "edit", "edits")
        write(f"{verified} fixed and verified, {len(outcome.reverted)} reverted, {by_hand}")
