"""The project's URLs: a root view, a nested ``include()`` with a converter, a 500 and a logging view."""

from __future__ import annotations

from django.urls import include, path, re_path

from . import views

shop = [
    path("articles/<int:year>/", views.article, name="article"),
    re_path(r"^legacy/(?P<slug>[a-z]+)/$", views.article_slug, name="legacy"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("shop/<str:region>/", include(shop)),
    path("boom/", views.boom, name="boom"),
    path("async-boom/", views.async_boom, name="async-boom"),
    path("checkout/", views.checkout, name="checkout"),
]
