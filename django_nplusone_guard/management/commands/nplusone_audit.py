"""``manage.py nplusone_audit``: request pages through Django's test client and report what
the guard finds on each, so a team can audit a whole site in CI without writing tests.

Each page is requested inside :func:`~django_nplusone_guard.capture` and, by default, inside a
transaction on every database that is rolled back afterwards, so a GET view that writes
leaves nothing behind. Findings are rendered with the shared formatter; ``--format json``
prints one document built from :meth:`Report.to_dict` (documented in ``docs/audit.md``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import async_to_sync, iscoroutinefunction
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, connections, transaction
from django.http import HttpResponseBase
from django.test import AsyncClient, Client
from django.test.utils import override_settings
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import LocalePrefixPattern, RegexPattern, RoutePattern
from django.utils.regex_helper import normalize

from django_nplusone_guard import audit_urls, autofix, conf
from django_nplusone_guard.capture import capture, render_frame
from django_nplusone_guard.report import Report, count_of, format_report

#: What ``--fail-on`` accepts: the report's finding categories, plus pages that crashed.
FAIL_ON_KINDS = ("nplusone", "missing_index", "duplicate", "error")
#: Version of the ``--format json`` document; bumped on incompatible changes.
JSON_VERSION = 1
#: Namespaces of tools whose pages are not the site's own.
_SKIPPED_NAMESPACES = {"djdt": "django-debug-toolbar's own pages"}
_ADMIN_SKIPPED = "the admin site (--include-admin audits it)"
USAGE_ERROR = 2
# The module, not the ``capture`` class the package re-exports under the same name.
_recorder = importlib.import_module("django_nplusone_guard.capture")


@dataclass(frozen=True)
class Route:
    """A URL pattern found by walking the resolver; ``path`` is None when it cannot be
    requested without arguments, and ``skip_reason`` says why."""

    pattern: str
    name: str | None
    path: str | None
    skip_reason: str | None = None
    #: For a route that needs arguments: their names, the path with ``%(name)s`` where
    #: each goes, their converters and the view, so ``--all`` can fill them from rows.
    arguments: tuple[str, ...] = ()
    template: str | None = None
    converters: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    callback: Callable[..., Any] | None = field(default=None, compare=False, repr=False)


@dataclass
class PageResult:
    url: str
    report: Report
    status: int | None = None
    error: str | None = None
    #: What the reader should know about the response (a redirect to the login page).
    note: str | None = None
    #: Bytes of the body, when it is not streamed (``--fix`` compares it before and after).
    body_length: int | None = None

    def counts(self) -> dict[str, int]:
        return {
            "nplusone": len(self.report.nplusones),
            "missing_index": len(self.report.missing_indexes),
            "duplicate": len(self.report.duplicates),
            "error": int(self.error is not None),
        }


# --------------------------------------------------------------------------- routes


def _piece(pattern: Any) -> tuple[str, list[str]] | None:
    """The literal text a pattern matches when it takes no arguments, and the names of the
    arguments it needs; None for pattern types we cannot turn into a path."""
    if isinstance(pattern, RoutePattern):
        return str(pattern), list(pattern.converters)
    if isinstance(pattern, RegexPattern):
        possibilities = normalize(str(pattern))
        for text, params in possibilities:
            if not params:
                return text, []
        return (possibilities[0][0], list(possibilities[0][1])) if possibilities else ("", [])
    if isinstance(pattern, LocalePrefixPattern):
        return pattern.language_prefix, []
    return None


def _has_get(callback: Callable[..., Any]) -> bool:
    actions = getattr(callback, "actions", None)  # Django REST framework viewsets
    if isinstance(actions, dict):
        return "get" in actions
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    if view_class is None:
        return True  # a function view: only a request can tell
    initkwargs = getattr(callback, "view_initkwargs", None) or {}
    methods = initkwargs.get("http_method_names", getattr(view_class, "http_method_names", ()))
    return "get" in methods and hasattr(view_class, "get")


def discover_routes(urlconf: str | None = None, *, include_admin: bool = False) -> list[Route]:
    """Every URL pattern of ``urlconf``, in resolver order, with the path to request.
    The admin site's routes are one skipped entry unless ``include_admin``."""
    routes: list[Route] = []

    def walk(
        patterns: Sequence[Any],
        prefix: str,
        shown: str,
        namespace: str | None,
        needs: list[str],
        template: str | None,
        converters: dict[str, Any],
    ) -> None:
        for entry in patterns:
            piece = _piece(entry.pattern)
            pattern_text = shown + str(entry.pattern)
            piece_template = audit_urls.path_template(entry.pattern)
            inner_template = None if template is None or piece_template is None else (
                template + piece_template
            )  # fmt: skip
            inner_converters = {**converters, **getattr(entry.pattern, "converters", {})}
            if isinstance(entry, URLResolver):
                ns = entry.namespace
                full_ns = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
                if ns in _SKIPPED_NAMESPACES:
                    routes.append(Route(pattern_text, ns, None, _SKIPPED_NAMESPACES[ns]))
                elif entry.app_name == "admin" and not include_admin:
                    routes.append(Route(pattern_text, ns, None, _ADMIN_SKIPPED))
                elif piece is None:
                    routes.append(Route(pattern_text, ns, None, "unsupported pattern type"))
                else:
                    walk(entry.url_patterns, prefix + piece[0], pattern_text, full_ns,
                         needs + piece[1], inner_template, inner_converters)  # fmt: skip
            elif isinstance(entry, URLPattern):
                name = f"{namespace}:{entry.name}" if namespace and entry.name else entry.name
                if piece is None:
                    routes.append(Route(pattern_text, name, None, "unsupported pattern type"))
                elif not _has_get(entry.callback):
                    routes.append(Route(pattern_text, name, None, "view does not handle GET"))
                elif needs + piece[1]:
                    arguments = needs + piece[1]
                    reason = f"needs URL argument(s): {', '.join(arguments)}"
                    route = Route(pattern_text, name, None, reason, tuple(arguments),
                                  inner_template, inner_converters, entry.callback)  # fmt: skip
                    routes.append(route)
                else:
                    routes.append(Route(pattern_text, name, "/" + prefix + piece[0]))

    walk(get_resolver(urlconf).url_patterns, "", "", None, [], "", {})
    return routes


