"""``manage.py ci_reports [--out DIR]``: what ``make ci-reports`` runs. Migrate, seed, and
write the two files a CI job publishes (see docs/ci.md): the audit of every page as SARIF
(code scanning) and as JUnit XML (the CI's test report), failing findings marked as the
``--fail-on`` kinds below make them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

FAIL_ON = "nplusone,missing_index,error"
FILES = {"sarif": "nplusone.sarif", "junit": "nplusone-junit.xml"}


class Command(BaseCommand):
    help = "Seed the example database and write the audit as SARIF and JUnit XML to --out."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", default="build", help="Directory (default: build).")
        parser.add_argument("--size", type=int, default=12, help="Books to seed (default 12).")

    def handle(self, *args: Any, out: str, size: int, **options: Any) -> None:
        directory = Path(out)
        directory.mkdir(parents=True, exist_ok=True)
        call_command("migrate", verbosity=0, interactive=False)
        call_command("seed", size=size, stdout=self.stdout)
        for fmt, name in FILES.items():
            path = directory / name
            with path.open("w", encoding="utf-8") as stream:
                try:
                    call_command(
                        "nplusone_audit",
                        all_routes=True,
                        explain=True,
                        format=fmt,
                        fail_on=FAIL_ON,
                        stdout=stream,
                    )
                except CommandError as exc:  # --fail-on found something: the point here
                    self.stderr.write(str(exc))
            self.stdout.write(f"Wrote {path}")
