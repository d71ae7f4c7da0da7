"""MkDocs hook: keep the nav honest while pages are added.

``nav`` in ``mkdocs.yml`` fixes the order of the pages we know about. Entries whose file does
not exist are dropped (``--strict`` would fail on them), and Markdown pages that exist but
are not listed are appended under "More", so a new page is never silently unreachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _prune(entries: list[Any], docs: Path, listed: set[str]) -> list[Any]:
    kept: list[Any] = []
    for entry in entries:
        if isinstance(entry, str):
            target: Any = entry
            title = None
        else:
            [(title, target)] = entry.items()
        if isinstance(target, list):
            children = _prune(target, docs, listed)
            if children:
                kept.append({title: children})
        elif "://" in target or (docs / target).is_file():
            listed.add(target)
            kept.append(entry)
    return kept


def on_config(config: Any) -> Any:
    nav = config.get("nav")
    if not nav:
        return config
    docs = Path(config["docs_dir"])
    listed: set[str] = set()
    pruned = _prune(nav, docs, listed)
    extra = sorted(
        path.relative_to(docs).as_posix()
        for path in docs.rglob("*.md")
        if "hooks" not in path.relative_to(docs).parts
    )
    unlisted = [page for page in extra if page not in listed]
    if unlisted:
        pruned.append({"More": unlisted})
    config["nav"] = pruned
    return config
