"""``nplusone_audit --fix`` end to end, on a copy of the example project made in a temporary
directory: the diff, the edits written and proven, the ones reverted, the files left alone.

The copy runs in subprocesses (it has its own settings), always on SQLite: the proof of an
index creates it inside a rolled-back transaction, which SQLite and PostgreSQL can do.
"""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "example_project"

#: Problem pages whose fix the audit writes, and the twin whose query count it must reach.
FIXED = {
    "/books/": "/books/fixed/",
    "/profiles/": "/profiles/fixed/",
    "/authors/profiles/": "/authors/profiles/fixed/",
    "/authors/books/": "/authors/books/fixed/",
    "/books/tags/": "/books/tags/fixed/",
    "/tags/": "/tags/fixed/",
    "/reviews/": "/reviews/fixed/",
    "/books/author-bios/": "/books/author-bios/fixed/",
    "/comments/": "/comments/fixed/",
    "/books/comments/": "/books/comments/fixed/",
    "/books/isbns/": "/books/isbns/fixed/",
    "/api/books/": "/api/books/fixed/",
    "/publishers/counts/": "/publishers/counts/fixed/",
    "/authors/pages/": "/authors/pages/fixed/",
}
#: Missing-index pages: the index goes into Meta.indexes and a migration is made.
INDEXED = ["/authors/by-email/", "/books/recently-published/", "/books/catalogue/"]
#: Pages whose fix is not an edit the audit makes, with a word of the reason it gives.
BY_HAND = {
    "/authors/reviewed/": "only a person can fill in",
    "/books/top-reviews/": "only a person can fill in",
    "/books/authors-by-id/": "a lookup per row",
    "/async/books/": "a lookup per row",
    "/books/views/": "a loop of writes",
    "/publishers/prices/": "raw SQL",
}

#: A page whose suggested fix cannot help: ``first()`` on a related manager queries again
#: even when the relation is prefetched, so ``.prefetch_related("tags")`` only adds a query.
FIRST_TAGS_VIEW = """

def first_tags(request: HttpRequest) -> HttpResponse:
    books = _newest_books()[:PAGE_SIZE]
    rows = [{"name": b.title, "value": b.tags.first()} for b in books]
    return render(request, "library/table.html", {"title": "First tag", "rows": rows})
"""


#: The pages the runs request: every problem page (not the twins, which have nothing to fix).
PAGES = [*FIXED, *INDEXED, *BY_HAND, "/books/first-tags/"]


def _environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
    env.update(
        DJANGO_SETTINGS_MODULE="library_site.settings",
        EXAMPLE_DB="sqlite",
        EXAMPLE_SQLITE_PATH=str(root / "db.sqlite3"),
    )
    return env


