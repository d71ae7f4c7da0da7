"""The libcst edits of ``nplusone_audit --fix`` on small sources: where each fix lands, what
it merges with, and that everything around it (comments, layout) is left as it was."""

from __future__ import annotations

import difflib
import textwrap

import pytest

from django_nplusone_guard.autofix.plan import EditError
from django_nplusone_guard.autofix.transforms import (
    add_model_index,
    edit_admin_prefetch,
    edit_class_attribute,
    edit_queryset,
    read_annotations,
)


def changed(before: str, after: str) -> list[str]:
    """The lines of ``after`` that differ from ``before`` (the diff's ``+`` lines)."""
    return [
        line[1:]
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line.startswith("+") and not line.startswith("+++")
    ]


def removed(before: str, after: str) -> list[str]:
    return [
        line[1:]
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line.startswith("-") and not line.startswith("---")
    ]


VIEWS = textwrap.dedent(
    """\
    from django.shortcuts import render

    from library.models import Book, Publisher


    def _newest():
        return Book.objects.order_by("-added")  # newest first


    def books(request):
        # The list page: 20 books.
        books = _newest()[:20]
        return render(request, "books.html", {"books": books})  # evaluated here


    def chained(request):
        books = (
            Book.objects.filter(in_print=True)  # only what can be bought
            .select_related("publisher")
            .order_by("title")
        )
        return render(request, "books.html", {"books": books})


    def loop(request):
        rows = [
            {"name": p.name} for p in Publisher.objects.order_by("pk")
        ]
        return render(request, "t.html", {"rows": rows})


    def listed(request):
        books = list(Book.objects.all()[:10])
        return render(request, "books.html", {"books": books})


    def two(request):
        books = Book.objects.all()
        publishers = Publisher.objects.all()
        return render(request, "t.html", {"books": books, "publishers": publishers})
    """
)


def line_of(source: str, text: str) -> int:
    return next(i for i, line in enumerate(source.splitlines(), 1) if text in line)


def test_select_related_goes_on_the_assigned_queryset_before_its_slice():
    line = line_of(VIEWS, "# evaluated here")
    after = edit_queryset(VIEWS, line, '.select_related("author")')
    assert changed(VIEWS, after) == ['    books = _newest().select_related("author")[:20]']
    assert removed(VIEWS, after) == ["    books = _newest()[:20]"]


def test_a_second_call_is_merged_into_the_existing_one_and_comments_survive():
    line = line_of(VIEWS, "def chained") + 6  # its return line
    after = edit_queryset(VIEWS, line, '.select_related("author")')
    assert changed(VIEWS, after) == ['        .select_related("publisher", "author")']
    assert "# only what can be bought" in after


def test_a_longer_path_replaces_the_one_it_extends_and_a_known_path_is_skipped():
    source = 'books = Book.objects.select_related("author").all()\n'
    after = edit_queryset(source, 1, '.select_related("author__profile")')
    assert after == 'books = Book.objects.select_related("author__profile").all()\n'
    assert edit_queryset(after, 1, '.select_related("author")') == after


def test_a_queryset_iterated_on_the_line_itself():
    line = line_of(VIEWS, "for p in Publisher")
    after = edit_queryset(VIEWS, line, '.prefetch_related("book_set")')
    assert changed(VIEWS, after) == [
        '        {"name": p.name} for p in Publisher.objects.order_by("pk")'
        '.prefetch_related("book_set")'
    ]


def test_inside_list_and_before_the_slice():
    line = line_of(VIEWS, "books = list(")
    after = edit_queryset(VIEWS, line, '.prefetch_related("tags")')
    assert changed(VIEWS, after) == [
        '    books = list(Book.objects.all().prefetch_related("tags")[:10])'
    ]


def test_only_replaces_the_existing_fields():
    source = 'books = Book.objects.only("title")[:5]\n'
    after = edit_queryset(source, 1, '.only("isbn", "title")')
    assert after == 'books = Book.objects.only("isbn", "title")[:5]\n'


def test_only_without_an_only_call_on_the_line_is_refused():
    with pytest.raises(EditError, match=r"no \.only"):
        edit_queryset("books = Book.objects.all()\n", 1, '.only("isbn")')


