"""Cost of guarding work outside requests: a management command, a Celery task, a
``@guarded`` job, each beside the same work unguarded, in one process.

Run from the repository root with the project's virtualenv (Celery comes with the ``dev``
extra)::

    .venv/bin/python -m benchmarks.beyond_requests [--rows 100] [--rounds 15]
    .venv/bin/python -m benchmarks.beyond_requests --instructions   # valgrind: steady

Each case is one unit of work run in a batch (repeated until the unguarded batch takes about
20 ms), on SQLite in memory with ``--rows`` books: its N+1 (one query per book) and its fixed
twin (one query). A round runs every case guarded and unguarded, in an order rotated from
round to round, and takes the ratio of the two batches *of that round*; the table shows the
median ratio with min and max, and the median cost per run in microseconds. Times are the
process's CPU time (``time.process_time``). ``DEBUG`` is off (Django's own query log would
slow both arms alike and flatter the ratio); the guard's log goes to a ``NullHandler``.

Guarded means what a project sets: ``COMMANDS``, ``CELERY`` or the decorator, with
``ENABLED`` on and ``ACTION: "log"``; unguarded is the same process with the key off (for
commands: the wrapper installed but switched off, one settings read). A guarded run pays for
its scope, one frame walk per distinct statement, the analysis when it ends (fingerprints
are cached, so a worker running the same task again pays less than its first run) and the
log record of each finding.

``--instructions`` counts CPU instructions instead, with valgrind's callgrind, as
``benchmarks.instructions`` does for requests: each case and arm in its own process, with
address randomisation off and a fixed hash seed, warmed up, then ``RUNS`` runs inside
``itertools.starmap``, the only function callgrind counts. A count does not move with the
machine's load; a ratio of counts is a proxy for a ratio of CPU time, not the same thing.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from io import StringIO
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ.setdefault("NPLUSONE_GUARD_TEST_DB", "sqlite")
sys.path.insert(0, os.getcwd())

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from benchmarks.callgrind import count_instructions  # noqa: E402
from django_nplusone_guard import guarded  # noqa: E402
from tests.testapp import celery_tasks  # noqa: E402
from tests.testapp.models import Author, Book  # noqa: E402

#: Seconds an unguarded batch should take at least, so the timer's grain does not matter.
BATCH_SECONDS = 0.02
#: Runs counted per case under callgrind (``--instructions``): the N+1's and the fixed twin's.
RUNS = {"N+1": 10, "fixed": 50}


def _book_report(fixed: bool) -> Callable[[], object]:
    return lambda: call_command("book_report", fixed=fixed, stdout=StringIO())


def _author_names() -> list[str]:
    return [book.author.name for book in Book.objects.order_by("id")]


def _author_names_fixed() -> list[str]:
    return [book.author.name for book in Book.objects.select_related("author").order_by("id")]


#: (case, the work, the guard's settings when guarded); unguarded: ``{"ENABLED": True}``.
CASES: list[tuple[str, Callable[[], object], dict[str, Any]]] = [
    ("command, N+1", _book_report(fixed=False), {"COMMANDS": ["book_report"]}),
    ("command, fixed", _book_report(fixed=True), {"COMMANDS": ["book_report"]}),
    ("Celery task (eager), N+1", celery_tasks.author_names.apply, {"CELERY": True}),
    ("Celery task (eager), fixed", celery_tasks.author_names_fixed.apply, {"CELERY": True}),
    ("@guarded job, N+1", guarded(label="job")(_author_names), {}),
    ("@guarded job, fixed", guarded(label="job")(_author_names_fixed), {}),
]
#: The unguarded twin of each decorated job is the undecorated function.
PLAIN = {"@guarded job, N+1": _author_names, "@guarded job, fixed": _author_names_fixed}


def _setup(rows: int) -> None:
    settings.DEBUG = False
    call_command("migrate", run_syncdb=True, verbosity=0)
    authors = Author.objects.bulk_create(Author(name=f"a{n}") for n in range(rows))
    Book.objects.bulk_create(Book(title=f"b{n}", author=a) for n, a in enumerate(authors))
    logger = logging.getLogger("django_nplusone_guard")
    logger.handlers = [logging.NullHandler()]
    logger.propagate = False


def _batch(work: Callable[[], object], repeats: int, guard: dict[str, Any]) -> float:
    with override_settings(NPLUSONE_GUARD={"ENABLED": True, "ACTION": "log", **guard}):
        start = time.process_time()
        for _ in range(repeats):
            work()
        return time.process_time() - start


def _arms(case: str, work: Callable[[], object], guard: dict[str, Any]) -> tuple[Any, Any]:
    """(unguarded, guarded): (work, settings) each."""
    if case in PLAIN:
        return (PLAIN[case], {}), (work, {})
    return (work, {}), (work, guard)


def _found(work: Callable[[], object], guard: dict[str, Any]) -> int:
    """How many findings the guarded arm logs: the benchmark measures a guard that works."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("django_nplusone_guard")
    logger.addHandler(handler)
    try:
        _batch(work, 1, guard)
    finally:
        logger.removeHandler(handler)
    return len(records)


