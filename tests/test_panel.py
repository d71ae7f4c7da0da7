"""The debug-toolbar panel, run by the real toolbar (8.x) on the real database.

Every test goes through the toolbar's own machinery: its middleware, its stores (memory,
database, cache) and its ``render_panel`` view, so what is asserted is what a developer sees.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from debug_toolbar.store import get_store
from debug_toolbar.toolbar import DebugToolbar
from django.http import HttpResponse
from django.test import AsyncClient, Client, RequestFactory

from django_nplusone_guard.middleware import REQUEST_ATTR
from django_nplusone_guard.panels import (
    SQL_DISPLAY_LIMIT,
    SQL_REINDENT_LIMIT,
    NPlusOnePanel,
    format_sql,
)
from django_nplusone_guard.report import Duplicate, MissingIndex, NPlusOne, Report
from tests import toolbar_settings
from tests.factories import AuthorFactory, BookFactory
from tests.toolbar_settings import PANEL_ID, STORES, TOOLBAR_SETTINGS, toolbar_config
from tests.toolbar_views import HOSTILE

pytestmark = pytest.mark.django_db


@pytest.fixture
def toolbar_on(settings):
    """The toolbar in front of the test project, MemoryStore, empty history."""
    for name, value in TOOLBAR_SETTINGS.items():
        setattr(settings, name, value)
    settings.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log"}
    get_store().clear()
    yield settings
    get_store().clear()


@pytest.fixture
def five_books(db):
    return [BookFactory(author=AuthorFactory()) for _ in range(5)]


def _request_id(response) -> str:
    match = re.search(r'data-request-id="([0-9a-f]+)"', response.content.decode())
    assert match, "the toolbar was not inserted into the page"
    return match[1]


def _nav_button(response) -> str:
    html: str = response.content.decode()
    start = html.index(f'id="djdt-{PANEL_ID}"')
    return html[start : html.index("</li>", start)]


def _subtitle(response) -> str:
    match = re.search(r"<small>(.*?)</small>", _nav_button(response), re.S)
    assert match, "the panel has no subtitle"
    return str(match[1]).strip()


def _render_panel(client: Client, request_id: str) -> dict[str, Any]:
    """The panel as the browser gets it: through the toolbar's own view."""
    response = client.get(
        "/__debug__/render_panel/", {"request_id": request_id, "panel_id": PANEL_ID}
    )
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def _stored_report(request_id: str) -> Report:
    stats = get_store().panel(request_id, PANEL_ID)
    return Report.from_dict(stats["report"])


def _record(report: Report, *, store: str = toolbar_settings.MEMORY_STORE) -> NPlusOnePanel:
    """Store ``report`` the way the panel does, then load the panel back from the store."""
    toolbar = DebugToolbar(RequestFactory().get("/"), lambda request: HttpResponse())
    toolbar.get_panel_by_id(PANEL_ID).record_stats({"report": report.to_dict()})
    stored = DebugToolbar.fetch(toolbar.request_id, PANEL_ID)
    assert stored is not None
    panel: NPlusOnePanel = stored.get_panel_by_id(PANEL_ID)
    return panel


# --------------------------------------------------------------------------- history


@pytest.mark.parametrize("store", STORES)
def test_panel_shows_the_pages_nplusone_from_each_store(toolbar_on, five_books, store):
    toolbar_on.DEBUG_TOOLBAR_CONFIG = toolbar_config(store)
    client = Client()
    response = client.get("/books/")
    assert response.status_code == 200
    request_id = _request_id(response)

    seen_by_request = getattr(response.wsgi_request, REQUEST_ATTR)
    [finding] = seen_by_request.nplusones
    assert finding.count == 5
    assert _subtitle(response) == "1 N+1"

    # What the store holds is plain JSON, and it rebuilds the same findings.
    stored = get_store().panel(request_id, PANEL_ID)
    assert json.loads(json.dumps(stored)) == stored
    assert stored["report"]["queries"] == []
    reloaded = _stored_report(request_id)
    assert reloaded.nplusones == seen_by_request.nplusones
    assert reloaded.query_count == seen_by_request.query_count == 6

    data = _render_panel(client, request_id)
    content = data["content"]
    assert "N+1 queries (1)" in content
    assert f'<code class="djng-relation">{finding.relation}</code>' in content
    assert "5 queries" in content
    assert "tests/toolbar_views.py:" in content
    assert "in books</code>" in content
    assert data["scripts"] == ["/static/django_nplusone_guard/js/panel.js"]


