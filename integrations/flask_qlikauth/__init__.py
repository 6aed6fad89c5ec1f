"""Flask extension: sign a portal's users into Qlik Sense with qlikauth.

::

    from flask_qlikauth import QlikAuth

    qlikauth = QlikAuth()

    @qlikauth.user_loader
    def qlik_user():
        if "user" not in session:
            return None
        return QlikUser("PORTAL", session["user"], [("group", g) for g in session["groups"]])

    def create_app():
        app = Flask(__name__)
        app.config.from_prefixed_env()      # QLIKAUTH_QPS_NODES, QLIKAUTH_CERTS, ...
        qlikauth.init_app(app)               # mounts /qlik/login, /qlik/module, /qlik/logout
        return app

``/qlik/logout`` changes state, so it signs out only on ``POST`` from the portal's own pages:
Flask has no CSRF middleware, so the POST's ``Origin`` (or, without one, ``Referer``) must
name the request's own host, else 403. ``GET`` only shows a small page with a sign-out button
(a POST form), so a link or image on another site cannot sign anybody out.

Configuration comes from the app's ``QLIKAUTH_*`` keys (see :mod:`qlikauth.config`),
read in :meth:`QlikAuth.init_app`. State lives in ``app.extensions["qlikauth"]``; the
extension object keeps no app. All protocol work is done by qlikauth's authenticators:
this module decides where the user, request and config come from and turns their
answers into Flask responses.
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401 - only to name the extra when Flask is missing
except ImportError as _exc:
    raise ModuleNotFoundError(
        "flask_qlikauth needs Flask, which is not installed: pip install 'qlikauth[flask]'",
        name=_exc.name,
    ) from _exc

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
)
from flask import session as flask_session

from qlikauth.authenticators.base import Cookie
from qlikauth.config import QlikAuthConfig, QlikAuthRuntime, build_runtime, describe_error
from qlikauth.exceptions import IdentityError, QlikAuthError, QpsError
from qlikauth.identity import QlikUser

__all__ = ["QlikAuth", "QlikAuthState"]

log = logging.getLogger("flask_qlikauth")

#: Where the live proxy session is remembered in Flask's session (session mode).
SESSION_KEY = "_qlikauth"

UserLoader = Callable[[], "QlikUser | None"]


@dataclass
class QlikAuthState:
    """What ``app.extensions["qlikauth"]`` holds for one app."""

    extension: QlikAuth
    config: QlikAuthConfig
    runtime: QlikAuthRuntime


def _state() -> QlikAuthState:
    try:
        return current_app.extensions["qlikauth"]
    except KeyError:
        raise RuntimeError("flask_qlikauth is not set up on this app: call QlikAuth(app) or init_app(app).") from None


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_cookie(response: Response, cookie: Cookie) -> None:
    # The core renders the Set-Cookie line (Domain=localhost, SameSite=None; Secure...)
    # exactly as configured; Werkzeug's set_cookie would second-guess some of it.
    response.headers.add("Set-Cookie", cookie.header_value())


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def _error_response(exc: QlikAuthError) -> Response:
    info = describe_error(exc)
    log.warning("qlikauth: %s on %s %s: %s", type(exc).__name__, request.method, request.path, exc)
    if _wants_json():
        response = jsonify({"error": info["error"], "detail": info["detail"]})
    else:
        response = current_app.response_class(render_template("qlikauth/error.html", **info),
                                               mimetype="text/html")
    response.status_code = info["status"]
    return _no_store(response)


def _default_user_loader() -> QlikUser | None:
    """Map Flask-Login's ``current_user`` (id and optional ``groups``) when Flask-Login is in use."""
    try:
        from flask_login import current_user  # type: ignore[import-not-found]
    except ImportError:
        return None
    if not hasattr(current_app, "login_manager") or not current_user or not current_user.is_authenticated:
        return None
    groups = getattr(current_user, "groups", None) or ()
    groups = [getattr(g, "name", g) for g in groups]
    return _state().runtime.user_for(str(current_user.get_id()), groups)


