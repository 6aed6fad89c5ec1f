"""Qlik Cloud and JWT endpoints for Flask: one line.

::

    from flask_qlikauth.cloud import cloud_blueprint
    app.register_blueprint(cloud_blueprint(portal))   # portal: a qlikauth.web.cloud.CloudPortal

``/qlik/cloud/access-token`` (POST), ``/qlik/cloud/jwt`` (POST), ``/qlik/cloud/logout`` (POST),
``/qlik/jwt/login`` (GET). Register it after ``QlikAuth.init_app(app)``: registering joins the
portal to the app's sign-out (``/qlik/logout`` and ``QlikAuth.end_sessions`` then also revoke and
forget the user's Qlik Cloud access token). Flask has no CSRF protection of its own, so the POSTs
are served
only to the portal's own pages (``Origin``/``Referer`` of this host, ``Sec-Fetch-Site:
same-origin`` when the browser sends it). The user comes from the extension's
``user_loader`` (:class:`flask_qlikauth.QlikAuth`); the flows live in :mod:`qlikauth.web.cloud`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response
from flask.blueprints import BlueprintSetupState

from qlikauth.exceptions import ConfigurationError, QlikAuthError
from qlikauth.web import cloud, flows

from . import render, web_request

__all__ = ["cloud_blueprint"]


def _view(
    endpoint: Callable[[flows.WebRequest, cloud.CloudPortal], flows.Answer],
    portal: cloud.CloudPortal,
) -> Callable[[], Response]:
    def view() -> Response:
        wr = web_request()
        try:
            answer = endpoint(wr, portal)
        except QlikAuthError as exc:
            answer = flows.error_answer(wr, exc)
        return render(answer)

    view.__name__ = endpoint.__name__
    return view


def cloud_blueprint(
    portal: cloud.CloudPortal, url_prefix: str = "/qlik", name: str = "qlikauth_cloud"
) -> Blueprint:
    """A blueprint with every endpoint the portal is configured for."""
    bp = Blueprint(name, __name__, url_prefix=url_prefix)

    def join_sign_out(state: BlueprintSetupState) -> None:
        # One sign-out for a hybrid portal: the app's runtime ends this portal's cloud token too.
        ext = state.app.extensions.get("qlikauth")
        if ext is None:
            raise ConfigurationError(
                "register the Qlik Cloud blueprint after QlikAuth.init_app(app): "
                "its endpoints and the portal's sign-out need flask_qlikauth."
            )
        ext.runtime.add_sign_out(portal)

    bp.record_once(join_sign_out)
    if portal.access is not None:
        bp.add_url_rule(
            "/cloud/access-token", view_func=_view(cloud.access_token, portal), methods=["POST"]
        )
        bp.add_url_rule(
            "/cloud/logout", view_func=_view(cloud.cloud_logout, portal), methods=["POST"]
        )
    if portal.jwt_issuer is not None:
        bp.add_url_rule("/cloud/jwt", view_func=_view(cloud.cloud_jwt, portal), methods=["POST"])
    if portal.qseow_jwt is not None:
        bp.add_url_rule(
            "/jwt/login", view_func=_view(cloud.qseow_jwt_login, portal), methods=["GET"]
        )
    return bp