def test_history_keeps_each_requests_own_findings(toolbar_on, five_books):
    client = Client()
    dirty = _request_id(client.get("/books/"))
    clean = _request_id(client.get("/books/fixed/"))
    assert "N+1 queries (1)" in _render_panel(client, dirty)["content"]
    assert "No N+1 queries" in _render_panel(client, clean)["content"]


def test_clean_page_says_clean(toolbar_on, five_books):
    response = Client().get("/books/fixed/")
    assert _subtitle(response) == "clean"
    button = _nav_button(response)
    assert "#f59f00" not in button  # no warning sign
    content = _render_panel(Client(), _request_id(response))["content"]
    assert "No N+1 queries, missing indexes or duplicate queries" in content
    assert "1 query checked" in content


def test_findings_turn_the_nav_button_into_a_warning(toolbar_on, five_books):
    button = _nav_button(Client().get("/books/"))
    assert "N+1 Guard" in button
    assert 'fill="#f59f00"' in button  # the inlined warning sign


# --------------------------------------------------------------------------- one capture


@pytest.mark.parametrize(
    "middleware",
    [
        pytest.param(toolbar_settings.MIDDLEWARE, id="toolbar-outside-guard"),
        pytest.param(
            [
                toolbar_settings.MIDDLEWARE[1],
                toolbar_settings.MIDDLEWARE[0],
                *toolbar_settings.MIDDLEWARE[2:],
            ],
            id="guard-outside-toolbar",
        ),
    ],
)
def test_middleware_and_panel_share_one_capture(toolbar_on, five_books, caplog, middleware):
    toolbar_on.MIDDLEWARE = middleware
    with caplog.at_level(logging.WARNING, logger="django_nplusone_guard"):
        response = Client().get("/books/scopes/")
    assert response["X-Capture-Scopes"] == "1"

    [logged] = [r for r in caplog.records if r.name == "django_nplusone_guard"]
    assert "N+1 query on" in logged.getMessage()
    assert ": 5 queries" in logged.getMessage()

    request_report = getattr(response.wsgi_request, REQUEST_ATTR)
    stored = _stored_report(_request_id(response))
    assert stored.nplusones == request_report.nplusones
    assert stored.query_count == request_report.query_count == 6


def test_panel_captures_without_the_middleware(toolbar_on, five_books):
    toolbar_on.MIDDLEWARE = [
        m for m in toolbar_settings.MIDDLEWARE if "NPlusOneGuardMiddleware" not in m
    ]
    # The panel is switched on by the toolbar's own panel settings, not by ENABLED.
    toolbar_on.NPLUSONE_GUARD = {"ENABLED": False}
    response = Client().get("/books/scopes/")
    assert response["X-Capture-Scopes"] == "1"
    assert _subtitle(response) == "1 N+1"


def test_panel_switched_off_in_the_browser_does_not_capture(toolbar_on, five_books):
    client = Client()
    client.cookies["djdt" + PANEL_ID] = "off"
    response = client.get("/books/scopes/")
    assert response["X-Capture-Scopes"] == "1"  # the middleware's own
    assert get_store().panel(_request_id(response), PANEL_ID) == {}


# --------------------------------------------------------------------------- SQL panel


def _sql_panel_statements(request_id: str) -> list[str]:
    return [q["raw_sql"] for q in get_store().panel(request_id, "SQLPanel")["queries"]]


def test_guard_queries_stay_out_of_the_sql_panel(toolbar_on, five_books):
    response = Client().get("/own-queries/")
    statements = _sql_panel_statements(_request_id(response))
    assert len(statements) == 1
    assert "testapp_book" in statements[0]


@pytest.mark.parametrize("explain", [False, True])
def test_panel_adds_no_queries_to_the_sql_panel(toolbar_on, five_books, explain):
    toolbar_on.NPLUSONE_GUARD = {"ENABLED": True, "EXPLAIN": explain}
    response = Client().get("/books/")
    request_id = _request_id(response)
    assert len(_sql_panel_statements(request_id)) == _stored_report(request_id).query_count == 6


