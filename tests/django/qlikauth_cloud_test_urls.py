"""URLs for the Django Qlik Cloud endpoint test: the test puts ``cloud_urls(portal)`` into
``urlpatterns``."""

from django.contrib.auth import get_user_model, login, logout
from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.urls import include, path


def signin(request, name):
    user, _ = get_user_model().objects.get_or_create(username=name)
    login(request, user)
    request.session["cloud_sub"] = f"{name}@example.com"
    return HttpResponse(get_token(request))  # the page's CSRF token, as a template would embed it


def signout(request):
    logout(request)  # user_logged_out: django_qlikauth ends the proxy sessions and the cloud token
    return HttpResponse("signed out")


base = [
    path("signin/<str:name>", signin),
    path("signout", signout),
    path("qlik/", include("django_qlikauth.urls")),
]
urlpatterns = list(base)
