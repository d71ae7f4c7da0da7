"""REPORT_INTERVAL: one report per finding id and interval, with what was seen meanwhile."""

from __future__ import annotations

import logging
import threading

import pytest
from django.test import Client

from django_nplusone_guard import ratelimit
from django_nplusone_guard.conf import get_config
from django_nplusone_guard.ratelimit import Admitted, ReportLimiter, report_interval
from tests.conftest import guard_records
from tests.factories import AuthorFactory, BookFactory


class Clock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(ratelimit.limiter, "clock", clock)
    return clock


def test_first_sighting_is_reported_then_held_until_the_interval_ends():
    clock = Clock()
    limiter = ReportLimiter(clock)
    assert limiter.admit("a", 5, 60) == Admitted(1, 5)
    clock.now += 10
    assert limiter.admit("a", 9, 60) is None
    clock.now += 10
    assert limiter.admit("a", 7, 60) is None
    clock.now += 40  # 60 s after the report
    assert limiter.admit("a", 3, 60) == Admitted(seen=3, worst_count=9)
    clock.now += 1
    assert limiter.admit("a", 4, 60) is None


def test_ids_are_limited_separately():
    clock = Clock()
    limiter = ReportLimiter(clock)
    assert limiter.admit("a", 2, 60) is not None
    assert limiter.admit("b", 2, 60) is not None
    assert limiter.admit("a", 2, 60) is None


def test_interval_zero_reports_everything_and_remembers_nothing():
    limiter = ReportLimiter(Clock())
    assert [limiter.admit("a", n, 0) for n in (1, 2)] == [Admitted(1, 1), Admitted(1, 2)]
    assert len(limiter) == 0


def test_memory_is_bounded_and_the_least_recently_seen_id_goes_first():
    clock = Clock()
    limiter = ReportLimiter(clock, max_ids=3)
    for name in "abc":
        limiter.admit(name, 2, 60)
    limiter.admit("a", 2, 60)  # a is now the most recently seen
    limiter.admit("d", 2, 60)  # pushes out b
    assert len(limiter) == 3
    assert limiter.admit("a", 2, 60) is None
    assert limiter.admit("b", 2, 60) == Admitted(1, 2)  # forgotten: reported as new


def test_concurrent_sightings_are_each_counted_once():
    clock = Clock()
    limiter = ReportLimiter(clock)
    limiter.admit("a", 1, 60)
    barrier = threading.Barrier(8)

    def sight() -> None:
        barrier.wait()
        for _ in range(500):
            assert limiter.admit("a", 2, 60) is None

    threads = [threading.Thread(target=sight) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now += 60
    assert limiter.admit("a", 1, 60) == Admitted(seen=8 * 500 + 1, worst_count=2)


def test_the_default_interval_follows_debug(settings):
    settings.NPLUSONE_GUARD = {}
    settings.DEBUG = False
    assert report_interval(get_config()) == 300
    settings.DEBUG = True
    assert report_interval(get_config()) == 0
    settings.NPLUSONE_GUARD = {"REPORT_INTERVAL": 5}
    assert report_interval(get_config()) == 5


# --------------------------------------------------------------------------- requests


@pytest.mark.django_db
def test_requests_report_an_id_once_per_interval_with_seen_and_worst_count(guard, clock, caplog):
    for _ in range(3):
        BookFactory(author=AuthorFactory())
    guard(REPORT_INTERVAL=60)
    client = Client()
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        client.get("/books/")  # reported: first sighting, 3 queries
        BookFactory(author=AuthorFactory())
        clock.now += 30
        client.get("/books/")  # held: 4 queries
        client.get("/books/")  # held: 4 queries
        clock.now += 30
        client.get("/books/")  # reported: 3 sightings, worst 4
    first, second = (vars(record) for record in guard_records(caplog))
    assert (first["seen"], first["worst_count"], first["count"]) == (1, 3, 3)
    assert (second["seen"], second["worst_count"], second["count"]) == (3, 4, 4)
    assert first["finding_id"] == second["finding_id"]
    assert "seen 3 times since last reported, worst 4 queries" in second["msg"] % second["args"]
    assert "since last reported" not in first["msg"] % first["args"]


@pytest.mark.django_db
def test_pytest_runs_with_debug_off_so_the_default_holds_repeats(books, guard, caplog):
    guard()  # no REPORT_INTERVAL: 300 s, DEBUG is off under pytest-django
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        for _ in range(3):
            Client().get("/books/")
    assert len(guard_records(caplog)) == 1


@pytest.mark.django_db
def test_warn_and_raise_are_not_rate_limited(books, guard):
    from django_nplusone_guard import NPlusOneDetected

    guard(ACTION="raise", REPORT_INTERVAL=300)
    for _ in range(2):
        with pytest.raises(NPlusOneDetected):
            Client().get("/books/")


@pytest.mark.parametrize("value", [-1, "60", None, True])
def test_a_bad_interval_is_e002(settings, value):
    from django_nplusone_guard.checks import check_settings

    settings.NPLUSONE_GUARD = {"REPORT_INTERVAL": value}
    assert [m.id for m in check_settings()] == ["django_nplusone_guard.E002"]
