"""The production variant's set-up and check: sampling that repeats from run to run, and
proof that a sampled request is still guarded."""

from __future__ import annotations

import random
from typing import Any


def seed_sampling() -> None:
    """The same requests are sampled in every run, so a run's instruction count repeats."""
    from django_nplusone_guard import sampling

    sampling.source.seed(0)


class _Always(random.Random):
    def random(self) -> float:
        return 0.0


def sampled_request(get: Any, url: str) -> Any:
    """``get(url)`` with the sampling draw forced under the rate: the request is guarded.
    The draws of the measured requests are left as they were."""
    from django_nplusone_guard import sampling

    source = sampling.source
    sampling.source = _Always()
    try:
        return get(url)
    finally:
        sampling.source = source


def exporters_missing() -> list[str]:
    """The configured exporters that did not load (their library is not installed here)."""
    from django_nplusone_guard.conf import get_config
    from django_nplusone_guard.exporters.base import resolve

    names = get_config().EXPORTERS
    loaded = {name for name, _exporter in resolve(names)}
    return [name for name in names if name not in loaded]
