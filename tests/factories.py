"""factory-boy factories for the test models."""

from __future__ import annotations

import factory

from tests.testapp.models import (
    Author,
    Book,
    Listing,
    Member,
    Profile,
    Publisher,
    Review,
    Tag,
)


class PublisherFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Publisher

    name = factory.Sequence(lambda n: f"Publisher {n}")


class AuthorFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Author

    name = factory.Sequence(lambda n: f"Author {n}")
    email = factory.LazyAttribute(lambda a: f"{a.name.lower().replace(' ', '.')}@example.com")


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    author = factory.SubFactory(AuthorFactory)
    bio = "Writes books."


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"tag{n}")


class BookFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Book
        skip_postgeneration_save = True

    title = factory.Sequence(lambda n: f"Book {n}")
    isbn = factory.Sequence(lambda n: f"978-{n:09d}")
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
    rating = 4


class ListingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Listing

    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    slug = factory.Sequence(lambda n: f"listing-{n}")
    city = factory.Iterator(["Leeds", "York", "Bath", "Ely"])
    zip_code = factory.Sequence(lambda n: f"Z{n:05d}")
    price = factory.Sequence(lambda n: 100 + n)
    owner = factory.SubFactory(AuthorFactory)


class MemberFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Member

    name = factory.Sequence(lambda n: f"member{n}")
