"""URLs for the SSO-to-Django sign-in tests: the qlikauth SAML and OIDC views, a ``@login_required``
page that names the Django user, Django's own logout, and a backend that makes no users."""

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django_qlikauth.backends import SsoBackend


class ExistingUsersOnly(SsoBackend):
    """Signs in only Django users that already exist."""

    create_unknown_user = False


class BareUserIds(SsoBackend):
    """Django usernames are the bare SSO user ids (they can equal a local account's)."""

    include_directory = False


class BareUserIdsAdopting(BareUserIds):
    """... and the integrator lets SSO sign-ins become existing privileged accounts."""

    adopt_privileged_users = True


@login_required
def me(request):
    user = request.user
    return JsonResponse(
        {
            "username": user.get_username(),
            "usable_password": user.has_usable_password(),
            "staff": user.is_staff,
            "superuser": user.is_superuser,
            "email": user.email,
        }
    )


def whoami(request):
    user = getattr(request, "qlikauth_sso_user", None)
    return JsonResponse({"user": None if user is None else user.qualified_name})


def signout(request):
    logout(request)  # Django's own logout: the SSO sign-in and every proxy session end too
    return HttpResponse("signed out")


urlpatterns = [
    path("qlik/", include("django_qlikauth.urls")),
    path("oidc/", include("django_qlikauth.oidc")),
    path("me", me),
    path("whoami", whoami),
    path("signout", signout),
    path("accounts/login/", lambda request: HttpResponse("the portal's login page"), name="login"),
]
