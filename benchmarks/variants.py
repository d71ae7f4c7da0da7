"""What each benchmark variant adds to the bare project.

Kept apart from ``settings`` so the runner can list variants (and their labels) without
configuring Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Variant:
    name: str
    label: str
    #: Import name that must be importable, or the variant is skipped.
    requires: str | None = None
    apps: tuple[str, ...] = ()
    #: Middleware put first (outermost), so it sees every query of the request.
    middleware: tuple[str, ...] = ()
    settings: dict[str, object] = field(default_factory=dict)
    #: Comparison tools, installed only in the benchmark's own virtualenv.
    third_party: bool = False
    #: Dotted path of a callable run once Django is set up.
    after_setup: str | None = None
    #: Ids of the toolbar panels the rendered page must show (the worker checks them).
    panels_shown: tuple[str, ...] = ()
    #: Only a share of its requests is guarded (``SAMPLE_RATE``): the check asks for one that
    #: is, and that its exporters all loaded.
    sampled: bool = False


_GUARD = "django_nplusone_guard"
_GUARD_MIDDLEWARE = "django_nplusone_guard.middleware.NPlusOneGuardMiddleware"
_TOOLBAR_MIDDLEWARE = "debug_toolbar.middleware.DebugToolbarMiddleware"
_SQL_PANEL = "debug_toolbar.panels.sql.SQLPanel"
_STOCK_ONLY_PANEL = "debug_toolbar.panels.history.HistoryPanel"
OUR_PANEL = "django_nplusone_guard.panels.NPlusOnePanel"
_TOOLBAR_CONFIG = {
    "SHOW_TOOLBAR_CALLBACK": "benchmarks.settings.show_toolbar",
    "IS_RUNNING_TESTS": False,
    "RENDER_PANELS": False,
}


def _guard(name: str, label: str, *, explain: bool = False, **extra: Any) -> Variant:
    """The guard's middleware as a project would add it, logging findings."""
    return Variant(
        name,
        label,
        apps=(_GUARD,),
        middleware=(_GUARD_MIDDLEWARE,),
        settings={"NPLUSONE_GUARD": {"ENABLED": True, "ACTION": "log", "EXPLAIN": explain}},
        **extra,
    )


def _production(name: str, label: str) -> Variant:
    """The guard as docs/production.md sets it up: one request in a hundred guarded, every
    exporter on (no OpenTelemetry SDK or Sentry DSN configured: their APIs' no-ops, what a
    process that installed them but traces nothing pays), one report per id and 300 s."""
    return Variant(
        name,
        label,
        apps=(_GUARD,),
        middleware=(_GUARD_MIDDLEWARE,),
        settings={
            "NPLUSONE_GUARD": {
                "ENABLED": True,
                "ACTION": "log",
                "EXPLAIN": False,
                "SAMPLE_RATE": PRODUCTION_SAMPLE_RATE,
                "EXPORTERS": ["log", "opentelemetry", "sentry"],
            }
        },
        requires="sentry_sdk",
        after_setup="benchmarks.production.seed_sampling",
        sampled=True,
    )


#: The production variant's ``SAMPLE_RATE``.
PRODUCTION_SAMPLE_RATE = 0.01


def _toolbar(
    name: str,
    label: str,
    *panels: str,
    requires: str = "debug_toolbar",
    apps: tuple[str, ...] = (),
    settings: dict[str, object] | None = None,
    stock: bool = False,
) -> Variant:
    """The debug toolbar with its SQL panel, plus ``panels``; or, ``stock``, with the panels
    it has by default (sixteen in toolbar 8, two of them disabled), as most projects use it.

    The default list is only known once the toolbar is importable, so a stock toolbar's
    ``panels`` wait in ``BENCH_EXTRA_PANELS`` and ``after_setup`` appends them to it (see
    ``benchmarks.panels``). The page must show every panel listed, and for a stock toolbar
    one of the default panels the SQL-only variants lack.
    """
    if stock:
        listed: dict[str, object] = {"BENCH_EXTRA_PANELS": list(panels)}
        shown = (_SQL_PANEL, _STOCK_ONLY_PANEL, *panels)
    else:
        listed = {"DEBUG_TOOLBAR_PANELS": [_SQL_PANEL, *panels]}
        shown = (_SQL_PANEL, *panels)
    return Variant(
        name,
        label,
        requires=requires,
        apps=("django.contrib.staticfiles", "debug_toolbar", *apps),
        middleware=(_TOOLBAR_MIDDLEWARE,),
        settings={**listed, "DEBUG_TOOLBAR_CONFIG": _TOOLBAR_CONFIG, **(settings or {})},
        after_setup="benchmarks.panels.use_stock_panels" if stock else None,
        panels_shown=tuple(path.rpartition(".")[2] for path in shown),
    )


