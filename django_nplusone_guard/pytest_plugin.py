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
    from .sightings import Sighting
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
        "--nplusone-sarif",
        metavar="PATH",
        default=None,
        help="Write the session's findings to PATH as SARIF 2.1.0, one result per finding "
        "(for code scanning; guards database tests even when --nplusone is off).",
    )
    group.addoption(
        "--nplusone-annotations",
        action="store_true",
        default=False,
        help="Print the findings as GitHub Actions annotations (::warning/::error lines) at "
        "the end; on by default when GITHUB_ACTIONS=true.",
    )
    group.addoption(
        "--nplusone-strict",
        action="store_true",
        default=False,
        help="Fail the session when a suppression (ALLOW rule, allow comment, "
        "allow_nplusone mark, baseline entry) matched nothing in a run of the whole suite.",
    )
    group.addoption(
        "--nplusone-baseline-prune",
        action="store_true",
        default=False,
        help="Remove from the --nplusone-baseline file the entries no test saw (of tests "
        "that ran, or every entry when the whole suite ran).",
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
    sarif_path: Path | None
    annotations: bool
    baseline_path: Path | None
    baseline_update: bool
    test_code: tuple[str, ...]
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[_TestFindings] = field(default_factory=list)
    guarded_tests: int = 0
    #: Tests already counted in ``guarded_tests`` (a test can be guarded several ways);
    #: also, baseline entries of tests that were guarded can be pruned.
    _counted: set[str] = field(default_factory=set)
    strict: bool = False
    baseline_prune: bool = False
    #: Exempt tests whose code ran no finding: their exemption matched nothing.
    unneeded_exemptions: list[str] = field(default_factory=list)
    deselected: int = 0
    stale: list[str] = field(default_factory=list)
    pruned: int = 0

    @classmethod
    def from_config(cls, config: pytest.Config) -> _GuardSession:
        from .github_annotations import in_github_actions
        from .testing import TEST_CODE_PATTERNS

        def path_option(name: str) -> Path | None:
            value = config.getoption(name)
            return Path(config.invocation_params.dir, value) if value else None

        mode = config.getoption("nplusone")
        baseline_path = path_option("nplusone_baseline")
        baseline_update = bool(config.getoption("nplusone_baseline_update"))
        if baseline_update and baseline_path is None:
            raise _option_error("--nplusone-baseline-update needs --nplusone-baseline=PATH.")
        baseline_prune = bool(config.getoption("nplusone_baseline_prune"))
        if baseline_prune and baseline_path is None:
            raise _option_error("--nplusone-baseline-prune needs --nplusone-baseline=PATH.")
        if mode is None:
            mode = "fail" if baseline_path is not None and not baseline_update else "off"
        session = cls(
            config=config,
            mode=mode,
            report_path=path_option("nplusone_report"),
            sarif_path=path_option("nplusone_sarif"),
            annotations=bool(config.getoption("nplusone_annotations")) or in_github_actions(),
            baseline_path=baseline_path,
            baseline_update=baseline_update,
            test_code=(*TEST_CODE_PATTERNS, *config.getini("python_files")),
            strict=bool(config.getoption("nplusone_strict")),
            baseline_prune=baseline_prune,
        )
        if session.suite_wide and not config.pluginmanager.hasplugin("django"):
            raise _option_error("the --nplusone* options need pytest-django.")
        if baseline_path is not None and not baseline_update:
            session.baseline = _load_baseline(baseline_path)
        if session.suite_wide:
            from .suppressions import ledger

            ledger.tracking = True  # note the files that run queries, for stale comments
        return session

    @property
    def suite_wide(self) -> bool:
        """Whether every database test is captured (to fail, warn, or only to record)."""
        return (
            self.mode != "off"
            or self.report_path is not None
            or self.sarif_path is not None
            or self.baseline_update
        )

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
        # An exempt test is still watched, to tell whether its exemption is still needed.
        probe = self.suite_wide and exempt and _probe_exemption(item)
        if not (strict or suite or probe or fixture is not None):
            return (yield)

        from .delivery import start_reporting, stop_reporting

        options = fixture.options if fixture is not None else _marker_options(item)
        scope_capture = options.capture()
        if fixture is not None:
            fixture._capture = scope_capture
            self._count_guarded(item.nodeid)
        # The test reports its findings: requests and commands it runs deliver nothing.
        reports = strict or suite or fixture is not None
        token = start_reporting(item.nodeid) if reports else None
        scope_capture.start()
        test_failed = True
        try:
            result = yield
            test_failed = False
            return result
        finally:
            if token is not None:
                stop_reporting(token)
            scope_capture.stop()
            scope_capture.analyse()
            if fixture is not None:
                fixture._final = scope_capture.report
            if strict or suite:
                self._conclude(item, options, scope_capture.report, strict, test_failed)
            elif (
                probe
                and not test_failed
                and not options.failures(scope_capture.report, test_code=self.test_code)
            ):
                self.unneeded_exemptions.append(item.nodeid)

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
        rows, new = self._rows(findings, strict=strict)
        self._record(item.nodeid, rows)
        in_failure = strict or (self.mode == "fail" and bool(new) and not self.baseline_update)
        _attach_to_junit(item, rows, findings, shown=in_failure and not test_failed)
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

    def _rows(
        self, findings: list[Finding], *, strict: bool
    ) -> tuple[list[dict[str, Any]], list[Finding]]:
        """Each finding as a row of the report and the baseline, and those not in the
        baseline. A row ``fails`` when it fails its test: always when ``strict`` (a marker,
        or a helper that raised), else when new in ``fail`` mode."""
        new: list[Finding] = []
        rows = []
        for finding in findings:
            parts = baseline_key(finding)
            key = parts["id"]
            known = key in self.baseline
            if not known:
                new.append(finding)
            fails = strict or (self.mode == "fail" and not known and not self.baseline_update)
            rows.append(
                {
                    **finding.to_dict(),
                    "key": key,
                    "key_parts": parts,
                    "in_baseline": known,
                    "fails": fails,
                }
            )
        return rows, new

    def _record(self, nodeid: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Add a test's rows; a finding seen twice in one test (by the suite-wide scope and
        by an ``assert_no_nplusone`` block inside it) counts once. Returns the rows added."""
        for result in self.results:
            if result.nodeid == nodeid:
                seen = {_row_identity(row) for row in result.findings}
                added = [row for row in rows if _row_identity(row) not in seen]
                result.findings.extend(added)
                return added
        self.results.append(_TestFindings(nodeid, rows))
        return rows

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
                from .junit import junit_properties

                self._count_guarded(item.nodeid)
                added = self._record(item.nodeid, self._rows(raised.findings, strict=True)[0])
                report.user_properties.extend(junit_properties(added))
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
        self._counted.update(data.get("guarded_ids", ()))
        self.unneeded_exemptions.extend(data.get("unneeded_exemptions", ()))
        from .suppressions import ledger

        ledger.merge(data.get("ledger", {}))

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        self.deselected += len(items)

    # ---- end of session

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            from .suppressions import ledger

            payload = {
                "guarded_tests": self.guarded_tests,
                "results": [{"nodeid": r.nodeid, "findings": r.findings} for r in self.results],
                "guarded_ids": sorted(self._counted),
                "unneeded_exemptions": self.unneeded_exemptions,
                "ledger": ledger.to_dict(),
            }
            self.config.workeroutput[_WORKER_OUTPUT_KEY] = json.dumps(payload)  # type: ignore[attr-defined]
            return
        if self.suite_wide and self._whole_suite(session):
            self.stale = self._stale_suppressions()
            if self.stale and self.strict and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.baseline_prune and self.baseline_path is not None and not self.baseline_update:
            self._prune_baseline(session)
        if self.report_path is not None:
            _write_json(self.report_path, self._report_data())
        if self.baseline_update and self.baseline_path is not None:
            _write_json(self.baseline_path, self._baseline_data())
        if self.sarif_path is not None:
            from .sarif import sarif_log, write_sarif
            from .sightings import repository_root

            root = repository_root(self.config.rootpath)
            write_sarif(self.sarif_path, sarif_log(self._sightings(), root=root))

    def _whole_suite(self, session: pytest.Session) -> bool:
        """Whether this run could see every suppression: all tests the configuration
        collects, none deselected (``-k``, ``-m``, ``--lf``), and not stopped early."""
        config = self.config
        option = config.option
        return (
            _all_test_paths(config)
            and not getattr(option, "keyword", "")
            and not getattr(option, "markexpr", "")
            and not getattr(option, "lf", False)
            and not self.deselected
            and not session.shouldstop
            and not session.shouldfail
            and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        )

    def _stale_baseline_ids(self, whole: bool) -> list[str]:
        """Baseline entries no test saw, of tests that all ran (any, in a whole run)."""
        seen = {row["key"] for result in self.results for row in result.findings}
        return [
            key
            for key, entry in self.baseline.items()
            if key not in seen and (whole or set(entry.get("tests") or ["?"]) <= self._counted)
        ]

    def _stale_suppressions(self) -> list[str]:
        from . import conf
        from .suppressions import stale_lines

        try:
            rules = conf.get_config().ALLOW
        except Exception:  # settings unusable: the checks say so, not this summary
            rules = ()
        marks = [
            f"allow_nplusone on {nodeid} (its code ran no N+1)"
            for nodeid in sorted(self.unneeded_exemptions)
        ]
        baseline = [
            f"baseline entry {key} ({_describe_entry(self.baseline[key])})"
            for key in self._stale_baseline_ids(whole=True)
        ]
        return stale_lines(rules, marks=marks, baseline=baseline)

    def _prune_baseline(self, session: pytest.Session) -> None:
        stale = set(self._stale_baseline_ids(whole=self._whole_suite(session)))
        self.pruned = len(stale)
        if stale and self.baseline_path is not None:
            data = json.loads(self.baseline_path.read_text(encoding="utf-8"))
            data["findings"] = [e for e in data["findings"] if e.get("id") not in stale]
            _write_json(self.baseline_path, data)

    def _sightings(self) -> list[Sighting]:
        from .sightings import Sighting

        return [
            Sighting(row, result.nodeid, bool(row.get("fails")))
            for result in self.results
            for row in result.findings
        ]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or not (self.suite_wide or self.results):
            return
        if self.annotations and self.results:
            from .github_annotations import annotation_lines
            from .sightings import repository_root

            root = repository_root(self.config.rootpath)
            for line in annotation_lines(self._sightings(), root=root):
                terminalreporter.write_line(line)
        for line in self.summary_lines():
            terminalreporter.write_line(line)
        for line in self.suppression_lines():
            strict = self.strict and line.startswith("nplusone-guard error")
            terminalreporter.write_line(line, yellow=not strict, red=strict)

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
                    "not seen in this run; --nplusone-baseline-prune removes them"
                )
        if self.baseline_update and self.baseline_path is not None:
            count = len(self._baseline_data()["findings"])
            lines.append(f"nplusone-guard: baseline written to {self.baseline_path} ({count})")
        if self.report_path is not None:
            lines.append(f"nplusone-guard: report written to {self.report_path}")
        if self.sarif_path is not None:
            lines.append(f"nplusone-guard: SARIF written to {self.sarif_path}")
        if self.baseline_prune and not self.baseline_update:
            lines.append(
                "nplusone-guard: "
                f"{count_of(self.pruned, 'stale baseline entry', 'stale baseline entries')} "
                f"removed from {self.baseline_path}"
            )
        return lines

    def suppression_lines(self) -> list[str]:
        """Stale suppressions and allow comments without a reason, for the summary."""
        from .report import count_of
        from .suppressions import reasonless

        lines = []
        if self.stale:
            what = "error" if self.strict else "warning"
            lines.append(
                f"nplusone-guard {what}: "
                f"{count_of(len(self.stale), 'suppression', 'suppressions')} matched nothing in "
                "this run; remove them:"
            )
            lines.extend(f"  {line}" for line in self.stale)
        unexplained = reasonless()
        if unexplained:
            lines.append(
                "nplusone-guard warning: "
                f"{count_of(len(unexplained), 'allow comment', 'allow comments')} without a "
                "reason; say why, e.g. # nplusone: allow[read] the list is capped at 10:"
            )
            lines.extend(f"  {where}" for where in unexplained)
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


def _attach_to_junit(
    item: pytest.Item, rows: list[dict[str, Any]], findings: list[Finding], *, shown: bool
) -> None:
    """Put a test's findings where pytest's ``--junitxml`` report carries them: one
    ``<property>`` each, and, unless the failure message already shows them, their text as
    the test's output (``<system-out>`` with ``junit_logging=system-out``)."""
    from .junit import OUTPUT_SECTION, junit_properties
    from .report import format_finding

    item.user_properties.extend(junit_properties(rows))
    if not shown:
        text = "\n\n".join(format_finding(f, verbose=False) for f in findings)
        item.add_report_section("call", OUTPUT_SECTION, f"nplusone-guard findings:\n{text}\n")


def _all_test_paths(config: pytest.Config) -> bool:
    """Whether the command line asked for every test: no paths (``testpaths`` or the
    current directory), or directories that hold the root or every ``testpaths`` entry
    (``pytest tests/``)."""
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        return True
    root = config.rootpath.resolve()
    wanted = [root / p for p in config.getini("testpaths")] or [root]
    given = [Path(config.invocation_params.dir, arg).resolve() for arg in config.args]
    if not given or any(
        "::" in arg or not path.is_dir() for arg, path in zip(config.args, given, strict=True)
    ):
        return False
    return all(any(w.resolve().is_relative_to(g) for g in given) for w in wanted)


def _probe_exemption(item: pytest.Item) -> bool:
    """Whether an exempt test's queries can tell that the exemption matched nothing: not
    when the test function is decorated with ``allow_nplusone`` (its queries are ignored
    on purpose), nor when it does not use the database."""
    from .testing import EXEMPT_ATTR

    return not getattr(getattr(item, "obj", None), EXEMPT_ATTR, False) and _uses_database(item)


def _describe_entry(entry: Mapping[str, Any]) -> str:
    parts = [entry.get("rule"), entry.get("subject"), entry.get("file"), entry.get("function")]
    return " ".join(str(p) for p in parts if p)


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
