"""Background jobs: work no request sees, each N+1 next to its fixed twin.

They are plain functions under :func:`~django_nplusone_guard.guarded`, so any runner can run
them (RQ, Dramatiq, cron, a ``django.tasks`` task on Django 6.0+, or a Celery task with
``NPLUSONE_GUARD["CELERY"]``, which guards it without the decorator): each call runs in one
scope, its findings logged with the job's label.
"""

from __future__ import annotations

from django.db.models import Count

from django_nplusone_guard import guarded
from library.models import Author


@guarded(label="author_digest")
def author_digest() -> list[str]:
    """The weekly e-mail to each author: how many of their books the library holds."""
    return [
        f"To {author.email}: the library holds {author.book_set.count()} of your books."
        for author in Author.objects.order_by("id")
    ]


@guarded(label="author_digest_fixed")
def author_digest_fixed() -> list[str]:
    """The same e-mails, every count from one query (``annotate``)."""
    authors = Author.objects.annotate(book_count=Count("book")).order_by("id")
    return [
        f"To {author.email}: the library holds {author.book_count} of your books."
        for author in authors
    ]
