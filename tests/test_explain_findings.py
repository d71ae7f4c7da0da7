"""Missing-index findings on the real backend (SQLite, PostgreSQL or MariaDB, per
``NPLUSONE_GUARD_TEST_DB``): what is reported, what is not, and that applying the suggested
index, as a migration would, makes the finding go away."""

from __future__ import annotations

import ast
import inspect
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from debug_toolbar.models import HistoryEntry
from django.contrib.auth.models import Permission, User
from django.db import connection, models
from django.db.models import Count, Q
from django.db.models.functions import Upper

from django_nplusone_guard import capture
from django_nplusone_guard.explain import clear_cache
from django_nplusone_guard.explain.base import is_users_model
from django_nplusone_guard.report import MissingIndex, Report
from tests.factories import AuthorFactory, ListingFactory, ReviewFactory
from tests.testapp.models import Author, Listing, Review, Shelf

QuerySetFactory = Callable[[], Any]


@pytest.fixture(autouse=True)
def _fresh_verdicts() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def listings(db):
    return ListingFactory.create_batch(4)


def explain(make_queryset: QuerySetFactory) -> Report:
    with capture(explain=True) as report:
        list(make_queryset())  # explain-line
    return report


def _explain_line() -> int:
    lines, first = inspect.getsourcelines(explain)
    return first + next(n for n, text in enumerate(lines) if "# explain-line" in text)


def only(report: Report) -> MissingIndex:
    assert len(report.missing_indexes) == 1, str(report)
    return report.missing_indexes[0]


def suggested_index(finding: MissingIndex) -> models.Index:
    """Build the ``models.Index`` the suggestion tells the developer to paste."""
    match = re.search(r"models\.Index\((.*)\)$", finding.suggestion)
    assert match, finding.suggestion
    fields = re.search(r"fields=\[([^\]]*)\]", match.group(1))
    name = re.search(r'name="([^"]+)"', match.group(1))
    assert fields and name, finding.suggestion
    field_names = [f.strip().strip('"') for f in fields.group(1).split(",")]
    return models.Index(fields=field_names, name=name.group(1))


@contextmanager
def applied(model: type[models.Model], index: models.Index) -> Iterator[None]:
    """``index`` added with the schema editor, as its migration would, then dropped (DDL
    is not transactional on MariaDB, so the tests that use this are transactional)."""
    with connection.schema_editor() as editor:
        editor.add_index(model, index)
    try:
        clear_cache()  # migrate does this through post_migrate
        yield
    finally:
        with connection.schema_editor() as editor:
            editor.remove_index(model, index)


def test_unindexed_equality_filter(listings):
    finding = only(explain(lambda: Listing.objects.filter(city="Leeds")))
    assert finding.model == "testapp.Listing"
    assert finding.table == "testapp_listing"
    assert finding.columns == ("city",)
    assert finding.fields == ("city",)
    assert finding.reason == "full scan"
    assert finding.suggestion.startswith("add to testapp.Listing Meta.indexes")
    assert finding.suggestion.endswith('models.Index(fields=["city"], name="listing_city_idx")')
    assert finding.callsite == (f"tests/test_explain_findings.py:{_explain_line()} in explain")
    assert '"city"' in finding.sql.replace("`", '"')
    assert finding.plan
    assert finding.fingerprint
    assert finding.alias == "default"
    if connection.vendor != "sqlite":  # EXPLAIN QUERY PLAN gives no row estimate
        assert finding.rows_estimate is not None


def test_unindexed_order_by_with_limit(listings):
    finding = only(explain(lambda: Listing.objects.order_by("-listed")[:10]))
    assert finding.columns == ("listed",)
    assert finding.reason == "sort without index"
    assert finding.suggestion.endswith(
        'models.Index(fields=["listed"], name="listing_listed_idx")'
    )


def test_two_column_equality_filter_gets_one_composite_suggestion(listings):
    finding = only(explain(lambda: Listing.objects.filter(city="Leeds", zip_code="Z00001")))
    assert finding.columns == ("city", "zip_code")
    assert 'fields=["city", "zip_code"]' in finding.suggestion


def test_equality_then_range_column(listings):
    finding = only(explain(lambda: Listing.objects.filter(price__gte=5, city="Leeds")))
    assert finding.columns == ("city", "price")


def test_equality_then_order_by_columns(listings):
    finding = only(explain(lambda: Listing.objects.filter(city="York").order_by("listed")[:3]))
    assert finding.columns == ("city", "listed")