def manage(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=root,
        env=_environment(root),
        capture_output=True,
        text=True,
        timeout=900,
    )


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def measure(root: Path, urls: list[str]) -> dict[str, dict[str, Any]]:
    """Each page requested twice in one fresh process (as ``--fix`` measures), the second
    time counted: caches such as ContentType's are warm for a page and its twin alike."""
    request = {
        "urls": urls + urls,
        "options": {"user": None, "explain": True, "threshold": None, "rollback": True},
    }
    done = subprocess.run(
        [sys.executable, "-m", "django_nplusone_guard.autofix.probe"],
        input=json.dumps(request),
        cwd=root,
        env={**_environment(root), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("NPLUSONE_GUARD_PROBE "))
    pages = json.loads(line.partition(" ")[2])["pages"]
    return {page["url"]: page for page in pages}  # the last of each URL


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fix") / "example_project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    with (root / "library" / "views.py").open("a") as views:
        views.write(FIRST_TAGS_VIEW)
    with (root / "library" / "urls.py").open("a") as urls:
        urls.write('urlpatterns.append(path("books/first-tags/", views.first_tags))\n')
    for args in (("migrate", "-v0"), ("seed", "--size", "12")):
        result = manage(root, *args)
        assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def original(project: Path) -> dict[str, bytes]:
    return snapshot(project)


@pytest.fixture(scope="module")
def dry_run(project: Path, original: dict[str, bytes]) -> subprocess.CompletedProcess[str]:
    return manage(project, "nplusone_audit", *PAGES, "--explain", "--fix", "-v0")


@pytest.fixture(scope="module")
def applied(
    project: Path, dry_run: subprocess.CompletedProcess[str]
) -> subprocess.CompletedProcess[str]:
    result = manage(project, "nplusone_audit", *PAGES, "--explain", "--fix", "--apply", "-v0")
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def migrated(project: Path, applied: subprocess.CompletedProcess[str]) -> None:
    """The new index migration applied, as the developer would after ``--fix --apply``."""
    result = manage(project, "migrate", "-v0")
    assert result.returncode == 0, result.stderr


def _summary(output: str) -> str:
    return output[output.index("Fix summary") :]


def test_fix_without_apply_prints_the_diff_and_writes_nothing(project, original, dry_run):
    assert dry_run.returncode == 0, dry_run.stderr
    assert snapshot(project) == original
    out = dry_run.stdout
    assert "Fixes (not written)\n--- a/library/api.py\n+++ b/library/api.py" in out
    assert "\n--- a/library/views.py\n+++ b/library/views.py\n" in out
    assert '+    books = _newest_books().select_related("author")[:PAGE_SIZE]' in out
    assert "Nothing was written: add --apply" in out
    line = '+    books = _newest_books().prefetch_related("tags")[:PAGE_SIZE]\n'
    assert out.count(line) == 2  # /books/tags/ and the planted /books/first-tags/
    assert "      then: manage.py makemigrations library" in out
    assert "  would edit          library/views.py:37 in book_list" in out


def test_each_fixable_page_is_fixed_and_reaches_its_twin(project, applied, migrated):
    summary = _summary(applied.stdout)
    pages = measure(project, [*FIXED, *FIXED.values(), *INDEXED])
    for url, twin in FIXED.items():
        assert f"      {url}  N+1 query on" in summary, url
        report = pages[url]
        assert not report["findings"], (url, report["findings"])
        assert report["query_count"] == pages[twin]["query_count"], url
    for url in INDEXED:
        assert not pages[url]["findings"], url
    assert summary.count("fixed and verified  ") == len(FIXED) + len(INDEXED)


def test_the_summary_table_has_queries_before_and_after(applied):
    table = applied.stdout[applied.stdout.index("Queries per page") :]
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:] if "/" in line}
    assert rows["/books/"] == ["13", "1"]
    assert rows["/reviews/"] == ["31", "1"]
    assert rows["/api/books/"] == ["25", "2"]
    assert rows["/books/first-tags/"] == ["13", "13"]  # reverted: as before


def test_an_edit_that_does_not_help_is_reverted_with_the_reason(
    project, original, dry_run, applied
):
    summary = _summary(applied.stdout)
    assert 'reverted            library/views.py:431 in first_tags: .prefetch_related("tags")' in (
        summary
    )
    assert "why: /books/first-tags/: the page ran more queries (13 -> 14)" in summary
    # The diff of what was written has book_tags' line once; the dry run had it twice.
    line = '+    books = _newest_books().prefetch_related("tags")[:PAGE_SIZE]\n'
    written = applied.stdout[applied.stdout.index("Fixes written") : applied.stdout.index(summary)]
    assert written.count(line) == 1
    views = (project / "library" / "views.py").read_text()
    assert "    books = _newest_books()[:PAGE_SIZE]\n    rows = [{" in views


def test_findings_the_audit_does_not_edit_are_listed_by_hand(applied):
    summary = _summary(applied.stdout)
    for url, why in BY_HAND.items():
        at = summary.index(f"by hand             {url}  ")
        assert why in summary[at : summary.index("\n", summary.index("why:", at))], url