class QlikAuth:
    """The Flask extension. ``QlikAuth(app)`` or ``QlikAuth()`` + :meth:`init_app`.

    :param url_prefix: where the blueprint is mounted (``/qlik``).
    """

    def __init__(self, app: Flask | None = None, *, url_prefix: str = "/qlik",
                 user_loader: UserLoader | None = None) -> None:
        self.url_prefix = url_prefix
        self._user_loader: UserLoader | None = user_loader
        if app is not None:
            self.init_app(app)

    # -- setup ---------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Read and check the app's ``QLIKAUTH_*`` settings; mount the blueprint."""
        config = QlikAuthConfig.from_mapping(app.config.get_namespace("QLIKAUTH_"))
        app.extensions["qlikauth"] = QlikAuthState(self, config, build_runtime(config))
        app.register_blueprint(_make_blueprint(), url_prefix=self.url_prefix)

    def user_loader(self, fn: UserLoader) -> UserLoader:
        """Decorator: ``fn()`` returns the signed-in portal user as a :class:`QlikUser`, or None."""
        self._user_loader = fn
        return fn

    # -- helpers for the app's own views --------------------------------------------
    @property
    def runtime(self) -> QlikAuthRuntime:
        """The current app's QPS client and authenticators."""
        return _state().runtime

    def current_user(self) -> QlikUser | None:
        """The signed-in portal user as a :class:`QlikUser` (from the user loader), or None."""
        loader = self._user_loader or _default_user_loader
        user = loader()
        if user is not None and not isinstance(user, QlikUser):
            raise TypeError(f"the qlikauth user loader must return a QlikUser or None, not {type(user).__name__}")
        return user

    def start_session(self, response: Response, user: QlikUser | None = None, *, verify: bool = False) -> Response:
        """Session mode: make sure ``user`` has a proxy session and set its cookie on ``response``.

        Call it right after the app's own login. A session remembered in Flask's session for
        the same user is reused without a QPS call, unless it was last confirmed more than
        ``QLIKAUTH_SESSION_RECHECK`` seconds ago or ``verify`` is set (``/qlik/login`` sets it):
        then QPS is asked whether it still exists, and a new one replaces it if Qlik has ended it.
        """
        user = user if user is not None else self.current_user()
        if user is None:
            raise IdentityError("nobody is signed in to the portal: sign in first.", field="user")
        runtime = _state().runtime
        remembered = flask_session.get(SESSION_KEY)
        grant = runtime.session.resume(user, remembered, recheck_after=runtime.recheck_after(explicit=verify))
        if grant.record != remembered:
            flask_session[SESSION_KEY] = grant.record
        _set_cookie(response, grant.cookie)
        return response

    def end_sessions(self, response: Response | None = None, user: QlikUser | None = None) -> Response | None:
        """End the user's proxy sessions on every node and clear the cookie on ``response``.

        Local state (the remembered session, the cookie) is cleared even when QPS fails,
        so the browser is never left half signed-in; the error is raised afterwards.
        """
        runtime = _state().runtime
        user = user if user is not None else self.current_user()
        remembered = flask_session.pop(SESSION_KEY, None)
        cookie_sid = request.cookies.get(runtime.config.effective_cookie_name)
        if response is not None:
            _set_cookie(response, runtime.clear_cookie())
        if user is not None:
            runtime.qps.logout_user(user)
        for sid in {cookie_sid, (remembered or {}).get("sid")} - {None, ""}:
            runtime.qps.delete_session(sid)
        return response


def _same_origin_post() -> bool:
    """Does this POST come from a page of this host? (Flask has no CSRF middleware.)

    Browsers send ``Origin`` with every POST; ``Referer`` is the fallback. Neither, an
    ``Origin: null`` (sandboxed or privacy-redirected) or another host: not same-origin. The
    scheme must match too, except that a request that arrived as http (TLS ended at a proxy)
    accepts an https page of the same host.
    """
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return False
    try:
        parts = urlsplit(source)
        netloc = parts.netloc.lower()
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or "@" in netloc:
        return False
    if request.scheme == "https" and parts.scheme != "https":
        return False
    return netloc == request.host.lower()


