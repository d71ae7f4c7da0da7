"""The middleware with ``EXPLAIN`` on: sync views analyse in place, async views analyse
through ``sync_to_async`` (the sync ORM is not allowed in the event loop)."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, Client

from django_nplusone_guard.explain import clear_cache
from django_nplusone_guard.middleware import REQUEST_ATTR
from tests.factories import ListingFactory


@pytest.fixture(autouse=True)
def _explain_on(settings):
    clear_cache()
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log", "HEADER": True, "EXPLAIN": True}
    yield
    clear_cache()


@pytest.mark.django_db
def test_sync_view_reports_the_missing_index(caplog):
    ListingFactory.create_batch(3, city="Leeds")
    response = Client().get("/listings/?city=Leeds")
    assert response.status_code == 200
    assert len(response.json()["ids"]) == 3
    assert response["X-NPlusOne-Guard"] == (
        "nplusone=0; duplicates=0; missing_indexes=1; queries=1"
    )
    [finding] = getattr(response.wsgi_request, REQUEST_ATTR).missing_indexes
    assert finding.columns == ("city",)
    assert finding.callsite.startswith("tests/testapp/views.py:")
    assert finding.callsite.endswith("in listing_search")
    assert "Missing index on testapp.Listing (city): full scan" in caplog.text


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_view_reports_the_missing_index():
    await sync_to_async(ListingFactory.create_batch)(3, city="York")
    response = await AsyncClient().get("/async/listings/?city=York")
    assert response.status_code == 200
    assert len(response.json()["ids"]) == 3
    report = getattr(response.asgi_request, REQUEST_ATTR)
    assert [f.columns for f in report.missing_indexes] == [("city",)]
    assert " in async_listing_search" in report.missing_indexes[0].callsite
    assert response["X-NPlusOne-Guard"].endswith("missing_indexes=1; queries=1")
