"""Every statement a connection receives, the guard's own included (tests only)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from django.db import connection


@contextlib.contextmanager
def all_statements() -> Iterator[list[str]]:
    """The SQL of every statement the default connection runs meanwhile.

    An execute wrapper of its own, outside the guard's: statements the guard runs
    unrecorded (EXPLAIN, introspection, savepoints) are seen here too.
    """
    sent: list[str] = []

    def wrapper(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        sent.append(sql)
        return execute(sql, *args)

    with connection.execute_wrapper(wrapper):
        yield sent
