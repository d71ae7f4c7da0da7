from django.urls import include, path, re_path

from tests.testapp import views

urlpatterns = [
    path("books/", views.book_list),
    path("books/fixed/", views.book_list_fixed),
    path("async/books/", views.async_book_list),
    path("async/books/fixed/", views.async_book_list_fixed),
    path("clean/", views.clean),
    path("ignored/books/", views.book_list),
    path("boom/", views.boom),
    # For the audit command: routes it must skip, and one nested include.
    path("audit/books/<int:pk>/", views.book_detail, name="audit-book"),
    re_path(r"^audit/archive/(?P<year>[0-9]{4})/$", views.clean),
    path("audit/post-only/", views.PostOnly.as_view()),
    path("audit/me/", views.whoami),
    path("audit/create-counter/", views.create_counter),
    path("audit/nested/", include(([path("inner/", views.clean, name="inner")], "auditns"))),
    path("audit/duplicate/", views.duplicate_lookup),
    path("audit/export.csv", views.streamed_export),
    path("stream/fixed.csv", views.streamed_export_fixed),
    path("stream/async.csv", views.async_streamed_export),
    path("stream/file.csv", views.file_export),
    path("guarded/job/", views.guarded_job),
    path("guarded/command/", views.guarded_command),
    path("guarded/stream/", views.streamed_guarded_job),
    path("guarded/celery/", views.celery_task),
    path("threads/books/", views.threaded_authors),
    path("threads/books/without-context/", views.threaded_authors_without_context),
    path("audit/async-counter/", views.async_create_counter),
    path("orm/books/template/", views.orm_book_list_template),
    path("orm/api/authors/", views.orm_author_api),
    path("orm/api/authors/fixed/", views.orm_author_api_fixed),
    path("listings/", views.listing_search),
    path("async/listings/", views.async_listing_search),
]
