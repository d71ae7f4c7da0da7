"""A project's own middleware, as most projects have one: it passes every request on."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import translation


class LanguageMiddleware:
    """Activates a language and passes the request on: the only line of the project's own
    code on the stack of every statement a library-rendered page runs."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        translation.activate("en")
        response = self.get_response(request)  # passes-through
        return response
