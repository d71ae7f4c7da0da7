from __future__ import annotations

from django.apps import AppConfig, apps


class NPlusOneGuardConfig(AppConfig):
    name = "django_nplusone_guard"
    verbose_name = "N+1 Guard"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the system checks
        from .capture import install
        from .orm import install as install_orm_hooks

        install()
        install_orm_hooks()
        if apps.is_installed("debug_toolbar"):
            # The middleware without the panel: still keep the hooks out of SQL panel stacks.
            from .panels import hide_from_toolbar_stacks

            hide_from_toolbar_stacks()
