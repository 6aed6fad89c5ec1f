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
    # several SAML IdPs (QLIKAUTH["SAML"] = {"entra": {...}, ...}): /qlik/saml/<idp>/...
    path("saml/<str:idp>/metadata", views.saml_metadata, name="saml-idp-metadata"),
    path("saml/<str:idp>/login", views.saml_login, name="saml-idp-login"),
    path("saml/<str:idp>/acs", views.saml_acs, name="saml-idp-acs"),
    path("saml/<str:idp>/logout", views.saml_logout, name="saml-idp-logout"),
    path("saml/<str:idp>/slo", views.saml_slo, name="saml-idp-slo"),
    path("sso", views.choose_idp, name="choose-idp"),
]