def test_panel_works_without_the_sql_panel(toolbar_on, five_books):
    # The toolbar builds its URL list once, from the panels of that moment: build it with
    # every panel first, or the tests that run after this one in the process (the first
    # test of an xdist worker, say) find no URL for the SQL and history panels.
    DebugToolbar.get_urls()
    toolbar_on.DEBUG_TOOLBAR_PANELS = ["django_nplusone_guard.panels.NPlusOnePanel"]
    client = Client()
    response = client.get("/books/")
    assert _subtitle(response) == "1 N+1"
    assert "N+1 queries (1)" in _render_panel(client, _request_id(response))["content"]


# --------------------------------------------------------------------------- async


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_async_view_under_asgi(toolbar_on):
    await sync_to_async(BookFactory.create_batch)(4)
    response = await AsyncClient().get("/async/books/")
    assert response.status_code == 200
    request_id = _request_id(response)
    report = await sync_to_async(_stored_report)(request_id)
    [finding] = report.nplusones
    assert finding.count == 4
    assert finding.callsite.startswith("tests/toolbar_views.py:")
    assert finding.callsite.endswith("in async_books")
    content = (await sync_to_async(_render_panel)(Client(), request_id))["content"]
    assert "in async_books</code>" in content


# --------------------------------------------------------------------------- access


def test_panel_content_goes_through_the_toolbars_show_checks(toolbar_on, five_books):
    request_id = _request_id(Client().get("/books/"))
    query = {"request_id": request_id, "panel_id": PANEL_ID}
    outsider = Client(REMOTE_ADDR="10.1.2.3")
    assert outsider.get("/__debug__/render_panel/", query).status_code == 404
    toolbar_on.DEBUG = False
    assert Client().get("/__debug__/render_panel/", query).status_code == 404


def test_rendered_in_the_page_with_the_csp_nonce(toolbar_on, five_books):
    toolbar_on.MIDDLEWARE = [
        "tests.toolbar_settings.StrictCSPMiddleware",
        *toolbar_settings.MIDDLEWARE,
    ]
    toolbar_on.DEBUG_TOOLBAR_CONFIG = toolbar_config(RENDER_PANELS=True)
    response = Client().get("/books/")
    policy = re.search(r"'nonce-([^']+)'", response["Content-Security-Policy"])
    assert policy
    nonce = policy[1]
    html = response.content.decode()
    assert (
        f'<script nonce="{nonce}" type="module" '
        'src="/static/django_nplusone_guard/js/panel.js" async></script>'
    ) in html
    start = html.index('<div class="djng-panel"')
    panel_html = html[start : html.index("</section>", start)]
    assert "N+1 queries (1)" in panel_html
    # Nothing the CSP would refuse: no inline script, style element or style attribute.
    assert "<script" not in panel_html
    assert "<style" not in panel_html
    assert "style=" not in panel_html


# --------------------------------------------------------------------------- rendering


def _nplusone(**overrides: Any) -> NPlusOne:
    values: dict[str, Any] = {
        "kind": "read",
        "model": "testapp.Book",
        "field": "author",
        "count": 12,
        "fingerprint": "fp-author",
        "sql": 'SELECT "testapp_author"."id" FROM "testapp_author" WHERE "id" = %s',
        "callsite": "shop/views.py:40 in book_list",
        "stack": ["shop/views.py:40 in book_list", "shop/urls.py:9 in dispatch"],
        "suggestion": '.select_related("author")',
        "total_time_ms": 8.5,
        "parent_callsite": "shop/views.py:38 in book_list",
        "template": "shop/book_list.html:7",
        "fix_at": "shop/views.py:38 in book_list",
        "alternative": "or .fetch_mode(models.FETCH_PEERS) on the queryset",
    }
    values.update(overrides)
    return NPlusOne(**values)


