"""``path("qlik/", include("django_qlikauth.urls"))``: namespace ``qlikauth``."""

from django.urls import path

from . import views

app_name = "qlikauth"

urlpatterns = [
    path("login", views.login, name="login"),
    path("module", views.module, name="module"),
    path("logout", views.logout, name="logout"),
    path("header-auth", views.header_auth, name="header-auth"),
]
