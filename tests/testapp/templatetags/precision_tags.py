"""Two inclusion tags that each build their own queryset and count it in their template:
the same ``COUNT(*)`` twice on one page, which is a repeat, not a loop."""

from __future__ import annotations

from typing import Any

from django import template

from tests.testapp.models import Author

register = template.Library()


@register.inclusion_tag("precision/author_nav.html")
def author_nav() -> dict[str, Any]:
    return {"authors": Author.objects.all()}


@register.inclusion_tag("precision/author_menu.html")
def author_menu() -> dict[str, Any]:
    return {"authors": Author.objects.all()}
