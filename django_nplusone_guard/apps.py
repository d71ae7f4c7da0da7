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
        _guard_commands_when_asked()
        _guard_tasks_when_asked()
        _guard_celery_tasks_when_asked()
        if apps.is_installed("debug_toolbar"):
            # The middleware without the panel: still keep the hooks out of SQL panel stacks.
            from .panels import hide_from_toolbar_stacks

            hide_from_toolbar_stacks()


def _guard_commands_when_asked() -> None:
    """Wrap management commands only once ``COMMANDS`` is set, now or by a later settings
    change (a test's ``override_settings``): off, commands run exactly as without the app."""
    from . import conf
    from .commands import sync_with_settings

    sync_with_settings()
    conf.on_settings_change(sync_with_settings)


def _guard_tasks_when_asked() -> None:
    """Connect to ``django.tasks``' signals only once ``TASKS`` is set and only on Django
    6.0+: on older versions ``django.tasks`` is never imported."""
    from . import conf
    from .tasks import sync_with_settings

    sync_with_settings()
    conf.on_settings_change(sync_with_settings)


def _guard_celery_tasks_when_asked() -> None:
    """Connect to Celery's task signals only once ``CELERY`` is set and Celery is installed:
    until then Celery is never imported by the guard."""
    from . import conf
    from .celery import sync_with_settings

    sync_with_settings()
    conf.on_settings_change(sync_with_settings)
