"""``REPORT_INTERVAL``: one report per finding id and interval, per process.

A page with an N+1 shows it on every request. In development that is one log line per
request, which is what a developer watching the console wants. In production it is
thousands of identical lines, Sentry events or span events an hour for one root cause. So
each id (see :mod:`django_nplusone_guard.identity`) is reported the first time it is seen,
then at most once per interval, and that report says how many times the id was seen since
the last one and the worst count among them: nothing is lost but repetition.

The memory is bounded: the ids seen most recently, at most :data:`MAX_IDS`. An id pushed
out is reported again the next time it is seen, as if it were new: more reports, never
fewer.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from . import conf

__all__ = ["MAX_IDS", "Admitted", "ReportLimiter", "limiter", "report_interval"]

#: How many ids one process remembers; a few hundred bytes each.
MAX_IDS = 4096
#: ``REPORT_INTERVAL`` when it is not set and ``DEBUG`` is off.
PRODUCTION_INTERVAL = 300.0


@dataclass(frozen=True, slots=True)
class Admitted:
    """A finding let through: how often its id was seen since it was last reported (this
    time included) and the worst count among those sightings."""

    seen: int
    worst_count: int


class _Pending:
    __slots__ = ("last_reported", "seen", "worst_count")

    def __init__(self, last_reported: float) -> None:
        self.last_reported = last_reported
        self.seen = 0
        self.worst_count = 0


class ReportLimiter:
    """Which sightings of which ids are reported; thread-safe (requests run in threads).

    ``clock`` is ``time.monotonic`` unless a test hands it another: wall-clock changes
    (NTP, daylight saving) must not silence an id or report it twice.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_ids: int = MAX_IDS
    ) -> None:
        self.clock = clock
        self.max_ids = max_ids
        self._ids: OrderedDict[str, _Pending] = OrderedDict()
        self._lock = threading.Lock()

    def admit(self, finding_id: str, count: int, interval: float) -> Admitted | None:
        """Record one sighting of ``finding_id`` (``count``: its queries this time); an
        :class:`Admitted` when it is to be reported now, ``None`` when it waits."""
        if interval <= 0:
            return Admitted(1, count)  # every sighting reported: nothing to remember
        now = self.clock()
        with self._lock:
            pending = self._ids.get(finding_id)
            if pending is None:
                self._ids[finding_id] = _Pending(now)
                if len(self._ids) > self.max_ids:
                    self._ids.popitem(last=False)
                return Admitted(1, count)
            self._ids.move_to_end(finding_id)
            seen = pending.seen + 1
            worst = max(pending.worst_count, count)
            if now - pending.last_reported < interval:
                pending.seen = seen
                pending.worst_count = worst
                return None
            pending.last_reported = now
            pending.seen = 0
            pending.worst_count = 0
            return Admitted(seen, worst)

    def clear(self) -> None:
        """Forget every id (settings changed; a test starts)."""
        with self._lock:
            self._ids.clear()

    def __len__(self) -> int:
        return len(self._ids)


#: The process's limiter. Tests replace its ``clock`` to move time.
limiter = ReportLimiter()


def report_interval(config: conf.Config) -> float:
    """``REPORT_INTERVAL`` in seconds; unset, 300 with ``DEBUG`` off and 0 with it on,
    ``DEBUG`` read now (as :func:`conf.is_enabled` reads it, for the same reason)."""
    interval = config.REPORT_INTERVAL
    if interval is None:
        return 0.0 if settings.DEBUG else PRODUCTION_INTERVAL
    return interval


conf.on_settings_change(limiter.clear)
