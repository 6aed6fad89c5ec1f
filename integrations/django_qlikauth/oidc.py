"""OpenID Connect sign-in for Django: four views and a middleware, each a line over
:mod:`qlikauth.web.oidc`.

``path("oidc/", include("django_qlikauth.oidc"))`` gives ``oidc/login``, ``oidc/callback``,
``oidc/logout`` and ``oidc/backchannel-logout`` (namespace ``qlikauth_oidc``). Put
:class:`OidcSessionMiddleware` after ``SessionMiddleware``: on every request it sets
``request.qlikauth_sso_user`` (the signed-in :class:`~qlikauth.QlikUser`, or None) and ends the
SSO session (and its proxy sessions) when it was logged out at the provider or passed its caps.
Settings: ``QLIKAUTH["OIDC"]`` (docs/oidc.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import path

from qlikauth.exceptions import QlikAuthError
from qlikauth.identity import QlikUser
from qlikauth.web import oidc

from .conf import get_runtime
from .render import set_cookie, web_request
from .views import flow_view, signs_in, signs_out

__all__ = [
    "login",
    "callback",
    "logout",
    "backchannel_logout",
    "frontchannel_logout",
    "OidcSessionMiddleware",
    "logout_return",
    "urlpatterns",
    "app_name",
]


def _oidc_user(request: HttpRequest) -> QlikUser | None:
    record = request.session.get(oidc.OIDC_SESSION_KEY) if hasattr(request, "session") else None
    try:
        return QlikUser.from_qps(record["user"]) if isinstance(record, dict) else None
    except (QlikAuthError, KeyError, TypeError):
        return None


login = flow_view(oidc.login)
#: GET (response_mode=query) or a cross-site POST (form_post): state + browser binding guard it.
#: With ``SsoBackend`` configured, a sign-in is a Django sign-in too
#: (:mod:`django_qlikauth.backends`).
callback = signs_in(flow_view(oidc.callback, methods=("GET", "POST")), _oidc_user)
logout = signs_out(flow_view(oidc.logout, methods=("GET", "POST"), csrf=True))
#: POSTed by the provider itself: no browser, no CSRF token; the logout_token is the proof.
backchannel_logout = flow_view(oidc.backchannel_logout, methods=("POST",))
#: Where the provider sends the browser after RP-initiated logout (POST_LOGOUT_REDIRECT_URI).
logout_return = flow_view(oidc.logout_return)
#: Loaded by the provider in an iframe (FRONTCHANNEL_LOGOUT); ends only this browser's own SSO
#: session.
frontchannel_logout = signs_out(flow_view(oidc.frontchannel_logout))


class OidcSessionMiddleware:
    """The SSO session of each request: its user, or its end (see the module docstring)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        state = None
        if hasattr(request, "session") and oidc.OIDC_SESSION_KEY in request.session:
            state = oidc.sso_session(web_request(request), get_runtime())
        request.qlikauth_sso_user = state.user if state else None  # type: ignore[attr-defined]
        if state is not None and state.user is None and hasattr(request, "user"):
            from .backends import end_login_if_sso_ended

            end_login_if_sso_ended(request)  # the SSO session ended: so does its Django sign-in
        response = self.get_response(request)
        for cookie in state.cookies if state else ():
            set_cookie(response, cookie)
        return response


app_name = "qlikauth_oidc"
urlpatterns: list[Any] = [
    path("login", login, name="login"),
    path("callback", callback, name="callback"),
    path("logout", logout, name="logout"),
    path("logged-out", logout_return, name="logged-out"),
    path("backchannel-logout", backchannel_logout, name="backchannel-logout"),
    path("frontchannel-logout", frontchannel_logout, name="frontchannel-logout"),
    # several providers (QLIKAUTH["OIDC"] = {"imprivata": {...}, ...}): /oidc/<idp>/...
    path("<str:idp>/login", login, name="idp-login"),
    path("<str:idp>/callback", callback, name="idp-callback"),
    path("<str:idp>/logout", logout, name="idp-logout"),
    path("<str:idp>/logged-out", logout_return, name="idp-logged-out"),
    path("<str:idp>/backchannel-logout", backchannel_logout, name="idp-backchannel-logout"),
    path("<str:idp>/frontchannel-logout", frontchannel_logout, name="idp-frontchannel-logout"),
]
