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

Configuration comes from the app's ``QLIKAUTH_*`` keys (see :mod:`qlikauth.web.config`),
read in :meth:`QlikAuth.init_app`. State lives in ``app.extensions["qlikauth"]``; the
extension object keeps no app. Every endpoint is a flow of :mod:`qlikauth.web.flows`:
this module only builds the :class:`~qlikauth.web.WebRequest` (where the user, request,
session and config come from) and turns the flow's answer into a Flask response.
"""

from __future__ import annotations

try:
    import flask as _flask  # noqa: F401 - only to name the extra when Flask is missing
except ImportError as _exc:
    raise ModuleNotFoundError(
        "flask_qlikauth needs Flask, which is not installed: pip install 'qlikauth[flask]'",
        name=_exc.name,
    ) from _exc

import functools
import logging
import time
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

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
from flask.globals import request_ctx

from qlikauth.authenticators.base import Cookie
from qlikauth.exceptions import ConfigurationError, QlikAuthError
from qlikauth.identity import QlikUser
from qlikauth.web import TEMPLATES_DIR, flows, saml
from qlikauth.web.config import QlikAuthConfig
from qlikauth.web.flows import (
    Answer,
    JsonAnswer,
    PageAnswer,
    PlainAnswer,
    RedirectAnswer,
    WebRequest,
)
from qlikauth.web.lifecycle import current_sign_in
from qlikauth.web.runtime import QlikAuthRuntime, build_runtime
from qlikauth.web.startup import check_sso

__all__ = [
    "QlikAuth",
    "QlikAuthState",
    "flask_login_loader",
    "render",
    "web_request",
    "flow_view",
    "set_cookie",
    "state",
    "end_flask_login_if_ended",
]

log = logging.getLogger("flask_qlikauth")

#: Where the live proxy session is remembered in Flask's session (session mode).
SESSION_KEY = flows.SESSION_KEY

UserLoader = Callable[[], "QlikUser | None"]
UserKey = Callable[[], "Hashable | None"]

#: Seconds a mapping remembered under ``user_key`` is used at most: :meth:`QlikAuth.forget_user`
#: forgets it at once in this process; a change another process makes reaches this one within
#: this time.
MAPPING_LIFETIME = 10.0
_MAPPED_MAX = 4096


@dataclass
class QlikAuthState:
    """What ``app.extensions["qlikauth"]`` holds for one app."""

    extension: QlikAuth
    config: QlikAuthConfig
    runtime: QlikAuthRuntime


def flow_view(flow: flows.Flow, *, signs_in: bool = False) -> Callable[[], Response]:
    """A Flask view that runs ``flow`` (:data:`qlikauth.web.flows.Flow`) on this request and renders
    its answer.

    A flow with a ``max_body`` (the SAML endpoints) gets its body bounded before it is read: a
    larger ``Content-Length`` is refused unread (413), and a body without one is cut off there.
    ``signs_in`` (the SAML ACS, the OIDC callback): a sign-in it completed is a Flask-Login
    sign-in too when ``login_user_with`` is set. Any flow that ended the sign-in a Flask-Login
    user belongs to logs that user out.
    """
    limit: int | None = getattr(flow, "max_body", None)

    def view(**route: Any) -> Response:
        # route variables (``<idp>``: which identity provider) go to the flow as keywords
        if limit is not None:
            if (request.content_length or 0) > limit:
                return render(flows.error_answer(web_request(), _too_large(limit)))
            request.max_content_length = limit
        bound = functools.partial(flow, **route) if route else flow
        answer = flows.run(bound, web_request(), state().runtime)
        if signs_in and isinstance(answer, RedirectAnswer):
            _sso_login_user()
        end_flask_login_if_ended()
        return render(answer)

    view.__name__ = flow.__name__
    view.__doc__ = f":func:`{flow.__module__}.{flow.__name__}`."
    return view


def _too_large(limit: int) -> QlikAuthError:
    from qlikauth.exceptions import SamlError

    error = SamlError(
        f"the request body is larger than the {limit // 1024} KiB a SAML message "
        "needs; refused unread.",
        code="too_large",
    )
    error.status = 413
    return error


def state() -> QlikAuthState:
    try:
        app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
        return app.extensions["qlikauth"]  # type: ignore[no-any-return]
    except KeyError:
        raise RuntimeError(
            "flask_qlikauth is not set up on this app: call QlikAuth(app) or init_app(app)."
        ) from None


def _current() -> tuple[Any, Any]:
    """Flask's request and session objects behind the context proxies (each proxy access is a
    lookup)."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    return req, flask_session._get_current_object()  # type: ignore[attr-defined]


