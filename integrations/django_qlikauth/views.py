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

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_http_methods

from qlikauth.web import flows

from .conf import get_runtime
from .render import render, web_request

__all__ = ["flow_view", "login", "module", "logout", "header_auth"]


def flow_view(flow: flows.Flow, *, methods: Iterable[str] = ("GET",),
              csrf: bool = False) -> Callable[[HttpRequest], HttpResponse]:
    """A Django view that runs ``flow`` and renders its answer.

    ``csrf=True``: Django's CSRF check guards the view's POSTs (``csrf_protect``, even without
    the middleware) and the flow is told so (``csrf_verified``); the GET answer gets a token
    for its form. ``csrf=False``: the view is ``csrf_exempt`` and the flow makes its own
    decision (a SAML ACS takes a cross-site POST by design).
    """
    allowed = [m.upper() for m in methods]

    def view(request: HttpRequest) -> HttpResponse:
        token = get_token(request) if csrf and request.method != "POST" else None
        answer = flows.run(flow, web_request(request, csrf_verified=csrf, csrf_token=token), get_runtime())
        request._qlikauth_answered = True  # type: ignore[attr-defined]  # the middleware adds no cookie
        return render(request, answer)

    functools.update_wrapper(view, flow)
    guarded = csrf_protect(view) if csrf else csrf_exempt(view)
    return require_http_methods(allowed)(guarded)


#: :func:`qlikauth.web.flows.login`: ticket mode to the hub with a ticket; session mode cookie + hub.
login = flow_view(flows.login)
#: :func:`qlikauth.web.flows.module`: the virtual proxy's authentication module redirect URI.
module = flow_view(flows.module)
#: :func:`qlikauth.web.flows.logout`: POST (CSRF-checked by Django) signs out, GET shows the button.
logout = flow_view(flows.logout, methods=("GET", "POST"), csrf=True)
#: :func:`qlikauth.web.flows.header_auth`: for nginx ``auth_request``; no QPS call.
header_auth = flow_view(flows.header_auth, methods=("GET", "HEAD"))
