"""The views under namespace ``qlikauth``: login, module, logout and header-auth.

``logout`` changes state: it signs out only on ``POST`` with Django's CSRF token (the view
is ``csrf_protect``-ed even without the middleware); ``GET`` only answers a page with a
sign-out button, so another site cannot sign a user out of Qlik with a link or an image.

They decide where the user, request and config come from and turn the
authenticators' ``Redirect``/``Cookie`` answers into Django responses; the protocol
work is qlikauth's.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.middleware.csrf import get_token
from django.template import Context, Engine, TemplateDoesNotExist
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods

from qlikauth.config import describe_error
from qlikauth.exceptions import QlikAuthError

from .conf import get_runtime, qlik_user_for
from .sessions import end_proxy_sessions, ensure_proxy_session, set_cookie

log = logging.getLogger("django_qlikauth")

_TEMPLATES = Path(__file__).parent / "templates"


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def _redirect(location: str) -> HttpResponse:
    # HttpResponseRedirect also refuses unsafe schemes (javascript:, data:) on its own.
    return _no_store(HttpResponseRedirect(location))


def error_response(request: HttpRequest, exc: QlikAuthError) -> HttpResponse:
    """The error page (or ``{"error", "detail"}`` JSON when the client asks for it)."""
    info = describe_error(exc)
    log.warning("qlikauth: %s on %s %s: %s", type(exc).__name__, request.method, request.path, exc)
    if request.get_preferred_type(["text/html", "application/json"]) == "application/json":
        response: HttpResponse = JsonResponse({"error": info["error"], "detail": info["detail"]},
                                              status=info["status"])
    else:
        try:
            html = render_to_string("qlikauth/error.html", info, request=request)
        except TemplateDoesNotExist:  # the project has no app-directories template loader
            html = Engine(dirs=[str(_TEMPLATES)], autoescape=True).get_template(
                "qlikauth/error.html").render(Context(info))
        response = HttpResponse(html, status=info["status"], content_type="text/html; charset=utf-8")
    return _no_store(response)


def _handles_errors(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, *args, **kwargs)
        except QlikAuthError as exc:
            return error_response(request, exc)
    return wrapper


def _to_login(request: HttpRequest) -> HttpResponse:
    login_url = get_runtime().config.login_url
    sep = "&" if "?" in login_url else "?"
    return _redirect(f"{login_url}{sep}{urlencode({'next': request.get_full_path()})}")


@require_http_methods(["GET"])
@_handles_errors
def login(request: HttpRequest) -> HttpResponse:
    """Ticket mode: to the hub (or ``target``) with a ticket. Session mode: cookie, then the hub."""
    runtime = get_runtime()
    target = request.GET.get("target")
    if target:
        runtime.hub_policy.check(target)  # refused before anything else
    user = qlik_user_for(request)
    if user is None:
        return _to_login(request)
    if runtime.config.mode == "session":
        response = _redirect(runtime.hub_policy.check(target) if target else runtime.config.hub_url)
        ensure_proxy_session(request, response, strict=True)
        return response
    return _redirect(runtime.ticket.login(user, target).location)


@require_http_methods(["GET"])
@_handles_errors
def module(request: HttpRequest) -> HttpResponse:
    """The virtual proxy's authentication module redirect URI (``targetId``, ``proxyRestUri``)."""
    runtime = get_runtime()
    target_id = request.GET.get("targetId", "")
    rest_uri = request.GET.get("proxyRestUri", "")
    runtime.ticket.check_module_request(rest_uri, target_id)  # before anything else
    user = qlik_user_for(request)
    if user is None:
        return _to_login(request)
    return _redirect(runtime.ticket.module_login(user, rest_uri, target_id).location)


def _logout_page(request: HttpRequest, next_url: str) -> HttpResponse:
    """GET: a page with a sign-out button (a POST form with the CSRF token); it changes nothing."""
    context = {"action": request.path, "next_url": next_url, "csrf_token_value": get_token(request)}
    try:
        html = render_to_string("qlikauth/logout.html", context, request=request)
    except TemplateDoesNotExist:  # the project has no app-directories template loader
        html = Engine(dirs=[str(_TEMPLATES)], autoescape=True).get_template(
            "qlikauth/logout.html").render(Context(context))
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    # The button must not be clickjacked from another site.
    response["X-Frame-Options"] = "DENY"
    response["Content-Security-Policy"] = "frame-ancestors 'none'"
    return _no_store(response)


@require_http_methods(["GET", "POST"])
@csrf_protect
def logout(request: HttpRequest) -> HttpResponse:
    """POST (with the CSRF token): end the user's proxy sessions on every node, clear the cookie,
    go to ``next`` (local only). GET only answers a page with a sign-out button."""
    runtime = get_runtime()
    if request.method != "POST":
        return _logout_page(request, runtime.local_redirect(request.GET.get("next"), "/"))
    response = _redirect(runtime.local_redirect(request.POST.get("next"), "/"))
    try:
        end_proxy_sessions(request, getattr(request, "user", None))
    except QlikAuthError as exc:
        response = error_response(request, exc)
    set_cookie(response, runtime.clear_cookie())
    return response


@require_http_methods(["GET", "HEAD"])
@_handles_errors
def header_auth(request: HttpRequest) -> HttpResponse:
    """For nginx ``auth_request``: 200 with the identity header for the signed-in user, else 401.

    The identity comes from Django's authentication only, never from a request
    header; no QPS call is made.
    """
    runtime = get_runtime()
    # runtime.header raises ConfigurationError (500) when HEADER_NAME is unset.
    answer = runtime.header.identity_answer(qlik_user_for(request), runtime.config.header_response_header)
    response = HttpResponse(b"", content_type="text/plain", status=answer.status)
    for name, value in answer.headers:
        response[name] = value
    return response
