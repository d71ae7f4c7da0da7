"""The "sentry" exporter with the real SDK in process: a transport that keeps envelopes in
a list instead of sending them; nothing leaves the machine."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from django.db import connection
from django.test import Client
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.ratelimit import limiter
from tests.factories import AuthorFactory

pytestmark = pytest.mark.django_db


class ListTransport(Transport):
    """Keeps what the SDK would send."""

    envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        type(self).envelopes.append(envelope)


def _events() -> list[dict[str, Any]]:
    events = [envelope.get_event() for envelope in ListTransport.envelopes]
    return [event for event in events if event is not None]


@pytest.fixture
def sentry(guard) -> Iterator[None]:
    ListTransport.envelopes = []
    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",  # parsed, never contacted: the transport keeps all
        transport=ListTransport,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    guard(EXPORTERS=["sentry"], REPORT_INTERVAL=60)
    with sentry_sdk.isolation_scope():
        yield
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def test_a_finding_is_a_warning_event_grouped_by_its_id(books, sentry):
    response = Client().get("/books/")
    [finding] = getattr(response.wsgi_request, REQUEST_ATTR).nplusones
    [event] = _events()
    assert event["level"] == "warning"
    assert event["logger"] == "django_nplusone_guard"
    assert event["message"] == finding.title
    assert event["fingerprint"] == ["django-nplusone-guard", finding.id]
    assert event["tags"] == {
        "nplusone.kind": "nplusone-read",
        "nplusone.model": "testapp.Book",
        "nplusone.relation": "testapp.Book.author",
        "nplusone.label": "GET /books/",
    }
    nplusone = event["contexts"]["nplusone"]
    assert nplusone["id"] == finding.id
    assert nplusone["callsite"] == finding.callsite
    assert (nplusone["count"], nplusone["seen"], nplusone["worst_count"]) == (5, 1, 5)
    assert ".select_related(" in nplusone["fix"]
    # The backend's own quoting (MySQL's backticks), values as placeholders.
    assert nplusone["sql_shape"].replace("`", '"').startswith('select "testapp_author"."id"')
    assert nplusone["db_system"] == (
        "mariadb" if getattr(connection, "mysql_is_mariadb", False) else connection.vendor
    )
    frames = event["stacktrace"]["frames"]
    assert f"{frames[-1]['filename']}:{frames[-1]['lineno']} in {frames[-1]['function']}" == (
        finding.callsite
    )
    assert all("vars" not in frame for frame in frames)


def test_one_event_per_id_and_interval(books, sentry, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(limiter, "clock", lambda: now[0])
    client = Client()
    for _ in range(3):
        client.get("/books/")
    assert len(_events()) == 1
    now[0] += 61
    client.get("/books/")
    first, second = _events()
    assert first["fingerprint"] == second["fingerprint"]
    assert (second["contexts"]["nplusone"]["seen"], len(_events())) == (3, 2)


def test_breadcrumb_mode_sends_no_event_and_leaves_a_breadcrumb(books, sentry, guard):
    guard(EXPORTERS=["sentry"], SENTRY_MODE="breadcrumb")
    Client().get("/books/")
    assert _events() == []
    sentry_sdk.capture_message("the app's own error, later in the request")
    [event] = _events()
    crumbs = event["breadcrumbs"]["values"]
    [crumb] = [c for c in crumbs if c.get("category") == "django_nplusone_guard"]
    assert crumb["level"] == "warning"
    assert crumb["message"].startswith("N+1 query on testapp.Book.author")
    assert crumb["data"]["kind"] == "nplusone-read"


def test_no_parameter_value_reaches_an_event(sentry):
    secret = "erin.private@example.com"
    AuthorFactory(email=secret)
    Client().get("/audit/duplicate/")
    [event] = _events()
    assert event["tags"]["nplusone.kind"] == "duplicate"
    text = json.dumps(event)
    assert "ada@private.example" not in text
    assert secret not in text


def test_without_init_nothing_is_captured_and_nothing_fails(books, guard, caplog):
    ListTransport.envelopes = []
    guard(EXPORTERS=["sentry"])
    assert Client().get("/books/").status_code == 200
    assert ListTransport.envelopes == []
    assert [r for r in caplog.records if r.levelname == "ERROR"] == []


@pytest.mark.parametrize("value", ["events", None])
def test_a_bad_sentry_mode_is_e002(settings, value):
    from django_nplusone_guard.checks import check_settings

    settings.NPLUSONE_GUARD = {"SENTRY_MODE": value}
    assert [m.id for m in check_settings()] == ["django_nplusone_guard.E002"]