def _full_report() -> Report:
    return Report(
        nplusones=[
            _nplusone(field="publisher", count=3, suggestion='.select_related("publisher")'),
            _nplusone(),
        ],
        missing_indexes=[
            MissingIndex(
                model="testapp.Book",
                table="testapp_book",
                columns=("isbn",),
                fields=("isbn",),
                reason="full scan",
                plan="SCAN testapp_book",
                sql='SELECT * FROM "testapp_book" WHERE "isbn" = %s',
                callsite="shop/views.py:52 in by_isbn",
                suggestion='models.Index(fields=["isbn"], name="book_isbn_idx")  # Book.Meta',
                rows_estimate=1200.0,
            )
        ],
        duplicates=[
            Duplicate(
                model="testapp.Author",
                count=2,
                fingerprint="fp-dup",
                sql='SELECT COUNT(*) FROM "testapp_author"',
                callsites=["shop/views.py:60 in home", "shop/views.py:61 in home"],
                total_time_ms=0.4,
                params="()",
            ),
            Duplicate(
                model="testapp.Tag",
                count=5,
                fingerprint="fp-lib",
                sql='SELECT * FROM "testapp_tag" WHERE "id" = %s',
                callsites=["shop/api.py:20 in TagView.post"],
                kind="library",
                library="rest_framework",
                suggestion="PrimaryKeyRelatedField(many=True) looks up each pk",
            ),
        ],
        query_count=42,
        total_time_ms=31.25,
    )


def test_every_field_of_every_kind_is_shown(toolbar_on):
    panel = _record(_full_report())
    assert panel.nav_subtitle == "2 N+1 · 1 index · 2 dup"
    assert panel.nav_icon.endswith("warning.svg")
    assert panel.title == "N+1 Guard: 42 queries in 31.2 ms"
    content = panel.content

    # Grouped by kind, in this order, the worst N+1 first.
    order = [
        content.index("N+1 queries (2)"),
        content.index("testapp.Book.author"),
        content.index("testapp.Book.publisher"),
        content.index("Missing indexes (1)"),
        content.index("Duplicate queries (2)"),
    ]
    assert order == sorted(order)

    for text in (
        "12 queries, 8.5 ms",
        "<code>.select_related(&quot;author&quot;)</code>",
        'data-copy=".select_related(&quot;author&quot;)"',
        "shop/views.py:40 in book_list",
        "<dt>Queryset evaluated at</dt><dd><code>shop/views.py:38 in book_list</code>",
        "<dt>Template</dt><dd><code>shop/book_list.html:7</code>",
        # Where the fix goes and the other way out, each apart from the code to paste.
        '<dt>Fix goes in</dt><dd><code class="djng-fix-at">shop/views.py:38 in book_list</code>',
        '<dd class="djng-alternative">or .fetch_mode(models.FETCH_PEERS) on the queryset</dd>',
        "<summary>User stack (2 frames)</summary>",
        "<li><code>shop/urls.py:9 in dispatch</code></li>",
        "<strong>SELECT</strong>",
        # Missing index: reason, rows, plan excerpt and the models.Index line to copy.
        "full scan (about 1200 rows)",
        '<pre class="djng-plan">SCAN testapp_book</pre>',
        "models.Index(fields=[&quot;isbn&quot;], name=&quot;book_isbn_idx&quot;)  # Book.Meta",
        # ...and the copy button copies just the models.Index line.
        'data-copy="models.Index(fields=[&quot;isbn&quot;], name=&quot;book_isbn_idx&quot;)"',
        # Duplicates: the shared formatter's advice, every call site.
        "run it once and reuse the result",
        "<code>shop/views.py:61 in home</code>",
        # A library's loop says whose loop it is and what changes it.
        "Library loop on testapp.Tag: 5 queries run by rest_framework",
        '<dt>Run by</dt><dd><code class="djng-library">rest_framework</code></dd>',
        "PrimaryKeyRelatedField(many=True) looks up each pk",
    ):
        assert text in content, text
    # Every finding carries its stable id, as logs, baselines and the audit name it.
    for finding in _full_report().findings:
        assert f'data-finding-id="{finding.id}"' in content
        assert f"id <code>{finding.id}</code>" in content


def test_copy_as_text_is_the_shared_formatter_output(toolbar_on):
    from django.utils.html import escape

    from django_nplusone_guard.report import format_finding

    report = _full_report()
    content = _record(report).content
    for finding in report.findings:
        assert f'data-copy="{escape(format_finding(finding))}"' in content