def test_the_edits_touch_only_the_changed_expressions(project, original, applied):
    now = snapshot(project)
    changed = {name for name in now if now[name] != original.get(name)}
    assert changed == {
        "library/views.py",
        "library/api.py",
        "library/models.py",
        "library/migrations/0002_author_author_email_idx_book_book_published_idx_and_more.py",
    }
    removed: list[str] = []
    for name in ("library/views.py", "library/api.py", "library/models.py"):
        before = original[name].decode().splitlines()
        after = now[name].decode().splitlines()
        removed += [
            line[1:]
            for line in difflib.unified_diff(before, after, lineterm="", n=0)
            if line.startswith("-") and not line.startswith("---")
        ]
    # Each removed line is a queryset expression that came back with the fix; comments,
    # blank lines and everything else are as they were.
    # One line each (/reviews/ and /api/books/ fix two findings on theirs), and for the
    # annotations the line reading the count per row too.
    assert len(removed) == len(FIXED) + 1, removed
    assert sum("objects" in line or "_newest_books()" in line for line in removed) == len(FIXED), (
        removed
    )
    assert '        {"name": p.name, "value": p.book_count} for p in Publisher.objects' in (
        now["library/views.py"].decode()
    )
    assert '        {"name": a.name, "value": a.total or 0}' in now["library/views.py"].decode()
    models = now["library/models.py"].decode()
    assert 'models.Index(fields=["email"], name="author_email_idx")' in models
    assert "# looked up by the sign-in page; no index" in models


def test_the_index_migration_is_made(project, applied):
    assert "makemigrations library: Migrations for 'library'" in applied.stdout
    migration = next((project / "library" / "migrations").glob("0002_*.py")).read_text()
    assert "author_email_idx" in migration
    assert "book_language_format_idx" in migration
    result = manage(project, "makemigrations", "--check", "--dry-run", "library")
    assert result.returncode == 0, result.stdout


def test_a_second_run_finds_nothing_more_to_fix(project, applied, migrated):
    again = manage(project, "nplusone_audit", *PAGES, "--explain", "--fix", "-v0")
    assert again.returncode == 0, again.stderr
    summary = _summary(again.stdout)
    assert "would edit" not in summary.replace("would edit          library/views.py:431", "")
    assert "fixed and verified" not in summary


# --------------------------------------------------------------------------- class-based

ADMIN = '''"""The library's admin."""

from django.contrib import admin

from library.models import Book, Review


@admin.register(Review)
class ReviewAdmin(admin.ModelAdmin):
    list_display = ["reviewer", "book_title"]  # the book of each review

    @admin.display(description="book")
    def book_title(self, obj: Review) -> str:
        return obj.book.title


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "tag_names"]

    @admin.display(description="tags")
    def tag_names(self, obj: Book) -> str:
        return ", ".join(tag.name for tag in obj.tags.all())
'''

GENERIC = '''"""Class-based views: a DRF view with a queryset attribute, a generic ListView."""

from django.urls import path
from django.views.generic import ListView
from rest_framework import generics

from library.api import BookSerializer
from library.models import Book, Review


class BookAPI(generics.ListAPIView):
    serializer_class = BookSerializer
    queryset = Book.objects.order_by("-added")  # newest first


class ReviewListView(ListView):
    model = Review
    template_name = "library/review_list.html"
    context_object_name = "reviews"


urlpatterns = [
    path("api/books/", BookAPI.as_view()),
    path("reviews/", ReviewListView.as_view()),
]
'''

CLASS_PAGES = ["/admin/library/review/", "/admin/library/book/", "/views/api/books/",
               "/views/reviews/"]  # fmt: skip