def test_indexed_foreign_key_with_unindexed_sort_extends_the_foreign_key(listings):
    owner = listings[0].owner
    finding = only(explain(lambda: Listing.objects.filter(owner=owner).order_by("-listed")[:5]))
    assert finding.reason == "sort without index"
    assert finding.columns == ("owner_id", "listed")
    assert finding.fields == ("owner", "listed")


def test_first_and_last_on_a_foreign_key_are_not_reported(listings):
    owner = listings[0].owner
    with capture(explain=True) as report:
        owner.listings.first()
        owner.listings.last()
    assert report.missing_indexes == [], str(report)


def test_a_boolean_may_lead_a_composite_with_a_sort(listings):
    finding = only(explain(lambda: Listing.objects.filter(active=True).order_by("listed")[:5]))
    assert finding.columns == ("active", "listed")


def test_filter_on_joined_table_is_reported_on_its_model(listings):
    finding = only(explain(lambda: Listing.objects.filter(owner__name="Author 1")))
    assert finding.model == "testapp.Author"
    assert finding.columns == ("name",)
    assert "add to testapp.Author Meta.indexes" in finding.suggestion


@pytest.mark.parametrize("rows", [1, 30])
def test_filter_on_joined_table_is_reported_whichever_side_drives_the_join(db, rows):
    # MariaDB reads the bigger side whole and looks the other up by primary key, with the
    # filter attached to the lookup: the verdict must not depend on which side is bigger.
    owner = AuthorFactory()
    ListingFactory.create_batch(rows, owner=owner)
    finding = only(explain(lambda: Listing.objects.filter(owner__email="x@example.com")))
    assert (finding.model, finding.columns) == ("testapp.Author", ("email",))


def test_filter_two_joins_away_is_reported_on_its_model(db):
    ReviewFactory.create_batch(3)
    finding = only(explain(lambda: Review.objects.filter(book__author__name="Author 1")))
    assert (finding.model, finding.columns) == ("testapp.Author", ("name",))


def test_a_composite_led_by_the_join_column_serves_the_filter(db):
    # auth.Permission has unique_together (content_type, codename).
    report = explain(lambda: Permission.objects.filter(content_type__app_label="x", codename="y"))
    assert report.missing_indexes == [], str(report)


def test_filter_in_a_subquery_is_reported_on_its_model(listings):
    authors = Author.objects.filter(pk__in=Listing.objects.filter(zip_code="Z1").values("owner"))
    finding = only(explain(lambda: authors))
    assert finding.model == "testapp.Listing"
    assert finding.columns == ("zip_code",)


def test_a_pattern_next_to_an_indexable_column_is_explained_in_the_reason(listings):
    finding = only(
        explain(lambda: Listing.objects.filter(city__icontains="ee", zip_code="Z00001"))
    )
    assert finding.columns == ("zip_code",)
    assert "city:" in finding.reason
    assert "no B-tree index can serve it" in finding.reason
    if connection.vendor == "postgresql":
        assert "GinIndex(" in finding.reason
        assert "gin_trgm_ops" in finding.reason
    else:
        assert "GinIndex" not in finding.reason


@pytest.mark.parametrize(
    "make_queryset",
    [
        pytest.param(lambda: Listing.objects.filter(pk=1), id="primary-key"),
        pytest.param(lambda: Listing.objects.filter(owner_id=1), id="foreign-key"),
        pytest.param(lambda: Listing.objects.filter(slug="listing-1"), id="db-index"),
        pytest.param(lambda: Listing.objects.filter(sku="SKU-000001"), id="unique"),
        pytest.param(lambda: Listing.objects.filter(active=True), id="boolean-only"),
        pytest.param(lambda: Listing.objects.filter(active=False), id="boolean-false-only"),
        pytest.param(lambda: Listing.objects.filter(status="p"), id="small-choices-only"),
        pytest.param(lambda: Listing.objects.filter(city__icontains="ee"), id="icontains"),
        pytest.param(lambda: Listing.objects.filter(city__contains="ee"), id="contains"),
        pytest.param(lambda: Listing.objects.filter(Q(city="Leeds") | Q(zip_code="Z1")), id="or"),
        pytest.param(lambda: Listing.objects.all(), id="no-where"),
        pytest.param(lambda: Listing.objects.order_by("listed"), id="order-by-without-limit"),
        pytest.param(lambda: Listing.objects.filter(owner__pk=1), id="join-on-foreign-key"),
        pytest.param(
            lambda: Listing.objects.exclude(city="Leeds").filter(owner_id=1), id="negation"
        ),
        pytest.param(
            lambda: Listing.objects.annotate(u=Upper("city")).filter(u="LEEDS"), id="function"
        ),
    ],
)
def test_no_finding(listings, make_queryset):
    report = explain(make_queryset)
    assert report.missing_indexes == [], str(report)