def _runs(case: str) -> int:
    return RUNS["fixed" if "fixed" in case else "N+1"]


def worker(index: int, arm: int, rows: int) -> None:
    """Under callgrind: set up, warm up, then the counted runs inside ``itertools.starmap``."""
    _setup(rows)
    case, work, guard = CASES[index]
    plain, guarded_arm = _arms(case, work, guard)
    run, guard_settings = (plain, guarded_arm)[arm]
    with override_settings(NPLUSONE_GUARD={"ENABLED": True, "ACTION": "log", **guard_settings}):
        for _ in range(3):
            run()
        list(itertools.starmap(run, [()] * _runs(case)))


def _count(index: int, arm: int, rows: int, seed: int) -> float:
    """Instructions per run of ``CASES[index]``, unguarded (``arm`` 0) or guarded (1)."""
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    argv = [sys.executable, "-m", "benchmarks.beyond_requests", "--rows", str(rows)]
    proc, counted = count_instructions([*argv, "--worker", f"{index}:{arm}"], env)
    if proc.returncode != 0 or counted == 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"callgrind worker failed ({proc.returncode}): {tail[0]}")
    return counted / _runs(CASES[index][0])


def instructions(rows: int, seeds: int) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (apt-get install valgrind)")
    print(
        f"Instructions per run (valgrind callgrind), {rows} books, mean of {seeds} hash "
        f"seed(s), Python {sys.version.split()[0]}, Django {django.get_version()}"
    )
    print(f"{'guarded / unguarded':<28}{'ratio':>8}{'unguarded':>12}{'guarded':>12}{'+':>10}")
    for index, (case, *_) in enumerate(CASES):
        plain = statistics.mean(_count(index, 0, rows, seed) for seed in range(seeds))
        guarded_count = statistics.mean(_count(index, 1, rows, seed) for seed in range(seeds))
        print(
            f"{case:<28}{guarded_count / plain:>8.3f}{plain / 1e6:>11.2f}M"
            f"{guarded_count / 1e6:>11.2f}M{(guarded_count - plain) / 1e3:>9.0f}k",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100, help="books (default 100)")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--seeds", type=int, default=2, help="hash seeds (--instructions)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        index, arm = map(int, args.worker.split(":"))
        worker(index, arm, args.rows)
        return
    if args.instructions:
        instructions(args.rows, args.seeds)
        return
    _setup(args.rows)

    plan = []
    for case, work, guard in CASES:
        (plain, plain_guard), (guarded_work, guarded_guard) = _arms(case, work, guard)
        expected = 0 if "fixed" in case else 1
        found = _found(guarded_work, guarded_guard)
        assert found == expected, f"{case}: {found} finding(s) logged, expected {expected}"
        assert _found(plain, plain_guard) == 0, f"{case}: the unguarded arm was guarded"
        for _ in range(3):  # warm caches (fingerprints, frame kinds) in both arms
            _batch(plain, 1, plain_guard)
            _batch(guarded_work, 1, guarded_guard)
        once = max(_batch(plain, 5, plain_guard) / 5, 1e-6)
        repeats = max(1, round(BATCH_SECONDS / once))
        plan.append((case, repeats, (plain, plain_guard), (guarded_work, guarded_guard)))

    ratios: dict[str, list[float]] = {case: [] for case, *_ in plan}
    extra: dict[str, list[float]] = {case: [] for case, *_ in plan}
    base: dict[str, list[float]] = {case: [] for case, *_ in plan}
    for round_number in range(args.rounds):
        shift = round_number % len(plan)
        for case, repeats, plain_arm, guarded_arm in plan[shift:] + plan[:shift]:
            arms = [plain_arm, guarded_arm]
            if round_number % 2:
                arms.reverse()
            timed = [_batch(work, repeats, guard) for work, guard in arms]
            if round_number % 2:
                timed.reverse()
            plain_time, guarded_time = timed
            ratios[case].append(guarded_time / plain_time)
            extra[case].append((guarded_time - plain_time) / repeats)
            base[case].append(plain_time / repeats)

    print(
        f"{args.rows} books, {args.rounds} rounds, SQLite in memory, Python "
        f"{sys.version.split()[0]}, Django {django.get_version()}"
    )
    print(f"{'guarded / unguarded':<28}{'median':>8}{'min':>8}{'max':>8}{'run, us':>10}{'+us':>8}")
    for case, *_ in plan:
        runs = ratios[case]
        print(
            f"{case:<28}{statistics.median(runs):>8.3f}{min(runs):>8.3f}{max(runs):>8.3f}"
            f"{statistics.median(base[case]) * 1e6:>10.0f}"
            f"{statistics.median(extra[case]) * 1e6:>8.0f}"
        )


if __name__ == "__main__":
    main()
