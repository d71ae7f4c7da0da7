"""``SAMPLE_RATE``: guard a share of the requests, commands and tasks, chosen at random.

The choice is made once, when the unit of work starts, with one call of :data:`source`:
a request that is not sampled opens no scope and records nothing, so it costs what it costs
with the guard disabled, plus that call. A finding that shows on one request in a hundred
is still seen within a few hundred requests, and its id (see
:mod:`django_nplusone_guard.identity`) is the same whichever request showed it.
"""

from __future__ import annotations

import random

__all__ = ["is_sampled", "source"]

#: Where the sampling draws come from. Its own generator, not the ``random`` module's, so
#: an application seeding ``random`` for its own reasons does not decide which requests are
#: guarded, and a test can seed this one (``sampling.source.seed(7)``) to know which are.
source = random.Random()


def is_sampled(rate: float) -> bool:
    """Whether the unit of work starting now is guarded, at ``rate`` (0.0 to 1.0).

    A rate of 1.0 (the default) draws nothing: every unit is guarded, as before sampling
    existed.
    """
    return rate >= 1.0 or source.random() < rate
