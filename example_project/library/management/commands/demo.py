"""``manage.py demo``: what ``make demo`` runs. Migrate, seed, audit every page, and check
that each problem page has findings and each fixed twin has none."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from library.urls import DEMOS, QUIET_PAGES


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

        self.stdout.write(self.style.MIGRATE_HEADING("\n4. Does every problem page show up?"))
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
                f"  {mark} {demo.url:<30} {found} {demo.category} finding(s)"
                f"  | twin {demo.fixed_url:<30} {twin} finding(s)"
            )
        for route, _view, why in QUIET_PAGES:
            found = sum(_count(pages[f"/{route}"], c) for c in _CATEGORIES)
            problems += found > 0
            mark = self.style.SUCCESS("ok  ") if not found else self.style.ERROR("MISS")
            self.stdout.write(f"  {mark} /{route:<29} {found} finding(s): {why}")
        if not problems:
            self.stdout.write(
                self.style.SUCCESS(
                    f"  All {len(DEMOS)} problem pages have findings; their twins and the "
                    f"{len(QUIET_PAGES)} quiet pages have none."
                )
            )
        self.stdout.write(
            "\nBrowse the pages with the debug toolbar and its N+1 Guard panel:\n\n"
            "    make serve    # then open http://127.0.0.1:8000/\n"
        )
        if problems:
            raise CommandError(f"{problems} page(s) not as expected (marked MISS above).")
        self.stdout.write(self.style.MIGRATE_HEADING("\nProduction mode: one page, exported\n"))
        from library.production_demo import show

        show(self.stdout)


_CATEGORIES = ("nplusones", "missing_indexes", "duplicates")


def _count(page: dict[str, Any], category: str) -> int:
    key = {"nplusone": "nplusones", "missing_index": "missing_indexes"}.get(category, category)
    return len(page["report"][key]) + (page["error"] is not None)
