"""SAMPLE_RATE: a seeded share of requests, commands and guarded runs is guarded; the rest
open no scope at all."""

from __future__ import annotations

import logging
import random

import pytest
from django.core.management import call_command
from django.test import Client

from django_nplusone_guard import guarded, sampling
from django_nplusone_guard.middleware import CAPTURE_ATTR, REQUEST_ATTR
from tests.conftest import guard_records

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(monkeypatch):
    """The sampling source, seeded: which draws fall under the rate is known in advance."""

    def seed(value: int) -> random.Random:
        monkeypatch.setattr(sampling, "source", random.Random(value))
        return random.Random(value)  # a twin, to predict the draws

    return seed


def _guarded_requests(count: int) -> list[bool]:
    client = Client()
    return [hasattr(client.get("/books/").wsgi_request, REQUEST_ATTR) for _ in range(count)]


def test_a_seeded_source_guards_exactly_the_requests_it_draws_under_the_rate(books, guard, seeded):
    guard(SAMPLE_RATE=0.3, REPORT_INTERVAL=0)
    twin = seeded(7)
    expected = [twin.random() < 0.3 for _ in range(40)]
    assert _guarded_requests(40) == expected
    assert 0 < sum(expected) < 40  # the seed exercises both branches


def test_the_sampled_requests_report_their_findings(books, guard, seeded, caplog):
    guard(SAMPLE_RATE=0.5, REPORT_INTERVAL=0)
    twin = seeded(3)
    expected = sum(twin.random() < 0.5 for _ in range(20))
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        _guarded_requests(20)
    assert len(guard_records(caplog)) == expected


def test_rate_zero_guards_nothing_and_rate_one_draws_nothing(books, guard, seeded):
    guard(SAMPLE_RATE=0.0)
    assert _guarded_requests(5) == [False] * 5
    guard(SAMPLE_RATE=1.0)
    twin = seeded(11)
    assert _guarded_requests(5) == [True] * 5
    assert sampling.source.random() == twin.random()  # the source was never drawn from


def test_an_unsampled_request_opens_no_capture(books, guard, seeded):
    guard(SAMPLE_RATE=0.0, HEADER=True)
    response = Client().get("/books/")
    assert "X-NPlusOne-Guard" not in response
    assert not hasattr(response.wsgi_request, CAPTURE_ATTR)


def test_a_disabled_guard_does_not_draw(books, guard, seeded):
    guard(SAMPLE_RATE=0.5)
    twin = seeded(5)
    guard(SAMPLE_RATE=0.5, ENABLED=False)
    _guarded_requests(3)
    assert sampling.source.random() == twin.random()


def test_guarded_runs_and_commands_are_sampled_too(books, guard, seeded, caplog):
    from tests.testapp.models import Book

    @guarded(label="job")
    def job() -> None:
        [book.author.name for book in Book.objects.all()]

    guard(SAMPLE_RATE=0.5, REPORT_INTERVAL=0, COMMANDS=["book_report"])
    twin = seeded(1)
    draws = [twin.random() < 0.5 for _ in range(12)]
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        for _ in range(6):
            job()
        for _ in range(6):
            call_command("book_report")
    labels = [vars(r)["label"] for r in guard_records(caplog)]
    assert labels.count("job") == sum(draws[:6])
    assert labels.count("book_report") == sum(draws[6:])


@pytest.mark.parametrize("value", [-0.1, 1.5, "0.5", True])
def test_a_bad_rate_is_e002(settings, value):
    from django_nplusone_guard.checks import check_settings

    settings.NPLUSONE_GUARD = {"SAMPLE_RATE": value}
    assert [m.id for m in check_settings()] == ["django_nplusone_guard.E002"]
