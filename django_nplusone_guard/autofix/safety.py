"""What ``--fix`` may touch: which databases it may run against, and which files it may
write.

The proof requests pages again, inside the audit's rolled-back transactions, but against
the configured database all the same: with ``DEBUG=False`` and a database on another host
that is most likely production, and the command refuses unless told ``--i-know``. Files are
the project's own only: under the working directory, not an installed package, not a
migration (a migration may already be applied elsewhere; new ones come from
``makemigrations``), and not one with uncommitted changes unless ``--force``, so that
``git diff`` shows exactly what the audit wrote and ``git checkout`` undoes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from django.db import connections

__all__ = ["not_editable", "refuse_remote_production", "uncommitted"]

_LOCAL_HOSTS = frozenset({"", "localhost", "127.0.0.1", "::1"})


def _local(alias: str) -> bool:
    database = connections.databases[alias]
    if "sqlite" in str(database.get("ENGINE", "")):
        return True
    host = str(database.get("HOST") or "")
    return host in _LOCAL_HOSTS or host.startswith(("/", "127."))


def refuse_remote_production(i_know: bool) -> None:
    """A ``CommandError`` when ``DEBUG`` is off and a database is not on this machine."""
    if settings.DEBUG or i_know:
        return
    remote = [alias for alias in connections.databases if not _local(alias)]
    if remote:
        raise CommandError(
            f"--fix requests pages again against the configured database, and DEBUG is off "
            f"with database(s) {', '.join(remote)} on another host: this looks like "
            f"production. Run it with development settings, or add --i-know."
        )


def not_editable(path: Path) -> str | None:
    """Why ``path`` is not the project's to edit, or None when it is."""
    resolved = path.resolve()
    if not resolved.is_file():
        return f"{path} does not exist"
    try:
        relative = resolved.relative_to(Path.cwd().resolve())
    except ValueError:
        return f"{path} is outside the project (the working directory)"
    parts = set(relative.parts)
    if parts & {"site-packages", "dist-packages"}:
        return f"{relative} belongs to an installed package"
    if "migrations" in parts:
        return f"{relative} is a migration"
    return None


def uncommitted(path: Path) -> bool:
    """Whether git knows of changes to ``path`` not yet committed (False outside git)."""
    try:
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", path.name],
            cwd=path.parent,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return status.returncode == 0 and bool(status.stdout.strip())