def _wants_json(req: Any = None) -> bool:
    req = req or request
    # Only an Accept entry for application/json or application/* can prefer JSON to HTML
    # ("*/*" ties, and HTML is listed first): without one, the header need not be parsed.
    if "application/" not in req.headers.get("Accept", "").lower():
        return False
    accept = req.accept_mimetypes
    best = accept.best_match(["text/html", "application/json"])
    return best == "application/json" and accept[best] > accept["text/html"]


class _Parsed(Mapping[str, str]):
    """The request's query or form, parsed by Werkzeug only when a flow reads it (the token
    endpoints read neither, and parsing a POST body costs more than they do)."""

    __slots__ = ("_request", "_name", "_form")

    def __init__(self, req: Any, name: str) -> None:
        self._request = req
        self._name = name
        self._form: Mapping[str, str] | None = None

    def _data(self) -> Mapping[str, str]:
        if self._form is None:
            self._form = getattr(self._request, self._name)
        return self._form

    def __getitem__(self, key: str) -> str:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def get(self, key: str, default: Any = None) -> Any:
        return self._data().get(key, default)


def web_request(user: QlikUser | Callable[[], QlikUser | None] | None = None) -> WebRequest:
    """Describe Flask's current request for the flows (the user from the extension's loader by
    default)."""
    req, session = _current()
    return WebRequest(
        method=req.method,
        path=req.path,
        full_path=req.full_path,
        args=_Parsed(req, "args") if req.query_string else {},
        form=_Parsed(req, "form") if req.method == "POST" else {},
        headers=req.headers,
        cookies=req.cookies,
        session=session,
        scheme=req.scheme,
        host=req.host,
        user=user if user is not None else (lambda: state().extension.current_user()),
        wants_json=_wants_json(req),
        query_string=req.query_string.decode("latin-1"),
    )


def set_cookie(response: Response, cookie: Cookie) -> None:
    # The core renders the Set-Cookie line (Domain=localhost, SameSite=None; Secure...)
    # exactly as configured; Werkzeug's set_cookie would second-guess some of it.
    response.headers.add("Set-Cookie", cookie.header_value())


#: Headers a freshly built response may already carry (the answer's own replace them).
_SET_BY_RESPONSE = frozenset({"content-type", "content-length", "location"})


def render(answer: Answer) -> Response:
    """The Flask response for a flow's ``answer`` (headers and cookies included)."""
    response: Response
    if isinstance(answer, RedirectAnswer):
        # redirect() builds current_app.response_class (a flask Response); it is annotated
        # with Werkzeug's base
        response = cast(Response, redirect(answer.location, code=answer.status))
    elif isinstance(answer, PageAnswer):
        response = current_app.response_class(
            render_template(answer.template, **answer.context),
            status=answer.status,
            mimetype="text/html",
        )
    elif isinstance(answer, JsonAnswer):
        response = jsonify(answer.data)
        response.status_code = answer.status
    elif isinstance(answer, PlainAnswer):
        response = current_app.response_class(
            answer.body, status=answer.status, content_type=answer.content_type
        )
    else:  # pragma: no cover - every flow answers one of the four
        raise TypeError(f"not a flow answer: {type(answer).__name__}")
    headers = answer.headers
    names = {name.lower() for name, _ in headers}
    if len(names) == len(headers) and names.isdisjoint(_SET_BY_RESPONSE):
        # Distinct names the new response does not have yet: adding them all at once is what
        # setting them one by one amounts to, without a search of the headers per name.
        response.headers.extend(headers)
    else:
        for name, value in headers:
            response.headers[name] = value
    for cookie in answer.cookies:
        set_cookie(response, cookie)
    return response


