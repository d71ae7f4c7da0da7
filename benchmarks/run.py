"""Overhead of the guard next to a bare request and the alternatives, measured side by side.

Run it from the repository root with the benchmark's own virtualenv (``make bench``, or
``make bench-short`` for the quick CI run)::

    benchmarks/.venv/bin/python -m benchmarks.run [--short] [--rounds N] [--variants a,b]

Every variant runs in its own process (so one tool's monkeypatching never leaks into another
one's numbers), and the processes are interleaved: each round runs every variant once, in a
rotated order, and a variant's time is compared with the bare request's time *of the same
round*. The table shows the median of those per-round ratios with their min and max. Absolute
times are printed for context only; they depend on the machine and are never a pass/fail.
"""

from __future__ import annotations

import argparse
import functools
import gc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = (100, 1, 1000)  # queries per page; the 100-query N+1 page is the headline
#: The issue's targets: each variant over its base (bare Django, or the toolbar alone). The
#: panel's target is also checked on the toolbar as it ships (its default panels), the set-up
#: most projects add our panel to.
TARGETS = {
    "guard": 1.05,
    "guard-explain": 1.10,
    "guard-production": 1.02,
    "toolbar-panel": 1.10,
    "toolbar-stock-panel": 1.10,
}
#: Distributions whose versions the report names.
_COMPARED = (
    "django-debug-toolbar",
    "django-zeal",
    "django-query-doctor",
    "nplusone",
    "django-nplus1",
)
#: Variants measured against a toolbar without them: their ratio row's label and that base.
#: The empty panel is the toolbar's own cost for any panel: the floor under ours.
PANEL_VARIANTS = {
    "toolbar-panel": ("toolbar + our panel / toolbar", "toolbar"),
    "toolbar-empty-panel": ("toolbar + an empty panel / toolbar", "toolbar"),
    "toolbar-stock-panel": ("default toolbar + our panel / default toolbar", "toolbar-stock"),
}


def base_of(name: str) -> str:
    """The variant ``name``'s targets and panel rows are measured against."""
    return PANEL_VARIANTS[name][1] if name in PANEL_VARIANTS else "bare"


#: Allowed noise when comparing the per-query cost of the 1,000- and 100-query pages.
FLAT_TOLERANCE = 1.10


# --------------------------------------------------------------------------- worker side


def _setup_django(variant: str) -> None:
    os.environ["NPLUSONE_BENCH_VARIANT"] = variant
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    import django

    django.setup()

    from django.core.management import call_command
    from django.utils.module_loading import import_string

    from benchmarks.variants import BY_NAME

    after_setup = BY_NAME[variant].after_setup
    if after_setup:
        import_string(after_setup)()

    call_command("migrate", run_syncdb=True, verbosity=0)
    from benchmarks.benchapp.models import Author, Book

    authors = Author.objects.bulk_create(Author(name=f"Author {i}") for i in range(1000))
    Book.objects.bulk_create(
        Book(title=f"Book {i}", author=author, pages=100 + i) for i, author in enumerate(authors)
    )


def _skip_reason(variant: str) -> str | None:
    """Why this variant cannot run here, checked before Django is configured for it."""
    from benchmarks.variants import BY_NAME

    required = BY_NAME[variant].requires
    if required is None:
        return None
    try:
        found = importlib.util.find_spec(required) is not None
    except ModuleNotFoundError:
        found = False
    return None if found else f"{required} is not importable"


def _explain_reason() -> str | None:
    """The EXPLAIN variant only means something once EXPLAIN finds missing indexes."""
    from benchmarks.benchapp.models import Book
    from django_nplusone_guard import capture

    with capture(explain=True) as report:
        for pages in (101, 102, 103):
            list(Book.objects.filter(pages=pages))
    if not report.missing_indexes:
        return "capture(explain=True) reports no missing index on an unindexed filter"
    return None


