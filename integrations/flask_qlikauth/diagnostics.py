"""The diagnostics page for Flask: one line.

::

    from flask_qlikauth.diagnostics import diagnostics_blueprint
    app.register_blueprint(diagnostics_blueprint())   # after QlikAuth.init_app(app)

``GET /qlik/diagnostics`` (the page; ``?hold=SECONDS`` shortens the idle-websocket test),
``POST /qlik/diagnostics/report`` (the page's results, from this host's own pages only, written
to the log with the user agent), ``GET /qlik/diagnostics/payload`` (the transfer test's
download). The page and what it tests: :mod:`qlikauth.web.diagnostics`.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request, url_for

from qlikauth.exceptions import ConfigurationError
from qlikauth.web import diagnostics, flows

from . import web_request

__all__ = ["diagnostics_blueprint"]

_NO_STORE = {"Cache-Control": "no-store"}


def _hold() -> float:
    try:
        value = float(request.args.get("hold", "65"))
    except ValueError:
        value = 65.0
    return min(max(value, 1.0), 300.0)


def diagnostics_blueprint(
    url_prefix: str = "/qlik/diagnostics", name: str = "qlikauth_diagnostics"
) -> Blueprint:
    """The diagnostics page and its two endpoints."""
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    def page() -> Response:
        ext = current_app.extensions.get("qlikauth")
        if ext is None:
            raise ConfigurationError(
                "register the diagnostics blueprint after QlikAuth.init_app(app)."
            )
        text = diagnostics.diagnostics_page(
            ext.runtime.config.hub_url,
            url_for(f"{name}.report"),
            url_for(f"{name}.payload"),
            hold_seconds=_hold(),
        )
        return Response(text, mimetype="text/html", headers=_NO_STORE)

    def report() -> Response:
        if not flows.same_origin(web_request(lambda: None)):
            return Response(
                "Forbidden: post from the diagnostics page.\n", 403, mimetype="text/plain"
            )
        try:
            # read at most one byte past the limit: a larger body is refused, never buffered
            body = request.stream.read(diagnostics.MAX_REPORT_BYTES + 1)
            diagnostics.read_report(body, request.headers.get("User-Agent"))
        except ValueError as exc:
            return Response(f"{exc}\n", 400, mimetype="text/plain")
        return Response(status=204, headers=_NO_STORE)

    def payload() -> Response:
        return Response(
            diagnostics.payload(), mimetype="application/octet-stream", headers=_NO_STORE
        )

    bp.add_url_rule("", endpoint="page", view_func=page, methods=["GET"])
    bp.add_url_rule("/report", endpoint="report", view_func=report, methods=["POST"])
    bp.add_url_rule("/payload", endpoint="payload", view_func=payload, methods=["GET"])
    return bp
