"""Attribution of relation loads: the relation named, both lines, the exact fix.

Each pattern has three tests: the loop is one finding with the relation, the line that
loaded it, the line that evaluated the parent queryset and the copy-pasteable fix; the
fixed loop is clean; one object's access is not flagged.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from django.db.models import Count, Exists, OuterRef, Prefetch, prefetch_related_objects

from django_nplusone_guard import capture
from django_nplusone_guard.orm import HAS_FETCH_MODES
from tests.factories import (
    AuthorFactory,
    BookFactory,
    MemberFactory,
    ProfileFactory,
    ReviewFactory,
    TagFactory,
)
from tests.orm_expect import PEERS, only_nplusone, site
from tests.testapp.models import Author, Book, Comment, Member, Profile, Review, Tag

pytestmark = pytest.mark.django_db


def at(marker: str, function: str) -> str:
    return site(__file__, marker, function)


@pytest.fixture
def library(db):
    """Five books, each with its own author (with a profile), two tags, a review and a
    comment; plus a comment on each author, so generic keys point at two models."""
    tags = TagFactory.create_batch(3)
    books = []
    for index in range(5):
        author = AuthorFactory()
        ProfileFactory(author=author)
        book = BookFactory(author=author, tags=[tags[index % 3], tags[(index + 1) % 3]])
        ReviewFactory(book=book)
        Comment.objects.create(content_object=book, text="on a book")
        Comment.objects.create(content_object=author, text="on an author")
        books.append(book)
    return books


# --------------------------------------------------------------------------- forward FK


def test_forward_foreign_key(library):
    with capture() as report:
        for book in Book.objects.order_by("id"):  # fk-parent
            _ = book.author.name  # fk-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.author"
    assert finding.count == 5
    assert finding.callsite == at("fk-access", "test_forward_foreign_key")
    assert finding.parent_callsite == at("fk-parent", "test_forward_foreign_key")
    assert finding.suggestion == '.select_related("author")'
    assert finding.alternative == PEERS
    assert finding.template is None


def test_forward_foreign_key_fixed(library):
    with capture() as report:
        for book in Book.objects.select_related("author"):
            _ = book.author.name
    assert report.nplusones == []


def test_forward_foreign_key_single_object(library):
    with capture() as report:
        book = Book.objects.order_by("id").first()
        assert book is not None
        _ = book.author.name
    assert report.nplusones == []
    assert report.query_count == 2


def test_forward_one_to_one(library):
    with capture() as report:
        profiles = Profile.objects.order_by("id")  # o2o-built
        for profile in profiles:  # o2o-parent
            _ = profile.author.name  # o2o-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Profile.author"
    assert finding.callsite == at("o2o-access", "test_forward_one_to_one")
    assert finding.parent_callsite == at("o2o-parent", "test_forward_one_to_one")
    assert finding.suggestion == '.select_related("author")'
    assert finding.alternative == PEERS


def test_forward_one_to_one_fixed(library):
    with capture() as report:
        for profile in Profile.objects.select_related("author"):
            _ = profile.author.name
    assert report.nplusones == []


# --------------------------------------------------------------------------- reverse O2O


def test_reverse_one_to_one(library):
    with capture() as report:
        authors = list(Author.objects.order_by("id"))  # ro2o-parent
        for author in authors:
            _ = author.profile.bio  # ro2o-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.profile"
    assert finding.count == 5
    assert finding.callsite == at("ro2o-access", "test_reverse_one_to_one")
    assert finding.parent_callsite == at("ro2o-parent", "test_reverse_one_to_one")
    assert finding.suggestion == '.select_related("profile")'
    assert finding.alternative == PEERS


def test_reverse_one_to_one_fixed(library):
    with capture() as report:
        for author in Author.objects.select_related("profile"):
            _ = author.profile.bio
    assert report.nplusones == []


def test_reverse_one_to_one_single_object(library):
    with capture() as report:
        author = Author.objects.get(pk=library[0].author_id)
        _ = author.profile.bio
    assert report.nplusones == []


# --------------------------------------------------------------------------- many-valued


@pytest.mark.parametrize(
    ("model", "relation", "accessor"),
    [
        pytest.param(Author, "testapp.Author.book_set", "book_set", id="reverse-fk"),
        pytest.param(Book, "testapp.Book.reviews", "reviews", id="reverse-fk-related-name"),
        pytest.param(Book, "testapp.Book.tags", "tags", id="m2m-forward"),
        pytest.param(Tag, "testapp.Tag.book_set", "book_set", id="m2m-reverse"),
        pytest.param(Book, "testapp.Book.comments", "comments", id="generic-relation"),
    ],
)
def test_many_valued_relation(library, model, relation, accessor):
    with capture() as report:
        for owner in model.objects.order_by("pk"):  # many-parent
            _ = [str(row) for row in getattr(owner, accessor).all()]  # many-access
    finding = only_nplusone(report)
    assert finding.relation == relation
    assert finding.count == model.objects.count()
    assert finding.callsite == at("many-access", "test_many_valued_relation")
    assert finding.parent_callsite == at("many-parent", "test_many_valued_relation")
    assert finding.suggestion == f'.prefetch_related("{accessor}")'


@pytest.mark.parametrize(
    ("model", "accessor"),
    [
        pytest.param(Author, "book_set", id="reverse-fk"),
        pytest.param(Book, "reviews", id="reverse-fk-related-name"),
        pytest.param(Book, "tags", id="m2m-forward"),
        pytest.param(Tag, "book_set", id="m2m-reverse"),
        pytest.param(Book, "comments", id="generic-relation"),
    ],
)
def test_many_valued_relation_fixed(library, model, accessor):
    with capture() as report:
        for owner in model.objects.prefetch_related(accessor):
            _ = [str(row) for row in getattr(owner, accessor).all()]
    assert report.nplusones == []


def test_many_valued_relation_single_object(library):
    with capture() as report:
        author = Author.objects.get(pk=library[0].author_id)
        _ = list(author.book_set.all())
        book = library[0]
        _ = list(book.tags.all())
    assert report.nplusones == []


# --------------------------------------------------------------------------- chains


def test_chain_reports_one_finding_per_level(library):
    with capture() as report:
        for review in Review.objects.order_by("id"):  # chain-parent
            _ = review.book.author.name  # chain-access
    assert len(report.nplusones) == 2, str(report)
    by_relation = {f.relation: f for f in report.nplusones}
    book, author = by_relation["testapp.Review.book"], by_relation["testapp.Book.author"]
    assert book.suggestion == '.select_related("book")'
    assert book.alternative == PEERS
    assert author.suggestion == '.select_related("book__author")'
    assert author.alternative == PEERS
    for finding in (book, author):
        assert finding.count == 5
        assert finding.callsite == at("chain-access", "test_chain_reports_one_finding_per_level")
        assert finding.parent_callsite == at(
            "chain-parent", "test_chain_reports_one_finding_per_level"
        )


def test_chain_fixed(library):
    with capture() as report:
        for review in Review.objects.select_related("book__author"):
            _ = review.book.author.name
    assert report.nplusones == []


def test_partial_select_related_names_the_missing_step(library):
    with capture() as report:
        for book in Book.objects.select_related("author").order_by("id"):  # partial-parent
            _ = book.author.profile.bio  # partial-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.profile"
    assert finding.callsite == at(
        "partial-access", "test_partial_select_related_names_the_missing_step"
    )
    assert finding.parent_callsite == at(
        "partial-parent", "test_partial_select_related_names_the_missing_step"
    )
    assert finding.suggestion == '.select_related("author__profile")'
    assert finding.alternative == PEERS


def test_partial_select_related_fixed(library):
    with capture() as report:
        for book in Book.objects.select_related("author__profile"):
            _ = book.author.profile.bio
    assert report.nplusones == []


def test_relation_below_a_prefetch_is_a_prefetch_path(library):
    with capture() as report:
        for author in Author.objects.prefetch_related("book_set").order_by("id"):  # pp-parent
            for book in author.book_set.all():
                _ = book.publisher.name  # pp-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.publisher"
    assert finding.parent_callsite == at(
        "pp-parent", "test_relation_below_a_prefetch_is_a_prefetch_path"
    )
    assert finding.suggestion == '.prefetch_related("book_set__publisher")'
    assert finding.alternative == PEERS


def test_relation_below_a_prefetch_fixed(library):
    with capture() as report:
        for author in Author.objects.prefetch_related("book_set__publisher"):
            for book in author.book_set.all():
                _ = book.publisher.name
    assert report.nplusones == []


# --------------------------------------------------------------------------- generic FK


def test_generic_foreign_key_is_one_finding_across_content_types(library):
    with capture() as report:
        for comment in Comment.objects.order_by("id"):  # gfk-parent
            _ = str(comment.content_object)  # gfk-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Comment.content_object"
    assert finding.count == 10  # five books and five authors: two statements, one cause
    assert finding.callsite == at(
        "gfk-access", "test_generic_foreign_key_is_one_finding_across_content_types"
    )
    assert finding.parent_callsite == at(
        "gfk-parent", "test_generic_foreign_key_is_one_finding_across_content_types"
    )
    assert finding.suggestion == '.prefetch_related("content_object")'
    assert finding.alternative == PEERS


def test_generic_foreign_key_fixed(library):
    with capture() as report:
        for comment in Comment.objects.prefetch_related("content_object"):
            _ = str(comment.content_object)
    assert report.nplusones == []


def test_generic_foreign_key_single_object(library):
    with capture() as report:
        comment = Comment.objects.order_by("id").first()
        assert comment is not None
        _ = str(comment.content_object)
    assert report.nplusones == []


# --------------------------------------------------------------------------- deferred


@pytest.mark.parametrize(
    ("narrow", "fix"),
    [
        pytest.param(lambda qs: qs.only("title"), '.only("isbn", "title")', id="only"),
        pytest.param(lambda qs: qs.defer("isbn", "pages"), '.defer("pages")', id="defer"),
        pytest.param(lambda qs: qs.defer("isbn"), 'remove .defer("isbn")', id="defer-one"),
    ],
)
def test_deferred_field(library, narrow, fix):
    with capture() as report:
        for book in narrow(Book.objects.order_by("id")):  # deferred-parent
            _ = book.isbn  # deferred-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.isbn"
    assert finding.count == 5
    assert finding.callsite == at("deferred-access", "test_deferred_field")
    assert finding.parent_callsite == at("deferred-parent", "test_deferred_field")
    assert finding.suggestion == fix
    assert finding.alternative == PEERS


def test_deferred_field_below_select_related_uses_the_path(library):
    with capture() as report:
        for book in Book.objects.select_related("author").only("title", "author__name"):
            _ = book.author.email  # deferred-path
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Author.email"
    assert finding.suggestion.startswith('.only("author__email", "author__name", "title")')


def test_deferred_field_fixed(library):
    with capture() as report:
        for book in Book.objects.only("title", "isbn"):
            _ = book.isbn
    assert report.nplusones == []


def test_deferred_field_single_object(library):
    with capture() as report:
        book = Book.objects.only("title").get(pk=library[0].pk)
        _ = book.isbn
    assert report.nplusones == []


def test_prefetch_with_queryset_object_is_clean(library):
    with capture() as report:
        prefetch = Prefetch("book_set", queryset=Book.objects.filter(in_print=True))
        for author in Author.objects.prefetch_related(prefetch):
            _ = list(author.book_set.all())
    assert report.nplusones == []


@pytest.mark.skipif(not HAS_FETCH_MODES, reason="QuerySet.fetch_mode() is Django 6.1+")
@pytest.mark.parametrize(
    ("make", "access"),
    [
        pytest.param(lambda: Book.objects.all(), lambda b: b.author.name, id="forward-fk"),
        pytest.param(lambda: Author.objects.all(), lambda a: a.profile.bio, id="reverse-o2o"),
        pytest.param(lambda: Comment.objects.all(), lambda c: c.content_object, id="gfk"),
        pytest.param(lambda: Book.objects.only("title"), lambda b: b.isbn, id="deferred"),
    ],
)
def test_fetch_peers_fix_is_clean(library, make, access):
    from django.db import models

    with capture() as report:
        for row in make().fetch_mode(models.FETCH_PEERS):
            access(row)
    assert report.nplusones == []


@pytest.mark.parametrize(
    "access",
    [
        pytest.param(lambda r: r.book.author.name, id="chain"),
        pytest.param(lambda r: r.book.comments.count(), id="generic-relation"),
        pytest.param(lambda r: list(r.book.reviews.all()), id="reverse-fk-related-name"),
    ],
)
def test_single_review_access_is_not_flagged(library, access):
    with capture() as report:
        review = Review.objects.order_by("id").first()
        assert review is not None
        access(review)
    assert report.nplusones == []


def test_single_partial_select_related_is_not_flagged(library):
    with capture() as report:
        book = Book.objects.select_related("author").get(pk=library[0].pk)
        _ = book.author.profile.bio
    assert report.nplusones == []


# --------------------------------------------------------------------------- self M2M


@pytest.fixture
def members(db):
    """Five members; each follows and mentors every later one, so every side of those
    relations differs per member (``following`` is not ``followers``), and blocks the
    next one (symmetrical: the block shows from both ends)."""
    found = MemberFactory.create_batch(5)
    for index, member in enumerate(found):
        later = found[index + 1 :]
        member.following.add(*later)
        member.mentors.add(*later)
        if later:
            member.blocked.add(later[0])
    return found


def _rows_by_member(members: Iterable[Member], accessor: str) -> dict[int, list[int]]:
    return {m.pk: sorted(r.pk for r in getattr(m, accessor).all()) for m in members}


# Each side of each self-referential many-to-many as code spells it; "member_set" is the
# reverse of ``mentors``, which has no related_name.
SELF_SIDES = [
    pytest.param("following", "following", id="forward"),
    pytest.param("followers", "followers", id="reverse-related-name"),
    pytest.param("blocked", "blocked", id="symmetrical"),
    pytest.param("mentors", "mentors", id="forward-no-related-name"),
    pytest.param("member_set", "member", id="reverse-default-accessor"),
]


@pytest.mark.parametrize(("accessor", "query_name"), SELF_SIDES)
def test_self_many_to_many_names_the_side_read(members, accessor, query_name):
    with capture() as report:
        for member in Member.objects.order_by("pk"):  # self-parent
            _ = [str(row) for row in getattr(member, accessor).all()]  # self-access
    finding = only_nplusone(report)
    assert finding.relation == f"testapp.Member.{accessor}"
    assert finding.count == 5
    assert finding.callsite == at("self-access", "test_self_many_to_many_names_the_side_read")
    assert finding.parent_callsite == at(
        "self-parent", "test_self_many_to_many_names_the_side_read"
    )
    assert finding.suggestion == f'.prefetch_related("{accessor}")'


@pytest.mark.parametrize(("accessor", "query_name"), SELF_SIDES)
def test_self_many_to_many_prefetch_of_the_side_read_is_clean(members, accessor, query_name):
    expected = _rows_by_member(Member.objects.all(), accessor)
    with capture() as report:
        fixed = list(Member.objects.prefetch_related(accessor))
        assert _rows_by_member(fixed, accessor) == expected
    assert report.nplusones == []


@pytest.mark.parametrize(("accessor", "query_name"), SELF_SIDES)
def test_self_many_to_many_count_names_the_side_counted(members, accessor, query_name):
    with capture() as report:
        for member in Member.objects.order_by("pk"):  # self-count-parent
            getattr(member, accessor).count()  # self-count
    finding = only_nplusone(report)
    assert finding.relation == f"testapp.Member.{accessor}"
    assert finding.count == 5
    assert finding.callsite == at(
        "self-count", "test_self_many_to_many_count_names_the_side_counted"
    )
    assert finding.suggestion == f'.annotate({query_name}_count=Count("{query_name}"))'


@pytest.mark.parametrize(("accessor", "query_name"), SELF_SIDES)
def test_self_many_to_many_count_fix_counts_the_same_side(members, accessor, query_name):
    expected = {m.pk: getattr(m, accessor).count() for m in Member.objects.all()}
    with capture() as report:
        fixed = Member.objects.annotate(**{f"{query_name}_count": Count(query_name)})
        assert {m.pk: getattr(m, f"{query_name}_count") for m in fixed} == expected
    assert report.nplusones == []


@pytest.mark.parametrize(
    ("accessor", "back_filter"),
    [
        pytest.param("following", "followers", id="forward"),
        pytest.param("followers", "following", id="reverse-related-name"),
        pytest.param("blocked", "blocked", id="symmetrical"),
        pytest.param("mentors", "member", id="forward-no-related-name"),
        pytest.param("member_set", "mentors", id="reverse-default-accessor"),
    ],
)
def test_self_many_to_many_exists_fix_filters_back_along_the_side_read(
    members, accessor, back_filter
):
    expected = {m.pk: getattr(m, accessor).exists() for m in Member.objects.all()}
    with capture() as report:
        for member in Member.objects.order_by("pk"):
            getattr(member, accessor).exists()
    finding = only_nplusone(report)
    assert finding.relation == f"testapp.Member.{accessor}"
    inner = f'Member.objects.filter({back_filter}=OuterRef("pk"))'
    assert finding.suggestion.endswith(f"=Exists({inner}))")
    fixed = Member.objects.annotate(
        has=Exists(Member.objects.filter(**{back_filter: OuterRef("pk")}))
    )
    assert {m.pk: m.has for m in fixed} == expected


def test_symmetrical_many_to_many_read_from_the_through_table_is_named_by_its_field(members):
    through = Member.blocked.through
    with capture() as report:
        for member in Member.objects.order_by("pk"):
            through.objects.filter(to_member=member).count()  # self-through
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Member.blocked"
    assert "+" not in finding.suggestion


# --------------------------------------------------------------------------- prefetch per row

PER_INSTANCE_FIX = "one call on the whole list, before the loop"

# (model looped over, lookup given to prefetch_related_objects): one query per instance
PREFETCHED_ONE_BY_ONE = [
    pytest.param(Book, "author", id="forward-fk"),
    pytest.param(Profile, "author", id="forward-o2o"),
    pytest.param(Author, "profile", id="reverse-o2o"),
    pytest.param(Author, "book_set", id="reverse-fk"),
    pytest.param(Book, "reviews", id="reverse-fk-related-name"),
    pytest.param(Book, "tags", id="m2m-forward"),
    pytest.param(Tag, "book_set", id="m2m-reverse"),
    pytest.param(Book, "comments", id="generic-relation"),
    pytest.param(Comment, "content_object", id="generic-foreign-key"),
]


@pytest.mark.parametrize(("model", "lookup"), PREFETCHED_ONE_BY_ONE)
def test_prefetch_related_objects_per_instance_names_the_relation(library, model, lookup):
    with capture() as report:
        for owner in model.objects.order_by("pk"):  # pro-parent
            prefetch_related_objects([owner], lookup)  # pro-access
    finding = only_nplusone(report)
    assert finding.relation == f"{model._meta.label}.{lookup}"
    assert finding.count == model.objects.count()
    assert finding.callsite == at(
        "pro-access", "test_prefetch_related_objects_per_instance_names_the_relation"
    )
    assert finding.parent_callsite == at(
        "pro-parent", "test_prefetch_related_objects_per_instance_names_the_relation"
    )
    assert finding.suggestion == (
        f'prefetch_related_objects(<list of {model.__name__}>, "{lookup}")'
    )
    assert finding.alternative == PER_INSTANCE_FIX


@pytest.mark.parametrize(("model", "lookup"), PREFETCHED_ONE_BY_ONE)
def test_prefetch_related_objects_on_the_whole_list_is_clean(library, model, lookup):
    with capture() as report:
        owners = list(model.objects.order_by("pk"))
        prefetch_related_objects(owners, lookup)
        for owner in owners:
            related = getattr(owner, lookup)
            _ = list(related.all()) if hasattr(related, "all") else str(related)
    assert report.nplusones == []
    assert report.query_count <= 3  # the list, the prefetch (two for a generic foreign key)


@pytest.mark.parametrize(
    "read",
    [
        pytest.param(lambda book: list(book.comments.filter(text="on a book")), id="filter"),
        pytest.param(lambda book: book.comments.order_by("pk").first(), id="first"),
        pytest.param(lambda book: list(book.comments.values_list("text")), id="values"),
    ],
)
def test_generic_relation_queryset_derived_per_instance_names_the_relation(library, read):
    with capture() as report:
        for book in Book.objects.order_by("pk"):  # gr-parent
            read(book)  # gr-access
    finding = only_nplusone(report)
    assert finding.relation == "testapp.Book.comments"
    assert finding.parent_callsite == at(
        "gr-parent", "test_generic_relation_queryset_derived_per_instance_names_the_relation"
    )
