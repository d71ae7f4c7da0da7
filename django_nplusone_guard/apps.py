from __future__ import annotations

from django.apps import AppConfig


class NPlusOneGuardConfig(AppConfig):
    name = "django_nplusone_guard"
    verbose_name = "N+1 Guard"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the system checks
        from .capture import install
        from .orm import install as install_orm_hooks

        install()
        install_orm_hooks()