@pytest.fixture(scope="module")
def classes_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example project with the admin on, two ``ModelAdmin``s, a DRF view whose
    ``queryset`` is a class attribute and a ``ListView`` that names only its ``model``."""
    root = tmp_path_factory.mktemp("fix-classes") / "example_project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    settings_py = root / "library_site" / "settings.py"
    settings_py.write_text(
        settings_py.read_text().replace(
            "INSTALLED_APPS = [\n", 'INSTALLED_APPS = [\n    "django.contrib.admin",\n', 1
        )
    )
    urls_py = root / "library_site" / "urls.py"
    urls_py.write_text(
        "from django.contrib import admin\n"
        + urls_py.read_text().replace(
            "urlpatterns = [\n",
            'urlpatterns = [\n    path("admin/", admin.site.urls),\n'
            '    path("views/", include("library.generic")),\n',
        )
    )
    (root / "library" / "admin.py").write_text(ADMIN)
    (root / "library" / "generic.py").write_text(GENERIC)
    for args in (("migrate", "-v0"), ("seed", "--size", "12")):
        result = manage(root, *args)
        assert result.returncode == 0, result.stderr
    result = subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "admin",
         "--email", "admin@example.com"],
        cwd=root,
        env={**_environment(root), "DJANGO_SUPERUSER_PASSWORD": "not-secret"},
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return root


@pytest.fixture(scope="module")
def classes_applied(classes_project: Path) -> subprocess.CompletedProcess[str]:
    result = manage(
        classes_project, "nplusone_audit", "--user", "admin", *CLASS_PAGES, "--fix", "--apply"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_admin_and_generic_views_are_fixed_in_their_class(classes_project, classes_applied):
    summary = _summary(classes_applied.stdout)
    assert summary.count("fixed and verified  ") == 4, summary
    assert "reverted   " not in summary
    admin_py = (classes_project / "library" / "admin.py").read_text()
    assert changed_lines(ADMIN, admin_py) == [
        '    list_select_related = ["book"]',
        "",
        "    def get_queryset(self, request):",
        '        return super().get_queryset(request).prefetch_related("tags")',
    ]
    assert admin_py.index("list_select_related") > admin_py.index("list_display")
    generic_py = (classes_project / "library" / "generic.py").read_text()
    assert changed_lines(GENERIC, generic_py) == [
        '    queryset = Book.objects.order_by("-added").select_related("author")'
        '.prefetch_related("tags")  # newest first',
        '    queryset = Review.objects.select_related("book__author")',
    ]


def test_class_based_pages_lose_their_nplusones(classes_project, classes_applied):
    result = manage(classes_project, "nplusone_audit", "--user", "admin", *CLASS_PAGES,
                    "--format", "json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for page in json.loads(result.stdout)["pages"]:
        assert page["status"] == 200, page["url"]
        assert not page["report"]["nplusones"], page["url"]


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line[1:]
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line.startswith("+") and not line.startswith("+++")
    ]


# --------------------------------------------------------------------------- --fix-tests

PINNED_TEST = """import pytest

from library.factories import BookFactory


@pytest.mark.django_db
def test_the_book_list_runs_one_query_per_book(client, django_assert_num_queries, settings):
    settings.NPLUSONE_GUARD = {"ENABLED": False}  # its EXPLAINs would count
    BookFactory.create_batch(3)
    with django_assert_num_queries(4):  # pinned by someone, long ago
        client.get("/books/")
"""


def test_edits_that_break_the_given_tests_are_reverted(tmp_path):
    root = tmp_path / "example_project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    (root / "test_pinned.py").write_text(PINNED_TEST)
    for args in (("migrate", "-v0"), ("seed", "--size", "6")):
        assert manage(root, *args).returncode == 0
    views = (root / "library" / "views.py").read_bytes()
    result = manage(
        root, "nplusone_audit", "/books/", "--fix", "--apply",
        "--fix-tests", "test_pinned.py -q -p no:cacheprovider",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _summary(result.stdout)
    assert "reverted            library/views.py:37 in book_list" in summary
    assert "why: --fix-tests failed: 1 failed" in summary
    assert (root / "library" / "views.py").read_bytes() == views