def _with_our_panel(name: str, label: str, *, stock: bool = False) -> Variant:
    """The toolbar plus our panel, the guard's app installed but its middleware switched
    off (``ENABLED``), so the panel records alone."""
    return _toolbar(
        name,
        label,
        OUR_PANEL,
        requires="django_nplusone_guard.panels",
        apps=(_GUARD,),
        settings={"NPLUSONE_GUARD": {"ENABLED": False, "EXPLAIN": False}},
        stock=stock,
    )


VARIANTS: tuple[Variant, ...] = (
    Variant("bare", "bare Django"),
    _guard("guard", "guard middleware"),
    _guard(
        "guard-sql-only",
        "guard, ORM attribution hooks removed (diagnostic)",
        requires="django_nplusone_guard.orm",
        after_setup="django_nplusone_guard.orm.uninstall",
    ),
    _guard(
        "guard-explain",
        "guard middleware, EXPLAIN on",
        explain=True,
        requires="django_nplusone_guard.explain",
    ),
    _production("guard-production", "guard, production (SAMPLE_RATE=0.01, exporters on)"),
    Variant(
        "disabled-guard",
        "guard installed, ENABLED off (diagnostic: what an unsampled request is held to)",
        apps=(_GUARD,),
        middleware=(_GUARD_MIDDLEWARE,),
        settings={"NPLUSONE_GUARD": {"ENABLED": False, "ACTION": "log", "EXPLAIN": False}},
    ),
    _toolbar("toolbar", "debug toolbar, SQL panel"),
    _with_our_panel("toolbar-panel", "debug toolbar, SQL panel + our panel"),
    _toolbar(
        "toolbar-empty-panel",
        "debug toolbar, SQL panel + an empty panel (diagnostic)",
        "benchmarks.panels.EmptyPanel",
    ),
    _toolbar("toolbar-stock", "debug toolbar, default panels", stock=True),
    _with_our_panel(
        "toolbar-stock-panel", "debug toolbar, default panels + our panel", stock=True
    ),
    Variant(
        "zeal",
        "django-zeal",
        requires="zeal",
        apps=("zeal",),
        middleware=("zeal.middleware.zeal_middleware",),
        settings={"ZEAL_RAISE": False},
        third_party=True,
    ),
    Variant(
        "query-doctor",
        "django-query-doctor",
        requires="query_doctor",
        apps=("query_doctor",),
        middleware=("query_doctor.middleware.QueryDoctorMiddleware",),
        settings={"QUERY_DOCTOR": {"REPORTERS": ["log"]}},
        third_party=True,
    ),
    Variant(
        "nplusone",
        "nplusone",
        requires="nplusone",
        apps=("nplusone.ext.django",),
        middleware=("nplusone.ext.django.NPlusOneMiddleware",),
        settings={"NPLUSONE_LOG": True, "NPLUSONE_RAISE": False},
        third_party=True,
    ),
    Variant(
        "nplus1",
        "django-nplus1",
        requires="django_nplus1",
        apps=("django_nplus1",),
        middleware=("django_nplus1.middleware.NPlus1Middleware",),
        settings={"NPLUS1_LOG": True, "NPLUS1_RAISE": False},
        third_party=True,
    ),
)

BY_NAME = {variant.name: variant for variant in VARIANTS}

#: Loggers the tools report on; silenced so the benchmark measures detection, not terminal I/O.
TOOL_LOGGERS = ("django_nplusone_guard", "nplusone", "django_nplus1", "query_doctor", "zeal")
