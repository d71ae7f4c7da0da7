"""The ``NPLUSONE_GUARD`` settings dict: defaults, validation and typed access.

Everything that reads settings goes through :func:`get_config`, so validation lives in one
place: :mod:`django_nplusone_guard.checks` reports :func:`validate`'s problems as system-check
errors at start-up, and :func:`get_config` falls back to the default for a bad value (logging
it once) so a typo can never break a request at run time.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

__all__ = ["ACTIONS", "Config", "Problem", "get_config", "is_enabled", "validate"]

logger = logging.getLogger("django_nplusone_guard")

SETTING_NAME = "NPLUSONE_GUARD"
#: Where the documentation lives; hints link here, since users have no ``docs/`` folder.
DOCS_URL = "https://github.com/django-nplusone-guard/django-nplusone-guard/blob/main/docs/"
SETTINGS_DOCS_URL = DOCS_URL + "settings.md"
ACTIONS = ("log", "warn", "raise", "off")
#: Commands never guarded, whatever ``COMMANDS`` says: they serve requests (guarded by the
#: middleware), run the tests (guarded by the test helpers), change the schema, hand over to
#: a person, or are the guard's own audit.
NEVER_GUARDED_COMMANDS = frozenset({"runserver", "migrate", "test", "shell", "nplusone_audit"})
ALLOW_RULE_KEYS = frozenset({"model", "field", "callsite", "sql", "kind"})
#: ``EXPORTERS`` names that need no import path: each is a module of ``exporters/``.
BUILTIN_EXPORTERS = ("log", "opentelemetry", "sentry")
SENTRY_MODES = ("event", "breadcrumb")


@dataclass(frozen=True)
class Config:
    """Parsed settings; build one with :func:`get_config`, never by hand in library code."""

    #: ``None`` (unset) follows ``DEBUG`` as it is when each request, command or task
    #: starts: see :func:`is_enabled`.
    ENABLED: bool | None = None
    ACTION: str = "log"
    THRESHOLD: int = 2
    EXPLAIN: bool = False
    EXPLAIN_TIMEOUT_MS: int = 200
    ALLOW: tuple[Mapping[str, str], ...] = ()
    IGNORE_URLS: tuple[re.Pattern[str], ...] = ()
    STACK_IGNORE: tuple[str, ...] = ()
    MAX_QUERIES: int = 10_000
    HEADER: bool = False
    LOG_PARAMS: bool = False
    REPORT_DUPLICATES: bool = True
    REPORT_UNUSED_EAGER: bool = False
    ANALYSIS_BUDGET_MS: int = 2_000
    #: ``False``, ``True`` (every command) or command names / fnmatch patterns.
    COMMANDS: bool | tuple[str, ...] = False
    #: Guard each execution of a ``django.tasks`` task (Django 6.0+).
    TASKS: bool = False
    #: Guard each execution of a Celery task (the ``celery`` extra).
    CELERY: bool = False
    #: Production mode (see docs/production.md): the share of requests, commands and tasks
    #: guarded; how often one finding id is reported per process (``None``: 300 s with
    #: ``DEBUG`` off, 0 with it on, read when findings are delivered); where ``ACTION="log"``
    #: sends findings.
    SAMPLE_RATE: float = 1.0
    REPORT_INTERVAL: float | None = None
    EXPORTERS: tuple[str, ...] = ("log",)
    SENTRY_MODE: str = "event"
    ALLOW_RAISE_IN_PRODUCTION: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the settings, phrased for the person who has to fix it."""

    id: str
    msg: str
    hint: str
    key: str | None = None  # the setting key at fault, so get_config() can skip just that one


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# key -> (type check, human description of the expected type)
_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "ENABLED": (_is_bool, "a bool"),
    "ACTION": (lambda v: isinstance(v, str), "a string"),
    "THRESHOLD": (_is_positive_int, "a positive int"),
    "EXPLAIN": (_is_bool, "a bool"),
    "EXPLAIN_TIMEOUT_MS": (_is_positive_int, "a positive int (milliseconds)"),
    "ALLOW": (lambda v: isinstance(v, list | tuple), "a list of dicts"),
    "IGNORE_URLS": (_is_str_list, "a list of regular expressions (strings)"),
    "STACK_IGNORE": (_is_str_list, "a list of module prefixes (strings)"),
    "MAX_QUERIES": (_is_positive_int, "a positive int"),
    "HEADER": (_is_bool, "a bool"),
    "LOG_PARAMS": (_is_bool, "a bool"),
    "REPORT_DUPLICATES": (_is_bool, "a bool"),
    "REPORT_UNUSED_EAGER": (_is_bool, "a bool"),
    "ANALYSIS_BUDGET_MS": (_is_positive_int, "a positive int (milliseconds)"),
    "COMMANDS": (
        lambda v: _is_bool(v) or _is_str_list(v),
        "True, False or a list of command names / fnmatch patterns (strings)",
    ),
    "TASKS": (_is_bool, "a bool"),
    "CELERY": (_is_bool, "a bool"),
    "SAMPLE_RATE": (lambda v: _is_number(v) and 0 <= v <= 1, "a number from 0.0 to 1.0"),
    "REPORT_INTERVAL": (lambda v: _is_number(v) and v >= 0, "a number of seconds >= 0"),
    "EXPORTERS": (_is_str_list, "a list of exporter names or dotted paths (strings)"),
    "SENTRY_MODE": (lambda v: v in SENTRY_MODES, "'event' or 'breadcrumb'"),
    "ALLOW_RAISE_IN_PRODUCTION": (_is_bool, "a bool"),
}