def test_annotate_is_appended_and_its_function_imported():
    source = "from library.models import Publisher\n\nrows = Publisher.objects.all()\n"
    after = edit_queryset(source, 3, '.annotate(book_count=Count("book"))')
    assert "from django.db.models import Count\n" in after
    assert 'rows = Publisher.objects.all().annotate(book_count=Count("book"))' in after


def test_a_function_defined_on_the_line_gets_the_call_on_what_it_returns():
    source = textwrap.dedent(
        """\
        class BookList(ListAPIView):
            def get_queryset(self):
                if self.request.user.is_staff:
                    return Book.objects.all()
                return Book.objects.filter(public=True)
        """
    )
    after = edit_queryset(source, 2, '.select_related("author")')
    assert changed(source, after) == [
        '            return Book.objects.all().select_related("author")',
        '        return Book.objects.filter(public=True).select_related("author")',
    ]


def test_a_class_attribute_queryset():
    source = "class BookList(ListView):\n    queryset = Book.objects.all()  # all of them\n"
    after = edit_queryset(source, 2, '.select_related("author")')
    assert after == (
        "class BookList(ListView):\n"
        '    queryset = Book.objects.all().select_related("author")  # all of them\n'
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('return render(request, "t.html", {"books": books, "publishers": publishers})',
         "reads several querysets"),
        ("def listed", "returns no queryset"),
        ("# The list page", "no statement"),
    ],
)  # fmt: skip
def test_no_single_queryset_means_no_edit(text, why):
    with pytest.raises(EditError, match=why):
        edit_queryset(VIEWS, line_of(VIEWS, text), '.select_related("author")')


def test_suggestions_that_are_not_queryset_calls_are_refused():
    for suggestion in (
        "Author.objects.in_bulk(ids)",
        '.prefetch_related(Prefetch("reviews", queryset=Review.objects.filter(...)))',
        ".select_related(",
        ".delete()",
    ):
        with pytest.raises(EditError):
            edit_queryset("books = Book.objects.all()\n", 1, suggestion)


def test_crlf_files_keep_their_line_endings():
    source = "x = 1\r\nbooks = Book.objects.all()\r\n"
    after = edit_queryset(source, 2, '.select_related("author")')
    assert after == 'x = 1\r\nbooks = Book.objects.all().select_related("author")\r\n'


ADMIN = textwrap.dedent(
    '''\
    from django.contrib import admin


    class BookAdmin(admin.ModelAdmin):
        """Books."""

        list_display = ["title", "author"]  # shown in the list
        list_select_related = ["publisher"]

        def has_delete_permission(self, request, obj=None):
            return False


    class TagAdmin(admin.ModelAdmin):
        list_display = ["name", "books"]

        def books(self, obj):
            return len(obj.book_set.all())
    '''
)


def test_list_select_related_is_extended_in_place():
    after = edit_class_attribute(
        ADMIN, "BookAdmin", "list_select_related", '["publisher", "author"]'
    )
    assert changed(ADMIN, after) == ['    list_select_related = ["publisher", "author"]']


def test_list_select_related_is_added_after_the_attributes():
    after = edit_class_attribute(ADMIN, "TagAdmin", "list_select_related", '["author"]')
    assert changed(ADMIN, after) == ['    list_select_related = ["author"]']
    lines = after.splitlines()
    added = lines.index('    list_select_related = ["author"]')
    assert lines[added - 1] == '    list_display = ["name", "books"]'


def test_admin_get_queryset_is_added_with_the_prefetch():
    after = edit_admin_prefetch(ADMIN, "TagAdmin", '.prefetch_related("book_set")')
    assert changed(ADMIN, after)[-2:] == [
        "    def get_queryset(self, request):",
        '        return super().get_queryset(request).prefetch_related("book_set")',
    ]
    compile(after, "admin.py", "exec")


