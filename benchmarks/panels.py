"""Toolbar set-ups of the benchmark that settings alone cannot express.

``EmptyPanel`` is for the ``toolbar-empty-panel`` variant. The toolbar does some work for
every panel on every request (instantiating it, chaining its ``process_request``, storing
its stats, rendering its entry in the side bar). This panel measures that floor: whatever
our panel costs beyond it is ours.

``add_our_panel_to_stock_toolbar`` is for ``toolbar-stock-panel``: the toolbar's own default
panel list plus ours, read from the installed toolbar so the variant follows its releases.
"""

from __future__ import annotations

from debug_toolbar.panels import Panel
from django.conf import settings
from django.test.signals import setting_changed

from benchmarks.variants import OUR_PANEL


class EmptyPanel(Panel):
    """Records nothing and shows nothing."""

    title = nav_title = "Empty"
    template = "debug_toolbar/panels/settings.html"


def add_our_panel_to_stock_toolbar() -> None:
    """``DEBUG_TOOLBAR_PANELS`` = the toolbar's defaults + our panel, for the whole run.

    Not ``override_settings``: it wraps the settings in a holder that makes every settings
    read of the request slower, which the other variants would not pay. The setting is
    assigned, and ``setting_changed`` sent so the toolbar drops any panel list it cached.
    """
    from debug_toolbar.settings import PANELS_DEFAULTS

    panels = [*PANELS_DEFAULTS, OUR_PANEL]
    settings.DEBUG_TOOLBAR_PANELS = panels
    setting_changed.send(
        sender=type(settings._wrapped), setting="DEBUG_TOOLBAR_PANELS", value=panels, enter=True
    )