def validate_allow_rules(rules: Any, *, where: str, check_models: bool = True) -> list[Problem]:
    """Check ``ALLOW``-style rules; shared by settings and the test helpers' ``allow=``."""
    problems: list[Problem] = []
    if not isinstance(rules, list | tuple):
        return [
            Problem(
                "django_nplusone_guard.E005",
                f"{where} must be a list of dicts, got {type(rules).__name__}.",
                'Example: [{"model": "library.Book", "field": "author"}].',
            )
        ]
    for index, rule in enumerate(rules):
        label = f"{where}[{index}]"
        if not isinstance(rule, Mapping) or not rule:
            problems.append(
                Problem(
                    "django_nplusone_guard.E005",
                    f"{label} must be a non-empty dict, got {rule!r}.",
                    'Use keys "model", "field", "callsite", "sql" or "kind", e.g. '
                    '{"model": "library.Book", "field": "author"}.',
                )
            )
            continue
        unknown = sorted(set(rule) - ALLOW_RULE_KEYS)
        if unknown:
            problems.append(
                Problem(
                    "django_nplusone_guard.E005",
                    f"{label} has unknown key(s) {', '.join(map(repr, unknown))}.",
                    f"Allowed keys: {', '.join(sorted(ALLOW_RULE_KEYS))}.",
                )
            )
        for key, value in rule.items():
            if key in ALLOW_RULE_KEYS and not isinstance(value, str):
                problems.append(
                    Problem(
                        "django_nplusone_guard.E005",
                        f"{label}[{key!r}] must be a string, got {type(value).__name__}.",
                        "Patterns are strings: fnmatch globs, or a regex for 'sql'.",
                    )
                )
        sql = rule.get("sql")
        if isinstance(sql, str):
            try:
                re.compile(sql)
            except re.error as exc:
                problems.append(
                    Problem(
                        "django_nplusone_guard.E006",
                        f"{label}['sql'] is not a valid regular expression: {exc}.",
                        "Escape special characters, e.g. re.escape('...').",
                    )
                )
        model = rule.get("model")
        if check_models and isinstance(model, str) and not any(c in model for c in "*?["):
            problems.extend(_check_model_label(model, label))
    return problems


def _check_model_label(label_text: str, where: str) -> list[Problem]:
    from django.apps import apps

    try:
        apps.get_model(label_text)
    except (LookupError, ValueError):
        return [
            Problem(
                "django_nplusone_guard.E007",
                f"{where}['model'] refers to unknown model {label_text!r}.",
                'Use "app_label.ModelName" of an installed model, or a glob like "library.*".',
            )
        ]
    return []


