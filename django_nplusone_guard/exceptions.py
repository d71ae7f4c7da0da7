"""Exception and warning types, kept apart so importing them never imports Django models."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report import Finding, Report

__all__ = ["NPlusOneDetected", "NPlusOneWarning"]


class NPlusOneWarning(UserWarning):
    """Emitted at the offending line when ``ACTION`` is ``"warn"``."""


class NPlusOneDetected(AssertionError):
    """Raised in ``raise`` mode and by the test helpers.

    An ``AssertionError`` so test runners report it as a failure, not an error. The message
    lists every finding with where it fired and how to fix it; ``.report`` has the data.
    """

    def __init__(
        self, report: Report, *, context: str = "", findings: list[Finding] | None = None
    ) -> None:
        from .report import count_of, format_finding

        self.report = report
        self.findings: list[Finding] = list(report.nplusones) if findings is None else findings
        only_nplusones = all(f.category == "nplusone" for f in self.findings)
        kind = "N+1 finding" if only_nplusones else "finding"
        head = count_of(len(self.findings), kind, kind + "s")
        if context:
            head += f" in {context}"
        body = "\n\n".join(format_finding(f) for f in self.findings)
        super().__init__(f"{head}:\n\n{body}" if body else head)
