"""System checks: bad settings fail at start-up with a message that says how to fix them."""

from __future__ import annotations

import difflib
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from . import conf

__all__ = ["check_app_installed", "check_setting_name", "check_settings"]

MIDDLEWARE_PATH = "django_nplusone_guard.middleware.NPlusOneGuardMiddleware"


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """E0xx for every problem :func:`conf.validate` finds; E010 for ``raise`` in production;
    E011 for an exporter that cannot run here."""
    raw = getattr(settings, conf.SETTING_NAME, {})
    problems = conf.validate(raw)
    conf.mark_reported(problems)  # shown here: the run-time log does not say it again
    messages: list[CheckMessage] = [Error(p.msg, hint=p.hint, id=p.id) for p in problems]
    if not isinstance(raw, dict):
        return messages
    if (
        raw.get("ACTION") == "raise"
        and not settings.DEBUG
        and raw.get("ENABLED", settings.DEBUG)
        and raw.get("ALLOW_RAISE_IN_PRODUCTION") is not True
    ):
        messages.append(
            Error(
                f"{conf.SETTING_NAME}['ACTION'] is 'raise' while DEBUG is False: an N+1 "
                "would turn a working page into a 500 error in production.",
                hint="Use ACTION 'log' in production (with SAMPLE_RATE and EXPORTERS, see "
                "docs/production.md), keep ENABLED off there, or set "
                "'ALLOW_RAISE_IN_PRODUCTION': True if failing requests is what you want "
                "(a staging server).",
                id="django_nplusone_guard.E010",
            )
        )
    messages.extend(_check_exporters(raw.get("EXPORTERS")))
    return messages


def _check_exporters(names: Any) -> list[CheckMessage]:
    if not isinstance(names, list | tuple):
        return []  # missing (the default), or E002 already
    from .exporters.base import exporter_problem

    messages: list[CheckMessage] = []
    for name in names:
        problem = exporter_problem(name) if isinstance(name, str) else None
        if problem is not None:
            messages.append(
                Error(
                    f"{conf.SETTING_NAME}['EXPORTERS'] has {name!r}, which {problem}.",
                    hint="Use 'log', 'opentelemetry' (pip install "
                    "'django-nplusone-guard[otel]'), 'sentry' (pip install "
                    "'django-nplusone-guard[sentry]') or the dotted path of a callable "
                    "taking one django_nplusone_guard.exporters.base.Export.",
                    id="django_nplusone_guard.E011",
                )
            )
    return messages


@register(Tags.compatibility)
def check_setting_name(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W003 for a setting whose name is a misspelling of ``NPLUSONE_GUARD``: the guard
    never reads it, so everything in it is silently ignored."""
    names = [name for name in dir(settings) if name.isupper() and name != conf.SETTING_NAME]
    shape = conf.SETTING_NAME.replace("_", "")
    close = [name for name in names if name.replace("_", "") == shape]
    close += difflib.get_close_matches(conf.SETTING_NAME, names, n=3, cutoff=0.8)
    return [
        Warning(
            f"Setting {name} is not read by django-nplusone-guard; did you mean "
            f"{conf.SETTING_NAME}?",
            hint=f"Rename it to {conf.SETTING_NAME}. See {conf.SETTINGS_DOCS_URL}",
            id="django_nplusone_guard.W003",
        )
        for name in dict.fromkeys(close)
    ]


@register(Tags.compatibility)
def check_app_installed(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """W002 when the middleware is listed but the app is not.

    Without the app, settings are never validated at start-up and the toolbar panel's
    templates are not found. Django only runs checks of installed apps, so the middleware
    also logs this message when it is first loaded.
    """
    middleware = getattr(settings, "MIDDLEWARE", None) or ()
    if MIDDLEWARE_PATH not in middleware or apps.is_installed("django_nplusone_guard"):
        return []
    return [
        Warning(
            f"{MIDDLEWARE_PATH} is in MIDDLEWARE but 'django_nplusone_guard' is not in "
            "INSTALLED_APPS: its settings are not checked and its templates are not found.",
            hint="Add 'django_nplusone_guard' to INSTALLED_APPS.",
            id="django_nplusone_guard.W002",
        )
    ]
