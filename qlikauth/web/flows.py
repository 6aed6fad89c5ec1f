"""The web flows, written once: a :class:`WebRequest` in, a plain answer out.

Every endpoint of the Django and Flask integrations is a *flow* here: a function
``flow(request: WebRequest, runtime: QlikAuthRuntime) -> Answer``. The integrations only
say where the request, the portal user, the session and the configuration come from
(they build a :class:`WebRequest`), call the flow through :func:`run`, and render the
answer (a :class:`RedirectAnswer`, :class:`PageAnswer`, :class:`PlainAnswer` or
:class:`JsonAnswer`, each with the cookies to set or clear and extra headers). Nothing
here imports a web framework.

The flows:

* :func:`login` (``GET /qlik/login``): ticket mode sends the browser to the hub (or an
  allowed ``target``) with a ticket; session mode makes sure a proxy session exists and
  sends the browser to the hub with its cookie.
* :func:`module` (``GET /qlik/module``): the virtual proxy's authentication module.
* :func:`logout` (``GET`` page, ``POST`` sign-out of Qlik), :func:`header_auth` (nginx
  ``auth_request``), :func:`login_redirect` (anonymous browsers), :func:`error_answer`.
* Session mode for the portal's own pages: :func:`resume_session` (page views, the
  portal's own login) and :func:`end_sessions` (logout), which return the cookies to set.

SSO endpoints (SAML, OIDC, Qlik Cloud) are flows of the same shape; one-time state goes
through ``runtime.store`` (a :class:`~qlikauth.store.StateStore`), see ``docs/design.md``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from ..authenticators.base import Cookie
from ..exceptions import IdentityError, QlikAuthError
from ..identity import QlikUser
from .errors import describe_error
from .lifecycle import (
    SEEN_COOKIE,
    SESSION_KEY,
    SIGNIN_KEY,
    VerifiedLogin,
    current_sign_in,
    registry,
    sign_in,
    sign_out,
)
from .runtime import QlikAuthRuntime

__all__ = [
    "WebRequest",
    "Answer",
    "RedirectAnswer",
    "PageAnswer",
    "PlainAnswer",
    "JsonAnswer",
    "SessionOutcome",
    "Flow",
    "run",
    "login",
    "module",
    "logout",
    "header_auth",
    "login_redirect",
    "error_answer",
    "resume_session",
    "reused_session",
    "end_sessions",
    "same_origin",
    "NO_STORE",
    "SESSION_KEY",
    "SIGNIN_KEY",
    "RETRY_KEY",
    "RETRY_AFTER_SECONDS",
    "SIGNED_OUT_KEY",
    "SEEN_COOKIE",
    "portal_signed_in",
    "portal_signed_out",
    "cross_site",
    "continue_page",
    "refuse_cross_site_start",
]

log = logging.getLogger("qlikauth.web")

#: After a failed creation, page views leave QPS alone until this time (portal session key).
RETRY_KEY = "_qlikauth_retry_after"
RETRY_AFTER_SECONDS = 30.0
#: Set by a sign-out of Qlik (:func:`logout`): page views make no new proxy session until the
#: user opens Qlik again (``/qlik/login``, or the portal's own login).
SIGNED_OUT_KEY = "_qlikauth_signed_out"

#: Every answer of a flow carries this: sign-in answers are per user and carry tickets.
NO_STORE: tuple[tuple[str, str], ...] = (("Cache-Control", "no-store"),)
_NO_FRAMING: tuple[tuple[str, str], ...] = (
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
)

UserSource = Callable[[], "QlikUser | None"]


@dataclass
class WebRequest:
    """What a flow needs to know about one request, whatever the framework.

    :param method: ``GET``, ``POST``, ...
    :param path: the path the request was made to (``/qlik/logout``), no query.
    :param full_path: path and query as the browser asked (the ``next`` of a login
        redirect); ``path`` when not given.
    :param args: the query parameters (first value of each), ``form``: the POST form.
    :param headers: request headers (looked up case-insensitively), ``cookies``.
    :param session: the portal's own *server-side or signed* session mapping (Django's
        ``request.session``, Flask's ``session``), or None when there is none.
    :param scheme: ``http``/``https`` as the request arrived; ``host``: its Host.
    :param user: the signed-in portal user as a :class:`QlikUser`, or a callable that
        maps them (called at most once per request, only when a flow needs it: mapping can
        cost a database query), or None for nobody.
    :param portal_user: who the portal says is signed in, as a stable id (Django:
        ``"auth.user:42"``); None for anonymous. Defaults to the Qlik user's
        ``directory\\id``. A remembered proxy session is reused only for the same id.
    :param csrf_verified: the framework's own CSRF protection has checked this request
        (Django's ``csrf_protect``); otherwise state-changing POSTs must be same-origin.
    :param csrf_token: the token to put into forms (Django), or None.
    :param wants_json: the client prefers JSON to HTML (error answers).
    :param query_string: the query exactly as it arrived, undecoded (a SAML Redirect-binding
        signature covers these bytes); None when the integration does not give it.
    """

    method: str
    path: str
    args: Mapping[str, str] = field(default_factory=dict)
    form: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    session: MutableMapping[str, Any] | None = None
    scheme: str = "https"
    host: str = ""
    full_path: str | None = None
    user: QlikUser | UserSource | None = None
    portal_user: str | None = None
    csrf_verified: bool = False
    csrf_token: str | None = None
    wants_json: bool = False
    query_string: str | None = None
    _mapped: tuple[QlikUser | None] | None = field(default=None, init=False, repr=False)

    def header(self, name: str) -> str | None:
        """The value of request header ``name`` (case-insensitive), or None."""
        value = self.headers.get(name)
        if value is None:
            lower = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lower), None)
        return value

    def qlik_user(self) -> QlikUser | None:
        """The signed-in portal user as a :class:`QlikUser` (mapped once), or None."""
        if self._mapped is None:
            user = self.user() if callable(self.user) else self.user
            if user is not None and not isinstance(user, QlikUser):
                raise TypeError(
                    f"the portal user must be a QlikUser or None, not {type(user).__name__}"
                )
            self._mapped = (user,)
        return self._mapped[0]

    @property
    def owner(self) -> str | None:
        """Who is signed in to the portal (``portal_user``, else the Qlik user's key), or None."""
        if self.portal_user is not None:
            return self.portal_user
        user = self.qlik_user()
        return None if user is None else "\\".join(user.key)

    @property
    def next_path(self) -> str:
        """Where to come back to after the portal's login (``full_path`` without a bare ``?``)."""
        return (self.full_path or self.path).rstrip("?") or "/"


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What a flow answers: a status, headers and the cookies to set (or clear, ``max_age=0``)."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = NO_STORE
    cookies: tuple[Cookie, ...] = ()

    def with_cookies(self: _A, *cookies: Cookie) -> _A:
        """The same answer with ``cookies`` added."""
        return replace(self, cookies=self.cookies + cookies)


_A = TypeVar("_A", bound=Answer)


@dataclass(frozen=True, kw_only=True)
class RedirectAnswer(Answer):
    """A redirect (302) to :attr:`location`; it may carry a ticket, so it is never cached
    or logged."""

    location: str = field(repr=False)
    status: int = 302


@dataclass(frozen=True, kw_only=True)
class PageAnswer(Answer):
    """An HTML page: render :attr:`template` (under ``qlikauth/``) with :attr:`context`."""

    template: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PlainAnswer(Answer):
    """A plain body (``text/plain`` unless :attr:`content_type` says otherwise)."""

    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@dataclass(frozen=True, kw_only=True)
class JsonAnswer(Answer):
    """A JSON body."""

    data: Any = None


@dataclass(frozen=True)
class SessionOutcome:
    """What :func:`resume_session` did: whether a proxy session is in place, the cookies to set,
    and the QPS node holding the session (its hub is where the browser should go)."""

    active: bool
    cookies: tuple[Cookie, ...] = ()
    node: str | None = None
    created: bool = False


Flow = Callable[[WebRequest, QlikAuthRuntime], Answer]


# -- running a flow --------------------------------------------------------------------
def run(flow: Flow, request: WebRequest, runtime: QlikAuthRuntime) -> Answer:
    """Run ``flow``; a :class:`~qlikauth.QlikAuthError` becomes :func:`error_answer`."""
    try:
        return flow(request, runtime)
    except QlikAuthError as exc:
        return error_answer(request, exc)


def error_answer(request: WebRequest, exc: BaseException) -> Answer:
    """The error page (or JSON) for ``exc``: public texts and a reference id only; the full text is
    logged."""
    info = describe_error(exc)
    log.warning("qlikauth: %s on %s %s", info.log_text, request.method, request.path)
    if request.wants_json:
        return JsonAnswer(status=info.status, data=info.json())
    return PageAnswer(status=info.status, template="qlikauth/error.html", context=info.context())


def login_redirect(request: WebRequest, runtime: QlikAuthRuntime) -> RedirectAnswer:
    """Send an anonymous browser to the portal's login page (LOGIN_URL), coming back here
    afterwards."""
    login_url = runtime.config.login_url
    sep = "&" if "?" in login_url else "?"
    return RedirectAnswer(location=f"{login_url}{sep}{urlencode({'next': request.next_path})}")


def _method_not_allowed(*allowed: str) -> PlainAnswer:
    return PlainAnswer(
        status=405,
        body="Method not allowed.\n",
        headers=NO_STORE + (("Allow", ", ".join(allowed)),),
    )


# -- the endpoints ---------------------------------------------------------------------
def cross_site(request: WebRequest) -> bool:
    """Did another site start this navigation? (``Sec-Fetch-Site`` other than ``same-origin``
    or ``none``; ``same-site`` counts as another site: a sibling subdomain is not the portal.)

    Browsers that send no ``Sec-Fetch-Site`` (older ones) are not stopped.
    """
    site = request.header("Sec-Fetch-Site")
    return site is not None and site.lower() not in ("same-origin", "none")


def continue_page(request: WebRequest, fields: Mapping[str, str]) -> PageAnswer:
    """The "Open Qlik Sense?" page: one click (a same-origin GET) before anything is minted."""
    return PageAnswer(
        template="qlikauth/continue.html",
        context={
            "action": request.path,
            "target": fields.get("target", ""),
            "fields": [{"name": k, "value": v} for k, v in fields.items() if v],
        },
        headers=NO_STORE + _NO_FRAMING,
    )


def refuse_cross_site_start(
    request: WebRequest,
    runtime: QlikAuthRuntime,
    destination: str | None,
    fields: Mapping[str, str],
) -> Answer | None:
    """Another site may not start a sign-in that mints a ticket or a proxy session on its return.

    For the SSO login endpoints (``/saml/login``, ``/oidc/login``): with a live IdP session the
    browser comes straight back and a ticket (or session) is made, so a page of another site
    could use up the user's Qlik sessions as it could with ``/qlik/login``. A sign-in that goes
    back to a portal page in ticket mode mints nothing and may start anywhere. Answers the
    :func:`continue_page` (``fields`` carried over), or None to go on.
    """
    local = destination is not None and runtime.local_redirect(destination, "") == destination
    if cross_site(request) and (runtime.config.mode == "session" or not local):
        return continue_page(request, fields)
    return None


def _portal_login(request: WebRequest, user: QlikUser) -> VerifiedLogin:
    return VerifiedLogin(user=user, via="portal", owner=request.owner)


def login(request: WebRequest, runtime: QlikAuthRuntime) -> Answer:
    """``GET /qlik/login[?target=...]``: open Qlik Sense for the signed-in portal user.

    A bad ``target`` is refused (400) before anything else, even for anonymous browsers.
    Ticket mode: one ticket, redirect to the target (or the hub of the node that issued
    it). Session mode: the remembered proxy session is confirmed with QPS (or one is made)
    and its cookie set, then the redirect to the target (or the hub of the session's node).

    Another site could send a signed-in user's browser here again and again, and every
    ticket redeemed makes a new proxy session (Qlik allows five per user). So nothing is
    minted for a navigation another site started (:func:`cross_site`): the answer is a page
    with an "Open Qlik Sense" button instead (one click, same-origin). Session mode with a
    live remembered session mints nothing and goes straight on.

    The sign-in itself is :func:`qlikauth.web.lifecycle.sign_in`: the previous user of this
    browser (another person at a shared workstation) is signed out on every node first.
    """
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    target = request.args.get("target") or None
    checked = runtime.hub_policy.check(target) if target else None
    user = request.qlik_user()
    if user is None or _sign_in_ended(request, runtime):
        return login_redirect(request, runtime)
    if cross_site(request):
        reused = None
        if runtime.config.mode == "session":
            reused = reused_session(
                request.session, request.cookies, user, runtime, owner=request.owner
            )
        if reused is None:
            return continue_page(request, {"target": target or ""})
        return RedirectAnswer(location=checked or runtime.hub_for_node(reused.node))
    signed = sign_in(request, runtime, _portal_login(request, user), open_qlik=True, target=checked)
    return RedirectAnswer(location=str(signed.location), cookies=signed.cookies)


def module(request: WebRequest, runtime: QlikAuthRuntime) -> Answer:
    """``GET /qlik/module?targetId=...&proxyRestUri=...``: the virtual proxy's authentication
    module.

    ``proxyRestUri`` and ``targetId`` are checked against the configuration first (a
    forged node is refused without a login round trip); the ticket comes from that node.
    The cross-site rule and the previous-user rule are :func:`login`'s.
    """
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    target_id = request.args.get("targetId", "")
    rest_uri = request.args.get("proxyRestUri", "")
    runtime.ticket.check_module_request(rest_uri, target_id)
    user = request.qlik_user()
    if user is None or _sign_in_ended(request, runtime):
        return login_redirect(request, runtime)
    if cross_site(request):
        return continue_page(request, {"targetId": target_id, "proxyRestUri": rest_uri})
    signed = sign_in(
        request, runtime, _portal_login(request, user), open_qlik=True, module=(rest_uri, target_id)
    )
    return RedirectAnswer(location=str(signed.location), cookies=signed.cookies)


def _sign_in_ended(request: WebRequest, runtime: QlikAuthRuntime) -> bool:
    """The portal session carried a sign-in that has since ended (signed out elsewhere, revoked):
    its qlikauth state is gone now and nothing is opened for it."""
    had = request.session is not None and SIGNIN_KEY in request.session
    return had and current_sign_in(request.session, runtime) is None


def portal_signed_in(
    request: WebRequest, runtime: QlikAuthRuntime, user: QlikUser | None = None
) -> tuple[Cookie, ...]:
    """The portal's own sign-in has just happened: complete it; the cookies to set.

    Django's ``user_logged_in`` and Flask-Login's ``user_logged_in`` call it (and
    ``QlikAuth.start_session`` for Flask apps without Flask-Login). The previous user of this
    browser is signed out everywhere first; session mode makes the proxy session now, ticket mode
    mints nothing until Qlik is opened. Session-mode QPS errors are raised.
    """
    user = user if user is not None else request.qlik_user()
    if user is None:
        raise IdentityError("nobody is signed in to the portal: sign in first.", field="user")
    return sign_in(request, runtime, _portal_login(request, user), open_qlik=False).cookies


def portal_signed_out(
    request: WebRequest,
    runtime: QlikAuthRuntime,
    user: QlikUser | None = None,
    *,
    reason: str = "portal sign-out",
) -> tuple[Cookie, ...]:
    """The portal's own sign-out: end the sign-in everywhere; the cookies to set.

    Django's ``user_logged_out``, Flask-Login's ``user_logged_out`` and
    ``QlikAuth.end_sessions`` call it. It is :func:`qlikauth.web.lifecycle.sign_out` for this
    browser: proxy sessions on every node, the Qlik Cloud token(s), the sign-in revoked, the
    portal session's qlikauth state cleared. It never raises for a node that fails.
    """
    try:
        user = user if user is not None else request.qlik_user()
    except QlikAuthError:
        user = None
    return sign_out(
        request, runtime, users=[user] if user is not None else [], reason=reason
    ).cookies


def same_origin(request: WebRequest) -> bool:
    """Does this POST come from a page of this host? (For frameworks without CSRF protection.)

    Browsers send ``Origin`` with every POST; ``Referer`` is the fallback. Neither, an
    ``Origin: null`` (sandboxed or privacy-redirected) or another host: not same-origin. The
    scheme must match too, except that a request that arrived as http (TLS ended at a proxy)
    accepts an https page of the same host.
    """
    source = request.header("Origin") or request.header("Referer")
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
    return bool(request.host) and netloc == request.host.lower()


def logout(request: WebRequest, runtime: QlikAuthRuntime) -> Answer:
    """``/qlik/logout``: sign out of Qlik only. ``GET`` answers a page with a sign-out button (it
    changes nothing); ``POST`` ends the user's proxy sessions on every node and their Qlik Cloud
    token, clears the cookie and goes to ``next`` (a local path only). The portal sign-in stays.

    The POST must pass the framework's CSRF check (``csrf_verified``) or, without one,
    come from this host's own page (:func:`same_origin`), else 403: another site cannot
    sign a user out with a link, an image or a form.
    """
    if request.method in ("GET", "HEAD"):
        context = {
            "action": request.path,
            "next_url": runtime.local_redirect(request.args.get("next"), "/"),
            "csrf_token_value": request.csrf_token or "",
        }
        return PageAnswer(
            template="qlikauth/logout.html", context=context, headers=NO_STORE + _NO_FRAMING
        )
    if request.method != "POST":
        return _method_not_allowed("GET", "POST")
    if not request.csrf_verified and not same_origin(request):
        log.warning(
            "qlikauth: refused a cross-site logout POST (Origin %r, Referer %r)",
            str(request.header("Origin"))[:80],
            str(request.header("Referer"))[:80],
        )
        return PlainAnswer(status=403, body="Forbidden: sign out from the portal's own page.\n")
    destination = runtime.local_redirect(request.form.get("next"), "/")
    try:
        user = request.qlik_user()
    except QlikAuthError:
        user = None
    done = sign_out(
        request,
        runtime,
        users=[user] if user is not None else [],
        reason="sign-out of Qlik",
        portal=False,
    )
    if request.session is not None:
        request.session[SIGNED_OUT_KEY] = True  # holds until the user opens Qlik again
    return RedirectAnswer(location=destination, cookies=done.cookies)


def header_auth(request: WebRequest, runtime: QlikAuthRuntime) -> Answer:
    """``GET /qlik/header-auth`` for nginx ``auth_request``: 200 with the identity header for
    the signed-in portal user, 401 for nobody, 403 for a user that cannot be written into a
    header; 500 (ConfigurationError) when HEADER_NAME is not set.

    The identity comes only from the portal's own login (``request.user``), never from a
    request header; no QPS call is made.
    """
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET", "HEAD")
    answer = runtime.header.identity_answer(
        request.qlik_user(), runtime.config.header_response_header
    )
    return PlainAnswer(status=answer.status, body="", headers=tuple(answer.headers))


# -- session mode for the portal's own pages ------------------------------------------
def resume_session(
    request: WebRequest, runtime: QlikAuthRuntime, *, verify: bool = False, start: bool = False
) -> SessionOutcome:
    """Give the signed-in portal user a proxy session; return the cookies to set.

    The decision is the core's (:meth:`~qlikauth.SessionAuthenticator.resume`): a proxy
    session remembered in ``request.session`` for the same portal user *with the same Qlik
    identity* (directory, id, attributes) is reused, so page views make no QPS call (the
    cookie is set only when the browser does not carry it, also on an explicit ``start``);
    when the portal now maps the user differently (a group removed), the old session is
    ended and a new one made. It is confirmed with QPS when ``verify`` is set, or every
    SESSION_RECHECK seconds.

    Of ``request`` it reads only ``session``, ``cookies`` and the user (``user``,
    ``portal_user``): it runs on every page view, so an integration may describe just those.

    ``start`` marks an explicit "open Qlik" (``/qlik/login``, the portal's own login view):
    QPS errors are raised, and a sign-out of Qlik (:func:`logout`) is lifted. Otherwise
    (page views) errors are logged and QPS is left alone for :data:`RETRY_AFTER_SECONDS`;
    after a sign-out of Qlik, page views make no new session until the next ``start``.

    When a new session is made, a proxy session the browser still carries from an earlier
    sign-in (another user's, or one this portal session no longer remembers) is ended: a
    new portal sign-in ends the previous user's Qlik session in this browser.
    """
    session = request.session
    owner = request.owner
    if owner is None:
        if start:
            raise IdentityError("nobody is signed in to the portal: sign in first.", field="user")
        return SessionOutcome(False)
    store: MutableMapping[str, Any] = session if session is not None else {}
    now = time.time()
    if session is not None:
        try:
            current = request.qlik_user()
        except (
            QlikAuthError
        ):  # mapped again below, where a mapping error is handled (logged or raised)
            current = None
        reused = reused_session(
            session, request.cookies, current, runtime, owner=owner, verify=verify, now=now
        )
        if reused is not None:
            return reused
    if start:
        store.pop(SIGNED_OUT_KEY, None)
    create = start or (store.get(RETRY_KEY, 0) <= now and not store.get(SIGNED_OUT_KEY))
    try:
        user = request.qlik_user()
        record = store.get(SIGNIN_KEY)
        if user is not None and create and not _signed_in_as(record, user, owner):
            # No sign-in of this user in this portal session yet (the integration has no login
            # hook, or the portal session was replaced): the whole sign-in, previous-user rule
            # included, not a bare session.
            signed = sign_in(
                request, runtime, _portal_login(request, user), open_qlik=False, verify=verify
            )
            return SessionOutcome(True, signed.cookies, signed.node, True)
        remembered = store.get(SESSION_KEY)
        grant = runtime.session.resume(
            request.qlik_user,
            remembered,
            owner=owner,
            now=now,
            create=create,
            recheck_after=runtime.recheck_after(explicit=verify),
            end_replaced=runtime.end_sessions,
            before_create=runtime.pending.settle,
        )
    except QlikAuthError as exc:
        store[RETRY_KEY] = now + RETRY_AFTER_SECONDS
        if start:
            raise
        log.warning("qlikauth: no proxy session for %s: %s", owner, exc)
        return SessionOutcome(False)
    if grant is None:
        if remembered is not None:
            store.pop(SESSION_KEY, None)  # ended: the user no longer maps to a Qlik user
        return SessionOutcome(False)
    if grant.created:
        store.pop(RETRY_KEY, None)
        _record_for_single_logout(runtime, record, grant)
        stray = request.cookies.get(runtime.session.cookie_name)
        if stray and stray not in (grant.session_id, (remembered or {}).get("sid")):
            runtime.end_sessions([stray], reason="the browser's earlier proxy session")
    if grant.record != remembered:  # write the session only when something changed
        store[SESSION_KEY] = grant.record
    cookies: tuple[Cookie, ...] = ()
    # Set only when it is new or the browser does not carry it (lost, or another value): a
    # page view of a signed-in browser sends nothing back, as the same cookie changes nothing.
    if grant.created or request.cookies.get(runtime.session.cookie_name) != grant.session_id:
        cookies = (grant.cookie,)
    return SessionOutcome(True, cookies, grant.record.get("node"), grant.created)


def _record_for_single_logout(runtime: QlikAuthRuntime, record: Any, grant: Any) -> None:
    """A proxy session a page view made for an SSO sign-in is one its single logout must end."""
    from ..bridges.registry import SsoKey

    key = SsoKey.from_dict(record.get("sso")) if isinstance(record, dict) else None
    if key is None:
        return
    try:
        user = QlikUser.from_qps(record.get("user") or {})
        registry(runtime).record(key, user, grant.session_id, signin_id=str(record.get("id")))
    except QlikAuthError as exc:
        log.warning(
            "qlikauth: the new proxy session is not recorded for single logout (it "
            "ends with the user's sign-out or Qlik's timeout): %s",
            exc,
        )


def _signed_in_as(record: Any, user: QlikUser, owner: str) -> bool:
    """The portal session's sign-in record is ``owner``'s, as Qlik user ``user``."""
    if not isinstance(record, dict) or record.get("owner") != owner:
        return False
    try:
        return QlikUser.from_qps(record.get("user") or {}).key == user.key
    except QlikAuthError:
        return False


def reused_session(
    session: Mapping[str, Any] | None,
    cookies: Mapping[str, str],
    user: QlikUser | None,
    runtime: QlikAuthRuntime,
    *,
    owner: str | None = None,
    verify: bool = False,
    now: float | None = None,
) -> SessionOutcome | None:
    """The page view of a signed-in browser, decided in a few look-ups; None: ask
    :func:`resume_session`.

    An outcome (active, no cookies) only when there is nothing to do and nothing to write:
    the portal ``session`` remembers a proxy session of ``owner`` (default: ``user``'s
    ``DIRECTORY\\id``) made for exactly ``user``'s identity (directory, id, attributes),
    no recheck is due (``verify`` asks for one), the browser's ``cookies`` carry it, and no
    sign-out of Qlik is pending. :func:`resume_session` asks this first; integrations ask it
    before describing the whole request, since it runs on every page view. ``user`` is the
    portal user mapped *now*: a changed mapping (a group removed) is never reused here.
    """
    if session is None or user is None:
        return None
    remembered = session.get(SESSION_KEY)
    if remembered is None or SIGNED_OUT_KEY in session:
        return None
    authenticator = runtime.session
    if cookies.get(authenticator.cookie_name) != remembered.get("sid"):
        return None
    if not authenticator.reusable(
        remembered,
        user,
        owner="\\".join(user.key) if owner is None else owner,
        now=time.time() if now is None else now,
        recheck_after=runtime.recheck_after(explicit=verify),
    ):
        return None
    return _reused(remembered.get("node"))


_REUSED: dict[Any, SessionOutcome] = {}


def _reused(node: Any) -> SessionOutcome:
    """The outcome of a page view that reused the remembered session (immutable: one per node)."""
    outcome = _REUSED.get(node)
    if outcome is None:
        outcome = SessionOutcome(True, (), node, False)
        if len(_REUSED) < 256:  # a handful of QPS nodes; never more than this kept
            _REUSED[node] = outcome
    return outcome


def end_sessions(
    request: WebRequest, runtime: QlikAuthRuntime, user: QlikUser | None = None
) -> tuple[Cookie, ...]:
    """The portal's sign-out (:func:`portal_signed_out`); the cookies to set. Never raises for a
    node."""
    return portal_signed_out(request, runtime, user)
