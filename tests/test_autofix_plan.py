"""``--fix`` planning, and a dry run on files of a temporary project: which findings become
which edit, which are left by hand and why, and which files are never written."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management.base import OutputWrapper
from django.core.management.color import no_style

from django_nplusone_guard import Report
from django_nplusone_guard.autofix import session
from django_nplusone_guard.autofix.plan import Edit, FindingRef, plan_edits
from django_nplusone_guard.management.commands.nplusone_audit import PageResult
from django_nplusone_guard.report import Duplicate, MissingIndex, NPlusOne


def nplusone(**fields) -> NPlusOne:
    values = {
        "kind": "read",
        "model": "library.Book",
        "field": "author",
        "count": 12,
        "fingerprint": "f",
        "sql": "SELECT ...",
        "callsite": "library/views.py:8 in books",
        "suggestion": '.select_related("author")',
        "fix_at": "library/views.py:7 in books",
        **fields,
    }
    return NPlusOne(**values)


def test_findings_on_one_expression_share_one_edit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    edits, by_hand = plan_edits(
        [
            ("/a/", [nplusone(), nplusone(field="tags", suggestion='.prefetch_related("tags")')]),
            ("/b/", [nplusone(suggestion='.select_related("author__profile")', field="profile")]),
        ]
    )
    assert not by_hand
    [edit] = edits
    assert (edit.kind, edit.path, edit.line) == ("queryset", tmp_path / "library/views.py", 7)
    assert edit.codes == [
        '.select_related("author")',
        '.select_related("author__profile")',
        '.prefetch_related("tags")',
    ]
    assert edit.urls == ["/a/", "/b/"]


def test_the_admin_the_generic_view_and_the_index_get_their_own_kinds():
    edits, by_hand = plan_edits(
        [
            (
                "/admin/",
                [
                    nplusone(
                        suggestion='list_select_related = ["book"]',
                        fix_at="library/admin.py:8 in ReviewAdmin",
                    ),
                    nplusone(
                        field="tags",
                        suggestion="def get_queryset(self, request): return super()"
                        '.get_queryset(request).prefetch_related("tags")',
                        fix_at="library/admin.py:17 in BookAdmin.list_select_related",
                    ),
                    nplusone(fix_at="library/generic.py:17 in ReviewListView.model"),
                ],
            ),
            (
                "/find/",
                [
                    MissingIndex(
                        model="library.Author",
                        table="library_author",
                        columns=("email",),
                        fields=("email",),
                        reason="full scan",
                        plan="SCAN",
                        sql="SELECT",
                        callsite="library/views.py:3 in find",
                        suggestion="add to library.Author Meta.indexes (library/models.py): "
                        'models.Index(fields=["email"], name="author_email_idx")',
                    )
                ],
            ),
        ]
    )
    assert not by_hand
    kinds = {edit.kind: edit for edit in edits}
    assert kinds["admin_list"].qualname == "ReviewAdmin"
    assert kinds["admin_prefetch"].qualname == "BookAdmin"
    assert kinds["admin_prefetch"].codes == ['.prefetch_related("tags")']
    assert kinds["view_model"].qualname == "ReviewListView"
    index = kinds["index"]
    assert (index.qualname, index.model_label, index.index_name) == (
        "Author",
        "library.Author",
        "author_email_idx",
    )
    assert index.where == "library/models.py in Author.Meta.indexes"


def test_an_annotation_carries_the_per_row_read_to_rewrite():
    [edit], _ = plan_edits(
        [
            (
                "/counts/",
                [
                    nplusone(
                        field="book_set",
                        suggestion='.annotate(book_count=Count("book"))',
                        callsite="library/views.py:9 in counts.<locals>.<listcomp>",
                    )
                ],
            )
        ]
    )
    assert edit.reads == [(9, "book_set", '.annotate(book_count=Count("book"))')]


@pytest.mark.parametrize(
    ("finding", "why"),
    [
        (nplusone(kind="write", suggestion="Book.objects.bulk_update(objs, ['views'])"),
         "a loop of writes"),
        (nplusone(suggestion="Author.objects.in_bulk(ids)"), "a lookup per row"),
        (nplusone(suggestion="batch it: ... WHERE publisher_id IN (%s, %s, ...)"), "raw SQL"),
        (nplusone(suggestion='.prefetch_related(Prefetch("reviews", queryset=Review.objects'
                             '.filter(...), to_attr="filtered_reviews"))'),
         "only a person can fill in"),
        (nplusone(fix_at=None), "no fix_at"),
        (nplusone(suggestion='.annotate(book_count=Count("book"))',
                  callsite="library/templatetags/counts.py:4 in count"),
         "not in the file that builds the queryset"),
        (Duplicate(model="library.Book", count=2, fingerprint="f", sql="SELECT",
                   callsites=["library/views.py:3 in a"]),
         "a repeated query, not a loop"),
        (MissingIndex(model="auth.User", table="auth_user", columns=("email",),
                      fields=("email",), reason="full scan", plan="", sql="", callsite="",
                      suggestion="auth.User is not your model (it comes from django.contrib"
                                 ".auth): add the index from a migration"),
         "cannot go in a model's Meta.indexes"),
    ],
)  # fmt: skip
def test_findings_without_an_edit_say_why(finding, why):
    edits, [item] = plan_edits([("/p/", [finding])])
    assert not edits
    assert why in item.reason


# --------------------------------------------------------------------------- a dry run

VIEWS = """from library.models import Book


def books(request):
    # newest first
    books = Book.objects.order_by("-added")[:20]
    return render(request, "books.html", {"books": books})
"""


def dry_run(tmp_path: Path, **options) -> str:
    views = tmp_path / "library" / "views.py"
    text = views.read_bytes()
    report = Report(nplusones=[nplusone(fix_at="library/views.py:7 in books")], query_count=13)
    buffer = io.StringIO()
    results = [PageResult("/books/", report, 200)]
    session.run(results, options, OutputWrapper(buffer), no_style())
    assert views.read_bytes() == text  # a dry run writes nothing
    return buffer.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "views.py").write_text(VIEWS)
    return tmp_path


def test_a_dry_run_prints_the_diff_of_the_changed_expression_only(project):
    out = dry_run(project)
    assert out.count("\n-") == 2  # the --- header, and the one line
    assert '-    books = Book.objects.order_by("-added")[:20]\n' in out
    assert '+    books = Book.objects.order_by("-added").select_related("author")[:20]\n' in out
    assert "would edit          library/views.py:7 in books" in out


def test_a_file_that_does_not_parse_is_left_alone(project):
    (project / "library" / "views.py").write_text(VIEWS.replace("[:20]", "[:20"))
    out = dry_run(project)
    assert "Nothing to edit." in out
    assert "why: the file does not parse" in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_file_with_uncommitted_changes_needs_force(project):
    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)

    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "views")
    views = project / "library" / "views.py"
    views.write_text(VIEWS.replace("# newest first", "# newest first, always"))
    out = dry_run(project)
    assert "library/views.py has uncommitted changes (--force to edit)" in out
    assert "Nothing to edit." in out
    assert "select_related" in dry_run(project, force=True)


def test_edits_are_rendered_from_the_original_text_each_time(project):
    views = project / "library" / "views.py"
    ref = FindingRef("/books/", ("nplusone", "read", "library.Book", "author"), "N+1")
    edit = Edit("queryset", views, 7, "books", ['.select_related("author")'], [ref])
    originals = {views: VIEWS}
    once, failed = session.render(originals, [edit])
    assert not failed
    assert session.render(originals, [edit])[0] == once
    assert session.render(originals, [])[0] == originals
