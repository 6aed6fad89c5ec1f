"""The Django portal of the lifecycle matrix: its own password sign-in (Django's ``login()`` and
``logout()``) and django_qlikauth's URLs, written as a Django project would."""

from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import include, path
from django.utils.http import url_has_allowed_host_and_scheme


def login_page(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse("the portal's login page")
    user = authenticate(
        request,
        username=request.POST.get("username", ""),
        password=request.POST.get("password", ""),
    )
    if user is None:
        return HttpResponse("Unknown user or wrong password.", status=401)
    login(
        request, user
    )  # a new session key (fixation); QlikSessionMiddleware sets the proxy cookie
    nxt = request.POST.get("next") or "/"
    if not url_has_allowed_host_and_scheme(
        nxt, allowed_hosts={request.get_host()}, require_https=True
    ):
        nxt = "/"
    return HttpResponseRedirect(nxt)


def signout(request: HttpRequest) -> HttpResponse:
    logout(request)  # user_logged_out: django_qlikauth ends the Qlik sessions
    return HttpResponseRedirect("/accounts/login/")


def whoami(request: HttpRequest) -> HttpResponse:
    from django_qlikauth.conf import qlik_user_for

    user = qlik_user_for(request) if request.user.is_authenticated else None
    return HttpResponse(user.qualified_name if user is not None else "nobody")


def home(request: HttpRequest) -> HttpResponse:
    return HttpResponse("home")


urlpatterns = [
    path("", home),
    path("accounts/login/", login_page),
    path("signout", signout),
    path("whoami", whoami),
    path("qlik/", include("django_qlikauth.urls")),
    path("oidc/", include("django_qlikauth.oidc")),
]
