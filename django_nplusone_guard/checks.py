"""System checks: bad settings fail at start-up with a message that says how to fix them."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from . import conf

__all__ = ["check_settings"]

MIDDLEWARE_PATH = "django_nplusone_guard.middleware.NPlusOneGuardMiddleware"


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E0xx for every problem :func:`conf.validate` finds; W001 for risky production set-ups."""
    raw = getattr(settings, conf.SETTING_NAME, {})
    messages: list[CheckMessage] = [Error(p.msg, hint=p.hint, id=p.id) for p in conf.validate(raw)]
    if isinstance(raw, dict) and raw.get("ACTION") == "raise" and not settings.DEBUG:
        enabled = raw.get("ENABLED", settings.DEBUG)
        if enabled:
            messages.append(
                Warning(
                    f"{conf.SETTING_NAME}['ACTION'] is 'raise' while DEBUG is False: an N+1 "
                    "will turn a working page into a 500 error in production.",
                    hint="Use ACTION 'log' in production, or keep ENABLED off there.",
                    id="django_nplusone_guard.W001",
                )
            )
    return messages
