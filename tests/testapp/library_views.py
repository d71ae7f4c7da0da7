"""Views whose queries run inside library machinery (DRF generic views and serializers,
Django generic views, model formsets), each N+1 next to its fixed twin.

``tests.precision_urls`` routes them; ``tests.urls`` does not, so the audit's ``--all``
tests do not see them.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.forms import modelformset_factory
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from django.views.generic import DetailView, ListView, TemplateView
from rest_framework import generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from tests.testapp.models import Author, Book, ReviewChoice, Tag

# --- DRF ----------------------------------------------------------------------------------


class AuthorSerializer(serializers.ModelSerializer):
    class Meta:
        model = Author
        fields = ["id", "name"]


class BookWithAuthorSerializer(serializers.ModelSerializer):
    """A nested serializer for a foreign key: one query per book unless the view joins."""

    author = AuthorSerializer()

    class Meta:
        model = Book
        fields = ["id", "title", "author"]


class BookApiList(generics.ListAPIView):
    queryset = Book.objects.order_by("id")  # book-api-list-queryset
    serializer_class = BookWithAuthorSerializer


class BookApiListFixed(BookApiList):
    queryset = Book.objects.select_related("author").order_by("id")


class BookTagsSerializer(serializers.Serializer):
    """DRF looks each posted pk up with its own ``get(pk=...)``: a library loop."""

    tags = serializers.PrimaryKeyRelatedField(many=True, queryset=Tag.objects.all())


class BookTagsCheck(APIView):
    def post(self, request: Request) -> Response:
        serializer = BookTagsSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)  # book-tags-is-valid
        return Response({"tags": [tag.pk for tag in serializer.validated_data["tags"]]})


# --- Django generic views -------------------------------------------------------------------


class BookListView(ListView):
    """Its template reads ``book.author.name`` for each row of ``object_list``."""

    queryset = Book.objects.order_by("id")  # book-list-view-queryset
    template_name = "precision/book_list.html"


class BookListViewFixed(BookListView):
    queryset = Book.objects.select_related("author").order_by("id")


class FeaturedBookView(TemplateView):
    """Its template calls ``view.featured_book`` twice (header and footer): each call
    fetches the book, and each fetched book its author, again."""

    template_name = "precision/featured_book.html"

    def featured_book(self) -> Book:
        return Book.objects.get(pk=self.kwargs["pk"])  # featured-book


# --- forms ----------------------------------------------------------------------------------


class ReviewPickForm(forms.Form):
    """A ``<select>`` of reviews: each option's label reads the review's book."""

    review = forms.ModelChoiceField(queryset=ReviewChoice.objects.order_by("id"))  # pick-field


class ReviewPickFormFixed(forms.Form):
    review = forms.ModelChoiceField(queryset=ReviewChoice.objects.select_related("book"))


# --- model formsets -------------------------------------------------------------------------

BookTitleFormSet = modelformset_factory(Book, fields=["title"], extra=0)


def book_titles_check(request: HttpRequest) -> HttpResponse:
    """Validates posted titles: each form's hidden ``id`` (a ``ModelChoiceField``) is
    looked up with its own ``get(pk=...)`` by Django."""
    formset = BookTitleFormSet(request.POST, queryset=Book.objects.order_by("id"))
    return JsonResponse({"valid": formset.is_valid()})  # book-titles-is-valid


# --- pages that repeat a statement without a loop (found on real apps) -------------------


class NavigationView(TemplateView):  # navigation-view
    """Two inclusion tags, each counting its own queryset in its template."""

    template_name = "precision/navigation.html"


def two_relations(request: HttpRequest, book: int, profile: int) -> HttpResponse:
    """One book's author and one profile's author: two foreign keys of two single objects,
    read in one template; the same SQL twice, but neither a loop nor a repeat."""
    from django.shortcuts import render

    from tests.testapp.models import Profile

    context = {"book": Book.objects.get(pk=book), "profile": Profile.objects.get(pk=profile)}
    return render(request, "precision/two_relations.html", context)


def author_count_twice(request: HttpRequest, pk: int) -> HttpResponse:
    """``{{ author.book_set.count }}`` twice in one template (the number and its plural)."""
    from django.shortcuts import render

    return render(
        request, "precision/author_count_twice.html", {"author": Author.objects.get(pk=pk)}
    )


class AuthorNamesListView(ListView):
    """A project's base list view: it gathers the authors of the rows for a side panel."""

    template_name = "precision/author_names.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["authors"] = {b.author.name for b in context["object_list"]}  # base-loop
        return context


class BooksByAuthorView(AuthorNamesListView):
    model = Book  # subclass-model


@require_GET
def retitle_books(request: HttpRequest) -> HttpResponse:
    """The view's own loop of saves, under a decorator of Django's (library code between
    the handler and the view, which loops over nothing)."""
    for book in Book.objects.order_by("id"):
        book.title = book.title.upper()
        book.save()  # retitle-save
    return JsonResponse({"ok": True})


class AuthorDetailView(DetailView):
    """A detail page whose own ``get_context_data`` lists other rows (all books): their
    queryset is built here, not by the view's ``model``."""

    model = Author
    template_name = "precision/author_names.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        books = Book.objects.order_by("id")  # detail-books
        context["authors"] = [b.author.name for b in books]  # detail-loop
        return context
