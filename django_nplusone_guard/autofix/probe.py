"""The proof's measurement, run in a fresh Python process: request the pages and print what
each one did.

A fresh process is the honest way to see edited code: re-importing edited modules in the
running process leaves old functions in every object that kept a reference (URL patterns,
class-based views' bound methods, admin registrations), so a reload can measure code that is
no longer on disk. The parent (:mod:`.proof`) runs ``python -m
django_nplusone_guard.autofix.probe`` with the same settings module, ``sys.path`` and
working directory, a JSON request on standard input, and reads one JSON line back.

Pages are requested exactly as the audit requests them (its ``Command._run``: the same
client, ``--user``, rolled-back transactions). For an edit that adds an index, the index is
created first, from the edited model's ``Meta.indexes``, inside a transaction that is rolled
back at the end, so the database is left as it was; MySQL and MariaDB cannot roll DDL back,
so there such an edit is reported unproven instead.
"""

from __future__ import annotations

import io
import json
import sys
from contextlib import ExitStack
from typing import Any

#: What marks the probe's answer in its standard output, among whatever the project prints.
MARK = "NPLUSONE_GUARD_PROBE "


def _create_indexes(stack: ExitStack, wanted: list[list[str]]) -> list[str]:
    """Create each ``[model label, index name]`` in a transaction rolled back when ``stack``
    closes; the labels of the indexes that could not be created, with why."""
    from django.apps import apps
    from django.db import connections, router, transaction

    problems: list[str] = []
    for label, name in wanted:
        model = apps.get_model(label)
        alias = router.db_for_write(model)
        connection = connections[alias]
        if not connection.features.can_rollback_ddl:
            problems.append(f"{label} {name}: {connection.vendor} cannot roll back DDL")
            continue
        index = next((i for i in model._meta.indexes if i.name == name), None)
        if index is None:
            problems.append(f"{label} {name}: not in the model's Meta.indexes")
            continue
        stack.enter_context(transaction.atomic(using=alias))
        stack.callback(transaction.set_rollback, True, using=alias)
        # Not entered: SQLite's editor refuses to open inside a transaction, and only its
        # statement building is needed.
        editor = connection.schema_editor(collect_sql=True)
        statement = str(index.create_sql(model, editor))
        with connection.cursor() as cursor:
            cursor.execute(statement)
    return problems


def _page(result: Any) -> dict[str, Any]:
    from django_nplusone_guard.autofix.plan import finding_key

    report = result.report
    return {
        "url": result.url,
        "status": result.status,
        "error": result.error,
        "body_length": getattr(result, "body_length", None),
        "query_count": report.query_count,
        "findings": [[list(finding_key(f)), f.title] for f in report.findings],
    }


def main() -> None:
    import django

    request = json.loads(sys.stdin.read())
    django.setup()
    from django_nplusone_guard.management.commands.nplusone_audit import Command

    command = Command(stdout=io.StringIO(), stderr=io.StringIO())
    with ExitStack() as stack:
        problems = _create_indexes(stack, request.get("indexes", []))
        results = command._run(request["urls"], request["options"])
        answer = {"pages": [_page(r) for r in results], "index_problems": problems}
    sys.stdout.write(MARK + json.dumps(answer) + "\n")


if __name__ == "__main__":
    main()