def _fill(route: Route, samples: int) -> list[Route]:
    """``route`` with its arguments filled from the database (one route per sample row),
    or itself skipped with the reason it could not be."""
    if route.template is None or route.callback is None or not route.arguments:
        return [route]
    filled = audit_urls.fill_arguments(
        route.callback, route.template, route.arguments, route.converters, samples=samples
    )
    if filled.reason is not None:
        return [_skip(route, f"{route.skip_reason}; {filled.reason}")]
    return [Route(route.pattern, route.name, path) for path in filled.paths]


# --------------------------------------------------------------------------- requests


@contextmanager
def _rolled_back(enabled: bool) -> Iterator[None]:
    """Run the block in a transaction on every database alias and roll it back.

    An alias whose server cannot be reached is left alone: a view that needs it fails on
    its own and is reported as that page's error.
    """
    if not enabled:
        yield
        return
    with ExitStack() as stack:
        entered = []
        for alias in connections:
            try:
                stack.enter_context(transaction.atomic(using=alias))
            except DatabaseError:
                continue
            entered.append(alias)
        try:
            yield
        finally:
            for alias in entered:
                transaction.set_rollback(True, using=alias)


def _describe_error(exc: BaseException) -> str:
    """``ValueError: boom (at views.py:12 in book_list)``: what broke, and the innermost line
    of the project's own code (or the innermost line at all when none is the project's)."""
    where = ""
    innermost = None
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        innermost = (frame, lineno)
        if _recorder._classify(frame) == _recorder._USER:  # the recorder's notion of user code
            where = f" (at {render_frame(frame.f_code, lineno)})"
    if not where and innermost is not None:
        where = f" (at {render_frame(innermost[0].f_code, innermost[1])})"
    return f"{type(exc).__name__}: {exc}{where}"


def audit_page(
    client: Client,
    url: str,
    *,
    explain: bool | None,
    threshold: int | None,
    rollback: bool,
) -> PageResult:
    """Request one URL under ``capture()``; a page that raises becomes an ``error``.

    Async views are requested through the ASGI handler, with the scope opened in the
    request's task: that is how they run in production, and how the recorder finds the
    awaiting line of a query (under WSGI it runs in another thread's event loop). A
    streaming response is read to the end inside the scope: exports that query row by
    row while streaming are a classic place for an N+1.
    """
    scope = capture(explain=explain, threshold=threshold)
    result = PageResult(url=url, report=scope.report)
    try:
        with _rolled_back(rollback):
            if _is_async_view(url):
                response = async_to_sync(_get_async)(client, url, scope)
            else:
                with scope:
                    response = client.get(url)
                    if response.streaming:
                        for _chunk in response.streaming_content:  # type: ignore[attr-defined]
                            pass
        result.status = response.status_code
        result.note = audit_urls.login_redirect_note(response)
        if not response.streaming:
            result.body_length = len(response.content)  # type: ignore[attr-defined]
    except Exception as exc:
        result.error = _describe_error(exc)
        client.exc_info = None  # else the client re-raises it on the next request
    return result


