"""The panel in a real browser: Debian's Chromium driven by Playwright, behind a strict
nonce-only Content Security Policy, with and without the toolbar's shadow DOM.

The screenshot the docs use comes from here: set ``NPLUSONE_GUARD_SCREENSHOT`` to a path
(``docs/img/panel.png``) to keep it; by default it goes to a temporary directory so a test
run never changes the working tree.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.test import override_settings
from playwright.sync_api import expect, sync_playwright

from tests import toolbar_settings
from tests.factories import AuthorFactory, BookFactory, PublisherFactory

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"Debian's chromium is not installed at {CHROMIUM}"
)

# The N+1 of ``toolbar/books.html``, as the attribution names it and fixes it.
RELATION = "testapp.Book.author"
FIX = '.select_related("author")'

# Collects CSP refusals and script errors from the first byte of the page on.
WATCH_PAGE = """
window.__problems = [];
document.addEventListener("securitypolicyviolation", (event) => {
    window.__problems.push(`CSP refused ${event.blockedURI} (${event.violatedDirective})`);
}, true);
window.addEventListener("error", (event) => window.__problems.push(String(event.message)));
"""


@contextmanager
def _screenshot_path() -> Iterator[Path]:
    configured = os.environ.get("NPLUSONE_GUARD_SCREENSHOT")
    if configured:
        yield Path(configured)
        return
    with tempfile.TemporaryDirectory(prefix="nplusone-guard-") as directory:
        yield Path(directory) / "panel.png"


@override_settings(
    **{
        **toolbar_settings.TOOLBAR_SETTINGS,
        "MIDDLEWARE": [
            "tests.toolbar_settings.StrictCSPMiddleware",
            *toolbar_settings.MIDDLEWARE,
        ],
        "NPLUSONE_GUARD": {"ENABLED": True, "ACTION": "log", "EXPLAIN": True},
    }
)
class PanelInChromiumTests(StaticLiveServerTestCase):
    def setUp(self) -> None:
        publishers = PublisherFactory.create_batch(2)
        for index in range(6):
            BookFactory(author=AuthorFactory(), publisher=publishers[index % 2])

    def _open_panel(self, page: Any, path: str) -> None:
        page.goto(self.live_server_url + path)
        page.locator("#djDebugToolbar").wait_for(state="visible")
        page.locator(f"a.{toolbar_settings.PANEL_ID}").click()
        page.locator(".djng-panel").wait_for(state="visible")

    def _browse(self, check: Any) -> None:
        # Playwright's sync API runs an event loop in this thread; the database work of the
        # test (fixtures, flush) stays outside this block.
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 1300})
                context.grant_permissions(
                    ["clipboard-read", "clipboard-write"], origin=self.live_server_url
                )
                page = context.new_page()
                page.add_init_script(WATCH_PAGE)
                check(page)
                assert page.evaluate("window.__problems") == []
            finally:
                browser.close()

    def test_panel_shows_the_relation_and_the_fix(self) -> None:
        with _screenshot_path() as screenshot:
            self._check_relation_and_fix(screenshot)

    def _check_relation_and_fix(self, screenshot: Path) -> None:
        def check(page: Any) -> None:
            self._open_panel(page, "/library/")
            nplusones = page.locator("#djng-nplusones")
            assert "N+1 queries (1)" in nplusones.locator("h4").inner_text()
            relation = nplusones.locator(".djng-relation").first
            assert relation.is_visible()
            assert relation.inner_text() == RELATION
            fix = nplusones.locator(".djng-fix code").first
            assert fix.is_visible()
            assert fix.inner_text() == FIX  # code only: the FETCH_PEERS alternative is apart

            # The panel's stylesheet was let in by the CSP (it carries the page's nonce).
            expect(nplusones.locator(".djng-finding").first).to_have_css(
                "border-left-width", "5px"
            )

            # Sidebar: a warning state and the counts.
            button = page.locator(f"#djdt-{toolbar_settings.PANEL_ID}")
            assert "1 N+1" in button.inner_text()
            assert button.locator("svg path[fill='#f59f00']").count() == 1

            page.screenshot(path=str(screenshot))

            copy = nplusones.locator(".djng-fix button.djng-copy").first
            copy.click()
            expect(copy).to_have_text("Copied")
            assert page.evaluate("navigator.clipboard.readText()") == fix.inner_text()

        self._browse(check)
        assert screenshot.stat().st_size > 10000

    @override_settings(DEBUG_TOOLBAR_CONFIG=toolbar_settings.toolbar_config(USE_SHADOW_DOM=False))
    def test_panel_works_without_the_shadow_dom(self) -> None:
        def check(page: Any) -> None:
            self._open_panel(page, "/books/")
            assert page.evaluate("document.getElementById('djDebugRoot').shadowRoot") is None
            assert page.locator(".djng-relation").first.inner_text() == RELATION
            # Without a shadow root the stylesheet goes into the document's head.
            expect(page.locator("head link[data-djng-stylesheet]")).to_have_count(1)
            copy = page.locator(".djng-copy-text").first
            copy.click()
            expect(copy).to_have_text("Copied")
            copied = page.evaluate("navigator.clipboard.readText()")
            assert copied.startswith("N+1 query on " + RELATION), copied

        self._browse(check)

    @override_settings(DEBUG_TOOLBAR_CONFIG=toolbar_settings.toolbar_config(RENDER_PANELS=True))
    def test_panel_rendered_with_the_page(self) -> None:
        def check(page: Any) -> None:
            self._open_panel(page, "/books/")
            assert page.locator(".djng-relation").first.inner_text() == RELATION
            expect(page.locator(".djng-finding").first).to_have_css("border-left-width", "5px")

        self._browse(check)