def test_index_on_a_model_the_user_does_not_own_copies_the_run_sql_operation(toolbar_on):
    from django.contrib.auth.models import User
    from django.db import connection
    from django.utils.html import escape

    from django_nplusone_guard.explain import backend_for
    from django_nplusone_guard.explain.base import run_sql_suggestion

    backend = backend_for(connection.vendor)
    assert backend is not None
    suggestion = run_sql_suggestion(
        backend, connection, User, "auth_user", ["first_name"], ["first_name"]
    )
    operation = suggestion[suggestion.index("migrations.RunSQL(") :]
    assert operation.endswith(")")
    finding = MissingIndex(
        model="auth.User",
        table="auth_user",
        columns=("first_name",),
        fields=("first_name",),
        reason="full scan",
        plan="SCAN auth_user",
        sql='SELECT * FROM "auth_user" WHERE "first_name" = %s',
        callsite="shop/views.py:70 in staff",
        suggestion=suggestion,
    )
    content = _record(Report(missing_indexes=[finding], query_count=1)).content
    # The whole advice is shown; the copy button copies the operation alone.
    assert f"<code>{escape(suggestion)}</code>" in content
    assert f'data-copy="{escape(operation)}"' in content


def test_hostile_values_render_as_text(toolbar_on):
    report = Report(
        nplusones=[
            _nplusone(
                model=HOSTILE,
                field=HOSTILE,
                sql=f"SELECT '{HOSTILE}' FROM t WHERE x = %s",
                callsite=HOSTILE,
                stack=[HOSTILE, HOSTILE],
                suggestion=HOSTILE,
                parent_callsite=HOSTILE,
                template=HOSTILE,
            )
        ],
        missing_indexes=[
            MissingIndex(
                model=HOSTILE,
                table=HOSTILE,
                columns=(HOSTILE,),
                fields=(HOSTILE,),
                reason=HOSTILE,
                plan=HOSTILE,
                sql=HOSTILE,
                callsite=HOSTILE,
                suggestion=HOSTILE,
            )
        ],
        errors=[HOSTILE],
    )
    content = _record(report).content
    assert "<script" not in content
    assert "&lt;script&gt;" in content
    assert "alert(&#x27;owned&#x27;)" in content or "alert(&#39;owned&#39;)" in content


def test_hostile_parameter_of_a_real_duplicate_renders_as_text(toolbar_on, five_books):
    client = Client()
    response = client.get("/duplicates/")
    assert _subtitle(response) == "1 dup"
    content = _render_panel(client, _request_id(response))["content"]
    assert "Duplicate queries (1)" in content
    assert "<script" not in content
    assert "&lt;script&gt;alert(" in content  # the parameter, shown as text


def test_panel_survives_stats_from_an_older_or_newer_version(toolbar_on):
    toolbar = DebugToolbar(RequestFactory().get("/"), lambda request: HttpResponse())
    toolbar.get_panel_by_id(PANEL_ID).record_stats(
        {"report": {"nplusones": [], "query_count": 3, "field_from_the_future": 1}}
    )
    stored = DebugToolbar.fetch(toolbar.request_id, PANEL_ID)
    assert stored is not None
    panel = stored.get_panel_by_id(PANEL_ID)
    assert panel.nav_subtitle == "clean"
    assert "3 queries checked" in panel.content


# --------------------------------------------------------------------------- SQL text


def test_sql_is_reindented_with_bold_keywords_and_escaped():
    html = format_sql("select a from t where b = '<b>' order by a")
    assert html.startswith("<strong>SELECT</strong> a\n<strong>FROM</strong> t")
    assert "&lt;b&gt;" in html
    assert "<b>" not in html


def test_long_sql_is_shown_as_it_ran():
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(["%s"] * 2_000) + ")"
    assert SQL_REINDENT_LIMIT < len(sql) < SQL_DISPLAY_LIMIT
    html = format_sql(sql)
    assert "\n" not in html  # not reindented
    assert html.startswith("<strong>SELECT</strong> * <strong>FROM</strong> t")
    assert html.endswith("%s, %s)")


def test_huge_sql_is_cut_with_a_note():
    sql = "SELECT * FROM t WHERE id IN (" + ", ".join(["1"] * 20_000) + ")"
    html = format_sql(sql)
    assert html.endswith(f"… {len(sql) - SQL_DISPLAY_LIMIT:,} more characters not shown")
    assert len(html) < SQL_DISPLAY_LIMIT * 2


def test_sql_sqlparse_refuses_is_shown_as_it_ran():
    sql = "SELECT " + "(" * 300 + "1" + ")" * 300  # deeper than sqlparse's grouping limit
    assert len(sql) < SQL_REINDENT_LIMIT
    assert format_sql(sql) == "<strong>SELECT</strong> " + "(" * 300 + "1" + ")" * 300


