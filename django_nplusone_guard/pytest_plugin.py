"""pytest plugin: guard tests against N+1 queries, suite-wide or one test at a time.

Registered through the ``pytest11`` entry point, so it loads in every pytest session of a
project that installs the package, before Django is configured. Hence: nothing here touches
settings or models at import time, and with every option off it only registers markers,
options and the ``nplusone_guard`` fixture.

Only the test call is captured, never fixture set-up, and findings fired directly by test
code (factory loops, assertions in a test module, conftest or factories file) are set-up,
not code under test: they never count.

Under pytest-xdist each worker guards its own tests and sends its findings to the
controller through ``workeroutput``; only the controller writes the JSON report and the
baseline, and prints the summary.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .capture import capture
    from .report import Finding, Report
    from .testing import GuardOptions

__all__ = ["NPlusOneGuardFixture", "baseline_key"]

MODES = ("fail", "warn", "off")
REPORT_VERSION = 1
#: 2: entries are keyed by the finding's stable id (``finding.id``).
BASELINE_VERSION = 2
_WORKER_OUTPUT_KEY = "django_nplusone_guard"
_PLUGIN_NAME = "django_nplusone_guard_session"
_FIXTURE_KEY = pytest.StashKey["NPlusOneGuardFixture"]()
#: pytest-django fixtures that give a test database access.
_DB_FIXTURES = frozenset(
    {
        "db",
        "transactional_db",
        "django_db_reset_sequences",
        "django_db_serialized_rollback",
        "live_server",
    }
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("nplusone-guard", "N+1 query guard (django-nplusone-guard)")
    group.addoption(
        "--nplusone",
        choices=MODES,
        default=None,
        help="Guard every test that uses the database: fail or warn on N+1 queries "
        "(default: off, or fail when --nplusone-baseline is given).",
    )
    group.addoption(
        "--nplusone-report",
        metavar="PATH",
        default=None,
        help="Write every finding of the session to PATH as JSON (guards database tests "
        "even when --nplusone is off).",
    )
    group.addoption(
        "--nplusone-baseline",
        metavar="PATH",
        default=None,
        help="Known findings (JSON): those already in PATH do not fail, new ones do.",
    )
    group.addoption(
        "--nplusone-baseline-update",
        action="store_true",
        default=False,
        help="Rewrite the --nplusone-baseline file from this run's findings; nothing fails.",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nplusone(threshold=None, allow=None, missing_indexes=False, duplicates=False): "
        "fail this test when the code it calls runs an N+1 query (django-nplusone-guard).",
    )
    config.addinivalue_line(
        "markers",
        "allow_nplusone: exempt this test from the N+1 guard (django-nplusone-guard).",
    )
    session = _GuardSession.from_config(config)
    config.pluginmanager.register(session, _PLUGIN_NAME)


def _option_error(message: str) -> pytest.UsageError:
    return pytest.UsageError(f"django-nplusone-guard: {message}")


# --------------------------------------------------------------------------- fixture


class NPlusOneGuardFixture:
    """What the ``nplusone_guard`` fixture gives a test: the findings of its code so far.

    Capture covers the test function only (not fixture set-up). ``report`` analyses what
    ran up to now; ``assert_clean()`` fails the test on the findings the options select
    (the ``nplusone`` marker's options when the test has one).
    """

    def __init__(self, options: GuardOptions, test_code: tuple[str, ...], nodeid: str) -> None:
        self.options = options
        self._test_code = test_code
        self._nodeid = nodeid
        self._capture: capture | None = None
        self._final: Report | None = None

    @property
    def report(self) -> Report:
        from .report import Report
        from .testing import snapshot

        if self._final is not None:
            return self._final
        if self._capture is None:
            return Report()
        return snapshot(self._capture)

    def assert_clean(self) -> None:
        """Raise :class:`~django_nplusone_guard.NPlusOneDetected` listing every finding
        of the test's code so far."""
        __tracebackhide__ = True
        from .exceptions import NPlusOneDetected

        report = self.report
        findings = self.options.failures(report, test_code=self._test_code)
        if findings:
            raise NPlusOneDetected(report, context=self._nodeid, findings=findings)


@pytest.fixture
def nplusone_guard(request: pytest.FixtureRequest) -> NPlusOneGuardFixture:
    """Findings of this test's code: ``nplusone_guard.report`` and
    ``nplusone_guard.assert_clean()``."""
    session = request.config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if not isinstance(session, _GuardSession):  # pragma: no cover - plugin always registered
        raise RuntimeError("django-nplusone-guard's pytest plugin is not active")
    guard = NPlusOneGuardFixture(
        _marker_options(request.node), session.test_code, request.node.nodeid
    )
    request.node.stash[_FIXTURE_KEY] = guard
    return guard


# --------------------------------------------------------------------------- helpers


def _marker_options(item: pytest.Item) -> GuardOptions:
    from .testing import GuardOptions

    marker = item.get_closest_marker("nplusone")
    if marker is None:
        return GuardOptions()
    if marker.args:
        pytest.fail(
            "@pytest.mark.nplusone takes keyword arguments only "
            "(threshold=, allow=, missing_indexes=, duplicates=).",
            pytrace=False,
        )
    try:
        return GuardOptions.build(**marker.kwargs, where="@pytest.mark.nplusone")
    except TypeError as exc:
        problem = (
            f"bad @pytest.mark.nplusone arguments ({exc}); "
            "use threshold=, allow=, missing_indexes=, duplicates=."
        )
    except ValueError as exc:
        problem = str(exc)
    pytest.fail(problem, pytrace=False)


def _uses_database(item: pytest.Item) -> bool:
    if item.get_closest_marker("django_db") is not None:
        return True
    if _DB_FIXTURES.intersection(getattr(item, "fixturenames", ())):
        return True
    cls = getattr(item, "cls", None)
    if cls is None:
        return False
    from django.test import TransactionTestCase

    return isinstance(cls, type) and issubclass(cls, TransactionTestCase)


def baseline_key(finding: Finding) -> dict[str, str]:
    """The identity of a finding in a baseline: its stable id and what the id is made of
    (rule, subject, statement shape, file, function; see :mod:`..identity`). Line numbers,
    counts and timings are left out so unrelated edits (a comment above the loop, more test
    data) do not turn a known finding into a new one."""
    from .identity import id_parts

    return {"id": finding.id, **id_parts(finding)}


# --------------------------------------------------------------------------- session


@dataclass
class _TestFindings:
    """Findings of one guarded test, as sent from workers and written to the report."""

    nodeid: str
    findings: list[dict[str, Any]]


@dataclass(eq=False)  # a pytest plugin object: identity, not value, matters
class _GuardSession:
    """Per-session state: options, the baseline, and every finding seen."""

    config: pytest.Config
    mode: str
    report_path: Path | None
    baseline_path: Path | None
    baseline_update: bool
    test_code: tuple[str, ...]
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[_TestFindings] = field(default_factory=list)
    guarded_tests: int = 0
    #: Tests already counted in ``guarded_tests`` (a test can be guarded several ways).
    _counted: set[str] = field(default_factory=set)

    @classmethod
    def from_config(cls, config: pytest.Config) -> _GuardSession:
        from .testing import TEST_CODE_PATTERNS

        def path_option(name: str) -> Path | None:
            value = config.getoption(name)
            return Path(config.invocation_params.dir, value) if value else None

        mode = config.getoption("nplusone")
        baseline_path = path_option("nplusone_baseline")
        baseline_update = bool(config.getoption("nplusone_baseline_update"))
        if baseline_update and baseline_path is None:
            raise _option_error("--nplusone-baseline-update needs --nplusone-baseline=PATH.")
        if mode is None:
            mode = "fail" if baseline_path is not None and not baseline_update else "off"
        session = cls(
            config=config,
            mode=mode,
            report_path=path_option("nplusone_report"),
            baseline_path=baseline_path,
            baseline_update=baseline_update,
            test_code=(*TEST_CODE_PATTERNS, *config.getini("python_files")),
        )
        if session.suite_wide and not config.pluginmanager.hasplugin("django"):
            raise _option_error("the --nplusone* options need pytest-django.")
        if baseline_path is not None and not baseline_update:
            session.baseline = _load_baseline(baseline_path)
        return session

    @property
    def suite_wide(self) -> bool:
        """Whether every database test is captured (to fail, warn, or only to record)."""
        return self.mode != "off" or self.report_path is not None or self.baseline_update

    @property
    def is_worker(self) -> bool:
        return hasattr(self.config, "workerinput")

    # ---- per test

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        fixture = item.stash.get(_FIXTURE_KEY, None)
        marked = item.get_closest_marker("nplusone") is not None
        if not (marked or self.suite_wide or fixture is not None):
            return (yield)  # the common case when the plugin is idle: no extra work
        exempt = item.get_closest_marker("allow_nplusone") is not None or _exempt(item)
        strict = marked and not exempt
        suite = self.suite_wide and not exempt and _uses_database(item)
        if not (strict or suite or fixture is not None):
            return (yield)

        from .delivery import start_reporting, stop_reporting

        options = fixture.options if fixture is not None else _marker_options(item)
        scope_capture = options.capture()
        if fixture is not None:
            fixture._capture = scope_capture
            self._count_guarded(item.nodeid)
        # The test reports its findings: requests and commands it runs deliver nothing.
        token = start_reporting(item.nodeid)
        scope_capture.start()
        test_failed = True
        try:
            result = yield
            test_failed = False
            return result
        finally:
            stop_reporting(token)
            scope_capture.stop()
            scope_capture.analyse()
            if fixture is not None:
                fixture._final = scope_capture.report
            if strict or suite:
                self._conclude(item, options, scope_capture.report, strict, test_failed)

    def _conclude(
        self,
        item: pytest.Item,
        options: GuardOptions,
        report: Report,
        strict: bool,
        test_failed: bool,
    ) -> None:
        __tracebackhide__ = True
        from .exceptions import NPlusOneDetected

        self._count_guarded(item.nodeid)
        findings = options.failures(report, test_code=self.test_code)
        if not findings:
            return
        rows, new = self._rows(findings)
        self._record(item.nodeid, rows)
        if test_failed:
            return  # the test's own failure says more; findings are still recorded
        if strict:
            message = str(NPlusOneDetected(report, context=item.nodeid, findings=findings))
            pytest.fail(message, pytrace=False)
        if self.baseline_update or not new:
            return
        context = item.nodeid
        if self.baseline_path is not None:
            context += f" (not in baseline {self.baseline_path.name})"
        message = str(NPlusOneDetected(report, context=context, findings=new))
        if self.mode == "fail":
            pytest.fail(message, pytrace=False)
        elif self.mode == "warn":
            from .delivery import warn_at_callsite

            # Shown at the loop's line in pytest's warnings summary, like the middleware.
            warn_at_callsite(message, getattr(new[0], "callsite", ""))

    def _rows(self, findings: list[Finding]) -> tuple[list[dict[str, Any]], list[Finding]]:
        """Each finding as a row of the report and the baseline, and those not in the
        baseline."""
        new: list[Finding] = []
        rows = []
        for finding in findings:
            parts = baseline_key(finding)
            key = parts["id"]
            known = key in self.baseline
            if not known:
                new.append(finding)
            rows.append(
                {**finding.to_dict(), "key": key, "key_parts": parts, "in_baseline": known}
            )
        return rows, new

    def _record(self, nodeid: str, rows: list[dict[str, Any]]) -> None:
        """Add a test's rows; a finding seen twice in one test (by the suite-wide scope and
        by an ``assert_no_nplusone`` block inside it) counts once."""
        for result in self.results:
            if result.nodeid == nodeid:
                seen = {_row_identity(row) for row in result.findings}
                result.findings.extend(row for row in rows if _row_identity(row) not in seen)
                return
        self.results.append(_TestFindings(nodeid, rows))

    def _count_guarded(self, nodeid: str) -> None:
        if nodeid not in self._counted:
            self._counted.add(nodeid)
            self.guarded_tests += 1

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Findings that failed a test on their own, not through the suite-wide guard or
        a marker: the fixture's ``assert_clean()``, ``assert_no_nplusone``, the unittest
        mixin, the middleware's ``raise``. The summary counts them too."""
        report = yield
        if call.when == "call" and call.excinfo is not None:
            from .exceptions import NPlusOneDetected  # no Django import: cheap, and safe

            raised = call.excinfo.value
            if isinstance(raised, NPlusOneDetected) and raised.findings:
                self._count_guarded(item.nodeid)
                self._record(item.nodeid, self._rows(raised.findings)[0])
        return report

    # ---- xdist

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_OUTPUT_KEY)
        if not payload:
            return
        data = json.loads(payload)
        self.guarded_tests += int(data.get("guarded_tests", 0))
        self.results.extend(_TestFindings(r["nodeid"], r["findings"]) for r in data["results"])

    # ---- end of session

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            payload = {
                "guarded_tests": self.guarded_tests,
                "results": [{"nodeid": r.nodeid, "findings": r.findings} for r in self.results],
            }
            self.config.workeroutput[_WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
            return
        if self.report_path is not None:
            _write_json(self.report_path, self._report_data())
        if self.baseline_update and self.baseline_path is not None:
            _write_json(self.baseline_path, self._baseline_data())

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not (self.suite_wide or self.results):
            return
        for line in self.summary_lines():
            terminalreporter.write_line(line)

    def summary_lines(self) -> list[str]:
        from .report import count_of

        rows = [row for result in self.results for row in result.findings]
        known = sum(1 for row in rows if row["in_baseline"])
        tests = len({r.nodeid for r in self.results})
        line = (
            f"nplusone-guard: {count_of(len(rows), 'finding', 'findings')} in {tests} of "
            f"{count_of(self.guarded_tests, 'guarded test', 'guarded tests')}"
        )
        if self.baseline_path is not None and not self.baseline_update:
            line += f" ({len(rows) - known} new, {known} in baseline)"
        lines = [line]
        if self.baseline_path is not None and not self.baseline_update:
            seen = {row["key"] for row in rows}
            unseen = len(set(self.baseline) - seen)
            if unseen:
                lines.append(
                    f"nplusone-guard: {unseen} baseline entr{'y' if unseen == 1 else 'ies'} "
                    "not seen in this run; --nplusone-baseline-update drops them"
                )
        if self.baseline_update and self.baseline_path is not None:
            count = len(self._baseline_data()["findings"])
            lines.append(f"nplusone-guard: baseline written to {self.baseline_path} ({count})")
        if self.report_path is not None:
            lines.append(f"nplusone-guard: report written to {self.report_path}")
        return lines

    def _report_data(self) -> dict[str, Any]:
        results = sorted(self.results, key=lambda r: r.nodeid)
        findings = [{"test": r.nodeid, **row} for r in results for row in r.findings]
        known = sum(1 for row in findings if row["in_baseline"])
        return {
            "version": REPORT_VERSION,
            "summary": {
                "guarded_tests": self.guarded_tests,
                "tests_with_findings": len({r.nodeid for r in results}),
                "findings": len(findings),
                "new": len(findings) - known,
                "in_baseline": known,
            },
            "findings": findings,
        }

    def _baseline_data(self) -> dict[str, Any]:
        entries: dict[str, dict[str, Any]] = {}
        for result in self.results:
            for row in result.findings:
                entry = entries.get(row["key"])
                if entry is None:
                    entry = entries[row["key"]] = {
                        **row["key_parts"],
                        "fingerprint": row.get("fingerprint", ""),
                        "sql": row.get("sql", "")[:500],
                        "tests": [],
                    }
                if result.nodeid not in entry["tests"]:
                    entry["tests"].append(result.nodeid)
        for entry in entries.values():
            entry["tests"].sort()
        return {
            "version": BASELINE_VERSION,
            "comment": "Known N+1 findings; regenerate with pytest --nplusone-baseline-update.",
            "findings": [entries[k] for k in sorted(entries)],
        }


def _row_identity(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row["key"], row.get("callsite"), row.get("fingerprint"))


def _exempt(item: pytest.Item) -> bool:
    from .testing import is_exempt

    return is_exempt(getattr(item, "obj", None), getattr(item, "cls", None))


def _load_baseline(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries: Iterable[dict[str, Any]] = data["findings"]
        if data.get("version") != BASELINE_VERSION:
            raise ValueError(
                f"version {data.get('version')!r}, this plugin reads {BASELINE_VERSION}"
            )
        return {entry["id"]: entry for entry in entries}
    except FileNotFoundError:
        raise _option_error(
            f"baseline {path} does not exist; create it with --nplusone-baseline-update."
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise _option_error(
            f"baseline {path} is not a baseline file ({exc!r}); "
            "regenerate it with --nplusone-baseline-update."
        ) from None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temporary.replace(path)
