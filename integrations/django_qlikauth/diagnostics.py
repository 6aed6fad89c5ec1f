"""The diagnostics page for Django, mounted with one line::

    path("qlik/diagnostics/", include("django_qlikauth.diagnostics")),

``qlik/diagnostics/`` (the page; ``?hold=SECONDS`` shortens the idle-websocket test),
``qlik/diagnostics/report`` (POST: the page's results, from this host's own pages only, written
to the log with the user agent), ``qlik/diagnostics/payload`` (the transfer test's download).
The page and what it tests: :mod:`qlikauth.web.diagnostics`.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from qlikauth.web import diagnostics, flows

from .conf import get_config
from .render import web_request

app_name = "qlikauth_diagnostics"


def _hold(request: HttpRequest) -> float:
    try:
        value = float(request.GET.get("hold", "65"))
    except ValueError:
        value = 65.0
    return min(max(value, 1.0), 300.0)


@require_GET
def page(request: HttpRequest) -> HttpResponse:
    text = diagnostics.diagnostics_page(
        get_config().hub_url,
        reverse("qlikauth_diagnostics:report"),
        reverse("qlikauth_diagnostics:payload"),
        hold_seconds=_hold(request),
    )
    resp = HttpResponse(text, content_type="text/html; charset=utf-8")
    resp["Cache-Control"] = "no-store"
    return resp


# Logging only, and from this host's own pages only (the same-origin check below stands in for
# Django's CSRF token, which the page's script does not carry).
@csrf_exempt
@require_POST
def report(request: HttpRequest) -> HttpResponse:
    if not flows.same_origin(web_request(request)):
        return HttpResponse(
            "Forbidden: post from the diagnostics page.\n", status=403, content_type="text/plain"
        )
    try:
        # read at most one byte past the limit: a larger body is refused, never buffered
        body = request.read(diagnostics.MAX_REPORT_BYTES + 1)
        diagnostics.read_report(body, request.headers.get("User-Agent"))
    except ValueError as exc:
        return HttpResponse(f"{exc}\n", status=400, content_type="text/plain")
    resp = HttpResponse(status=204)
    resp["Cache-Control"] = "no-store"
    return resp


@require_GET
def payload(request: HttpRequest) -> HttpResponse:
    resp = HttpResponse(diagnostics.payload(), content_type="application/octet-stream")
    resp["Cache-Control"] = "no-store"
    return resp


urlpatterns = [
    path("", page, name="page"),
    path("report", report, name="report"),
    path("payload", payload, name="payload"),
]
