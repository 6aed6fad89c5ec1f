"""Views of the example Django portal: a home page and a mashup page embedding the Qlik hub."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    """Who is signed in, and links to the mashup and Qlik."""
    return render(request, "portal/home.html", {"hub_url": settings.QLIKAUTH.get("HUB_URL")})


@login_required
def mashup(request: HttpRequest) -> HttpResponse:
    """The Qlik hub in an iframe: the middleware has already set the proxy session cookie."""
    groups = list(request.user.groups.order_by("name").values_list("name", flat=True))
    return render(request, "portal/mashup.html", {"hub_url": settings.QLIKAUTH.get("HUB_URL"),
                                                  "groups": groups})