def validate(raw: Any) -> list[Problem]:
    """Every problem with the ``NPLUSONE_GUARD`` setting, in a stable order."""
    if not isinstance(raw, Mapping):
        return [
            Problem(
                "django_nplusone_guard.E001",
                f"{SETTING_NAME} must be a dict, got {type(raw).__name__}.",
                f'Example: {SETTING_NAME} = {{"ACTION": "log"}}.',
            )
        ]
    problems: list[Problem] = []
    for key in raw:
        if key not in _TYPES:
            close = did_you_mean(str(key), _TYPES)
            hint = f"Did you mean {close!r}? " if close else ""
            problems.append(
                Problem(
                    "django_nplusone_guard.E001",
                    f"{SETTING_NAME} has unknown key {key!r}.",
                    hint + f"Known keys: {', '.join(_TYPES)}. See {SETTINGS_DOCS_URL}",
                )
            )
    for key, (check, expected) in _TYPES.items():
        if key in raw and not check(raw[key]):
            problems.append(
                Problem(
                    "django_nplusone_guard.E002",
                    f"{SETTING_NAME}[{key!r}] must be {expected}, got {raw[key]!r}.",
                    f"See {SETTINGS_DOCS_URL}#{key.lower()}",
                    key,
                )
            )
    action = raw.get("ACTION")
    if isinstance(action, str) and action not in ACTIONS:
        problems.append(
            Problem(
                "django_nplusone_guard.E003",
                f"{SETTING_NAME}['ACTION'] is {action!r}.",
                f"Use one of {', '.join(map(repr, ACTIONS))}.",
                "ACTION",
            )
        )
    urls = raw.get("IGNORE_URLS")
    if urls is not None and _is_str_list(urls):
        for pattern in urls:
            try:
                re.compile(pattern)
            except re.error as exc:
                problems.append(
                    Problem(
                        "django_nplusone_guard.E004",
                        f"{SETTING_NAME}['IGNORE_URLS'] has an invalid regex {pattern!r}: {exc}.",
                        "Patterns are matched with re.search against request.path_info, "
                        "e.g. r'^/admin/'.",
                        "IGNORE_URLS",
                    )
                )
    commands = raw.get("COMMANDS")
    if isinstance(commands, list | tuple) and _is_str_list(commands):
        for name in commands:
            if not name.strip() or name in NEVER_GUARDED_COMMANDS:
                problems.append(
                    Problem(
                        "django_nplusone_guard.E008",
                        f"{SETTING_NAME}['COMMANDS'] has {name!r}, which is never guarded."
                        if name.strip()
                        else f"{SETTING_NAME}['COMMANDS'] has an empty name.",
                        "List your own commands' names or fnmatch patterns ('report_*'); "
                        f"{', '.join(sorted(NEVER_GUARDED_COMMANDS))} are never guarded.",
                        "COMMANDS",
                    )
                )
    if raw.get("CELERY") is True and importlib.util.find_spec("celery") is None:
        problems.append(
            Problem(
                "django_nplusone_guard.E009",
                f"{SETTING_NAME}['CELERY'] is True but Celery is not installed.",
                "Install it with `pip install django-nplusone-guard[celery]`, or remove "
                "'CELERY' from the setting.",
                "CELERY",
            )
        )
    if "ALLOW" in raw and isinstance(raw["ALLOW"], list | tuple):
        problems.extend(
            replace(p, key="ALLOW")
            for p in validate_allow_rules(raw["ALLOW"], where=f"{SETTING_NAME}['ALLOW']")
        )
    return problems


