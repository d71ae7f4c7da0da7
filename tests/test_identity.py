"""Stable finding ids: one root cause, one id, across runs, machines and moved lines."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from django_nplusone_guard import capture
from django_nplusone_guard.identity import finding_id, id_parts, portable_path
from django_nplusone_guard.report import (
    Duplicate,
    MissingIndex,
    NPlusOne,
    Report,
    format_finding,
)
from tests.testapp.models import Book

ROOT = Path(__file__).resolve().parent.parent


def _nplusone(**overrides: object) -> NPlusOne:
    values: dict[str, object] = {
        "kind": "read",
        "model": "library.Book",
        "field": "author",
        "count": 5,
        "fingerprint": "fp",
        "sql": 'SELECT "library_author"."id" FROM "library_author" WHERE "id" = %s',
        "callsite": "library/views.py:30 in book_list",
    }
    values.update(overrides)
    return NPlusOne(**values)  # type: ignore[arg-type]


def test_an_id_is_sixteen_hex_digits_and_what_it_is_made_of_is_named():
    finding = _nplusone()
    assert re.fullmatch(r"[0-9a-f]{16}", finding.id)
    assert id_parts(finding) == {
        "rule": "nplusone-read",
        "subject": "library.Book.author",
        "shape": id_parts(_nplusone(sql=finding.sql))["shape"],
        "file": "library/views.py",
        "function": "book_list",
    }


@pytest.mark.parametrize(
    "change",
    [
        {"callsite": "library/views.py:94 in book_list"},  # a comment added above the loop
        {"count": 5000, "total_time_ms": 812.5},  # the customer with more rows
        {"stack": ["library/views.py:30 in book_list", "library/urls.py:3 in dispatch"]},
        {"parent_callsite": "library/views.py:12 in book_list", "alias": "replica"},
        # The same statement from MySQL: backticks instead of double quotes.
        {"sql": "SELECT `library_author`.`id` FROM `library_author` WHERE `id` = %s"},
        # Python 3.12 inlines comprehensions: the frame of a 3.11 run is folded away.
        {"callsite": "library/views.py:30 in book_list.<locals>.<listcomp>"},
    ],
)
def test_what_does_not_change_the_root_cause_does_not_change_the_id(change):
    assert _nplusone(**change).id == _nplusone().id


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "write"},
        {"field": "publisher"},
        {"model": "library.Review"},
        {"callsite": "library/views.py:30 in book_detail"},
        {"callsite": "library/api.py:30 in book_list"},
        {"sql": 'SELECT "library_author"."name" FROM "library_author" WHERE "id" = %s'},
    ],
)
def test_another_root_cause_has_another_id(change):
    assert _nplusone(**change).id != _nplusone().id


def test_each_kind_of_finding_has_its_own_rule():
    duplicate = Duplicate(
        model="library.Book",
        count=2,
        fingerprint="fp",
        sql=_nplusone().sql,
        callsites=["library/views.py:30 in book_list"],
    )
    index = MissingIndex(
        model="library.Book",
        table="library_book",
        columns=("isbn",),
        fields=("isbn",),
        reason="full scan",
        plan="SCAN library_book",
        sql=_nplusone().sql,
        callsite="library/views.py:30 in book_list",
    )
    other_columns = dataclasses.replace(index, columns=("title",))
    rules = [id_parts(f)["rule"] for f in (_nplusone(), duplicate, index)]
    assert rules == ["nplusone-read", "duplicate", "missing-index"]
    assert id_parts(_nplusone(kind="unused_eager"))["rule"] == "nplusone-unused-eager"
    assert len({_nplusone().id, duplicate.id, index.id, other_columns.id}) == 4
    assert id_parts(index)["subject"] == "library.Book(isbn)"


def test_the_id_survives_json_and_is_in_the_text(db):
    finding = _nplusone()
    data = json.loads(json.dumps(Report(nplusones=[finding]).to_dict()))
    assert data["nplusones"][0]["id"] == finding.id
    assert Report.from_dict(data).nplusones[0].id == finding.id
    assert format_finding(finding).endswith(f"\n  id: {finding.id}")
    assert format_finding(finding, verbose=False).endswith(f"\n  id: {finding.id}")


def _loop() -> None:
    for book in Book.objects.order_by("pk"):
        _ = book.author.name


def test_two_runs_of_one_loop_share_an_id(books):
    with capture() as first:
        _loop()
    with capture() as second:
        _loop()
    [a], [b] = first.nplusones, second.nplusones
    assert a.id == b.id
    assert id_parts(a)["file"] == "tests/test_identity.py"
    assert id_parts(a)["function"] == "_loop"


def test_paths_are_relative_to_the_project_wherever_it_was_checked_out(
    settings, tmp_path, monkeypatch
):
    checkout = tmp_path / "srv" / "app"
    settings.BASE_DIR = checkout
    # Rendered relative to another working directory, or absolute: the same file.
    monkeypatch.chdir(tmp_path)
    assert portable_path("srv/app/library/views.py") == "library/views.py"
    assert portable_path(str(checkout / "library" / "views.py")) == "library/views.py"
    # A package installed in a virtualenv inside the project: from its package directory,
    # so neither the venv's name nor the Python version goes into the id.
    venv_file = checkout / ".venv/lib/python3.12/site-packages/rest_framework/generics.py"
    assert portable_path(str(venv_file)) == "rest_framework/generics.py"
    assert portable_path("/usr/lib/python3/dist-packages/django/db/x.py") == "django/db/x.py"
    assert portable_path("<console>") == "<console>"
    assert portable_path("unknown") == "unknown"


def test_without_base_dir_the_working_directory_is_the_root(settings, tmp_path, monkeypatch):
    del settings.BASE_DIR
    monkeypatch.chdir(tmp_path)
    assert portable_path(str(tmp_path / "shop" / "views.py")) == "shop/views.py"


def test_the_same_id_in_another_process_and_working_directory(books, tmp_path):
    """Restarts and machines: a fresh interpreter, another working directory and absolute
    paths in the call site still give the id computed here (no per-process salt)."""
    finding = _nplusone(callsite=f"{ROOT}/library/views.py:30 in book_list")
    fields = {k: v for k, v in _nplusone().to_dict().items() if k not in ("category", "id")}
    program = (
        "import django, json, os; django.setup()\n"
        "from django.conf import settings\n"
        "settings.BASE_DIR = os.environ['ROOT']\n"
        "from django_nplusone_guard.report import NPlusOne\n"
        "print(NPlusOne(**json.loads(os.environ['FINDING'])).id)\n"
    )
    env = {**os.environ, "ROOT": str(ROOT), "PYTHONPATH": str(ROOT), "FINDING": json.dumps(fields)}
    env.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    out = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == _nplusone().id
    # An absolute call site under the project: the same id as the relative one.
    with pytest.MonkeyPatch.context() as patch:
        from django.conf import settings

        patch.setattr(settings, "BASE_DIR", ROOT, raising=False)
        assert finding_id(finding) == _nplusone().id