def _is_async_view(url: str) -> bool:
    try:
        match = resolve(urlsplit(url).path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)


async def _get_async(client: Client, url: str, scope: capture) -> HttpResponseBase:
    async_client = AsyncClient()
    async_client.cookies = client.cookies  # the --user session
    async with scope:
        response = await async_client.get(url)
        if response.streaming:
            content: Any = response.streaming_content  # type: ignore[attr-defined]
            if hasattr(content, "__aiter__"):
                async for _chunk in content:
                    pass
            else:
                for _chunk in content:
                    pass
    return response


# --------------------------------------------------------------------------- the command


class Command(BaseCommand):
    help = (
        "Request pages with Django's test client and report N+1 queries, missing indexes "
        "and duplicate queries on each. Give URLs, or --all for every GET route (detail "
        "pages with arguments filled from existing rows). Exit status 1 when --fail-on kinds "
        "are found, 2 on usage errors."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        argparse_error = parser.error

        def error(message: str) -> Any:
            if parser.called_from_command_line:
                argparse_error(message)  # argparse prints usage and exits with status 2
            raise CommandError(f"Error: {message}", returncode=USAGE_ERROR)

        setattr(parser, "error", error)  # noqa: B010 - CommandParser.error returns 1
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "urls", nargs="*", metavar="URL", help="Paths to request, e.g. /books/?page=2."
        )
        parser.add_argument(
            "--all",
            action="store_true",
            dest="all_routes",
            help="Also request every GET route: those that need no URL arguments, and "
            "detail pages whose pk/slug arguments can be filled from existing rows.",
        )
        parser.add_argument(
            "--samples",
            type=int,
            default=1,
            metavar="N",
            help="With --all, request each detail page for the first N rows (default: 1).",
        )
        parser.add_argument(
            "--include-admin",
            action="store_true",
            help="With --all, audit the admin site's pages too (skipped by default).",
        )
        parser.add_argument(
            "--format",
            choices=("text", "json"),
            default="text",
            help="Findings per page and a summary (text, the default), or one JSON document.",
        )
        parser.add_argument(
            "--fail-on",
            default="",
            metavar="KINDS",
            help=f"Comma-separated kinds that make the command exit with status 1: "
            f"{', '.join(FAIL_ON_KINDS)}.",
        )
        parser.add_argument("--user", metavar="USERNAME", help="Log in as this user first.")
        parser.add_argument(
            "--explain",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="EXPLAIN each distinct SELECT to find missing indexes "
            "(default: the EXPLAIN setting).",
        )
        parser.add_argument(
            "--threshold",
            type=int,
            default=None,
            help="Repeats that make an N+1 (default: setting).",
        )
        parser.add_argument(
            "--exclude",
            action="append",
            default=[],
            metavar="REGEX",
            help="With --all, skip paths matching this regular expression (repeatable).",
        )
        parser.add_argument(
            "--rollback",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="Roll back each request's database changes (default: yes).",
        )
        autofix.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        fail_on = self._parse_fail_on(options["fail_on"])
        urls = [self._normalise_url(u) for u in options["urls"]]
        if not urls and not options["all_routes"]:
            raise CommandError("Give one or more URLs, or --all.", returncode=USAGE_ERROR)
        if options["threshold"] is not None and options["threshold"] < 1:
            raise CommandError("--threshold must be at least 1.", returncode=USAGE_ERROR)
        if options["samples"] < 1:
            raise CommandError("--samples must be at least 1.", returncode=USAGE_ERROR)
        excludes = self._compile(options["exclude"])
        autofix.check_options(options)

        skipped: list[Route] = []
        if options["all_routes"]:
            ignore_urls = conf.get_config().IGNORE_URLS
            routes = discover_routes(include_admin=options["include_admin"])
            for route in (r for found in routes for r in _fill(found, options["samples"])):
                if route.path is None:
                    skipped.append(route)
                elif any(p.search(route.path) for p in excludes):
                    skipped.append(_skip(route, "excluded by --exclude"))
                elif any(p.search(route.path) for p in ignore_urls):
                    skipped.append(_skip(route, "ignored by NPLUSONE_GUARD['IGNORE_URLS']"))
                elif route.path not in urls:
                    urls.append(route.path)
        urls = list(dict.fromkeys(urls))

        results = self._run(urls, options)

        if options["format"] == "json":
            self.stdout.write(json.dumps(self._as_json(results, skipped, fail_on), indent=2))
        else:
            self._write_text(results, skipped, options["verbosity"])

        if options["fix"]:
            autofix.fix(results, options, self.stdout, self.style)

        failed = [k for k in fail_on if any(r.counts()[k] for r in results)]
        if failed:
            totals = _totals(results)
            found = ", ".join(f"{totals[k]} {_LABELS[k]}" for k in failed)
            raise CommandError(f"nplusone_audit failed (--fail-on): found {found}.", returncode=1)

    # ----------------------------------------------------------------- helpers

    def _parse_fail_on(self, text: str) -> list[str]:
        kinds = [k.strip().replace("-", "_") for k in text.split(",") if k.strip()]
        aliases = {"n+1": "nplusone", "nplusones": "nplusone", "missing_indexes": "missing_index",
                   "duplicates": "duplicate", "errors": "error"}  # fmt: skip
        kinds = [aliases.get(k, k) for k in kinds]
        unknown = [k for k in kinds if k not in FAIL_ON_KINDS]
        if unknown:
            raise CommandError(
                f"--fail-on: unknown kind(s) {', '.join(unknown)}; "
                f"use {', '.join(FAIL_ON_KINDS)}.",
                returncode=USAGE_ERROR,
            )
        return list(dict.fromkeys(kinds))

    def _normalise_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc:
            url = parts.path + (f"?{parts.query}" if parts.query else "")
        if not url.startswith("/"):
            raise CommandError(
                f"URL {url!r} must be a path starting with '/', e.g. /books/.",
                returncode=USAGE_ERROR,
            )
        return url

    def _compile(self, patterns: list[str]) -> list[re.Pattern[str]]:
        compiled = []
        for pattern in patterns:
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                raise CommandError(
                    f"--exclude {pattern!r} is not a valid regular expression: {exc}.",
                    returncode=USAGE_ERROR,
                ) from exc
        return compiled

    def _client(self, username: str | None) -> Client:
        client = Client()
        if username is None:
            return client
        from django.contrib.auth import get_user_model

        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"--user: no user {username!r}.", returncode=USAGE_ERROR) from None
        client.force_login(user)
        return client

    def _run(self, urls: list[str], options: dict[str, Any]) -> list[PageResult]:
        raw = getattr(settings, conf.SETTING_NAME, {})
        guard = {**raw, "ENABLED": False} if isinstance(raw, dict) else {"ENABLED": False}
        overrides = override_settings(
            ALLOWED_HOSTS=[*settings.ALLOWED_HOSTS, "testserver"],
            # Let a crashing view raise to us instead of rendering a 500 page, whose
            # debug variant evaluates querysets in frame locals.
            DEBUG_PROPAGATE_EXCEPTIONS=True,
            # The audit's own scope is the report: the middleware stays out of the way.
            **{conf.SETTING_NAME: guard},
        )
        results: list[PageResult] = []
        progress = _Progress(self.stderr, len(urls))
        with overrides:
            client = self._client(options["user"])
            for index, url in enumerate(urls):
                progress.show(index, url)
                results.append(
                    audit_page(
                        client,
                        url,
                        explain=options["explain"],
                        threshold=options["threshold"],
                        rollback=options["rollback"],
                    )
                )
        progress.clear()
        return results

    def _write_text(self, results: list[PageResult], skipped: list[Route], verbosity: int) -> None:
        write = self.stdout.write
        if verbosity >= 1:
            compact = False  # the last line written was a one-line page
            for result in results:
                status = result.status if result.status is not None else "error"
                heading = f"GET {result.url} ({status})"
                note = f"; {result.note}" if result.note else ""
                compact = not result.error and not result.report.findings and verbosity < 2
                if compact:
                    queries = count_of(result.report.query_count, "query", "queries")
                    write(f"{heading}: {queries}, no findings{note}.")
                    continue
                write(self.style.MIGRATE_HEADING(heading + note))
                if result.error:
                    write(self.style.ERROR(f"  Page raised {result.error}"))
                body = format_report(
                    result.report, verbose=verbosity >= 2, params=conf.get_config().LOG_PARAMS
                )
                write("\n".join("  " + line if line else "" for line in body.splitlines()))
                write("")
            if compact:
                write("")
        if skipped and verbosity >= 1:
            routes = count_of(len(skipped), "route", "routes")
            write(self.style.MIGRATE_HEADING(f"Skipped {routes}"))
            width = max(len(r.pattern) for r in skipped)
            for route in skipped:
                write(f"  {route.pattern:<{width}}  {route.skip_reason}")
            write("")
        write(self.style.MIGRATE_HEADING("Summary"))
        write(_summary_table(results))
        totals = _totals(results)
        line = (
            f"{count_of(len(results), 'page', 'pages')} audited, "
            f"{count_of(len(skipped), 'route', 'routes')} skipped: "
            + ", ".join(f"{totals[k]} {_LABELS[k]}" for k in FAIL_ON_KINDS)
            + "."
        )
        write(self.style.WARNING(line) if any(totals.values()) else self.style.SUCCESS(line))

    def _as_json(
        self, results: list[PageResult], skipped: list[Route], fail_on: list[str]
    ) -> dict[str, Any]:
        totals = _totals(results)
        return {
            "version": JSON_VERSION,
            "pages": [
                {
                    "url": r.url,
                    "status": r.status,
                    "error": r.error,
                    "note": r.note,
                    "report": _report_data(r.report),
                }
                for r in results
            ],
            "skipped": [
                {"pattern": r.pattern, "name": r.name, "reason": r.skip_reason} for r in skipped
            ],
            "summary": {
                "pages": len(results),
                "skipped": len(skipped),
                "queries": sum(r.report.query_count for r in results),
                **totals,
            },
            "fail_on": fail_on,
            "failed": [k for k in fail_on if totals[k]],
        }


