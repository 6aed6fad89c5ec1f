"""``path("qlik/", include("django_qlikauth.urls"))``: namespace ``qlikauth``."""

from django.urls import path

from . import views

app_name = "qlikauth"

urlpatterns = [
    path("login", views.login, name="login"),
    path("module", views.module, name="module"),
    path("logout", views.logout, name="logout"),
    path("header-auth", views.header_auth, name="header-auth"),
    path("saml/metadata", views.saml_metadata, name="saml-metadata"),
    path("saml/login", views.saml_login, name="saml-login"),
    path("saml/acs", views.saml_acs, name="saml-acs"),
    path("saml/logout", views.saml_logout, name="saml-logout"),
    path("saml/slo", views.saml_slo, name="saml-slo"),
]