def flask_login_loader(mapper: Callable[[Any], QlikUser | None]) -> UserLoader:
    """A user loader for apps that use Flask-Login: ``mapper(current_user)`` for a signed-in user.

    The mapping is yours on purpose: Flask-Login's ``get_id()`` should be a session token
    (so that changing it signs the user out everywhere), not the name Qlik knows the user by::

        qlikauth.user_loader(flask_login_loader(
            lambda u: QlikUser("PORTAL", u.username, [("group", g.name) for g in u.groups])))
    """

    def load() -> QlikUser | None:
        from flask_login import current_user  # type: ignore[import-not-found]

        if not current_user or not current_user.is_authenticated:
            return None
        return mapper(current_user)

    return load


class QlikAuth:
    """The Flask extension. ``QlikAuth(app)`` or ``QlikAuth()`` + :meth:`init_app`.

    :param url_prefix: where the blueprint is mounted (``/qlik``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        url_prefix: str = "/qlik",
        user_loader: UserLoader | None = None,
        user_key: UserKey | None = None,
        login_user_with: Callable[[QlikUser], Any] | None = None,
    ) -> None:
        self.url_prefix = url_prefix
        self._user_loader: UserLoader | None = user_loader
        self._user_key: UserKey | None = user_key
        # user key -> (the loader's QlikUser, when it expires); only with a user_key
        self._mapped: dict[Hashable, tuple[QlikUser | None, float]] = {}
        #: ``callable(QlikUser) -> Flask-Login user`` (or None: not signed in to Flask-Login):
        #: a SAML or OIDC sign-in is then a Flask-Login sign-in too, and its ending logs that
        #: user out (single logout, back-channel logout, the caps).
        self.login_user_with = login_user_with
        if app is not None:
            self.init_app(app)

    # -- setup ---------------------------------------------------------------------
    def init_app(self, app: Flask) -> None:
        """Read and check the app's ``QLIKAUTH_*`` settings; mount the blueprint."""
        config = QlikAuthConfig.from_mapping(app.config.get_namespace("QLIKAUTH_"))
        if self._user_loader is None:
            # As Flask-Login refuses to run without a user loader: without one nobody is ever
            # signed in, and /qlik/login would send every browser back to the login page forever.
            raise ConfigurationError(
                "flask_qlikauth has no user loader: decorate a function with @qlikauth.user_loader "
                "before init_app(app), or pass QlikAuth(app, user_loader=fn). It returns the "
                "signed-in "
                "portal user as a QlikUser, or None (with Flask-Login: flask_login_loader(mapper))."
            )
        lifetime: Any = app.permanent_session_lifetime  # a timedelta, or seconds
        seconds = (
            lifetime.total_seconds() if hasattr(lifetime, "total_seconds") else float(lifetime)
        )
        runtime = build_runtime(config, secret=app.secret_key, portal_session_lifetime=seconds)
        # SAML and OIDC are built now: a setting they cannot use stops the app here, with what
        # to do, instead of answering 500 to the first user.
        checked = check_sso(runtime)
        checked.raise_first()
        for warning in checked.warnings:
            log.warning("%s", warning)
        if self.login_user_with is not None and not callable(self.login_user_with):
            raise ConfigurationError(
                "QlikAuth(login_user_with=...) must be a callable (QlikUser) -> Flask-Login user."
            )
        app.extensions["qlikauth"] = QlikAuthState(self, config, runtime)
        app.register_blueprint(_make_blueprint(), url_prefix=self.url_prefix)
        app.cli.add_command(_check_command())
        app.before_request(_end_revoked_sign_in)
        app.after_request(_set_pending_cookies)
        _connect_flask_login(app)

    def user_loader(self, fn: UserLoader) -> UserLoader:
        """Decorator: ``fn()`` returns the signed-in portal user as a :class:`QlikUser`, or None."""
        self._user_loader = fn
        return fn

    def user_key(self, fn: UserKey) -> UserKey:
        """Decorator: ``fn()`` returns who is signed in as a cheap, hashable key (the portal
        user's id from its own session), or None when nobody is. With it, the user loader's
        answer is remembered per key, so a page view does not map the user again: call
        :meth:`forget_user` with the key when what the loader reads (the user's groups) changes;
        another process's change is seen within :data:`MAPPING_LIFETIME` seconds."""
        self._user_key = fn
        return fn

    def forget_user(self, key: Hashable | None = None) -> None:
        """Map the user with ``key`` (every user: no key) afresh on its next request."""
        if key is None:
            self._mapped.clear()
        else:
            self._mapped.pop(key, None)

    # -- helpers for the app's own views --------------------------------------------
    @property
    def runtime(self) -> QlikAuthRuntime:
        """The current app's QPS client and authenticators."""
        return state().runtime

    def current_user(self) -> QlikUser | None:
        """The signed-in portal user as a :class:`QlikUser` (from the user loader), or None."""
        if self._user_loader is None:
            raise ConfigurationError("flask_qlikauth has no user loader: see QlikAuth.user_loader.")
        if self._user_key is not None:
            key = self._user_key()
            if key is None:
                return None
            hit = self._mapped.get(key)
            now = time.monotonic()
            if hit is not None and hit[1] > now:
                return hit[0]
        user = self._user_loader()
        if user is not None and not isinstance(user, QlikUser):
            raise TypeError(
                "the qlikauth user loader must return a QlikUser or None, not "
                f"{type(user).__name__}"
            )
        if self._user_key is not None:
            if len(self._mapped) >= _MAPPED_MAX:
                self._mapped.clear()  # bounded; active users are mapped again on their next view
            self._mapped[key] = (user, now + MAPPING_LIFETIME)
        return user

    def start_session(
        self, response: Response, user: QlikUser | None = None, *, verify: bool = False
    ) -> Response:
        """Session mode: make sure ``user`` has a proxy session and set its cookie on ``response``.

        Call it right after the app's own login (:func:`qlikauth.web.flows.resume_session`
        decides). A session remembered in Flask's session for the same user is reused without
        a QPS call, unless it was last confirmed more than ``QLIKAUTH_SESSION_RECHECK`` seconds
        ago or ``verify`` is set (``/qlik/login`` sets it): then QPS is asked whether it still
        exists, and a new one replaces it if Qlik has ended it. Raises
        :class:`~qlikauth.IdentityError` when nobody is signed in.
        """
        # Called on every page view: the request context looked up once (not the app, request
        # and session proxies one by one), and the signed-in browser's case decided before
        # anything else is built; resume_session reads only the session, the cookies and the user.
        ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
        try:
            runtime = ctx.app.extensions["qlikauth"].runtime
        except KeyError:
            runtime = state().runtime  # raises the error that says what to do
        session = ctx.session
        user = user if user is not None else self.current_user()
        outcome = flows.reused_session(session, ctx.request.cookies, user, runtime, verify=verify)
        if outcome is None:
            wr = web_request(user)
            outcome = flows.resume_session(wr, runtime, verify=verify, start=True)
        for cookie in outcome.cookies:
            set_cookie(response, cookie)
        return response

    def signed_in(self, response: Response, user: QlikUser | None = None) -> Response:
        """Right after the app's own login (apps without Flask-Login; with it, ``login_user``
        does this by itself): complete the sign-in in Qlik and set its cookies on ``response``.

        Whoever signed in in this browser before is signed out of Qlik on every node first;
        session mode makes the proxy session now (QPS errors are raised).
        """
        for cookie in flows.portal_signed_in(web_request(user), state().runtime, user):
            set_cookie(response, cookie)
        return response

    def end_sessions(
        self, response: Response | None = None, user: QlikUser | None = None
    ) -> Response | None:
        """The portal's sign-out (apps without Flask-Login; with it, ``logout_user`` does this):
        the one ending (:func:`qlikauth.web.flows.portal_signed_out`), cookies set on ``response``.

        Proxy sessions end on every node, the Qlik Cloud token is revoked, the sign-in is
        revoked. A node that fails keeps its part pending; nothing is raised for it.
        """
        runtime = state().runtime
        cookies = flows.portal_signed_out(web_request(user), runtime, user)
        if response is not None:
            for cookie in cookies:
                set_cookie(response, cookie)
        return response


