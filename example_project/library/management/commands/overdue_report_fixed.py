"""``manage.py overdue_report_fixed``: ``overdue_report`` with each loan's book loaded in the
same query (``select_related("book")``): one statement, no finding."""

from __future__ import annotations

from django.db.models import QuerySet

from library.management.commands import overdue_report
from library.models import Loan


class Command(overdue_report.Command):
    def loans(self) -> QuerySet[Loan]:
        return overdue_report.open_loans().select_related("book")
