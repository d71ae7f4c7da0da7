"""``manage.py demo``: what ``make demo`` runs. Migrate, seed, audit every page, run a
guarded command and a background job beside their fixed twins, and check that each problem
has findings and each fixed twin has none."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any, TextIO

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_nplusone_guard import capture
from django_nplusone_guard.report import count_of
from library import tasks
from library.urls import DEMOS, QUIET_PAGES

#: Work no request sees: (what is run, how, its fixed twin, how). The commands are guarded
#: by ``NPLUSONE_GUARD["COMMANDS"]``, the jobs by ``@guarded``; each logs its own findings.
BEYOND_REQUESTS: list[tuple[str, Callable[[], object], str, Callable[[], object]]] = [
    (
        "manage.py overdue_report",
        lambda: call_command("overdue_report", stdout=StringIO()),
        "manage.py overdue_report_fixed",
        lambda: call_command("overdue_report_fixed", stdout=StringIO()),
    ),
    ("tasks.author_digest()", tasks.author_digest, "tasks.author_digest_fixed()",
     tasks.author_digest_fixed),
]  # fmt: skip


class Command(BaseCommand):
    help = "Migrate and seed the example database, then run nplusone_audit --all on it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--size", type=int, default=60, help="Books to seed (default 60).")

    def handle(self, *args: Any, size: int, **options: Any) -> None:
        verbosity = options["verbosity"]
        self.stdout.write(self.style.MIGRATE_HEADING("1. Migrate the example database"))
        call_command("migrate", verbosity=0, interactive=False)
        self.stdout.write(self.style.MIGRATE_HEADING("2. Seed it"))
        call_command("seed", size=size, stdout=self.stdout)
        self.stdout.write(
            self.style.MIGRATE_HEADING("3. manage.py nplusone_audit --all --explain\n")
        )
        try:
            call_command("nplusone_audit", all_routes=True, explain=True, verbosity=verbosity)
        except CommandError as exc:
            self.stderr.write(str(exc))

        self.stdout.write(
            self.style.MIGRATE_HEADING("\n4. Beyond the request: a command and a background job")
        )
        beyond = self._run_beyond_requests()

        self.stdout.write(self.style.MIGRATE_HEADING("\n5. Production mode: one page, exported\n"))
        from library.production_demo import show

        show(self.stdout)

        self.stdout.write(self.style.MIGRATE_HEADING("\n6. Does every problem show up?"))
        report = StringIO()
        call_command("nplusone_audit", all_routes=True, explain=True, format="json", stdout=report)
        pages = {page["url"]: page for page in json.loads(report.getvalue())["pages"]}
        problems = 0
        for demo in DEMOS:
            found = _count(pages[demo.url], demo.category)
            twin = sum(_count(pages[demo.fixed_url], c) for c in _CATEGORIES)
            ok = found > 0 and twin == 0
            problems += not ok
            mark = self.style.SUCCESS("ok  ") if ok else self.style.ERROR("MISS")
            self.stdout.write(
                f"  {mark} {demo.url:<30} {_findings(found, demo.category)}"
                f"  | twin {demo.fixed_url:<30} {_findings(twin)}"
            )
        for route, _view, why in QUIET_PAGES:
            found = sum(_count(pages[f"/{route}"], c) for c in _CATEGORIES)
            problems += found > 0
            mark = self.style.SUCCESS("ok  ") if not found else self.style.ERROR("MISS")
            self.stdout.write(f"  {mark} /{route:<29} {_findings(found)}: {why}")
        for (label, _run, fixed_label, _fixed), (found, twin) in zip(
            BEYOND_REQUESTS, beyond, strict=True
        ):
            ok = found > 0 and twin == 0
            problems += not ok
            mark = self.style.SUCCESS("ok  ") if ok else self.style.ERROR("MISS")
            self.stdout.write(
                f"  {mark} {label:<30} {_findings(found, 'nplusone')}"
                f"  | twin {fixed_label:<30} {_findings(twin)}"
            )
        if not problems:
            self.stdout.write(
                self.style.SUCCESS(
                    f"  All {len(DEMOS)} problem pages have findings; their twins and the "
                    f"{len(QUIET_PAGES)} quiet pages have none.\n"
                    "  The command and the job with an N+1 were reported; their twins were not."
                )
            )
        self.stdout.write(
            "\nBrowse the pages with the debug toolbar and its N+1 Guard panel:\n\n"
            "    make serve    # then open http://127.0.0.1:8000/\n"
        )
        if problems:
            raise CommandError(f"{problems} page(s) not as expected (marked MISS above).")

    def _run_beyond_requests(self) -> list[tuple[int, int]]:
        """Run each command and job and its twin, their findings logged here as they would
        be in production; (N+1 findings, the twin's findings) for each."""
        counts = []
        for label, run, fixed_label, fixed in BEYOND_REQUESTS:
            found = []
            for title, work in ((label, run), (fixed_label, fixed)):
                self.stdout.write(f"\n$ {title}")
                # capture() only counts, for the check below: the guard delivers the findings.
                with _guard_log_to(self.stdout), capture() as report:
                    work()
                if not report.findings:
                    self.stdout.write("  no findings.")
                found.append(report)
            counts.append((len(found[0].nplusones), len(found[1].findings)))
        return counts


@contextmanager
def _guard_log_to(stream: TextIO) -> Iterator[None]:
    """The guard's log records on ``stream`` (the demo's output, in order), not on the
    console handler the settings give them."""
    logger = logging.getLogger("django_nplusone_guard")
    handlers = logger.handlers
    logger.handlers = [logging.StreamHandler(stream)]
    try:
        yield
    finally:
        logger.handlers = handlers


_CATEGORIES = ("nplusones", "missing_indexes", "duplicates")


def _findings(count: int, kind: str = "") -> str:
    what = f"{kind} finding" if kind else "finding"
    return count_of(count, what, what + "s")


def _count(page: dict[str, Any], category: str) -> int:
    key = {"nplusone": "nplusones", "missing_index": "missing_indexes"}.get(category, category)
    return len(page["report"][key]) + (page["error"] is not None)
