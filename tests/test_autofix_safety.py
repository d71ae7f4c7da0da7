"""What ``nplusone_audit --fix`` refuses: production-looking settings, files that are not the
project's, files with uncommitted changes; and how the proof judges an edit."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections

from django_nplusone_guard.autofix import plan, proof, safety

pytestmark = pytest.mark.django_db(databases=["default", "other"])


def audit(*args: str) -> str:
    out = io.StringIO()
    call_command("nplusone_audit", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("flag", ["--apply", "--force", "--i-know"])
def test_fix_options_need_fix(flag):
    with pytest.raises(CommandError, match=f"{flag} needs --fix") as error:
        audit("/books/", flag)
    assert error.value.returncode == 2


def test_fix_tests_need_apply():
    with pytest.raises(CommandError, match="--fix-tests needs --apply"):
        audit("/books/", "--fix", "--fix-tests", "tests")


def test_fix_writes_text_only():
    with pytest.raises(CommandError, match="--format text"):
        audit("/books/", "--fix", "--format", "json")


@pytest.fixture
def remote_database(monkeypatch, settings):
    settings.DEBUG = False
    database = connections.databases["default"]
    monkeypatch.setitem(database, "ENGINE", "django.db.backends.postgresql")
    monkeypatch.setitem(database, "HOST", "db.internal.example")


def test_fix_refuses_debug_off_with_a_remote_database(remote_database):
    with pytest.raises(CommandError, match="looks like production") as error:
        safety.refuse_remote_production(i_know=False)
    assert "default" in str(error.value)
    assert "--i-know" in str(error.value)
    safety.refuse_remote_production(i_know=True)  # told so: goes ahead


def test_a_local_server_or_debug_on_is_not_production(monkeypatch, settings):
    settings.DEBUG = False
    database = connections.databases["default"]
    monkeypatch.setitem(database, "ENGINE", "django.db.backends.postgresql")
    monkeypatch.setitem(database, "HOST", "127.0.0.1")
    safety.refuse_remote_production(i_know=False)
    monkeypatch.setitem(database, "HOST", "db.internal.example")
    settings.DEBUG = True
    safety.refuse_remote_production(i_know=False)


# --------------------------------------------------------------------------- files


def test_only_project_files_are_editable(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "app" / "migrations").mkdir(parents=True)
    (tmp_path / ".venv" / "lib" / "site-packages" / "lib").mkdir(parents=True)
    views = tmp_path / "app" / "views.py"
    migration = tmp_path / "app" / "migrations" / "0001_initial.py"
    installed = tmp_path / ".venv" / "lib" / "site-packages" / "lib" / "views.py"
    for path in (views, migration, installed):
        path.write_text("x = 1\n")
    outside = tmp_path.parent / "elsewhere.py"
    outside.write_text("x = 1\n")
    assert safety.not_editable(views) is None
    assert "is a migration" in (safety.not_editable(migration) or "")
    assert "installed package" in (safety.not_editable(installed) or "")
    assert "outside the project" in (safety.not_editable(outside) or "")
    assert "does not exist" in (safety.not_editable(tmp_path / "gone.py") or "")


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_files_with_uncommitted_changes_are_noticed(tmp_path):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    views = tmp_path / "views.py"
    views.write_text("x = 1\n")
    assert not safety.uncommitted(views)  # not in a repository: nothing to lose track of
    git("init", "-q")
    assert safety.uncommitted(views)  # untracked
    git("add", "views.py")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "views")
    assert not safety.uncommitted(views)
    views.write_text("x = 2\n")
    assert safety.uncommitted(views)


# --------------------------------------------------------------------------- the proof

KEY = ("nplusone", "read", "library.Book", "author")


def page(url="/books/", **changes):
    values = {
        "url": url,
        "status": 200,
        "error": None,
        "body_length": 5000,
        "query_count": 13,
        "findings": {KEY: "N+1 query on library.Book.author"},
        **changes,
    }
    return proof.PageMeasure(**values)


def edit():
    ref = plan.FindingRef("/books/", KEY, "N+1 query on library.Book.author")
    code = '.select_related("author")'
    return plan.Edit("queryset", Path("views.py"), 3, "books", [code], [ref])


BEFORE = proof.Measurement({"/books/": page()})


@pytest.mark.parametrize(
    ("after", "why"),
    [
        (page(query_count=1, findings={}), None),
        (page(query_count=1, body_length=4800, findings={}), None),  # within 10%
        (page(query_count=12), "the finding stayed"),
        (page(query_count=14, findings={}), "ran more queries (13 -> 14)"),
        (page(status=500, findings={}), "status changed from 200 to 500"),
        (page(error="FieldError: no", findings={}), "raised FieldError"),
        (page(query_count=1, body_length=900, findings={}), "changed size (5000 -> 900"),
        (
            page(query_count=2, findings={("nplusone", "read", "library.Author", "profile"): "N"}),
            "a new finding appeared",
        ),
    ],
)
def test_an_edit_is_kept_only_when_its_page_is_better_and_nothing_else_changed(after, why):
    verdict = proof.judge(edit(), BEFORE, proof.Measurement({"/books/": after}))
    if why is None:
        assert verdict is None
    else:
        assert verdict is not None and why in verdict
