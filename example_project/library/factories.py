"""factory-boy factories for the library; the ``seed`` command and your tests use them."""

from __future__ import annotations

import datetime

import factory
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django.utils.text import slugify

from library.models import Author, Book, Comment, Loan, Profile, Publisher, Review, Tag

BRANCHES = ["central", "harbour", "hillside", "riverside"]
LANGUAGES = ["en", "en", "en", "fr", "de", "es"]


class PublisherFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Publisher

    name = factory.Faker("company")
    country = factory.Faker("country_code")
    website = factory.Faker("url")


class AuthorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Author

    name = factory.Faker("name")
    slug = factory.LazyAttributeSequence(lambda a, n: f"{slugify(a.name)}-{n}")
    email = factory.LazyAttribute(lambda a: f"{a.slug}@example.com")
    active = factory.Faker("pybool", truth_probability=80)


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    author = factory.SubFactory(AuthorFactory)
    bio = factory.Faker("paragraph", nb_sentences=2)
    website = factory.Faker("url")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Faker("word")


class BookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Book
        skip_postgeneration_save = True

    title = factory.Faker("sentence", nb_words=4, variable_nb_words=True)
    isbn = factory.Faker("isbn13")
    language = factory.Faker("random_element", elements=LANGUAGES)
    format = factory.Faker("random_element", elements=[f for f, _ in Book.FORMATS])
    pages = factory.Faker("pyint", min_value=80, max_value=900)
    price = factory.Faker("pydecimal", left_digits=2, right_digits=2, positive=True)
    published = factory.Faker("date_between", start_date="-30y", end_date="today")
    added = factory.Faker("date_time_between", start_date="-2y", tzinfo=datetime.UTC)
    in_print = factory.Faker("pybool", truth_probability=70)
    author = factory.SubFactory(AuthorFactory)
    publisher = factory.SubFactory(PublisherFactory)

    @factory.post_generation
    def tags(self, create: bool, extracted: list[Tag] | None, **kwargs: object) -> None:
        if create and extracted:
            self.tags.set(extracted)


class ReviewFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Review

    book = factory.SubFactory(BookFactory)
    reviewer = factory.Faker("name")
    rating = factory.Faker("pyint", min_value=1, max_value=5)
    body = factory.Faker("paragraph", nb_sentences=3)
    created = factory.Faker("date_time_between", start_date="-1y", tzinfo=datetime.UTC)


class CommentFactory(factory.django.DjangoModelFactory):
    """Pass ``content_object=...``: a book, an author or a review."""

    class Meta:
        model = Comment
        exclude = ["content_object"]

    content_object = factory.SubFactory(BookFactory)
    content_type = factory.LazyAttribute(
        lambda c: ContentType.objects.get_for_model(c.content_object)
    )
    object_id = factory.SelfAttribute("content_object.pk")
    name = factory.Faker("first_name")
    text = factory.Faker("sentence")
    created = factory.LazyFunction(timezone.now)


class LoanFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Loan

    book = factory.SubFactory(BookFactory)
    borrower = factory.Faker("name")
    branch = factory.Faker("random_element", elements=BRANCHES)
    due = factory.Faker("date_between", start_date="-10d", end_date="+20d")
    returned = factory.Faker("pybool", truth_probability=30)
