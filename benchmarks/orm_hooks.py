"""Cost of the ORM attribution hooks (:mod:`django_nplusone_guard.orm`), side by side.

Run from the repository root::

    .venv/bin/python -m benchmarks.orm_hooks [--accesses 10000] [--rounds 7]

Each round runs every case once, in a rotated order, on SQLite in memory, and ratios are
taken within the round; the table shows the median ratio with min and max. Times are the
process's CPU time (``time.process_time``), so other processes on a busy machine add less
noise than to wall-clock time. Absolute times are printed for context only.

Cases (each does ``--accesses`` forward foreign-key reads):

* ``miss``: every read is a cache miss, i.e. one query each (the N+1 itself);
* ``hit``: every read is served by ``select_related`` (no query).

Each case runs with the hooks removed and installed, with no scope and inside
``capture()`` (recording only: the analysis runs after the timer stops, and is timed
on its own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("NPLUSONE_GUARD_TEST_DB", "sqlite")
sys.path.insert(0, os.getcwd())

import django

django.setup()

from django.core.management import call_command  # noqa: E402

from django_nplusone_guard import capture, orm  # noqa: E402
from tests.testapp.models import Author, Book  # noqa: E402

ROWS = 100


def _setup() -> None:
    call_command("migrate", run_syncdb=True, verbosity=0)
    authors = Author.objects.bulk_create(Author(name=f"a{n}") for n in range(ROWS))
    Book.objects.bulk_create(Book(title=f"b{n}", author=a) for n, a in enumerate(authors))


def _misses(accesses: int) -> None:
    for _ in range(accesses // ROWS):
        for book in Book.objects.all():
            _ = book.author.name


def _hits(accesses: int) -> None:
    for _ in range(accesses // ROWS):
        for book in Book.objects.select_related("author"):
            _ = book.author.name


def _timed(work: Callable[[int], None], accesses: int, *, hooks: bool, scope: bool) -> float:
    if hooks:
        orm.install()
    else:
        orm.uninstall()
    guard = capture(max_queries=accesses + ROWS + 10) if scope else None
    start = time.process_time()
    if guard is not None:
        guard.start()
    try:
        work(accesses)
    finally:
        if guard is not None:
            guard.stop()
    elapsed = time.process_time() - start
    if guard is not None:
        analysis_start = time.process_time()
        guard.analyse()
        _analysis[(work.__name__, hooks)].append(time.process_time() - analysis_start)
        assert guard.report.nplusones or work is _hits, "the N+1 was not found"
    return elapsed


_analysis: dict[tuple[str, bool], list[float]] = {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accesses", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    _setup()
    cases = [
        (work, hooks, scope)
        for work in (_misses, _hits)
        for scope in (False, True)
        for hooks in (False, True)
    ]
    for work in (_misses, _hits):
        for hooks in (False, True):
            _analysis[(work.__name__, hooks)] = []
    times: dict[tuple[str, bool, bool], list[float]] = {
        (w.__name__, h, s): [] for w, h, s in cases
    }
    _timed(_misses, ROWS * 2, hooks=True, scope=True)  # warm caches
    for round_number in range(args.rounds):
        shift = round_number % len(cases)
        for work, hooks, scope in cases[shift:] + cases[:shift]:
            times[(work.__name__, hooks, scope)].append(
                _timed(work, args.accesses, hooks=hooks, scope=scope)
            )
    orm.install()

    print(f"{args.accesses} forward FK reads per case, {args.rounds} rounds, SQLite in memory")
    print(f"{'case':<34}{'median ratio':>14}{'min':>8}{'max':>8}{'ms (context)':>15}")
    for name in ("_misses", "_hits"):
        for scope in (False, True):
            base = times[(name, False, scope)]
            hooked = times[(name, True, scope)]
            ratios = [h / b for h, b in zip(hooked, base, strict=True)]
            label = f"{name[1:]} {'in capture()' if scope else 'no scope'}: hooks/none"
            print(
                f"{label:<34}{statistics.median(ratios):>14.3f}{min(ratios):>8.3f}"
                f"{max(ratios):>8.3f}{statistics.median(hooked) * 1000:>15.1f}"
            )
        for hooks in (False, True):
            runs = _analysis[(name, hooks)]
            label = f"{name[1:]} analysis, hooks {'on' if hooks else 'off'}"
            print(f"{label:<34}{'':>14}{'':>8}{'':>8}{statistics.median(runs) * 1000:>15.1f}")
    per_query = (
        statistics.median(times[("_misses", True, True)])
        - statistics.median(times[("_misses", False, True)])
    ) / args.accesses
    print(f"attribution cost per FK miss inside capture(): {per_query * 1e6:.2f} us")


if __name__ == "__main__":
    main()
