"""What the toolbar tests switch on with ``override_settings(**TOOLBAR_SETTINGS)``.

Kept out of ``tests.settings`` so no other test runs behind the toolbar.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from tests import settings as base

MEMORY_STORE = "debug_toolbar.store.MemoryStore"
DATABASE_STORE = "debug_toolbar.store.DatabaseStore"
CACHE_STORE = "debug_toolbar.store.CacheStore"
STORES = (MEMORY_STORE, DATABASE_STORE, CACHE_STORE)

PANEL_ID = "NPlusOnePanel"

PANELS = [
    "debug_toolbar.panels.history.HistoryPanel",
    "debug_toolbar.panels.timer.TimerPanel",
    "debug_toolbar.panels.sql.SQLPanel",
    "debug_toolbar.panels.templates.TemplatesPanel",
    "django_nplusone_guard.panels.NPlusOnePanel",
]

# The toolbar outermost, as its docs ask, then the project's middleware (the guard first).
MIDDLEWARE = ["debug_toolbar.middleware.DebugToolbarMiddleware", *base.MIDDLEWARE]


def toolbar_config(store: str = MEMORY_STORE, **options: object) -> dict[str, object]:
    return {"TOOLBAR_STORE_CLASS": store, "IS_RUNNING_TESTS": False, **options}


TOOLBAR_SETTINGS: dict[str, object] = {
    "DEBUG": True,
    "INTERNAL_IPS": ["127.0.0.1"],
    "ROOT_URLCONF": "tests.toolbar_urls",
    "MIDDLEWARE": MIDDLEWARE,
    "DEBUG_TOOLBAR_PANELS": PANELS,
    "DEBUG_TOOLBAR_CONFIG": toolbar_config(),
}


class StrictCSPMiddleware:
    """A nonce-only Content Security Policy, the strictest one the toolbar supports.

    Sets ``request.csp_nonce`` (django-csp's attribute, which the toolbar reads on every
    supported Django version) and a policy under which any inline script or style, or any
    stylesheet added without the nonce, is refused by the browser.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        nonce = secrets.token_urlsafe(16)
        request.csp_nonce = nonce  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["Content-Security-Policy"] = (
            f"default-src 'self'; script-src 'nonce-{nonce}' 'strict-dynamic'; "
            f"style-src 'nonce-{nonce}'; img-src 'self' data:; connect-src 'self'"
        )
        return response
