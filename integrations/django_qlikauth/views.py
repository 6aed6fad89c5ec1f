"""The views under namespace ``qlikauth``: login, module, logout and header-auth.

Each view is one flow of :mod:`qlikauth.web.flows`, rendered by :mod:`.render`;
:func:`flow_view` makes such a view for any flow (the SSO endpoints use it too).
``logout`` changes state: it signs out only on ``POST`` with Django's CSRF token (the view
is ``csrf_protect``-ed even without the middleware, so the flow is told the POST is
checked); ``GET`` only answers a page with a sign-out button.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from qlikauth.identity import QlikUser
from qlikauth.web import flows, saml

from .conf import get_runtime
from .render import render, web_request

__all__ = [
    "flow_view",
    "signs_in",
    "signs_out",
    "login",
    "module",
    "logout",
    "header_auth",
    "saml_metadata",
    "saml_login",
    "saml_acs",
    "saml_logout",
    "saml_slo",
    "choose_idp",
]


def flow_view(
    flow: flows.Flow, *, methods: Iterable[str] = ("GET",), csrf: bool = False
) -> Callable[[HttpRequest], HttpResponse]:
    """A Django view that runs ``flow`` and renders its answer.

    ``csrf=True``: Django's CSRF check guards the view's POSTs (``csrf_protect``, even without
    the middleware) and the flow is told so (``csrf_verified``); the GET answer gets a token
    for its form. ``csrf=False``: the view is ``csrf_exempt`` and the flow makes its own
    decision (a SAML ACS takes a cross-site POST by design).
    """
    allowed = [m.upper() for m in methods]
    limit: int | None = getattr(flow, "max_body", None)

    def view(request: HttpRequest, **route: Any) -> HttpResponse:
        # route variables (``<idp>``: which identity provider) go to the flow as keywords
        if limit is not None and _declared_length(request) > limit:
            # refused before request.POST reads the body (a 32 MiB POST to the ACS stays unread)
            from qlikauth.exceptions import SamlError

            error = SamlError(
                f"the request body is larger than the {limit // 1024} KiB a SAML "
                "message needs; refused unread.",
                code="too_large",
            )
            error.status = 413
            described = flows.WebRequest(
                method=request.method or "POST", path=request.path, headers=request.headers
            )  # no form: nothing read
            return render(request, flows.error_answer(described, error))
        token = get_token(request) if csrf and request.method != "POST" else None
        bound = functools.partial(flow, **route) if route else flow
        answer = flows.run(
            bound, web_request(request, csrf_verified=csrf, csrf_token=token), get_runtime()
        )
        # the middleware adds no cookie: this view answered for the proxy cookie
        request._qlikauth_answered = True  # type: ignore[attr-defined]
        return render(request, answer)

    functools.update_wrapper(view, flow)
    guarded = csrf_protect(view) if csrf else csrf_exempt(view)
    return require_http_methods(allowed)(guarded)


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 1 << 62  # an unreadable length is not read either


#: :func:`qlikauth.web.flows.login`: ticket mode to the hub with a ticket; session mode cookie +
#: hub.
login = flow_view(flows.login)
#: :func:`qlikauth.web.flows.module`: the virtual proxy's authentication module redirect URI.
module = flow_view(flows.module)
#: :func:`qlikauth.web.flows.logout`: POST (CSRF-checked by Django) signs out, GET shows the button.
logout = flow_view(flows.logout, methods=("GET", "POST"), csrf=True)
#: :func:`qlikauth.web.flows.header_auth`: for nginx ``auth_request``; no QPS call.
header_auth = flow_view(flows.header_auth, methods=("GET", "HEAD"))


def signs_in(
    view: Callable[[HttpRequest], HttpResponse], user_of: Callable[[HttpRequest], QlikUser | None]
) -> Callable[[HttpRequest], HttpResponse]:
    """After an SSO sign-in (``user_of`` finds its user in the session): the Django sign-in
    (:func:`~django_qlikauth.backends.sso_login`, when :class:`~django_qlikauth.backends.SsoBackend`
    is configured), else only a new session key (fixation)."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, **route: Any) -> HttpResponse:
        response = view(request, **route)
        user = user_of(request) if response.status_code == 302 else None
        if user is not None:
            from .backends import sso_login

            if not sso_login(request, user):
                request.session.cycle_key()
        return response

    return wrapped


def signs_out(view: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """After an SSO logout flow: a Django user signed in by that SSO sign-in is logged out too."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, **route: Any) -> HttpResponse:
        response = view(request, **route)
        from django.apps import apps

        if apps.is_installed("django.contrib.auth"):
            from .backends import end_login_if_sso_ended

            end_login_if_sso_ended(request)
        return response

    return wrapped


def _saml_user(request: HttpRequest) -> QlikUser | None:
    return saml.saml_user(getattr(request, "session", None))


# SAML single sign-on (QLIKAUTH["SAML"], QLIKAUTH["CLAIMS"]): the flows of qlikauth.web.saml.
#: :func:`qlikauth.web.saml.saml_metadata`: the SP's metadata.
saml_metadata = flow_view(saml.saml_metadata)
#: :func:`qlikauth.web.saml.saml_login`: to the IdP with an AuthnRequest.
saml_login = flow_view(saml.saml_login)
#: :func:`qlikauth.web.saml.saml_acs`: the IdP's cross-site POST (no CSRF token by design; the
#: flow checks).
saml_acs = signs_in(flow_view(saml.saml_acs, methods=("POST",)), _saml_user)
#: :func:`qlikauth.web.saml.saml_logout`: SP-initiated single logout (POST with Django's CSRF
#: token).
saml_logout = signs_out(flow_view(saml.saml_logout, methods=("POST",), csrf=True))
#: :func:`qlikauth.web.saml.saml_slo`: the IdP's LogoutRequest or LogoutResponse (Redirect or
#: POST binding).
saml_slo = signs_out(flow_view(saml.saml_slo, methods=("GET", "POST")))


def choose_idp(request: HttpRequest) -> HttpResponse:
    """:func:`qlikauth.web.chooser.choose_idp`: a sign-in link per identity provider."""
    from django.urls import NoReverseMatch, reverse

    from qlikauth.web.chooser import choose_idp as flow

    saml_base = reverse("qlikauth:saml-login").rsplit("/saml/login", 1)[0]
    try:
        oidc_base: str | None = reverse("qlikauth_oidc:login").rsplit("/login", 1)[0]
    except NoReverseMatch:
        oidc_base = None  # the OIDC URLs are not included
    bound = functools.partial(flow, saml_base=saml_base, oidc_base=oidc_base)
    return render(request, flows.run(bound, web_request(request), get_runtime()))


choose_idp = require_http_methods(["GET"])(choose_idp)
