"""URLs for ``nplusone_audit --all`` filling arguments from rows: a detail page of each kind
the audit knows (Django's generic views, Django REST framework's generic views and viewset
routes, the admin), and routes it cannot fill, each for its own reason."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path
from django.views.generic import DeleteView, DetailView, RedirectView, UpdateView
from rest_framework import generics, routers, viewsets

from tests.testapp import views
from tests.testapp.library_views import (
    AuthorDetailView,
    AuthorSerializer,
    BookWithAuthorSerializer,
)
from tests.testapp.models import Author, Book, Counter, Listing

OBJECT = "audit/object.html"


class BookByIsbn(generics.RetrieveAPIView):
    queryset = Book.objects.all()
    serializer_class = BookWithAuthorSerializer
    lookup_field = "isbn"
    lookup_url_kwarg = "code"


class AuthorViewSet(viewsets.ReadOnlyModelViewSet):
    queryset = Author.objects.all()
    serializer_class = AuthorSerializer


router = routers.SimpleRouter()
router.register("api/authors", AuthorViewSet)

site = admin.AdminSite(name="auditadmin")
site.register(Author)

urlpatterns = [
    path("authors/<int:pk>/", AuthorDetailView.as_view()),
    path("listings/<slug:slug>/", DetailView.as_view(model=Listing, template_name=OBJECT)),
    path(
        "listings/sku/<str:code>/",
        DetailView.as_view(
            model=Listing, slug_field="sku", slug_url_kwarg="code", template_name=OBJECT
        ),
    ),
    path(
        "books/<int:pk>/edit/",
        UpdateView.as_view(model=Book, fields=["title"], template_name=OBJECT),
    ),
    path("books/<int:pk>/delete/", DeleteView.as_view(model=Book, template_name=OBJECT)),
    re_path(r"^api/books/(?P<code>[0-9-]+)/$", BookByIsbn.as_view()),
    path("", include(router.urls)),
    re_path(
        r"^listings/letters/(?P<slug>[a-z]+)/$",
        DetailView.as_view(model=Listing, template_name=OBJECT),
    ),
    path("books/<int:pk>/raw/", views.book_detail),
    path("counters/<int:pk>/", DetailView.as_view(model=Counter, template_name=OBJECT)),
    path(
        "authors/<int:pk>/books/<int:book>/",
        DetailView.as_view(model=Book, template_name=OBJECT),
    ),
    path("go/<int:pk>/", RedirectView.as_view(url="/")),
    path(
        "private/authors/<int:pk>/",
        login_required(DetailView.as_view(model=Author, template_name=OBJECT)),
    ),
    path("clean/", views.clean),
    path("admin/", site.urls),
]

urlpatterns += [
    # A detail route whose view takes no GET: never requested, whatever its arguments.
    path(
        "books/<int:pk>/post-only/",
        UpdateView.as_view(model=Book, fields=["title"], http_method_names=["post"]),
    ),
]
