"""URLs for the Django layer's tests: the qlikauth URLs plus tiny sign-in/out views."""

from django.contrib.auth import get_user_model, login, logout
from django.http import HttpResponse
from django.urls import include, path


def signin(request, name):
    user = get_user_model().objects.get(username=name)
    login(request, user)  # rotates the session key
    return HttpResponse("signed in")


def signout(request):
    logout(request)
    return HttpResponse("signed out")


def page(request):
    return HttpResponse(f"page for {request.user.get_username() or 'anonymous'}")


def login_page(request):
    return HttpResponse("the portal's login page")


urlpatterns = [
    path("accounts/login/", login_page, name="login"),  # where a stock project's LOGIN_URL points
    path("signin/<str:name>", signin),
    path("signout", signout),
    path("page", page),
    path("qlik/", include("django_qlikauth.urls")),
]
