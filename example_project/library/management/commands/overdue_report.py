"""``manage.py overdue_report``: the open loans, soonest due first, overdue ones flagged.

A nightly-report style command with an N+1: each loan's book is loaded on its own line.
Guarded by ``NPLUSONE_GUARD["COMMANDS"]`` (see ``library_site/settings.py``), its finding is
logged with the command's name; ``overdue_report_fixed`` is its fixed twin.
"""

from __future__ import annotations

import datetime
from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import QuerySet

from library.models import Loan


def open_loans() -> QuerySet[Loan]:
    return Loan.objects.filter(returned=False).order_by("due", "id")


class Command(BaseCommand):
    help = "Print the open loans, soonest due first, with overdue ones flagged."

    def loans(self) -> QuerySet[Loan]:
        return open_loans()

    def handle(self, *args: Any, **options: Any) -> None:
        today = datetime.date.today()
        for loan in self.loans():
            flag = "OVERDUE" if loan.due < today else "       "
            self.stdout.write(f"{flag} {loan.due} {loan.borrower}: {loan.book.title}")
