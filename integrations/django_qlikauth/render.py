"""Django's side of the flows: a :class:`~qlikauth.web.WebRequest` from an ``HttpRequest``,
and an ``HttpResponse`` from a flow's answer.

Everything the endpoints decide is in :mod:`qlikauth.web.flows`; this module only says
where the request, the signed-in user, the session and the configuration come from and
how an answer becomes a Django response.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template import Context, Engine, TemplateDoesNotExist
from django.template.loader import render_to_string

from qlikauth.authenticators.base import Cookie
from qlikauth.web import TEMPLATES_DIR
from qlikauth.web.flows import (
    Answer,
    JsonAnswer,
    PageAnswer,
    PlainAnswer,
    RedirectAnswer,
    WebRequest,
)

from .conf import portal_user_id, qlik_user_for

__all__ = ["web_request", "render", "set_cookie"]

_engine: Engine | None = None


def _host(request: HttpRequest) -> str:
    try:
        return request.get_host()
    except DisallowedHost:  # not one of ALLOWED_HOSTS: no origin can match it
        return ""
    except KeyError:  # a request built by hand (the test client's logout) has no SERVER_NAME
        return ""


def web_request(
    request: HttpRequest, *, csrf_verified: bool = False, csrf_token: str | None = None
) -> WebRequest:
    """Describe ``request`` for the flows (the user is mapped lazily, only when a flow needs it)."""
    return WebRequest(
        method=request.method or "GET",
        path=request.path,
        full_path=request.get_full_path(),
        args=request.GET,
        form=request.POST if request.method == "POST" else {},
        headers=request.headers,
        cookies=request.COOKIES,
        session=getattr(request, "session", None),
        scheme=request.scheme or "https",
        host=_host(request),
        user=lambda: qlik_user_for(request),
        portal_user=portal_user_id(request),
        csrf_verified=csrf_verified,
        csrf_token=csrf_token,
        wants_json=request.get_preferred_type(["text/html", "application/json"])
        == "application/json",
        query_string=request.META.get("QUERY_STRING", ""),
    )


def set_cookie(response: HttpResponse, cookie: Cookie) -> None:
    """Turn a qlikauth :class:`Cookie` into Django's ``set_cookie``/``delete_cookie``."""
    if cookie.deletes:
        response.delete_cookie(
            cookie.name, path=cookie.path, domain=cookie.domain, samesite=cookie.samesite
        )
        if cookie.secure:
            response.cookies[cookie.name]["secure"] = True
        response.cookies[cookie.name]["httponly"] = cookie.http_only
        return
    response.set_cookie(
        cookie.name,
        cookie.value,
        max_age=cookie.max_age,
        path=cookie.path,
        domain=cookie.domain,
        secure=cookie.secure,
        httponly=cookie.http_only,
        samesite=cookie.samesite,
    )


def _render_page(request: HttpRequest, answer: PageAnswer) -> str:
    global _engine
    context: dict[str, Any] = dict(answer.context)
    try:  # the project's own template of that name first (it may override ours)
        return render_to_string(answer.template, context, request=request)
    except TemplateDoesNotExist:
        if _engine is None:
            _engine = Engine(dirs=[str(TEMPLATES_DIR)], autoescape=True)
        return _engine.get_template(answer.template).render(Context(context))


def render(request: HttpRequest, answer: Answer) -> HttpResponse:
    """The Django response for a flow's ``answer`` (headers and cookies included)."""
    response: HttpResponse
    if isinstance(answer, RedirectAnswer):
        # HttpResponseRedirect also refuses unsafe schemes (javascript:, data:) on its own.
        response = HttpResponseRedirect(answer.location)
        response.status_code = answer.status
    elif isinstance(answer, PageAnswer):
        response = HttpResponse(
            _render_page(request, answer),
            status=answer.status,
            content_type="text/html; charset=utf-8",
        )
    elif isinstance(answer, JsonAnswer):
        response = JsonResponse(answer.data, status=answer.status, safe=False)
    elif isinstance(answer, PlainAnswer):
        response = HttpResponse(answer.body, status=answer.status, content_type=answer.content_type)
    else:  # pragma: no cover - every flow answers one of the four
        raise TypeError(f"not a flow answer: {type(answer).__name__}")
    for name, value in answer.headers:
        response[name] = value
    for cookie in answer.cookies:
        set_cookie(response, cookie)
    return response
