from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, URLResolver, include, path

from benchmarks.benchapp import views

urlpatterns: list[URLPattern | URLResolver] = [path("books/<int:queries>/", views.books)]

if "debug_toolbar" in settings.INSTALLED_APPS:
    urlpatterns.append(path("__debug__/", include("debug_toolbar.urls")))