def test_admin_get_queryset_that_exists_is_edited():
    source = ADMIN.replace(
        "    def books(self, obj):",
        "    def get_queryset(self, request):\n"
        "        return super().get_queryset(request).order_by('name')\n\n"
        "    def books(self, obj):",
    )
    after = edit_admin_prefetch(source, "TagAdmin", '.prefetch_related("book_set")')
    assert changed(source, after) == [
        "        return super().get_queryset(request).order_by('name')"
        '.prefetch_related("book_set")'
    ]


MODELS = textwrap.dedent(
    """\
    from django.db import models


    class Author(models.Model):
        email = models.CharField(max_length=200)  # no index

        def __str__(self):
            return self.email


    class Loan(models.Model):
        branch = models.CharField(max_length=20)

        class Meta:
            ordering = ["branch"]


    class Book(models.Model):
        title = models.CharField(max_length=20)

        class Meta:
            indexes = [models.Index(fields=["title"], name="book_title_idx")]
    """
)
INDEX = 'models.Index(fields=["email"], name="author_email_idx")'


def test_meta_is_created_between_the_fields_and_the_methods():
    after = add_model_index(MODELS, "Author", INDEX)
    assert changed(MODELS, after) == ["", "    class Meta:", f"        indexes = [{INDEX}]"]
    assert after.index("class Meta") < after.index("def __str__")
    assert "# no index" in after


def test_indexes_are_added_to_an_existing_meta_and_list():
    after = add_model_index(MODELS, "Loan", INDEX)
    assert changed(MODELS, after) == [f"        indexes = [{INDEX}]"]
    after = add_model_index(MODELS, "Book", INDEX)
    assert changed(MODELS, after) == [
        f'        indexes = [models.Index(fields=["title"], name="book_title_idx"), {INDEX}]'
    ]


def test_an_index_of_that_name_is_not_added_twice():
    once = add_model_index(MODELS, "Author", INDEX)
    assert add_model_index(once, "Author", INDEX) == once


def test_a_missing_class_is_an_edit_error():
    with pytest.raises(EditError, match="no class Publisher"):
        add_model_index(MODELS, "Publisher", INDEX)


def test_a_file_that_does_not_parse_is_never_edited():
    with pytest.raises(EditError, match="does not parse"):
        edit_queryset("books = Book.objects.all(\n", 1, '.select_related("author")')


def test_an_edit_that_would_not_compile_is_refused():
    # A repeated keyword parses for libcst but Python's compiler refuses it.
    with pytest.raises(EditError, match="would not parse"):
        edit_queryset("books = Book.objects.all()\n", 1, '.annotate(n=Count("a"), n=Count("b"))')


# --------------------------------------------------------------------------- per-row reads

LOOP = textwrap.dedent(
    """\
    def report(request):
        books = Book.objects.order_by("pk")
        rows = [
            (b.title, b.reviews.count(), b.reviews.exists(), b.tags.count())  # per book
            for b in books
        ]
        totals = [a.book_set.aggregate(total=Sum("pages"), n=Count("id"))["n"] for a in authors]
        return rows, totals
    """
)


def test_per_row_count_and_exists_become_reads_of_the_annotation():
    after = read_annotations(LOOP, 4, "reviews", '.annotate(reviews_count=Count("reviews"))')
    assert changed(LOOP, after) == [
        "        (b.title, b.reviews_count, b.reviews.exists(), b.tags.count())  # per book"
    ]
    suggestion = '.annotate(has_reviews=Exists(Review.objects.filter(book=OuterRef("pk"))))'
    after = read_annotations(after, 4, "reviews", suggestion)
    assert changed(LOOP, after) == [
        "        (b.title, b.reviews_count, b.has_reviews, b.tags.count())  # per book"
    ]


def test_a_per_row_aggregate_becomes_the_annotation_it_indexes():
    suggestion = '.annotate(total=Sum("book__pages"), n=Count("book__id"))'
    after = read_annotations(LOOP, 7, "book_set", suggestion)
    assert changed(LOOP, after) == ["    totals = [a.n for a in authors]"]


def test_no_per_row_call_on_the_line_is_an_edit_error():
    with pytest.raises(EditError, match=r"no per-row \.book_set"):
        read_annotations(LOOP, 4, "book_set", '.annotate(book_count=Count("book"))')
