"""ORM attribution: which model, relation or field a repeated statement belongs to.

The detector works on SQL, so it can see every repeat (``.count()`` in a loop, raw SQL,
async ORM calls); this module turns a group of repeats back into the names a Django
developer uses: ``library.Book.author`` and the ``.select_related("author")`` that fixes it.
"""

from __future__ import annotations

from functools import lru_cache

from django.apps import apps

__all__ = ["model_for_table"]


@lru_cache(maxsize=1)
def _tables_to_models() -> dict[str, str]:
    mapping: dict[str, str] = {}
    for model in apps.get_models(include_auto_created=True):
        mapping.setdefault(model._meta.db_table.lower(), model._meta.label)
    return mapping


def model_for_table(table: str | None) -> str | None:
    """``"app_label.ModelName"`` for a table name, or ``None`` when no model owns it."""
    if not table:
        return None
    return _tables_to_models().get(table.lower())