def test_writes_are_never_explained(listings):
    with capture(explain=True) as report:
        Listing.objects.filter(city="Leeds").update(price=1)
        Listing.objects.filter(zip_code="Z9").delete()
    assert report.missing_indexes == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("make_queryset", "columns"),
    [
        pytest.param(lambda: Listing.objects.filter(city="Leeds"), ("city",), id="equality"),
        pytest.param(lambda: Listing.objects.order_by("listed")[:10], ("listed",), id="sort"),
        pytest.param(
            lambda: Listing.objects.filter(city="Leeds", zip_code="Z1"),
            ("city", "zip_code"),
            id="composite",
        ),
        pytest.param(lambda: Listing.objects.filter(owner__name="Author 1"), ("name",), id="join"),
    ],
)
def test_applying_the_suggestion_makes_the_finding_go_away(make_queryset, columns):
    ListingFactory.create_batch(4)
    finding = only(explain(make_queryset))
    assert finding.columns == columns
    index = suggested_index(finding)
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,29}", index.name)
    model = Author if finding.model == "testapp.Author" else Listing
    with applied(model, index):
        report = explain(make_queryset)
    assert report.missing_indexes == [], str(report)


@pytest.mark.django_db(transaction=True)
def test_join_on_an_unindexed_column_and_its_fix():
    owner = AuthorFactory()
    Shelf.objects.create(label="fiction", owner=owner)

    def shelves_per_author():
        return Author.objects.filter(pk=owner.pk).annotate(n=Count("shelf"))

    finding = only(explain(shelves_per_author))
    assert (finding.model, finding.columns) == ("testapp.Shelf", ("owner_id",))
    assert finding.reason == "join without index"
    assert finding.suggestion.endswith('models.Index(fields=["owner"], name="shelf_owner_idx")')
    index = suggested_index(finding)
    with applied(Shelf, index):
        report = explain(shelves_per_author)
    assert report.missing_indexes == [], str(report)


@pytest.mark.django_db(transaction=True)
def test_an_existing_index_prefix_is_never_suggested_again_but_a_later_column_is():
    ListingFactory.create_batch(4)
    index = models.Index(fields=["city", "zip_code"], name="test_city_zip_idx")
    with applied(Listing, index):
        assert explain(lambda: Listing.objects.filter(city="Leeds")).missing_indexes == []
        finding = only(explain(lambda: Listing.objects.filter(zip_code="Z1")))
    assert finding.columns == ("zip_code",)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not connection.features.supports_partial_indexes, reason="no partial indexes here"
)
@pytest.mark.parametrize(
    "index",
    [
        pytest.param(
            models.Index(fields=["city"], name="test_city_partial", condition=Q(active=True)),
            id="partial",
        ),
        pytest.param(models.Index(Upper("city"), name="test_city_upper"), id="expression"),
    ],
)
def test_partial_and_expression_indexes_do_not_serve_a_plain_column(index):
    ListingFactory.create_batch(4)
    with applied(Listing, index):
        finding = only(explain(lambda: Listing.objects.filter(city="Leeds")))
    assert finding.columns == ("city",)


def test_one_finding_per_index_across_statements_and_call_sites(listings):
    with capture(explain=True) as report:
        list(Listing.objects.filter(city="Leeds"))
        Listing.objects.filter(city="York").count()
        list(Listing.objects.filter(city="Bath").values("id"))
    assert [f.columns for f in report.missing_indexes] == [("city",)]


def test_allow_rules_apply_to_missing_indexes(listings):
    with capture(explain=True, allow=[{"model": "testapp.Listing"}]) as report:
        list(Listing.objects.filter(city="Leeds"))
    assert report.missing_indexes == []


def test_explain_is_off_by_default(listings):
    with capture() as report:
        list(Listing.objects.filter(city="Leeds"))
    assert report.missing_indexes == []


def test_explain_setting_switches_it_on(listings, settings):
    settings.NPLUSONE_GUARD = {**settings.NPLUSONE_GUARD, "EXPLAIN": True}
    with capture() as report:
        list(Listing.objects.filter(city="Leeds"))
    assert [f.columns for f in report.missing_indexes] == [("city",)]


