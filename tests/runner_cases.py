"""Run by Django's own test runner (``python -m django test``) from :mod:`tests.test_enabled`:
is a request guarded under ``manage.py test``? The answer goes to a file."""

from __future__ import annotations

import os
from pathlib import Path

from django.test import TestCase

from django_nplusone_guard.middleware import REQUEST_ATTR


class RequestUnderTheRunner(TestCase):
    def test_request(self) -> None:
        response = self.client.get("/clean/")
        guarded = hasattr(response.wsgi_request, REQUEST_ATTR)
        Path(os.environ["NPLUSONE_GUARD_RUNNER_OUT"]).write_text(
            "guarded" if guarded else "unguarded"
        )
