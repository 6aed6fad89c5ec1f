"""OpenID Connect sign-in for Flask: ``QlikOidc(app)`` routes :mod:`qlikauth.web.oidc`'s flows.

After ``QlikAuth(app)``: ``QlikOidc(app)`` (or ``init_app``) adds ``/oidc/login``,
``/oidc/callback``, ``/oidc/logout`` and ``/oidc/backchannel-logout`` (blueprint
``qlikauth_oidc``) and a ``before_request`` hook that puts the SSO user in
``g.qlikauth_sso_user`` (or ends the SSO session and its proxy sessions when it was logged out
at the provider or passed its caps). Settings: ``QLIKAUTH_OIDC = {...}`` (docs/oidc.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Flask, Response, g
from flask import session as flask_session

from qlikauth.exceptions import ConfigurationError
from qlikauth.identity import QlikUser
from qlikauth.web import oidc
from qlikauth.web.startup import check_sso

from . import end_flask_login_if_ended, flow_view, set_cookie, state, web_request

__all__ = ["QlikOidc"]


class QlikOidc:
    """The OIDC routes and the SSO-session hook (see the module docstring)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str = "/oidc",
        login_user_with: Callable[[QlikUser], Any] | None = None,
    ) -> None:
        self.url_prefix = url_prefix
        #: As ``QlikAuth(login_user_with=...)``, for the OIDC sign-ins (this one wins).
        self.login_user_with = login_user_with
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the blueprint and the hooks on ``app`` (``QlikAuth`` must be set up first)."""
        if "qlikauth" not in app.extensions:
            raise RuntimeError("set up flask_qlikauth.QlikAuth(app) before QlikOidc(app).")
        # The OIDC settings are checked now (QlikAuth's init_app has done it when they were
        # set then): an unusable setting stops the app here.
        checked = check_sso(app.extensions["qlikauth"].runtime)
        checked.raise_first()
        if "OIDC" not in checked.checked:
            raise ConfigurationError(
                "QLIKAUTH_OIDC is not set: give ISSUER, CLIENT_ID, "
                "CLIENT_SECRET and REDIRECT_URI (docs/oidc.md).",
                key="OIDC",
            )
        bp = Blueprint("qlikauth_oidc", __name__)

        # With several providers (QLIKAUTH_OIDC = {"imprivata": {...}, ...}) each has
        # /oidc/<idp>/...; /oidc/logout ends whichever the browser signed in with.
        for path, endpoint, flow, methods, signs_in in (
            ("login", "login", oidc.login, ["GET"], False),
            ("callback", "callback", oidc.callback, ["GET", "POST"], True),
            ("logout", "logout", oidc.logout, ["GET", "POST"], False),
            ("logged-out", "logout_return", oidc.logout_return, ["GET"], False),
            ("backchannel-logout", "backchannel_logout", oidc.backchannel_logout, ["POST"], False),
            (
                "frontchannel-logout",
                "frontchannel_logout",
                oidc.frontchannel_logout,
                ["GET"],
                False,
            ),
        ):
            view = flow_view(flow, signs_in=signs_in)
            bp.add_url_rule(f"/{path}", endpoint=endpoint, view_func=view, methods=methods)
            bp.add_url_rule(
                f"/<idp>/{path}", endpoint=f"{endpoint}_idp", view_func=view, methods=methods
            )
        app.register_blueprint(bp, url_prefix=self.url_prefix)
        app.before_request(self._check)
        app.after_request(self._set_cookies)
        app.extensions["qlikauth_oidc"] = self

    @staticmethod
    def _check() -> None:
        g.qlikauth_sso_user = None
        g.qlikauth_sso_cookies = ()
        if oidc.OIDC_SESSION_KEY in flask_session:
            sso = oidc.sso_session(web_request(user=lambda: None), state().runtime)
            g.qlikauth_sso_user = sso.user
            g.qlikauth_sso_cookies = sso.cookies
            if sso.user is None:
                end_flask_login_if_ended()  # the caps or a logout elsewhere ended it

    @staticmethod
    def _set_cookies(response: Response) -> Response:
        for cookie in g.get("qlikauth_sso_cookies", ()):
            set_cookie(response, cookie)
        return response

    @staticmethod
    def current_user() -> QlikUser | None:
        """The signed-in SSO user of this request (use it as ``QlikAuth.user_loader``), or None.

        None as soon as the portal session no longer holds the OIDC sign-in, also later in the
        request that cleared it (a password sign-in of someone else in this browser: the
        previous-user rule must see the new user, not the OIDC user the request began with).
        """
        if oidc.OIDC_SESSION_KEY not in flask_session:
            return None
        return g.get("qlikauth_sso_user")