def test_a_request_the_panel_could_not_record_is_not_called_clean(
    toolbar_on, five_books, monkeypatch
):
    def broken(request, frame):
        raise RuntimeError("capture failed")

    toolbar_on.MIDDLEWARE = [m for m in toolbar_settings.MIDDLEWARE if "Guard" not in m]
    monkeypatch.setattr("django_nplusone_guard.panels.join_request_capture", broken)
    response = Client().get("/books/")
    assert response.status_code == 200  # the page itself is untouched
    assert _subtitle(response) == "incomplete"
    content = _render_panel(Client(), _request_id(response))["content"]
    assert "this request was not recorded" in content


def test_analysis_errors_are_shown(toolbar_on):
    panel = _record(Report(nplusones=[_nplusone()], errors=["EXPLAIN budget exceeded"]))
    assert panel.nav_subtitle == "1 N+1 · incomplete"
    assert "Analysis problem: EXPLAIN budget exceeded" in panel.content


def test_toolbar_history_writes_are_not_reported_with_the_guard_outside(toolbar_on, five_books):
    """The shared capture ends when the panel's part of the request does, before the
    toolbar saves every panel's stats (with DatabaseStore, one UPDATE per panel)."""
    toolbar_on.MIDDLEWARE = [
        toolbar_settings.MIDDLEWARE[1],
        toolbar_settings.MIDDLEWARE[0],
        *toolbar_settings.MIDDLEWARE[2:],
    ]
    toolbar_on.DEBUG_TOOLBAR_CONFIG = toolbar_config(toolbar_settings.DATABASE_STORE)
    response = Client().get("/books/fixed/")
    report = getattr(response.wsgi_request, REQUEST_ATTR)
    assert report.findings == []
    assert _subtitle(response) == "clean"


def _sql_panel_modules(request_id: str) -> set[str]:
    frames = [
        f for q in get_store().panel(request_id, "SQLPanel")["queries"] for f in q["stacktrace"]
    ]
    assert frames, "the SQL panel kept no stack traces"
    return {frame[0] for frame in frames}


def test_the_guards_hooks_stay_out_of_the_sql_panels_stack_traces(toolbar_on, five_books):
    from debug_toolbar import settings as dt_settings

    dt_settings.get_config.cache_clear()  # as a settings change would: rebuilt without us
    response = Client().get("/books/")
    files = _sql_panel_modules(_request_id(response))
    assert not [f for f in files if "django_nplusone_guard" in f], files
    assert any(f.endswith("toolbar_views.py") or "tests" in f for f in files), files
    assert "django_nplusone_guard" not in str(toolbar_on.DEBUG_TOOLBAR_CONFIG)  # untouched


# --------------------------------------------------------------------------- parameters


def _shown_params(content: str) -> list[str]:
    return re.findall(r'<code class="djng-params">(.*?)</code>', content, re.S)


def test_an_nplusones_sample_parameters_are_shown(toolbar_on, five_books):
    client = Client()
    request_id = _request_id(client.get("/books/"))
    [shown] = _shown_params(_render_panel(client, request_id)["content"])
    first, second, third = (book.author_id for book in five_books[:3])  # the view's order
    assert shown == f"({first},), ({second},), ({third},) ..."  # five statements, three shown


def test_a_duplicates_parameters_are_shown(toolbar_on, five_books):
    client = Client()
    content = _render_panel(client, _request_id(client.get("/duplicates/")))["content"]
    [shown] = _shown_params(content)
    assert "&lt;script&gt;alert(" in shown


def test_log_params_set_to_false_keeps_parameters_out_of_the_panel(toolbar_on, five_books):
    toolbar_on.NPLUSONE_GUARD = {"ENABLED": True, "ACTION": "log", "LOG_PARAMS": False}
    client = Client()
    for url in ("/books/", "/duplicates/"):
        request_id = _request_id(client.get(url))
        stored = get_store().panel(request_id, PANEL_ID)["report"]
        findings = [*stored["nplusones"], *stored["duplicates"]]
        assert findings, url
        assert all(f["params"] is None for f in findings)
        assert _shown_params(_render_panel(client, request_id)["content"]) == []