def _end_revoked_sign_in() -> None:
    """Before every request: a portal session whose sign-in has ended (signed out in another
    process, from a copy of this cookie, or at the IdP) is emptied, so nobody is signed in.

    One state-store read, only for a portal session that carries a qlikauth sign-in.
    """
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    if flows.SIGNIN_KEY not in session:
        end_flask_login_if_ended()
        return
    if current_sign_in(session, state().runtime) is None:
        end_flask_login_if_ended()
        session.clear()


#: The sign-in id an SSO sign-in's Flask-Login user belongs to. Not a lifecycle key on purpose:
#: every ending clears those, and this one must outlive them to tell that the user is to go.
FLASK_LOGIN_KEY = "_qlikauth_flask_login"


def _login_user_with() -> Callable[[QlikUser], Any] | None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    oidc_ext = app.extensions.get("qlikauth_oidc")
    chosen = getattr(oidc_ext, "login_user_with", None) if oidc_ext is not None else None
    return chosen or state().extension.login_user_with


def _sso_login_user() -> None:
    """After an SSO sign-in: ``flask_login.login_user(login_user_with(qlik_user))``, bound to
    that sign-in (:data:`FLASK_LOGIN_KEY`); the lifecycle has done the Qlik part already."""
    make = _login_user_with()
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    record = session.get(flows.SIGNIN_KEY)
    if make is None or not isinstance(record, dict) or record.get("via") not in ("saml", "oidc"):
        return
    from flask import g
    from flask_login import login_user

    try:
        user = QlikUser.from_qps(record.get("user") or {})
    except QlikAuthError:
        return
    portal_user = make(user)
    if portal_user is None:
        log.warning(
            "qlikauth: login_user_with gave no Flask-Login user for %s: signed in to Qlik only",
            user.qualified_name,
        )
        return
    g._qlikauth_sso_login = True
    try:
        if not login_user(portal_user):
            log.warning(
                "qlikauth: Flask-Login refused %s (an inactive user): signed in to Qlik only",
                user.qualified_name,
            )
            return
    finally:
        g._qlikauth_sso_login = False
    session[FLASK_LOGIN_KEY] = str(record.get("id"))


