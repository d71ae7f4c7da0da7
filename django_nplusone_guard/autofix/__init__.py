"""``nplusone_audit --fix``: write the fix a finding suggests into the code, then prove it.

One module per step: :mod:`.plan` (findings to edits and "by hand"), :mod:`.locate` (which
expression a fix goes on), :mod:`.transforms` (the libcst edits), :mod:`.safety` (which
databases and files), :mod:`.probe` and :mod:`.proof` (measuring pages in a fresh process,
judging each edit), :mod:`.session` (the run, its diff and its summary). The audit command
only wires the options (:func:`add_arguments`, :func:`check_options`) and calls :func:`fix`.
libcst is imported by :mod:`.locate` and :mod:`.transforms` alone, and only under ``--fix``.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.core.management.color import Style

__all__ = ["add_arguments", "check_options", "fix"]

_USAGE_ERROR = 2
_FIX_ONLY = {"apply": "--apply", "force": "--force", "fix_tests": "--fix-tests",
             "i_know": "--i-know"}  # fmt: skip


def add_arguments(parser: CommandParser) -> None:
    group = parser.add_argument_group(
        "fixing", "Write the suggested fixes into the code (needs libcst: the [fix] extra)."
    )
    group.add_argument(
        "--fix",
        action="store_true",
        help="Print the edits that fix the findings as a unified diff; writes nothing.",
    )
    group.add_argument(
        "--apply",
        action="store_true",
        help="With --fix: write the edits, request the pages again and keep only the edits "
        "proven to remove their finding without making the page worse.",
    )
    group.add_argument(
        "--force",
        action="store_true",
        help="With --fix: edit files that have uncommitted git changes too.",
    )
    group.add_argument(
        "--fix-tests",
        metavar="PYTEST_ARGS",
        default=None,
        help='With --fix --apply: also run these tests (e.g. "tests/ -x"); '
        "the edits are reverted if they fail.",
    )
    group.add_argument(
        "--i-know",
        action="store_true",
        help="With --fix: run even with DEBUG=False and a database on another host.",
    )


def check_options(options: dict[str, Any]) -> None:
    """Usage errors, and the refusals that must come before any page is requested."""
    if not options.get("fix"):
        given = [flag for key, flag in _FIX_ONLY.items() if options.get(key)]
        if given:
            raise CommandError(f"{given[0]} needs --fix.", returncode=_USAGE_ERROR)
        return
    if options.get("fix_tests") is not None and not options.get("apply"):
        raise CommandError("--fix-tests needs --apply.", returncode=_USAGE_ERROR)
    if options.get("format", "text") != "text":
        raise CommandError("--fix writes a diff and a table: use it with --format text.",
                           returncode=_USAGE_ERROR)  # fmt: skip
    if importlib.util.find_spec("libcst") is None:
        raise CommandError(
            "--fix needs libcst: pip install 'django-nplusone-guard[fix]' (or libcst).",
            returncode=_USAGE_ERROR,
        )
    from .safety import refuse_remote_production

    refuse_remote_production(bool(options.get("i_know")))


def fix(results: list[Any], options: dict[str, Any], out: OutputWrapper, style: Style) -> None:
    """Plan, show and (with ``--apply``) write and prove the fixes for the audited pages."""
    from .session import run

    run(results, options, out, style)