def _logout_page(next_url: str) -> Response:
    """GET /qlik/logout: a page with a sign-out button (a POST form); it changes nothing."""
    response = current_app.response_class(
        render_template("qlikauth/logout.html", action=request.path, next_url=next_url), mimetype="text/html")
    # The button must not be clickjacked from another site.
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
    return _no_store(response)


def _login_redirect(state: QlikAuthState) -> Response:
    """Send an anonymous browser to the app's login page, coming back here afterwards."""
    login_url = state.config.login_url
    sep = "&" if "?" in login_url else "?"
    return _no_store(redirect(f"{login_url}{sep}{urlencode({'next': request.full_path.rstrip('?')})}"))


def _make_blueprint() -> Blueprint:
    bp = Blueprint("qlikauth", __name__, template_folder="templates")

    @bp.app_errorhandler(QlikAuthError)
    def _handle(exc: QlikAuthError) -> Response:
        return _error_response(exc)

    @bp.route("/login", methods=["GET"])
    def login() -> Response:
        """Ticket mode: to the hub (or ``target``) with a ticket. Session mode: set the cookie, then go."""
        state = _state()
        target = request.args.get("target")
        runtime = state.runtime
        if target:
            runtime.hub_policy.check(target)  # a bad target is refused before anything else
        user = state.extension.current_user()
        if user is None:
            return _login_redirect(state)
        if state.config.mode == "session":
            response = redirect(runtime.hub_policy.check(target) if target else state.config.hub_url)
            state.extension.start_session(response, user, verify=True)  # an explicit click: confirm it
            return _no_store(response)
        result = runtime.ticket.login(user, target)
        return _no_store(redirect(result.location))

    @bp.route("/module", methods=["GET"])
    def module() -> Response:
        """The virtual proxy's authentication module redirect URI (``targetId``, ``proxyRestUri``)."""
        state = _state()
        target_id = request.args.get("targetId", "")
        rest_uri = request.args.get("proxyRestUri", "")
        state.runtime.ticket.check_module_request(rest_uri, target_id)  # before anything else
        user = state.extension.current_user()
        if user is None:
            return _login_redirect(state)
        result = state.runtime.ticket.module_login(user, rest_uri, target_id)
        return _no_store(redirect(result.location))

    @bp.route("/logout", methods=["GET", "POST"])
    def logout() -> Response:
        """POST: end the user's proxy sessions on every node, clear the cookie, go to ``next`` (local only).

        Only a POST from this host's own pages (``Origin``/``Referer``) signs out; another
        site's POST gets 403. GET only answers a page with a sign-out button.
        """
        state = _state()
        if request.method != "POST":
            return _logout_page(state.runtime.local_redirect(request.args.get("next"), "/"))
        if not _same_origin_post():
            log.warning("qlikauth: refused a cross-site logout POST (Origin %r, Referer %r)",
                        request.headers.get("Origin"), request.headers.get("Referer"))
            response = current_app.response_class(
                "Forbidden: sign out from the portal's own page.\n", status=403, mimetype="text/plain")
            return _no_store(response)
        destination = state.runtime.local_redirect(request.form.get("next"), "/")
        response = redirect(destination)
        try:
            state.extension.end_sessions(response)
        except QpsError as exc:
            error = _error_response(exc)
            _set_cookie(error, state.runtime.clear_cookie())
            return error
        return _no_store(response)

    @bp.route("/header-auth", methods=["GET", "HEAD"])
    def header_auth() -> Response:
        """For nginx ``auth_request``: 200 + the identity header for the signed-in portal user, else 401.

        The identity comes only from the portal's own login (the user loader), never
        from a request header; no QPS call is made.
        """
        state = _state()
        # runtime.header raises ConfigurationError (500) when HEADER_NAME is unset.
        answer = state.runtime.header.identity_answer(state.extension.current_user(),
                                                      state.config.header_response_header)
        return current_app.response_class("", status=answer.status, mimetype="text/plain",
                                          headers=list(answer.headers))

    return bp
