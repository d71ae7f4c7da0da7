"""Overhead in CPU instructions, counted by valgrind: the same table as ``benchmarks.run``,
without the noise.

On a shared 2-core machine the time ratios of ``benchmarks.run`` move by 20% or more from
one round to the next (another tenant's load is not ours to control). The number of
instructions a request executes does not: valgrind's callgrind counts them, and the same
request on the same build gives the same count to within a few hundred thousand in a
hundred million. A ratio of instructions is a proxy for a ratio of CPU time on these pages
(CPU-bound, SQLite in memory), not a measurement of it: cache misses and branch
mispredictions are not counted. Both tables are printed in CI; this one is the steady one.

Run it from the repository root with the benchmark's virtualenv (``make bench-instructions``)::

    benchmarks/.venv/bin/python -m benchmarks.instructions [--variants a,b] [--jobs 2]

Each (variant, page) pair runs in its own process under callgrind. The worker sets Django up
for the variant, warms the page up (caches, EXPLAIN once per statement), then runs the
measured requests inside ``itertools.starmap``, and callgrind counts only what runs inside
that function (``--toggle-collect=starmap_next``): setup and warm-up are not counted.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from benchmarks.run import FLAT_TOLERANCE, ROOT, TARGETS, WORKLOADS

#: Requests counted per page: enough to average a request, few enough for valgrind's ~50x.
REQUESTS = {1: 20, 100: 3, 1000: 1}
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


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
    responses = list(itertools.starmap(client.get, [(url,)] * requests))
    problem = problem or _check(variant, queries, responses[-1])
    print(json.dumps({"problem": problem}))


def _measure(python: str, variant: str, queries: int) -> dict[str, object]:
    requests = REQUESTS[queries]
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "PYTHONHASHSEED": "0",
        "NPLUSONE_BENCH_SLOW": "1",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=starmap_next",
                f"--callgrind-out-file={tmp}/callgrind.out",
                python,
                "-m",
                "benchmarks.instructions",
                "--worker",
                f"{variant}:{queries}:{requests}",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"error": f"worker failed ({proc.returncode}): {tail[0]}"}
    result: dict[str, object] = json.loads(lines[-1])
    if "skipped" in result:
        return result
    counted = _COLLECTED.findall(proc.stderr)
    if not counted or int(counted[-1]) == 0:
        return {"error": "callgrind counted nothing (no starmap_next symbol in this Python?)"}
    result["per_request"] = int(counted[-1]) / requests
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
        if "toolbar-panel" in wanted:
            wanted.add("toolbar")
        unknown = wanted - set(BY_NAME)
        if unknown:
            print(f"unknown variants: {', '.join(sorted(unknown))}")
            return 2
        names = [n for n in names if n in wanted]
    jobs = [(name, queries) for name in names for queries in WORKLOADS]
    print(
        f"Instructions per request (valgrind callgrind), Python "
        f"{'.'.join(map(str, sys.version_info[:3]))}; {_versions()}",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        results = dict(
            zip(jobs, pool.map(lambda job: _measure(args.python, *job), jobs), strict=True)
        )
    _print(names, results)
    return 0


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
    if "toolbar-panel" in names and "toolbar" in names:
        cells = [_fmt(ratio("toolbar-panel", "toolbar", q)) for q in WORKLOADS]
        print(f"| toolbar + our panel / toolbar | {' | '.join(cells)} |")

    print("\nTargets, by instruction count (median time ratios: see benchmarks.run):")
    for name, limit in TARGETS.items():
        base = "toolbar" if name == "toolbar-panel" else "bare"
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
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        variant, queries, requests = args.worker.split(":")
        worker(variant, int(queries), int(requests))
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