def did_you_mean(name: str, known: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The known name closest to a misspelt one (``ACTOIN`` -> ``ACTION``), by edit
    distance; case and underscores do not count."""
    by_shape = {k.upper().replace("_", ""): k for k in known}
    shape = name.upper().replace("_", "")
    if shape in by_shape:
        return by_shape[shape]
    close = difflib.get_close_matches(name.upper(), list(by_shape.values()), n=1, cutoff=cutoff)
    return close[0] if close else None


_cached: Config | None = None
#: Problems already told to the user, by the system checks or by the log: each once.
_reported: set[str] = set()


def mark_reported(problems: Iterable[Problem]) -> None:
    """The system checks showed these: the run-time log will not repeat them."""
    _reported.update(p.msg for p in problems)


def _build(raw: Mapping[str, Any]) -> Config:
    problems = validate(raw)
    bad = {p.key for p in problems}
    # Settings read while apps load (the app's ready()) are read again once they have:
    # the system checks, which run in between, show each problem first, as an error.
    if apps.ready:
        for problem in problems:
            if problem.msg not in _reported:
                _reported.add(problem.msg)
                logger.error("Ignoring bad setting: %s %s", problem.msg, problem.hint)

    def value(key: str, default: Any) -> Any:
        return raw[key] if key in raw and key not in bad else default

    defaults = Config()
    return Config(
        ENABLED=value("ENABLED", None),
        ACTION=value("ACTION", defaults.ACTION),
        THRESHOLD=value("THRESHOLD", defaults.THRESHOLD),
        EXPLAIN=value("EXPLAIN", defaults.EXPLAIN),
        EXPLAIN_TIMEOUT_MS=value("EXPLAIN_TIMEOUT_MS", defaults.EXPLAIN_TIMEOUT_MS),
        ALLOW=tuple(value("ALLOW", ())),
        IGNORE_URLS=tuple(re.compile(p) for p in value("IGNORE_URLS", ())),
        STACK_IGNORE=tuple(value("STACK_IGNORE", ())),
        MAX_QUERIES=value("MAX_QUERIES", defaults.MAX_QUERIES),
        HEADER=value("HEADER", defaults.HEADER),
        LOG_PARAMS=value("LOG_PARAMS", defaults.LOG_PARAMS),
        REPORT_DUPLICATES=value("REPORT_DUPLICATES", defaults.REPORT_DUPLICATES),
        REPORT_UNUSED_EAGER=value("REPORT_UNUSED_EAGER", defaults.REPORT_UNUSED_EAGER),
        ANALYSIS_BUDGET_MS=value("ANALYSIS_BUDGET_MS", defaults.ANALYSIS_BUDGET_MS),
        COMMANDS=_commands(value("COMMANDS", defaults.COMMANDS)),
        TASKS=value("TASKS", defaults.TASKS),
        CELERY=value("CELERY", defaults.CELERY),
        SAMPLE_RATE=float(value("SAMPLE_RATE", defaults.SAMPLE_RATE)),
        REPORT_INTERVAL=_seconds(value("REPORT_INTERVAL", None)),
        EXPORTERS=tuple(value("EXPORTERS", defaults.EXPORTERS)),
        SENTRY_MODE=value("SENTRY_MODE", defaults.SENTRY_MODE),
        ALLOW_RAISE_IN_PRODUCTION=value(
            "ALLOW_RAISE_IN_PRODUCTION", defaults.ALLOW_RAISE_IN_PRODUCTION
        ),
        raw=dict(raw),
    )


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _commands(value: bool | Sequence[str]) -> bool | tuple[str, ...]:
    return value if isinstance(value, bool) else tuple(value)


def get_config() -> Config:
    """The current settings, parsed once and re-read when a test overrides them."""
    global _cached
    config = _cached
    if config is None:
        raw = getattr(settings, SETTING_NAME, {})
        config = _build(raw if isinstance(raw, Mapping) else {})
        if apps.ready:  # see _build: read again, and logged, once apps have loaded
            _cached = config
    return config


def is_enabled(config: Config | None = None) -> bool:
    """Whether the automatic front doors (middleware, commands, tasks) guard what starts
    now: ``ENABLED`` when it is set, else ``DEBUG`` as it is at this moment.

    ``DEBUG`` is read here, never cached: Django's test runner sets it to ``False`` without
    sending ``setting_changed``, so a value derived from it at start-up would keep the guard
    on (or off) for a whole suite, and then flip the first time a test overrides ``DEBUG``.
    """
    enabled = (get_config() if config is None else config).ENABLED
    return bool(settings.DEBUG) if enabled is None else enabled


def clear_cache() -> None:
    global _cached
    _cached = None
    for callback in _on_clear:
        callback()


_on_clear: list[Callable[[], None]] = []


def on_settings_change(callback: Callable[[], None]) -> None:
    """Let other modules drop their own caches derived from settings (e.g. STACK_IGNORE)."""
    _on_clear.append(callback)


@receiver(setting_changed)
def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    # DEBUG is not cached (see is_enabled), so only the guard's own setting clears.
    if setting == SETTING_NAME:
        clear_cache()


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """Normalise a ``using=`` argument: one alias, several, or ``None`` for all."""
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    return tuple(value)
