"""Settings that change what capture() records and reports."""

from __future__ import annotations

import pytest

from django_nplusone_guard import capture
from tests.testapp.lookups import author_name
from tests.testapp.models import Book

pytestmark = pytest.mark.django_db


def test_stack_ignore_moves_the_callsite_to_the_caller(books, settings):
    with capture() as report:
        for book in books:
            author_name(book.author_id)
    assert report.nplusones[0].callsite.startswith("tests/testapp/lookups.py:")

    settings.NPLUSONE_GUARD = {"STACK_IGNORE": ["tests.testapp.lookups"]}
    with capture() as report:
        for book in books:
            author_name(book.author_id)  # caller-line
    [finding] = report.nplusones
    assert finding.callsite.startswith("tests/test_settings_effects.py:")
    assert finding.callsite.endswith("in test_stack_ignore_moves_the_callsite_to_the_caller")
    assert all("lookups.py" not in frame for frame in finding.stack)


def test_frame_kinds_survive_a_settings_change_that_does_not_touch_them(books, settings):
    # Switching ENABLED (or THRESHOLD...) per test must not make the next capture classify
    # every frame again; changing STACK_IGNORE must, since it changes what user code is.
    import importlib

    recorder = importlib.import_module("django_nplusone_guard.capture")
    with capture():
        list(Book.objects.all())
    code = test_frame_kinds_survive_a_settings_change_that_does_not_touch_them.__code__
    assert id(code) in recorder._frame_kinds
    settings.NPLUSONE_GUARD = {"ENABLED": True, "THRESHOLD": 7}
    assert id(code) in recorder._frame_kinds, "cleared by a change that leaves kinds alone"
    settings.NPLUSONE_GUARD = {"STACK_IGNORE": ["tests.testapp.lookups"]}
    assert id(code) not in recorder._frame_kinds, "STACK_IGNORE changed, kinds kept"


def test_threshold_setting_is_the_default(books, settings):
    settings.NPLUSONE_GUARD = {"THRESHOLD": 10}
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author
    assert report.nplusones == []
    with capture(threshold=2) as report:
        for book in Book.objects.all():
            _ = book.author
    assert len(report.nplusones) == 1


def test_max_queries_setting_bounds_kept_samples(books, settings):
    settings.NPLUSONE_GUARD = {"MAX_QUERIES": 3}
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author
    assert len(report.queries) == 3
    assert report.query_count == 6
    assert report.nplusones[0].count == 5


def test_allow_setting_applies_to_every_capture(books, settings):
    settings.NPLUSONE_GUARD = {"ALLOW": [{"callsite": "tests/test_settings_effects.py:*"}]}
    with capture() as report:
        for book in Book.objects.all():
            _ = book.author
    assert report.nplusones == []
