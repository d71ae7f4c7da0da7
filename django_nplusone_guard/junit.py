"""Findings in JUnit XML, the test report every CI service renders.

Two producers: the pytest plugin adds each guarded test's findings to that test's entry of
pytest's own ``--junitxml`` report (as ``<property>`` elements, which pytest writes in every
JUnit family, and as captured output, which it writes with ``junit_logging``), and
``nplusone_audit --format junit`` writes one test case per page, failed when the page has a
finding of a ``--fail-on`` kind.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from .identity import rule_of
from .report import (
    Finding,
    Report,
    count_of,
    finding_from_dict,
    format_finding,
    format_report,
)

__all__ = [
    "FINDING_PROPERTY",
    "OUTPUT_SECTION",
    "audit_junit_xml",
    "junit_properties",
]

#: The name of each finding's ``<property>`` in a test case.
FINDING_PROPERTY = "nplusone-guard.finding"
#: The report section the findings' text goes to; pytest's JUnit writer reads sections whose
#: name starts with "stdout" as the test's standard output.
OUTPUT_SECTION = "stdout (nplusone-guard)"

# XML 1.0 has no way to write these characters, even escaped.
_ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def junit_properties(findings: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(name, value)`` pairs for ``item.user_properties``: one per finding, saying its
    rule, id, line and title (``nplusone-read 1a2b... shop.py:7: N+1 query on ...``)."""
    return [(FINDING_PROPERTY, _one_line(finding_from_dict(data))) for data in findings]


def _one_line(finding: Finding) -> str:
    callsite = getattr(finding, "callsite", "") or "unknown"
    where = callsite.rsplit(" in ", 1)[0]
    return f"{rule_of(finding)} {finding.id} {where}: {finding.title}"


class AuditedPage(Protocol):
    """What the audit knows of one page (``nplusone_audit``'s ``PageResult``)."""

    url: str
    report: Report
    status: int | None
    error: str | None


def audit_junit_xml(
    pages: Sequence[AuditedPage], *, fail_on: Sequence[str], params: bool = False
) -> str:
    """A JUnit XML document with one test case per page.

    A page fails when it has findings of a ``fail_on`` category (``nplusone``,
    ``missing_index``, ``duplicate``), or raised and ``error`` is in ``fail_on``; a page
    that raised otherwise is a test error. Every finding is a ``<property>`` and the
    findings' text is the case's ``<system-out>``; ``params=False`` leaves parameter values
    out of it (see ``LOG_PARAMS``)."""
    suite = ET.Element("testsuite", name="nplusone_audit")
    counts = {"tests": 0, "failures": 0, "errors": 0}
    for page in pages:
        counts["tests"] += 1
        case = ET.SubElement(suite, "testcase", classname="nplusone_audit", name=page.url)
        findings = page.report.findings
        if findings:
            properties = ET.SubElement(case, "properties")
            for finding in findings:
                ET.SubElement(
                    properties, "property", name=FINDING_PROPERTY, value=_xml(_one_line(finding))
                )
        failing = [f for f in findings if f.category in fail_on]
        if page.error is not None and "error" in fail_on:
            counts["failures"] += 1
            failure = ET.SubElement(case, "failure", message=_xml(f"page raised {page.error}"))
            failure.text = _xml(page.error)
        elif page.error is not None:
            counts["errors"] += 1
            error = ET.SubElement(case, "error", message=_xml(f"page raised {page.error}"))
            error.text = _xml(page.error)
        elif failing:
            counts["failures"] += 1
            failure = ET.SubElement(
                case,
                "failure",
                message=_xml(
                    f"{count_of(len(failing), 'finding', 'findings')} of a --fail-on kind"
                ),
            )
            failure.text = _xml(
                "\n\n".join(format_finding(f, verbose=False, params=params) for f in failing)
            )
        note = getattr(page, "note", None)  # a redirect to the login page, say
        if findings or page.error is not None or note:
            out = ET.SubElement(case, "system-out")
            text = format_report(page.report, verbose=False, params=params)
            if page.status is not None:
                text = f"GET {page.url} ({page.status}{'; ' + note if note else ''})\n{text}"
            out.text = _xml(text)
    for name, value in counts.items():
        suite.set(name, str(value))
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)


def _xml(text: str) -> str:
    return _ILLEGAL_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