def end_flask_login_if_ended() -> bool:
    """Log out the Flask-Login user an SSO sign-in made once that sign-in has ended; True when
    it did. No store read: the sign-in record is gone, or is another one, when it has ended
    (every ending clears it from this portal session, or :func:`_end_revoked_sign_in` does)."""
    session = flask_session._get_current_object()  # type: ignore[attr-defined]
    marker = session.get(FLASK_LOGIN_KEY)
    if marker is None:
        return False
    record = session.get(flows.SIGNIN_KEY)
    if isinstance(record, dict) and str(record.get("id")) == marker:
        return False
    session.pop(FLASK_LOGIN_KEY, None)
    from flask import g
    from flask_login import logout_user

    g._qlikauth_sso_ending = True  # the SSO ending did the Qlik part: no second sign-out
    try:
        logout_user()
    finally:
        g._qlikauth_sso_ending = False
    log.info("qlikauth: the SSO sign-in ended, so does the Flask-Login sign-in")
    return True


def _pending_cookies() -> list[Cookie]:
    from flask import g

    pending = g.get("_qlikauth_cookies")
    if pending is None:
        pending = []
        g._qlikauth_cookies = pending
    return pending  # type: ignore[no-any-return]


def _set_pending_cookies(response: Response) -> Response:
    from flask import g

    for cookie in g.get("_qlikauth_cookies", ()):
        set_cookie(response, cookie)
    return response


