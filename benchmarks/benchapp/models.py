from __future__ import annotations

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)

    objects: models.Manager[Author] = models.Manager()

    class Meta:
        app_label = "benchapp"

    def __str__(self) -> str:
        return self.name


class Book(models.Model):
    title = models.CharField(max_length=100)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    # Unindexed on purpose: the EXPLAIN variant has a missing index to find.
    pages = models.IntegerField()

    objects: models.Manager[Book] = models.Manager()

    class Meta:
        app_label = "benchapp"

    def __str__(self) -> str:
        return self.title
