"""Overhead in CPU instructions, counted by valgrind: the same table as ``benchmarks.run``,
without the noise.

On a shared 2-core machine the time ratios of ``benchmarks.run`` move by 20% or more from
one round to the next (another tenant's load is not ours to control). The number of
instructions a request executes does not: valgrind's callgrind counts them, and the same
request on the same build, with the same hash seed and no address randomisation, gives the
same count to the instruction. Another hash seed moves it by up to ~0.5% (dict layouts,
garbage-collector timing), so each cell is a mean over seeds. A ratio of instructions is
a proxy for a ratio of CPU time on these pages (CPU-bound, SQLite in memory), not a
measurement of it: cache misses and branch mispredictions are not counted. Both tables
are printed in CI; this one is the steady one.

Run it from the repository root with the benchmark's virtualenv (``make bench-instructions``)::

    benchmarks/.venv/bin/python -m benchmarks.instructions [--variants a,b] [--jobs 2]

Each (variant, page) pair runs in its own process under callgrind, once per hash seed
(``--seeds``, default 3; the table shows the mean), with address randomisation off where
``setarch`` can turn it off, so that a run is exactly repeatable. The worker sets Django up
for the variant, warms the page up (caches, EXPLAIN once per statement), then runs the
measured requests inside ``itertools.starmap``, and callgrind counts only what runs inside
that function (``--toggle-collect=starmap_next``): setup and warm-up are not counted. Each
response is dropped when the next request starts, inside the count, so freeing what a
request built is counted as part of it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchmarks.callgrind import count_instructions
from benchmarks.run import FLAT_TOLERANCE, PANEL_VARIANTS, ROOT, TARGETS, WORKLOADS, base_of

#: Requests counted per page: enough to average a request, few enough for valgrind's ~50x.
#: A full garbage collection costs millions of instructions and falls in some runs and not
#: others; with 3 requests of the 100-query page it moved a ratio by a whole point, so each
#: page runs long enough (about a billion instructions) for collections to average out.
REQUESTS = {1: 100, 100: 10, 1000: 2}


def worker(variant: str, queries: int, requests: int) -> None:
    """Set up, warm up, then run ``requests`` requests inside ``itertools.starmap``."""
    from benchmarks.run import _check, _explain_reason, _setup_django, _skip_reason

    reason = _skip_reason(variant)
    if reason:
        print(json.dumps({"skipped": reason}))
        return
    _setup_django(variant)
    if variant == "guard-explain":
        reason = _explain_reason()
        if reason:
            print(json.dumps({"skipped": reason}))
            return
    import warnings

    from django.test import Client

    warnings.simplefilter("ignore")
    client = Client()
    url = f"/books/{queries}/"
    for _ in range(1 if queries >= 1000 else 3):  # the 1,000-query page: ~20 s in valgrind
        response = client.get(url)
    problem = _check(variant, queries, response)
    last: list[Any] = [response]

    def one(path: str) -> None:
        # Replacing the previous response frees it here, inside the count: a request's
        # cost includes freeing what it built (the guard's scope and report among it).
        last[0] = client.get(path)

    list(itertools.starmap(one, [(url,)] * requests))
    problem = problem or _check(variant, queries, last[0])
    print(json.dumps({"problem": problem}))


def _measure(python: str, variant: str, queries: int, seed: int) -> dict[str, object]:
    requests = REQUESTS[queries]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONHASHSEED": str(seed),
        "NPLUSONE_BENCH_SLOW": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    argv = [python, "-m", "benchmarks.instructions", "--worker", f"{variant}:{queries}:{requests}"]
    proc, counted = count_instructions(argv, env, cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"worker failed ({proc.returncode}): {tail[0]}"}
    result: dict[str, object] = json.loads(lines[-1])
    if "skipped" in result:
        return result
    if counted == 0:
        return {"error": "callgrind counted nothing (no starmap_next symbol in this Python?)"}
    result["per_request"] = counted / requests
    return result


def run(args: argparse.Namespace) -> int:
    from benchmarks.run import _versions
    from benchmarks.variants import BY_NAME, VARIANTS

    if shutil.which("valgrind") is None:
        print("valgrind is not installed: no instruction counts (apt-get install valgrind)")
        return 0
    names = [v.name for v in VARIANTS]
    if args.variants:
        wanted = {"bare", *args.variants.split(",")}
        wanted |= {base_of(name) for name in wanted}
        unknown = wanted - set(BY_NAME)
        if unknown:
            print(f"unknown variants: {', '.join(sorted(unknown))}")
            return 2
        names = [n for n in names if n in wanted]
    jobs = [
        (name, queries, seed)
        for seed in range(args.seeds)
        for name in names
        for queries in WORKLOADS
    ]
    print(
        f"Instructions per request (valgrind callgrind), Python "
        f"{'.'.join(map(str, sys.version_info[:3]))}; {_versions()}; mean of "
        f"{args.seeds} run(s) per cell, PYTHONHASHSEED=0..{args.seeds - 1}",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = list(pool.map(lambda job: _measure(args.python, *job), jobs))
    results = _combine(jobs, runs)
    _print(names, results)
    return 0


def _combine(
    jobs: Sequence[tuple[str, int, int]], runs: Sequence[Mapping[str, object]]
) -> dict[tuple[str, int], dict[str, object]]:
    """One cell per (variant, page): the mean count over its seeds.

    A hash seed changes every dict's layout, and with it how many probes a lookup takes and
    when the garbage collector runs: one run's count can sit 0.5% above or below another
    seed's, as much as the differences being measured. The mean of a few seeds is steadier;
    the spread is kept in the results for whoever wants to see it."""
    cells: dict[tuple[str, int], dict[str, object]] = {}
    counts: dict[tuple[str, int], list[float]] = {}
    for (name, queries, _seed), run in zip(jobs, runs, strict=True):
        cell = cells.setdefault((name, queries), {})
        value = run.get("per_request")
        if isinstance(value, int | float):
            counts.setdefault((name, queries), []).append(float(value))
        elif not cell or "per_request" not in cell:
            cell.update({k: v for k, v in run.items() if k in ("skipped", "error")})
        if run.get("problem"):
            cell["problem"] = run["problem"]
    for key, values in counts.items():
        cell = cells[key]
        cell.pop("skipped", None)
        cell.pop("error", None)
        cell["per_request"] = statistics.fmean(values)
        cell["runs"] = values
    return cells


def _print(names: list[str], results: dict[tuple[str, int], dict[str, object]]) -> None:
    from benchmarks.variants import BY_NAME

    def count(name: str, queries: int) -> float | None:
        value = results.get((name, queries), {}).get("per_request")
        return float(value) if isinstance(value, int | float) else None

    def ratio(name: str, base: str, queries: int) -> float | None:
        top, bottom = count(name, queries), count(base, queries)
        return top / bottom if top is not None and bottom else None

    header = " | ".join(f"{q:,}-query page" for q in WORKLOADS)
    print(f"\n| variant | {header} |")
    print("|---|" + "---|" * len(WORKLOADS))
    for name in names:
        cells = []
        for queries in WORKLOADS:
            result = results.get((name, queries), {})
            if "skipped" in result or "error" in result:
                cells.append(str(result.get("skipped") or result.get("error")))
            elif name == "bare":
                cells.append(f"{(count(name, queries) or 0) / 1e6:.1f} M instructions")
            else:
                value = ratio(name, "bare", queries)
                problem = result.get("problem")
                cells.append(f"{value:.3f}x" + (f" ({problem})" if problem else ""))
        print(f"| {BY_NAME[name].label} | {' | '.join(cells)} |")
    for name, (label, base) in PANEL_VARIANTS.items():
        if name in names and base in names:
            cells = [_fmt(ratio(name, base, q)) for q in WORKLOADS]
            print(f"| {label} | {' | '.join(cells)} |")

    print("\nTargets, by instruction count (median time ratios: see benchmarks.run):")
    for name, limit in TARGETS.items():
        base = base_of(name)
        values = {q: ratio(name, base, q) for q in WORKLOADS}
        if any(v is None for v in values.values()):
            continue
        met = all(v is not None and v <= limit for v in values.values())
        shown = ", ".join(f"{q:,}-query page {_fmt(v)}" for q, v in values.items())
        print(f"  {name} / {base} <= {limit}: {'met' if met else 'NOT MET'} ({shown})")
        per_query = {q: ((count(name, q) or 0) - (count(base, q) or 0)) / q for q in (100, 1000)}
        flat = per_query[1000] <= per_query[100] * FLAT_TOLERANCE
        print(
            f"  {name} / {base}: instructions per extra query flat: "
            f"{'met' if flat else 'NOT MET'} ({per_query[100]:,.0f} on the 100-query page, "
            f"{per_query[1000]:,.0f} on the 1,000-query page)"
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}x"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", help="comma-separated subset (bare is always added)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--seeds", type=int, default=3, help="runs per cell, one hash seed each (default 3)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        variant, queries, requests = args.worker.split(":")
        worker(variant, int(queries), int(requests))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
