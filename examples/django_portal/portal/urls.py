"""URLs of the example Django portal."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("mashup/", views.mashup, name="mashup"),
    path(
        "accounts/login/",
        views.ThrottledLoginView.as_view(redirect_authenticated_user=False),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("qlik/", include("django_qlikauth.urls")),
]
