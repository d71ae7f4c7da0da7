"""The example project end to end, as `make demo` runs it, on the backend under test.

Runs in a subprocess (the example project has its own settings), against a database of its
own: a temporary SQLite file, or a uniquely named PostgreSQL / MariaDB database created and
dropped here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.settings import BACKEND

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"

#: Missing-index pages, their twins, and what the finding must name.
INDEX_PAGES = {
    "/authors/by-email/": ("/authors/by-slug/", "library.Author", ["email"]),
    "/books/recently-published/": ("/books/recently-added/", "library.Book", ["published"]),
    "/books/catalogue/": ("/loans/due/", "library.Book", ["language", "format"]),
}


def _server_database(name: str, action: str) -> None:
    if BACKEND == "postgres":
        import psycopg

        with psycopg.connect(
            host=os.environ.get("PGHOST", "127.0.0.1"),
            port=os.environ.get("PGPORT", "5432"),
            user=os.environ.get("PGUSER", "root"),
            dbname="postgres",
            autocommit=True,
        ) as connection:
            verb = "CREATE DATABASE" if action == "create" else "DROP DATABASE IF EXISTS"
            connection.execute(f'{verb} "{name}"')
    else:
        import MySQLdb

        connection = MySQLdb.connect(
            host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
            port=int(os.environ.get("MYSQL_PORT", "3306")),
            user=os.environ.get("MYSQL_USER", "root"),
            password=os.environ.get("MYSQL_PASSWORD", ""),
        )
        try:
            cursor = connection.cursor()
            if action == "create":
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            else:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            connection.close()


@pytest.fixture(scope="module")
def example_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
    env["DJANGO_SETTINGS_MODULE"] = "library_site.settings"
    if BACKEND == "sqlite":
        path = tmp_path_factory.mktemp("example") / "db.sqlite3"
        yield {**env, "EXAMPLE_DB": "sqlite", "EXAMPLE_SQLITE_PATH": str(path)}
        return
    name = f"nplusone_example_{uuid.uuid4().hex[:10]}"
    _server_database(name, "create")
    try:
        yield {**env, "EXAMPLE_DB": BACKEND, "EXAMPLE_DB_NAME": name}
    finally:
        _server_database(name, "drop")


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def demo(example_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return manage(example_env, "demo", "--size", "12")


@pytest.fixture(scope="module")
def audit(example_env: dict[str, str], demo: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert demo.returncode == 0, demo.stdout + demo.stderr
    result = manage(example_env, "nplusone_audit", "--all", "--explain", "--format", "json")
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_demo_audits_every_page_and_checks_each_twin(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    assert "Seeded 12 books" in out
    assert "manage.py nplusone_audit --all --explain" in out
    assert "GET /books/ (200)" in out
    assert "N+1 query on library.Book.author" in out
    assert "MISS" not in out
    assert (
        "All 23 problem pages have findings; their twins and the 2 quiet pages have none." in out
    )
    assert "make serve" in out


def test_demo_runs_a_command_and_a_job_beside_their_twins_after_the_pages(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    pages, beyond = out.split("4. Beyond the request: a command and a background job")
    assert "GET /books/ (200)" in pages
    commands, rest = beyond.split("5. Production mode: one page, exported")
    _production, summary = rest.split("6. Does every problem show up?")
    # Each one's findings as the guard logs them, under the command's or the job's label.
    assert "$ manage.py overdue_report\noverdue_report: N+1 query on library.Loan.book" in (
        commands
    )
    assert "at library/management/commands/overdue_report.py:" in commands
    assert 'Fix: .select_related("book")' in commands
    assert "$ manage.py overdue_report_fixed\n  no findings." in commands
    assert "$ tasks.author_digest()\nauthor_digest: N+1 query on library.Author.book_set" in (
        commands
    )
    assert 'Fix: .annotate(book_count=Count("book"))' in commands
    assert "$ tasks.author_digest_fixed()\n  no findings." in commands
    assert len(commands.splitlines()) < 40  # a screen for the four of them
    assert "ok   manage.py overdue_report " in summary
    assert "ok   tasks.author_digest() " in summary
    assert "The command and the job with an N+1 were reported; their twins were not." in summary
    assert "N+1 query" not in demo.stderr  # delivered once, in the demo's output


def test_demo_shows_one_page_as_a_json_log_line_and_a_span_event(demo):
    assert demo.returncode == 0, demo.stdout + demo.stderr
    shown = demo.stdout.split("Production mode: one page, exported", 1)[1]
    shown, summary = shown.split("6. Does every problem show up?")
    # The demo ends with its summary, as the README promises, not with the export.
    assert summary.rstrip().endswith("make serve    # then open http://127.0.0.1:8000/")
    log_text, span_text = shown.split("An OpenTelemetry span event on the span 'GET /books/':")
    log_line = json.loads(log_text[log_text.index("{") :])
    event = json.loads(span_text)
    assert log_line["kind"] == "nplusone-read"
    assert log_line["model"] == "library.Book"
    assert log_line["field"] == "author"
    assert log_line["count"] == 12
    assert event["name"] == "db.nplusone"
    assert event["attributes"]["nplusone.id"] == log_line["finding_id"]
    assert event["attributes"]["nplusone.relation"] == "library.Book.author"
    assert event["attributes"]["code.file.path"] == "library/views.py"


def test_every_fixed_twin_is_clean_and_every_problem_page_is_not(audit):
    pages = {page["url"]: page for page in audit["pages"]}
    assert all(page["status"] == 200 and page["error"] is None for page in pages.values())
    twins = [url for url in pages if url.endswith("/fixed/")]
    assert len(twins) == 20
    for twin in twins:
        problem = twin.removesuffix("fixed/")
        assert pages[problem]["report"]["nplusones"], problem
        report = pages[twin]["report"]
        assert not (report["nplusones"] or report["missing_indexes"] or report["duplicates"])
    for twin, _model, _fields in INDEX_PAGES.values():
        assert not pages[twin]["report"]["missing_indexes"], twin
    for quiet in ("/books/search/", "/books/in-print/"):  # icontains, a boolean alone
        report = pages[quiet]["report"]
        assert not (report["nplusones"] or report["missing_indexes"] or report["duplicates"])


def test_missing_index_pages_name_the_columns_and_the_index(audit):
    pages = {page["url"]: page for page in audit["pages"]}
    for url, (_twin, model, fields) in INDEX_PAGES.items():
        [finding] = pages[url]["report"]["missing_indexes"]
        assert finding["model"] == model
        assert finding["fields"] == fields
        assert f"models.Index(fields={json.dumps(fields)}" in finding["suggestion"]


def test_routes_with_arguments_it_cannot_fill_are_skipped_with_the_reason(audit):
    skipped = {route["pattern"]: route["reason"] for route in audit["skipped"]}
    assert skipped["books/<int:pk>/"] == (
        "needs URL argument(s): pk; book_detail is a function view: give its URL to nplusone_audit"
    )


def test_seed_size_must_be_positive(example_env):
    result = manage(example_env, "seed", "--size", "0")
    assert result.returncode == 2
    assert "--size must be at least 1" in result.stderr


PANEL_PROBE = """
import json
from django.test import Client
client = Client()
pages = {url: client.get(url).content.decode() for url in ("/books/", "/books/fixed/")}
print(json.dumps(pages))
"""


def test_toolbar_shows_the_guard_panel_on_the_example_pages(example_env, demo):
    result = manage(example_env, "shell", "--no-imports", "-c", PANEL_PROBE)
    assert result.returncode == 0, result.stderr
    pages = json.loads(result.stdout.strip().splitlines()[-1])
    for html in pages.values():
        assert 'class="NPlusOnePanel"' in html  # the toolbar is on, with the guard's panel
    assert "<small>1 N+1</small>" in pages["/books/"]
    assert "N+1</small>" not in pages["/books/fixed/"]


def test_docs_samples_are_the_example_projects_real_output(audit):
    """The docs quote `nplusone_audit` on the example project; they must stay true."""
    pages = {page["url"]: page for page in audit["pages"]}
    [books] = pages["/books/"]["report"]["nplusones"]
    [catalogue] = pages["/books/catalogue/"]["report"]["missing_indexes"]
    docs = EXAMPLE.parent / "docs"
    for name in ("index.md", "quickstart.md", "audit.md"):
        text = (docs / name).read_text()
        assert f"at {books['callsite']}" in text, name
        assert f"Fix: {books['suggestion']}" in text, name
    index = (docs / "index.md").read_text()
    assert f"at {catalogue['callsite']}" in index
    assert f"Fix: {catalogue['suggestion']}" in index
