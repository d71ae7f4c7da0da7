"""One worker process under valgrind's callgrind, counting only what the worker runs inside
``itertools.starmap`` (the measured loop), so start-up and set-up are never counted.

Shared by :mod:`benchmarks.instructions` (requests) and :mod:`benchmarks.beyond_requests`
(commands, tasks, jobs): both count the same way, so their figures compare.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["count_instructions"]

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count_instructions(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run ``argv`` (a Python command line) under callgrind; the finished process and the
    instructions counted inside ``starmap`` (0 when nothing was counted)."""
    # Without address randomisation a run is exactly repeatable: same seed, same count.
    fixed = ["setarch", platform.machine(), "-R"] if shutil.which("setarch") else []
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [
                *fixed,
                "valgrind",
                "--tool=callgrind",
                "--collect-atstart=no",
                "--toggle-collect=starmap_next",
                f"--callgrind-out-file={tmp}/callgrind.out",
                *argv,
            ],
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            check=False,
        )
    counted = _COLLECTED.findall(proc.stderr)
    return proc, int(counted[-1]) if counted else 0