def _connect_flask_login(app: Flask) -> None:
    """With Flask-Login installed, ``login_user`` and ``logout_user`` are the portal's sign-in and
    sign-out: qlikauth's pipeline and its one ending run from their signals."""
    try:
        from flask_login import user_logged_in, user_logged_out  # type: ignore[import-not-found]
    except ImportError:
        return

    def signed_in(sender: Any, user: Any = None, **_: Any) -> None:
        from flask import g

        if sender is not app or g.get("_qlikauth_sso_login"):
            return  # an SSO sign-in's Flask-Login part: the lifecycle has run already
        try:
            _pending_cookies().extend(flows.portal_signed_in(web_request(), state().runtime))
        except QlikAuthError as exc:
            log.error(
                "qlikauth: the portal sign-in could not be completed in Qlik (opening Qlik "
                "tries again): %s",
                exc,
            )

    def signed_out(sender: Any, user: Any = None, **_: Any) -> None:
        from flask import g

        if sender is not app or g.get("_qlikauth_sso_ending"):
            return
        flask_session.pop(FLASK_LOGIN_KEY, None)
        _pending_cookies().extend(
            flows.portal_signed_out(web_request(lambda: None), state().runtime)
        )

    user_logged_in.connect(signed_in, weak=False)
    user_logged_out.connect(signed_out, weak=False)


def _check_command() -> Any:
    """``flask qlikauth check``: load and check the certificates (and, with --alive, ask every
    node)."""
    import click
    from flask.cli import AppGroup

    group = AppGroup("qlikauth", help="qlikauth: check the Qlik configuration of this app.")

    @group.command("check")
    @click.option(
        "--alive", is_flag=True, help="also ask every QPS node GET /qps/alive over mutual TLS"
    )
    def check(alive: bool) -> None:
        """Load the QMC certificates (files, key match, expiry) and check the SAML and OIDC
        settings (IdP certificate expiry included) before users need them."""
        from qlikauth.certs import describe, load_certificates

        runtime = state().runtime
        sso = check_sso(runtime)
        for warning in sso.warnings:
            click.echo(f"warning: {warning}")
        if not sso.ok:
            raise click.ClickException("\n".join(str(e) for e in sso.errors))
        for section in sso.checked:
            click.echo(f"{section} settings OK")
        try:
            certs = load_certificates(runtime.config.certs, runtime.config.cert_passphrase)
        except QlikAuthError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo("certificates OK")
        for line in describe(certs):
            click.echo(line)
        if alive:
            answers = runtime.qps.alive()
            for node, ok in answers.items():
                click.echo(f"{node}: {'alive' if ok else 'NOT reachable'}")
            if not all(answers.values()):
                raise click.ClickException(
                    "a QPS node did not answer: check the URL, port 4243 and the firewall."
                )

    @group.command("doctor")
    @click.option("--portal-url", help="the portal's https base URL (module URL/qlik/module)")
    @click.option(
        "--session-checks",
        is_flag=True,
        help="redeem a test ticket (signs the test user into Qlik) to check the "
        "session cookie and the engine websocket",
    )
    @click.option("--test-user", help="the test ticket's user, DIRECTORY\\userid")
    @click.option("--nginx-conf", help="header authentication: the nginx.conf to test")
    @click.option("--hub-ca", help="CA bundle of the hub's certificate")
    @click.option("--timeout", type=float, default=10.0, show_default=True)
    @click.option("--json", "as_json", is_flag=True, help="machine-readable output")
    def doctor(
        portal_url: str | None,
        session_checks: bool,
        test_user: str | None,
        nginx_conf: str | None,
        hub_ca: str | None,
        timeout: float,
        as_json: bool,
    ) -> None:
        """Check the site end to end with this app's settings; name the fix of each failure."""
        from qlikauth.doctor import Doctor, echo_report

        try:
            user = QlikUser.parse(test_user) if test_user else None
            report = Doctor(
                state().runtime.config,
                portal_url=portal_url,
                session_checks=session_checks,
                test_user=user,
                nginx_conf=nginx_conf,
                hub_ca=hub_ca,
                timeout=timeout,
            ).run()
        except QlikAuthError as exc:
            raise click.ClickException(str(exc)) from None
        if echo_report(report, as_json, click.echo):
            click.get_current_context().exit(1)

    return group