def _count_queries(request: Callable[[], Any]) -> tuple[int, Any]:
    from django.db import connection

    count = 0

    def counter(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        nonlocal count
        count += 1
        return execute(sql, params, many, context)

    with connection.execute_wrapper(counter):
        response = request()
    return count, response


def _check(variant: str, queries: int, response: Any) -> str | None:
    """Make sure the variant really did its work; a silent no-op would flatter it."""
    if response.status_code != 200:
        return f"status {response.status_code}"
    content = response.content.decode()
    if variant.startswith("toolbar") and "djDebug" not in content:
        return "the toolbar was not rendered"
    from benchmarks.variants import BY_NAME

    for panel_id in BY_NAME[variant].panels_shown:
        if f'id="djdt-{panel_id}"' not in content:
            return f"the toolbar has no {panel_id}"
    if variant.startswith("guard") and queries >= 100:
        if BY_NAME[variant].sampled:
            # Most of its requests are not sampled: ask one that is (not counted).
            from django.test import Client

            from benchmarks.production import exporters_missing, sampled_request

            missing = exporters_missing()
            if missing:
                return f"exporters not loaded: {', '.join(missing)}"
            response = sampled_request(Client().get, f"/books/{queries}/")
        report = getattr(response.wsgi_request, "nplusone_guard_report", None)
        if report is None or not report.nplusones:
            return "the guard found no N+1 on the N+1 page"
    return None


def _clock(name: str) -> Callable[[], float]:
    """CPU time by default: the pages are CPU-bound (SQLite in memory), and CPU time is what
    other processes on a busy machine disturb least. ``--clock wall`` for wall time."""
    return time.process_time if name == "cpu" else time.perf_counter


def worker(variant: str, *, batches: int, batch_seconds: float, clock: str) -> dict[str, Any]:
    reason = _skip_reason(variant)
    if reason:
        return {"variant": variant, "skipped": reason}
    _setup_django(variant)
    if variant == "guard-explain":
        reason = _explain_reason()
        if reason:
            return {"variant": variant, "skipped": reason}

    import warnings

    from django.test import Client

    warnings.simplefilter("ignore")  # tools that warn instead of logging: measure, don't print
    client = Client()
    now = _clock(clock)
    result: dict[str, Any] = {"variant": variant, "times": {}, "queries": {}, "problems": []}
    for queries in WORKLOADS:
        url = f"/books/{queries}/"
        # Warm-up: caches, EXPLAIN (once per distinct statement per process), lazy imports.
        client.get(url)
        start = now()
        for _ in range(2):
            client.get(url)
        per_request = (now() - start) / 2
        counted, response = _count_queries(functools.partial(client.get, url))
        result["queries"][str(queries)] = counted
        problem = _check(variant, queries, response)
        if problem:
            result["problems"].append(f"{queries}-query page: {problem}")
        count = max(2, round(batch_seconds / per_request))
        samples = []
        for _ in range(batches):
            gc.collect()
            start = now()
            for _ in range(count):
                client.get(url)
            samples.append((now() - start) / count)
        result["times"][str(queries)] = statistics.median(samples)
    return result


#: Length of one batch of the same-process view: short, so that a burst of noise (another
#: tenant of the machine) spoils a few pairs, not the median.
SAME_PROCESS_BATCH_SECONDS = 0.02


def same_process_worker(variant: str, *, pairs: int, clock: str) -> dict[str, Any]:
    """The guard on and off (``ENABLED``) in one process, alternating batch by batch.

    Nothing differs between the two but the guard, not even the process, so this is the
    steadiest view of its cost in time; the cross-process table is the one comparable with
    the other tools, which have no such switch. Each of ``pairs`` pairs times a short batch
    with the guard on and one with it off, in alternating order (whichever runs second
    finds the caches warmer), and the pair's ratio is one sample.
    """
    _setup_django(variant)
    from django.test import Client, override_settings

    now = _clock(clock)
    client = Client()
    result: dict[str, Any] = {}
    for queries in WORKLOADS:
        url = f"/books/{queries}/"
        for _ in range(3):
            client.get(url)
        start = now()
        client.get(url)
        count = max(1, round(SAME_PROCESS_BATCH_SECONDS / max(now() - start, 1e-6)))
        ratios = []
        for pair in range(pairs):
            timed = {}
            for enabled in (True, False) if pair % 2 == 0 else (False, True):
                with override_settings(NPLUSONE_GUARD={"ENABLED": enabled}):
                    gc.collect()
                    start = now()
                    for _ in range(count):
                        client.get(url)
                    timed[enabled] = now() - start
            ratios.append(timed[True] / timed[False])
        result[str(queries)] = ratios
    return result


def per_query_worker(variant: str, *, repeats: int, loops: int, clock: str) -> dict[str, Any]:
    """Cost of the execute wrapper per statement: absent, idle (no scope), recording.

    Run for ``guard-sql-only`` (the execute wrapper alone) and ``guard`` (plus the ORM
    attribution hooks, which act on ``get()`` but not on a raw cursor). Each mode is timed
    ``repeats`` times, interleaved, and the fastest run counts (the usual estimator for a
    micro-benchmark on a noisy machine).
    """
    _setup_django(variant)
    from django.db import connection

    from benchmarks.benchapp.models import Book
    from django_nplusone_guard import capture
    from django_nplusone_guard.capture import _execute_wrapper

    now = _clock(clock)
    connection.ensure_connection()
    pks = list(Book.objects.values_list("pk", flat=True)[:100])

    def raw_select() -> None:
        with connection.cursor() as cursor:
            for _ in range(loops):
                cursor.execute("SELECT 1")

    def orm_get() -> None:
        for i in range(loops):
            Book.objects.get(pk=pks[i % 100])

    def timed(statement: Callable[[], None], mode: str) -> float:
        wrappers = connection.execute_wrappers
        if mode == "absent":
            wrappers.remove(_execute_wrapper)
        gc.collect()
        try:
            if mode == "recording":
                with capture(max_queries=loops + 1):
                    start = now()
                    statement()
                    elapsed = now() - start
            else:
                start = now()
                statement()
                elapsed = now() - start
        finally:
            if mode == "absent":
                wrappers.append(_execute_wrapper)
        return elapsed / loops

    modes = ("absent", "idle", "recording")
    results: dict[str, Any] = {}
    for label, statement in (("SELECT 1 (cursor)", raw_select), ("ORM get(pk=)", orm_get)):
        best = {mode: float("inf") for mode in modes}
        for _ in range(repeats):
            for mode in modes:
                best[mode] = min(best[mode], timed(statement, mode))
        results[label] = best
    return results


# --------------------------------------------------------------------------- runner side


def _spawn(python: str, args: Sequence[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [python, "-m", "benchmarks.run", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"worker failed ({proc.returncode}): {tail[0]}", "stderr": proc.stderr}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _versions() -> str:
    from importlib import metadata

    found = []
    for dist in ("Django", *_COMPARED):
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


def _fmt_ratio(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


def _fmt_quartiles(values: Sequence[float]) -> str:
    """Median and interquartile range: with hundreds of samples the extremes are whatever
    the noisiest moment of the run was, the quartiles are the method's resolution."""
    if len(values) < 2:
        return f"{values[0]:.3f}x" if values else "n/a"
    low, median, high = statistics.quantiles(values, n=4)
    return f"{median:.3f}x ({low:.3f}-{high:.3f})"


def run(args: argparse.Namespace) -> int:
    from benchmarks.variants import BY_NAME, VARIANTS

    names = [v.name for v in VARIANTS]
    if args.variants:
        names = ["bare", *[n for n in args.variants.split(",") if n != "bare"]]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown:
            print(f"unknown variant(s): {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
            return 2
    worker_args = [
        *("--batches", str(args.batches), "--batch-seconds", str(args.batch_seconds)),
        *("--clock", args.clock),
    ]
    print(
        f"Python {sys.version.split()[0]}, {args.rounds} rounds, {args.batches} batches of "
        f"~{args.batch_seconds}s per page and variant, {args.clock} time; SQLite in memory, "
        "Django test client."
    )
    print(f"Versions: {_versions()}")

    times: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    skipped: dict[str, str] = {}
    problems: dict[str, list[str]] = {}
    queries: dict[str, dict[str, int]] = {}
    for round_no in range(args.rounds):
        active = [n for n in names if n not in skipped]
        shift = round_no % len(active)
        order = active[shift:] + active[:shift]
        started = time.perf_counter()
        for name in order:
            outcome = _spawn(args.python, ["--worker", name, *worker_args])
            if "error" in outcome:
                print(f"  {name}: {outcome['error']}")
                if args.verbose:
                    print(outcome["stderr"])
                skipped[name] = outcome["error"]
            elif "skipped" in outcome:
                skipped[name] = outcome["skipped"]
            else:
                times[name].append(outcome["times"])
                queries[name] = outcome["queries"]
                if outcome["problems"]:
                    problems[name] = outcome["problems"]
        print(f"round {round_no + 1}/{args.rounds} done in {time.perf_counter() - started:.0f}s")
    if "bare" in skipped:
        print(f"bare variant failed: {skipped['bare']}")
        return 1

    ran = [n for n in names if n not in skipped]
    ratios = {n: _pair_ratios(times, n, "bare") for n in ran}
    _print_table(ran, ratios, times, queries, BY_NAME)
    for name, reasons in problems.items():
        print(f"WARNING {name}: {'; '.join(reasons)}")
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")

    summary = _targets(ran, times, queries)
    per_query = {}
    if not args.no_per_query:
        print()
        print("Cost per statement (fastest of interleaved runs, no request around it):")
        for name in ("guard-sql-only", "guard"):
            per_query[name] = _spawn(
                args.python,
                [
                    *("--per-query", name, "--repeats", str(args.repeats)),
                    *("--loops", str(args.loops), "--clock", args.clock),
                ],
            )
            _print_per_query(BY_NAME[name].label, per_query[name])
        print()
        print(
            f"Same process, guard on / off, {args.pairs} pairs of "
            f"~{SAME_PROCESS_BATCH_SECONDS * 1000:.0f} ms batches "
            "(median, interquartile range):"
        )
        for name in ("guard-sql-only", "guard"):
            outcome = _spawn(
                args.python,
                ["--same-process", name, "--pairs", str(args.pairs), "--clock", args.clock],
            )
            if "error" in outcome:
                print(f"  {BY_NAME[name].label}: failed: {outcome['error']}")
                continue
            per_query[f"{name}-same-process"] = outcome
            shown = ", ".join(
                f"{int(w):,}-query page {_fmt_quartiles(values)}" for w, values in outcome.items()
            )
            print(f"  {BY_NAME[name].label}: {shown}")
    results_dir = ROOT / "benchmarks" / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / "latest.json").write_text(
        json.dumps(
            {
                "rounds": args.rounds,
                "times": times,
                "queries": queries,
                "skipped": skipped,
                "targets": summary,
                "per_query": per_query,
            },
            indent=2,
        )
    )
    return 0


def _print_table(
    ran: Sequence[str],
    ratios: dict[str, dict[str, list[float]]],
    times: dict[str, list[dict[str, float]]],
    queries: dict[str, dict[str, int]],
    by_name: dict[str, Any],
) -> None:
    headers = [f"{w:,}-query page" if w > 1 else "1-query page" for w in WORKLOADS]
    rows = [["variant", *headers]]
    bare = ["bare Django (ms per request)"]
    for w in WORKLOADS:
        bare.append(f"{statistics.median(t[str(w)] for t in times['bare']) * 1000:.2f} ms")
    rows.append(bare)
    for name in ran:
        if name == "bare":
            continue
        rows.append([by_name[name].label, *(_fmt_ratio(ratios[name][str(w)]) for w in WORKLOADS)])
    for name, (label, base) in PANEL_VARIANTS.items():
        if base in ran and name in ran:
            panel = _pair_ratios(times, name, base)
            rows.append([label, *(_fmt_ratio(panel[str(w)]) for w in WORKLOADS)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    print("Median time ratio to bare Django per round (min-max over rounds):")
    print()
    print("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(rows[0])) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows[1:]:
        print("| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(row)) + " |")
    print()
    counted = {n: q for n, q in queries.items() if q != queries.get("bare")}
    if counted:
        print(f"NOTE query counts differ from bare: {counted} (bare: {queries.get('bare')})")


def _pair_ratios(
    times: dict[str, list[dict[str, float]]], name: str, base: str
) -> dict[str, list[float]]:
    """Per-round ratio of ``name`` to ``base`` on each page."""
    pairs = list(zip(times[name], times[base], strict=True))
    return {str(w): [t[str(w)] / b[str(w)] for t, b in pairs] for w in WORKLOADS}


def _targets(
    ran: Sequence[str],
    times: dict[str, list[dict[str, float]]],
    queries: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """Print (never assert) which of the issue's targets this run meets."""
    summary: dict[str, Any] = {}
    print("Targets (median ratio on every page):")
    from benchmarks.variants import BY_NAME

    checks = [
        (
            PANEL_VARIANTS[name][0] if name in PANEL_VARIANTS else f"{BY_NAME[name].label} / bare",
            name,
            base_of(name),
            target,
        )
        for name, target in TARGETS.items()
    ]
    for label, name, base, target in checks:
        if name not in ran or base not in ran:
            print(f"  {label} <= {target}: not measured ({name} or {base} skipped)")
            summary[name] = None
            continue
        medians = {
            w: statistics.median(values) for w, values in _pair_ratios(times, name, base).items()
        }
        met = all(m <= target for m in medians.values())
        shown = ", ".join(f"{int(w):,}-query page {m:.3f}" for w, m in medians.items())
        print(f"  {label} <= {target}: {'MET' if met else 'NOT MET'} ({shown})")
        summary[name] = {"target": target, "medians": medians, "met": met}
    for label, name, base, _target in checks:
        if name not in ran or base not in ran:
            continue
        per_query = {}
        for w in ("100", "1000"):
            pairs = zip(times[name], times[base], strict=True)
            per_query[w] = statistics.median((v[w] - b[w]) / queries[name][w] for v, b in pairs)
        flat = per_query["1000"] <= max(per_query["100"], 0.0) * FLAT_TOLERANCE
        print(
            f"  {label}: cost per extra query flat: {'MET' if flat else 'NOT MET'} "
            f"({per_query['100'] * 1e6:.1f} us/query on the 100-query page, "
            f"{per_query['1000'] * 1e6:.1f} us/query on the 1,000-query page)"
        )
        summary[f"{name}-per-query"] = {**per_query, "flat": flat}
    return summary


def _print_per_query(title: str, result: dict[str, Any]) -> None:
    print(f"  {title}:")
    if "error" in result:
        print(f"    measurement failed: {result['error']}")
        return
    for label, best in result.items():
        absent, idle, recording = best["absent"], best["idle"], best["recording"]
        print(
            f"    {label}: {absent * 1e6:.2f} us bare ({1 / absent:,.0f} q/s); "
            f"no scope active +{(idle - absent) * 1e6:.2f} us; "
            f"recording +{(recording - absent) * 1e6:.2f} us "
            f"({1 / recording:,.0f} q/s, {recording / absent:.2f}x)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="3 quick rounds, for CI")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--variants", help="comma-separated subset (bare is always added)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    parser.add_argument("--no-per-query", action="store_true")
    parser.add_argument(
        "--clock", choices=("cpu", "wall"), default="cpu", help="what a worker times (cpu)"
    )
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--per-query", help=argparse.SUPPRESS)
    parser.add_argument("--same-process", help=argparse.SUPPRESS)
    parser.add_argument("--batches", type=int)
    parser.add_argument("--batch-seconds", type=float)
    parser.add_argument("--repeats", type=int)
    parser.add_argument(
        "--pairs", type=int, help="on/off pairs of the same-process view (200; short: 60)"
    )
    parser.add_argument("--loops", type=int)
    args = parser.parse_args(argv)
    short = args.short
    # Rounds beat batches: most of the noise is between processes, not within one.
    args.rounds = args.rounds or (3 if short else 7)
    args.batches = args.batches or (2 if short else 3)
    args.batch_seconds = args.batch_seconds or (0.1 if short else 0.2)
    args.repeats = args.repeats or (3 if short else 7)
    args.loops = args.loops or (5_000 if short else 20_000)
    args.pairs = args.pairs or (60 if short else 200)
    if args.worker:
        result = worker(
            args.worker, batches=args.batches, batch_seconds=args.batch_seconds, clock=args.clock
        )
        print(json.dumps(result))
        return 0
    if args.same_process:
        result = same_process_worker(args.same_process, pairs=args.pairs, clock=args.clock)
        print(json.dumps(result))
        return 0
    if args.per_query:
        result = per_query_worker(
            args.per_query, repeats=args.repeats, loops=args.loops, clock=args.clock
        )
        print(json.dumps(result))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
