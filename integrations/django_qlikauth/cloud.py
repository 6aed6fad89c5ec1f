"""Qlik Cloud and JWT endpoints for Django: one line each in ``urlpatterns``.

::

    from django_qlikauth.cloud import cloud_urls
    urlpatterns += cloud_urls(portal)     # portal: a qlikauth.web.cloud.CloudPortal built at
    startup

``qlik/cloud/access-token`` (POST, Django's CSRF token in ``X-CSRFToken``), ``qlik/cloud/jwt``
(POST), ``qlik/cloud/logout`` (POST), ``qlik/jwt/login`` (GET). ``cloud_urls`` also joins the
portal to the sign-out (:func:`django_qlikauth.conf.add_sign_out`): Django's logout (the
``user_logged_out`` signal) and ``/qlik/logout`` then revoke and forget the user's Qlik Cloud
access token besides ending the QSEoW proxy sessions on every node. The flows live in
:mod:`qlikauth.web.cloud`; this module only says where the request comes from and renders
the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from qlikauth.exceptions import QlikAuthError
from qlikauth.web import cloud, flows

from .conf import add_sign_out
from .render import render, web_request

__all__ = ["cloud_view", "cloud_urls"]


def cloud_view(
    endpoint: Callable[[flows.WebRequest, cloud.CloudPortal], flows.Answer],
    portal: cloud.CloudPortal,
    *,
    methods: Iterable[str] = ("POST",),
) -> Callable[[HttpRequest], HttpResponse]:
    """A Django view for one :mod:`qlikauth.web.cloud` endpoint; POSTs pass Django's CSRF check."""
    allowed = [m.upper() for m in methods]

    def view(request: HttpRequest) -> HttpResponse:
        wr = web_request(request, csrf_verified=request.method == "POST")
        try:
            answer = endpoint(wr, portal)
        except QlikAuthError as exc:
            answer = flows.error_answer(wr, exc)
        # the middleware adds no cookie: this view answered for the proxy cookie
        request._qlikauth_answered = True  # type: ignore[attr-defined]
        return render(request, answer)

    functools.update_wrapper(view, endpoint)
    return require_http_methods(allowed)(csrf_protect(view))


def cloud_urls(portal: cloud.CloudPortal, prefix: str = "qlik/") -> list[URLPattern]:
    """The URL patterns of every endpoint the portal is configured for; the portal joins the
    sign-out."""
    add_sign_out(portal)
    out: list[Any] = []
    if portal.access is not None:
        out.append(
            path(
                f"{prefix}cloud/access-token",
                cloud_view(cloud.access_token, portal),
                name="qlik-cloud-token",
            )
        )
        out.append(
            path(
                f"{prefix}cloud/logout",
                cloud_view(cloud.cloud_logout, portal),
                name="qlik-cloud-logout",
            )
        )
    if portal.jwt_issuer is not None:
        out.append(
            path(f"{prefix}cloud/jwt", cloud_view(cloud.cloud_jwt, portal), name="qlik-cloud-jwt")
        )
    if portal.qseow_jwt is not None:
        out.append(
            path(
                f"{prefix}jwt/login",
                cloud_view(cloud.qseow_jwt_login, portal, methods=("GET",)),
                name="qlik-jwt-login",
            )
        )
    return out