def _make_blueprint() -> Blueprint:
    # The templates are qlikauth.web's, shared with django_qlikauth; an app's own
    # templates/qlikauth/*.html still win (Flask searches the app's folder first).
    bp = Blueprint("qlikauth", __name__, template_folder=str(TEMPLATES_DIR))

    @bp.app_errorhandler(QlikAuthError)
    def _handle(exc: QlikAuthError) -> Response:
        return render(flows.error_answer(web_request(), exc))

    bp.add_url_rule("/login", view_func=flow_view(flows.login), methods=["GET"])
    bp.add_url_rule("/module", view_func=flow_view(flows.module), methods=["GET"])
    bp.add_url_rule("/logout", view_func=flow_view(flows.logout), methods=["GET", "POST"])
    bp.add_url_rule(
        "/header-auth",
        endpoint="header_auth",
        view_func=flow_view(flows.header_auth),
        methods=["GET", "HEAD"],
    )
    # SAML single sign-on (QLIKAUTH_SAML, QLIKAUTH_CLAIMS): the flows of qlikauth.web.saml.
    # With several IdPs (QLIKAUTH_SAML = {"entra": {...}, ...}) each has /saml/<idp>/...
    for path, flow, methods, signs_in in (
        ("metadata", saml.saml_metadata, ["GET"], False),
        ("login", saml.saml_login, ["GET"], False),
        ("acs", saml.saml_acs, ["POST"], True),
        ("logout", saml.saml_logout, ["POST"], False),
        ("slo", saml.saml_slo, ["GET", "POST"], False),
    ):
        view = flow_view(flow, signs_in=signs_in)
        bp.add_url_rule(f"/saml/{path}", endpoint=flow.__name__, view_func=view, methods=methods)
        bp.add_url_rule(
            f"/saml/<idp>/{path}", endpoint=f"{flow.__name__}_idp", view_func=view, methods=methods
        )
    bp.add_url_rule("/sso", endpoint="choose_idp", view_func=_choose_view, methods=["GET"])
    return bp


def _choose_view() -> Response:
    """``/qlik/sso``: every identity provider of the portal (:mod:`qlikauth.web.chooser`)."""
    from flask import url_for

    from qlikauth.web.chooser import choose_idp

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    oidc_ext = app.extensions.get("qlikauth_oidc")
    saml_base = url_for("qlikauth.saml_login").rsplit("/saml/login", 1)[0]
    oidc_base = oidc_ext.url_prefix if oidc_ext is not None else None
    flow = functools.partial(choose_idp, saml_base=saml_base, oidc_base=oidc_base)
    return render(flows.run(flow, web_request(), state().runtime))
