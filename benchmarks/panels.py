"""Toolbar set-ups of the benchmark that settings alone cannot express.

``EmptyPanel`` is for the ``toolbar-empty-panel`` variant. The toolbar does some work for
every panel on every request (instantiating it, chaining its ``process_request``, storing
its stats, rendering its entry in the side bar). This panel measures that floor: whatever
our panel costs beyond it is ours.

``use_stock_panels`` is for the ``toolbar-stock`` variants: the toolbar's own default panel
list plus the variant's, read from the installed toolbar so the variants follow its releases.
"""

from __future__ import annotations

from debug_toolbar.panels import Panel
from django.conf import settings
from django.test.signals import setting_changed


class EmptyPanel(Panel):
    """Records nothing and shows nothing."""

    title = nav_title = "Empty"
    template = "debug_toolbar/panels/settings.html"


def use_stock_panels() -> None:
    """``DEBUG_TOOLBAR_PANELS`` = the toolbar's defaults + the variant's
    ``BENCH_EXTRA_PANELS``, for the whole run.

    Not ``override_settings``: it wraps the settings in a holder that makes every settings
    read of the request slower, which the other variants would not pay. The setting is
    assigned, and ``setting_changed`` sent so the toolbar drops any panel list it cached.
    """
    from debug_toolbar.settings import PANELS_DEFAULTS

    panels = [*PANELS_DEFAULTS, *settings.BENCH_EXTRA_PANELS]
    settings.DEBUG_TOOLBAR_PANELS = panels
    setting_changed.send(
        sender=type(settings._wrapped), setting="DEBUG_TOOLBAR_PANELS", value=panels, enter=True
    )
