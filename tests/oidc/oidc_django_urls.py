"""URLs for the Django OIDC tests: django_qlikauth.oidc under /oidc/ and a /whoami page."""

from django.http import JsonResponse
from django.urls import include, path


def whoami(request):
    user = getattr(request, "qlikauth_sso_user", None)
    return JsonResponse({"user": None if user is None else user.qualified_name})


urlpatterns = [
    path("oidc/", include("django_qlikauth.oidc")),
    path("whoami", whoami),
]
