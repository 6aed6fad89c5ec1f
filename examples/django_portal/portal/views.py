"""Views of the example Django portal: a home page and a mashup page embedding the Qlik hub."""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    """Who is signed in, and links to the mashup and Qlik."""
    return render(request, "portal/home.html", {"hub_url": settings.QLIKAUTH.get("HUB_URL")})


@login_required
def mashup(request: HttpRequest) -> HttpResponse:
    """The Qlik hub in an iframe: the middleware has already set the proxy session cookie."""
    groups = list(request.user.groups.order_by("name").values_list("name", flat=True))
    return render(
        request,
        "portal/mashup.html",
        {"hub_url": settings.QLIKAUTH.get("HUB_URL"), "groups": groups},
    )


class ThrottledLoginView(LoginView):
    """Django's login view, throttled per user name and per client address.

    Failed sign-ins are counted in the cache over a window (``settings.LOGIN_THROTTLE``); past
    a limit the form answers 429 with ``Retry-After`` and checks no password. Unknown and known
    names cost the same: Django's ``ModelBackend`` hashes the password for a name without a
    user too, so the answer's timing does not tell who exists. Behind a reverse proxy, take
    the client's address from the proxy's header instead of ``REMOTE_ADDR``.
    """

    def _keys(self) -> tuple[str, str]:
        name = self.request.POST.get("username", "").strip().lower()
        address = self.request.META.get("REMOTE_ADDR", "")
        # Hashed: cache keys stay short and printable whatever the form sent.
        return (
            "login-fail:user:" + hashlib.sha256(name.encode("utf-8", "replace")).hexdigest(),
            "login-fail:addr:" + hashlib.sha256(address.encode()).hexdigest(),
        )

    def _wait(self) -> int:
        limits = settings.LOGIN_THROTTLE
        now = time.time()
        user_key, addr_key = self._keys()
        wait = 0.0
        for key, limit in ((user_key, limits["PER_USER"]), (addr_key, limits["PER_ADDRESS"])):
            entry = cache.get(key)
            if entry and entry[0] >= limit:
                wait = max(wait, entry[1] + limits["WINDOW"] - now)
        return math.ceil(wait) if wait > 0 else 0

    def _failed(self) -> None:
        window = settings.LOGIN_THROTTLE["WINDOW"]
        now = time.time()
        for key in self._keys():
            count, started = cache.get(key) or (0, now)
            cache.set(key, (count + 1, started), timeout=max(1, math.ceil(started + window - now)))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = self._wait()
        if wait:
            # An unbound form: binding it would run authenticate() and hash the password.
            form = self.get_form_class()(request)
            context = self.get_context_data(form=form, throttled=wait)
            response = self.render_to_response(context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: Any) -> HttpResponse:
        self._failed()
        return super().form_invalid(form)

    def form_valid(self, form: Any) -> HttpResponse:
        cache.delete(self._keys()[0])  # the user's own count starts again; the address's stays
        return super().form_valid(form)
