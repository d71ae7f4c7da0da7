"""A toolbar panel that does nothing, for the ``toolbar-empty-panel`` variant.

The toolbar does some work for every panel on every request (instantiating it, chaining
its ``process_request``, storing its stats, rendering its entry in the side bar). This
panel measures that floor: whatever our panel costs beyond it is ours.
"""

from __future__ import annotations

from debug_toolbar.panels import Panel


class EmptyPanel(Panel):
    """Records nothing and shows nothing."""

    title = nav_title = "Empty"
    template = "debug_toolbar/panels/settings.html"
