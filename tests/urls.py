from django.urls import path

from tests.testapp import views

urlpatterns = [
    path("books/", views.book_list),
    path("books/fixed/", views.book_list_fixed),
    path("async/books/", views.async_book_list),
    path("async/books/fixed/", views.async_book_list_fixed),
    path("clean/", views.clean),
    path("ignored/books/", views.book_list),
    path("boom/", views.boom),
]