_LABELS = {"nplusone": "N+1", "missing_index": "missing index", "duplicate": "duplicate",
           "error": "error"}  # fmt: skip


def _report_data(report: Report) -> dict[str, Any]:
    """``report.to_dict()`` for CI logs and artifacts: parameter values (personal data,
    often) only with the ``LOG_PARAMS`` setting, as for logged findings."""
    keep = conf.get_config().LOG_PARAMS
    data = report.to_dict(params=keep)
    if not keep:
        for finding in (*data["duplicates"], *data["nplusones"]):
            finding["params"] = None
    return data


def _skip(route: Route, reason: str) -> Route:
    return Route(route.pattern, route.name, None, reason)


def _totals(results: list[PageResult]) -> dict[str, int]:
    totals = dict.fromkeys(FAIL_ON_KINDS, 0)
    for result in results:
        for kind, count in result.counts().items():
            totals[kind] += count
    return totals


def _summary_table(results: list[PageResult]) -> str:
    header = ("URL", "Status", "Queries", "N+1", "Index", "Dup")
    rows = [
        (
            r.url,
            str(r.status) if r.status is not None else "error",
            str(r.report.query_count),
            str(len(r.report.nplusones)),
            str(len(r.report.missing_indexes)),
            str(len(r.report.duplicates)),
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        cells = [row[0].ljust(widths[0])]
        cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  " + "  ".join(cells).rstrip()

    return "\n".join([line(header), *(line(r) for r in rows)])


class _Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal.

    Written unstyled: a command's stderr wrapper styles everything as an error (red) on a
    terminal, and progress is not an error."""

    WIDTH = 24

    def __init__(self, stream: Any, total: int) -> None:
        self.stream = stream
        self.total = total
        isatty = getattr(stream, "isatty", None)
        self.enabled = bool(total) and callable(isatty) and bool(isatty())

    def show(self, index: int, url: str) -> None:
        if not self.enabled:
            return
        done = int(self.WIDTH * index / self.total)
        bar = "#" * done + "-" * (self.WIDTH - done)
        text = f"\r\033[K[{bar}] {index + 1}/{self.total} {url[:60]}"
        self.stream.write(text, style_func=_unstyled, ending="")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K", style_func=_unstyled, ending="")
            self.stream.flush()


def _unstyled(text: str) -> str:
    return text


__all__ = ["Command", "PageResult", "Route", "audit_page", "discover_routes"]