def test_findings_survive_a_json_round_trip(listings):
    report = explain(lambda: Listing.objects.filter(city="Leeds", zip_code="Z1"))
    again = Report.from_dict(report.to_dict())
    assert again.missing_indexes == report.missing_indexes
    assert "Missing index on testapp.Listing (city, zip_code): full scan" in str(report)


@pytest.mark.django_db(databases=["default", "other"])
def test_statements_on_another_alias_are_explained_there():
    with capture(explain=True) as report:
        list(Author.objects.using("other").filter(email="a@example.com"))
    assert [(f.alias, f.columns) for f in report.missing_indexes] == [("other", ("email",))]


# --------------------------------------------------------------------------- not your model


def run_sql_statements(finding: MissingIndex) -> tuple[str, str]:
    """The CREATE and DROP statements of a ``migrations.RunSQL(...)`` suggestion, read the
    way Python would read the pasted line."""
    match = re.search(r"migrations\.RunSQL\((.*)\)$", finding.suggestion)
    assert match, finding.suggestion
    call = ast.parse(f"RunSQL({match.group(1)})", mode="eval").body
    assert isinstance(call, ast.Call)
    create = ast.literal_eval(call.args[0])
    (reverse,) = [k for k in call.keywords if k.arg == "reverse_sql"]
    return create, ast.literal_eval(reverse.value)


def users_by_first_name() -> Any:
    return User.objects.filter(first_name="Ada")


@pytest.mark.django_db(transaction=True)
def test_a_contrib_model_gets_a_run_sql_migration_that_works_and_reverses():
    User.objects.create(username="ada", first_name="Ada")
    finding = only(explain(users_by_first_name))
    assert (finding.model, finding.table, finding.columns) == (
        "auth.User",
        "auth_user",
        ("first_name",),
    )
    assert finding.suggestion.startswith(
        "auth.User is not your model (it comes from django.contrib.auth): add the index from "
        "a migration in one of your apps, depending on the auth app's latest migration"
    )
    assert "Meta.indexes" not in finding.suggestion
    create, drop = run_sql_statements(finding)
    quote = connection.ops.quote_name
    name = quote("auth_user_first_name_idx")
    assert create == f"CREATE INDEX {name} ON {quote('auth_user')} ({quote('first_name')});"
    if connection.vendor == "mysql":
        assert drop == f"DROP INDEX {name} ON {quote('auth_user')};"
    else:
        assert drop == f"DROP INDEX {name};"
    assert ("CONCURRENTLY" in finding.suggestion) == (connection.vendor == "postgresql")

    def indexes() -> set[str]:
        with connection.cursor() as cursor:
            return set(connection.introspection.get_constraints(cursor, "auth_user"))

    with connection.cursor() as cursor:
        cursor.execute(create)
    try:
        assert "auth_user_first_name_idx" in indexes()
        clear_cache()
        assert explain(users_by_first_name).missing_indexes == []
    finally:
        with connection.cursor() as cursor:
            cursor.execute(drop)
    # Not EXPLAINed again: SQLite's cached EXPLAIN statement keeps a dropped index's plan.
    assert "auth_user_first_name_idx" not in indexes()


def test_a_contrib_model_suggestion_keeps_a_descending_sort_column(db):
    User.objects.create(username="ada", first_name="Ada")
    report = explain(
        lambda: User.objects.filter(first_name="Ada").order_by("-date_joined", "id")[:5]
    )
    create, _ = run_sql_statements(only(report))
    quote = connection.ops.quote_name
    assert f"({quote('first_name')}, {quote('date_joined')} DESC" in create


def test_a_model_of_the_project_keeps_the_meta_indexes_suggestion(listings):
    finding = only(explain(lambda: Listing.objects.filter(city="Leeds")))
    assert "RunSQL" not in finding.suggestion
    assert finding.suggestion.startswith("add to testapp.Listing Meta.indexes")


def test_run_sql_suggestion_survives_a_json_round_trip_and_the_text_formatter(db):
    User.objects.create(username="ada", first_name="Ada")
    report = explain(users_by_first_name)
    again = Report.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again.missing_indexes == report.missing_indexes
    assert "  Fix: auth.User is not your model" in str(report)


@pytest.mark.parametrize(
    ("model", "users"),
    [
        pytest.param(Listing, True, id="project-app"),
        pytest.param(User, False, id="django-contrib"),
        pytest.param(HistoryEntry, False, id="installed-package"),
    ],
)
def test_whose_model_it_is(model, users):
    assert is_users_model(model) is users
