"""OpenID Connect sign-in as web flows: login, callback, logout, back-channel logout, session caps.

The flows have the shape of :mod:`qlikauth.web.flows` (a :class:`~qlikauth.web.flows.WebRequest`
in, a plain answer out); Django and Flask only route to them. The protocol is
:mod:`qlikauth.bridges.oidc`, the claims -> Qlik user mapping :mod:`qlikauth.mapping`, and
which proxy sessions belong to which provider session :mod:`qlikauth.bridges.registry` (in the
runtime's shared store, so any portal process can end sessions another one made).

* :func:`login` (``GET /oidc/login[?target=...|?next=/path]``): ``target`` (a hub URL or a URL on
  an allowed origin) is checked first; ``next``, a path on the portal, brings the browser back to
  that page signed in (no ticket yet); the browser goes to the provider with state, nonce, PKCE.
* :func:`callback` (``GET`` for ``response_mode=query``, ``POST`` for ``form_post``): the sign-in
  is verified, mapped to a Qlik user, signed into Qlik (ticket to the hub, or a proxy session
  cookie in session mode) and remembered in the portal's session as an *SSO session* (user,
  provider session, start and last-seen times). The portal's session key is rotated (fixation).
* :func:`logout` (``GET`` page, ``POST`` CSRF-checked): ends this provider session's proxy
  sessions on every node and the portal's SSO session, then RP-initiated logout at the provider
  (``id_token_hint``, ``post_logout_redirect_uri``) when it has an ``end_session_endpoint``.
* :func:`backchannel_logout` (``POST`` from the provider): a verified ``logout_token`` ends the
  proxy sessions on every node and marks the provider session ended; whichever portal process
  holds that browser's session drops it on its next request (:func:`sso_session`).
* :func:`frontchannel_logout` (``GET /oidc/frontchannel-logout?iss=...&sid=...``, off unless
  ``FRONTCHANNEL_LOGOUT``): the provider loads it in an iframe of its logout page; it ends this
  browser's own SSO session, and only when ``iss`` and ``sid`` are those of that session (an
  unauthenticated GET any page could embed must not sign anyone else out). The portal's session
  cookie must then be ``SameSite=None; Secure`` to reach a third-party iframe.
* :func:`sso_session`: called for each request by the integrations' middleware/hook. It returns
  the signed-in SSO user, or ends the SSO session when it was logged out elsewhere or passed the
  absolute (``SESSION_MAX_AGE``) or idle (``SESSION_IDLE_TIMEOUT``) cap (shared clinical
  workstations: the next person must not inherit a sign-in), ending its proxy sessions too. The
  caps are checked when the browser
  next reaches the portal; Qlik's own session inactivity timeout covers a browser that stays in
  Qlik.

Settings: ``QLIKAUTH["OIDC"] = {...}`` (Django) or ``QLIKAUTH_OIDC = {...}`` (Flask), keys in
docs/oidc.md; the claims mapping is ``QLIKAUTH["CLAIMS"]`` (shared with SAML) or ``OIDC.CLAIMS``.
Several providers: ``QLIKAUTH["OIDC"] = {"imprivata": {...}, "okta": {...}}``, each with its own
relying party, mapping, caps and logout (``/oidc/<name>/...``; every flow takes ``idp=``); the
portal session's record names the provider it was signed in with.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from .._parse import parse_bool
from ..authenticators.base import Cookie
from ..bridges.oidc import OidcRelyingParty, OidcSettings
from ..bridges.registry import SsoKey, SsoSessionRegistry
from ..exceptions import BridgeError, ConfigurationError, OidcError, QlikAuthError
from ..identity import QlikUser
from ..mapping import ClaimsMapping
from .flows import (
    NO_STORE,
    Answer,
    JsonAnswer,
    PageAnswer,
    PlainAnswer,
    RedirectAnswer,
    WebRequest,
    refuse_cross_site_start,
    same_origin,
)
from .lifecycle import (
    VerifiedLogin,
    current_sign_in,
    register_portal_key,
    registry,
    sign_in,
    sign_out_found,
    sign_out_sso,
)
from .runtime import QlikAuthRuntime
from .saml import DEFAULT_IDP, idp_sections, unknown_idp

__all__ = [
    "OidcWebSettings",
    "SsoSessionState",
    "OIDC_SESSION_KEY",
    "login",
    "callback",
    "logout",
    "backchannel_logout",
    "frontchannel_logout",
    "logout_return",
    "sso_session",
    "REAUTH_KEY",
    "REAUTH_COOKIE",
    "startup_warnings",
    "oidc_idp_names",
]

log = logging.getLogger("qlikauth.oidc")

#: Where the OIDC sign-in lives in the portal's session (provider session, logout hint, times).
OIDC_SESSION_KEY = "_qlikauth_oidc"
register_portal_key(OIDC_SESSION_KEY)
#: Set when an idle cap ended this browser's sign-in: the next sign-in must authenticate the
#: person again at the provider (its own session may still be live: the next person at a shared
#: workstation must not inherit it). Kept across sign-outs; cleared by the next sign-in.
REAUTH_KEY = "_qlikauth_oidc_reauth"
#: The same as a browser-session cookie: it survives a portal session that is flushed with the
#: sign-in (Django's logout()).
REAUTH_COOKIE = "qlikauth_reauth"


def _reauth_cookie(runtime: QlikAuthRuntime, on: bool) -> Cookie:
    return Cookie(
        REAUTH_COOKIE,
        "1" if on else "",
        None,
        "/",
        runtime.config.cookie_secure,
        True,
        "Lax",
        max_age=None if on else 0,
    )


_TOUCH_EVERY = 30.0  # seconds between last-seen updates (a session write per page view is waste)

_RP_FIELDS = {f.name for f in fields(OidcSettings)}
_LISTS = {"scopes", "algorithms", "tenants"}
_BOOLS = {"userinfo", "cookie_secure", "allow_unverified_email"}
WEB_KEYS = {
    "SESSION_MAX_AGE": 8 * 3600.0,
    "SESSION_IDLE_TIMEOUT": 1800.0,
    "CLAIMS": None,
    "FRONTCHANNEL_LOGOUT": False,
    "LABEL": None,
}


def _problem(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"QLIKAUTH OIDC {key}: {message}", key=key)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class OidcWebSettings:
    """The checked ``OIDC`` settings: the relying party's, the claims mapping and the
    session caps."""

    rp: OidcSettings
    mapping: ClaimsMapping
    session_max_age: float = 8 * 3600.0
    session_idle_timeout: float = 1800.0
    frontchannel_logout: bool = False
    #: What the chooser page shows for this provider (``LABEL``).
    label: str | None = None

    @classmethod
    def from_mapping(
        cls, oidc: Mapping[str, Any] | None, claims: Mapping[str, Any] | None = None
    ) -> OidcWebSettings:
        """Check ``oidc`` (upper-case keys such as ``ISSUER``; case-insensitive)."""
        import difflib

        if not oidc:
            raise _problem(
                "ISSUER",
                "OpenID Connect is not configured: set QLIKAUTH['OIDC'] = {'ISSUER': ..., "
                "'CLIENT_ID': ..., 'CLIENT_SECRET': ..., 'REDIRECT_URI': ...} (Django) or "
                "QLIKAUTH_OIDC = {...} (Flask).",
            )
        if not isinstance(oidc, Mapping):
            raise _problem("ISSUER", f"QLIKAUTH OIDC must be a mapping, not {type(oidc).__name__}.")
        known = sorted({k.upper() for k in _RP_FIELDS} | set(WEB_KEYS))
        rp_args: dict[str, Any] = {}
        web: dict[str, Any] = dict(WEB_KEYS)
        for raw_key, value in oidc.items():
            key = str(raw_key).upper()
            name = key.lower()
            if key in WEB_KEYS:
                web[key] = value
                continue
            if name not in _RP_FIELDS:
                close = difflib.get_close_matches(key, known, n=1)
                raise _problem(
                    key,
                    f"unknown setting.{' Did you mean ' + close[0] + '?' if close else ''} "
                    f"Known: {', '.join(known)}.",
                )
            if name in _LISTS and isinstance(value, str):
                value = tuple(v for v in value.replace(",", " ").split() if v)
            elif name in _BOOLS and isinstance(value, str):
                # the words QLIKAUTH and QLIKAUTH_SAML take; anything else is refused, never read
                # as False (a typo in COOKIE_SECURE would drop Secure from the binding cookie)
                parsed = parse_bool(value)
                if parsed is None:
                    raise _problem(key, f"expected true or false, got {value!r}.")
                value = parsed
            elif isinstance(value, list):
                value = tuple(value)
            rp_args[name] = value
        for required in ("issuer", "client_id", "redirect_uri"):
            if not rp_args.get(required):
                raise _problem(
                    required.upper(), "missing (see docs/oidc.md: what the provider tells you)."
                )
        try:
            rp = OidcSettings(**rp_args)
        except ConfigurationError as exc:
            raise _problem(
                str(exc).split(":", 1)[0].replace("OIDC ", "").upper(), str(exc)
            ) from None
        except TypeError as exc:
            raise _problem("ISSUER", f"a setting has the wrong type: {exc}.") from None
        caps = {}
        for key in ("SESSION_MAX_AGE", "SESSION_IDLE_TIMEOUT"):
            try:
                caps[key] = float(web[key] or 0)
            except (TypeError, ValueError):
                raise _problem(key, "expected a number of seconds (0: no cap).") from None
            if caps[key] < 0:
                raise _problem(key, "must be 0 (no cap) or a positive number of seconds.")
        mapping_settings = web["CLAIMS"] if web["CLAIMS"] is not None else claims
        if mapping_settings is None:
            # No mapping configured: the user id is the e-mail (so the same person is the same
            # user on-premises and in Qlik Cloud), in directory OIDC, groups as 'group'.
            mapping_settings = {"USER_ID": "email", "USER_DIRECTORY": "OIDC", "REQUIRED": ["email"]}
        front = web["FRONTCHANNEL_LOGOUT"]
        if isinstance(front, str):
            front = parse_bool(front)
        if not isinstance(front, bool):
            raise _problem("FRONTCHANNEL_LOGOUT", "expected true or false.")
        label = web["LABEL"]
        if label is not None and not isinstance(label, str):
            raise _problem("LABEL", "expected the text of the provider's sign-in link.")
        return cls(
            rp=rp,
            mapping=ClaimsMapping.from_settings(mapping_settings),
            session_max_age=caps["SESSION_MAX_AGE"],
            session_idle_timeout=caps["SESSION_IDLE_TIMEOUT"],
            frontchannel_logout=front,
            label=label,
        )


@dataclass(frozen=True)
class SsoSessionState:
    """What :func:`sso_session` found: the user (None: nobody), why a session ended,
    cookies to set."""

    user: QlikUser | None
    ended: str | None = None
    cookies: tuple[Cookie, ...] = ()


class _Oidc:
    def __init__(
        self, runtime: QlikAuthRuntime, settings: OidcWebSettings, name: str = DEFAULT_IDP
    ) -> None:
        self.settings = settings
        self.name = name
        self.rp = OidcRelyingParty(settings.rp, runtime.store, replay_cache=runtime.replay_cache)
        self.registry: SsoSessionRegistry = registry(runtime)

    @property
    def label(self) -> str:
        return self.settings.label or ("OpenID Connect" if self.name == DEFAULT_IDP else self.name)


_STATE: weakref.WeakKeyDictionary[QlikAuthRuntime, dict[str, _Oidc]] = weakref.WeakKeyDictionary()
_STATE_LOCK = threading.Lock()
_KNOWN = {k.upper() for k in _RP_FIELDS} | set(WEB_KEYS)


def oidc_idp_names(runtime: QlikAuthRuntime) -> list[str]:
    """The names of the configured OpenID providers (``["default"]`` for the single form)."""
    return list(idp_sections(getattr(runtime.config, "oidc", None), "OIDC", _KNOWN))


def _oidc(runtime: QlikAuthRuntime, idp: str | None = None) -> _Oidc:
    """The relying party, mapping and caps of provider ``idp`` (None: the only one)."""
    cache = _STATE.get(runtime)
    if cache is not None and (idp or DEFAULT_IDP) in cache:
        return cache[idp or DEFAULT_IDP]
    with _STATE_LOCK:
        cache = _STATE.setdefault(runtime, {})
        config = runtime.config
        sections = idp_sections(getattr(config, "oidc", None), "OIDC", _KNOWN)
        names = list(sections)
        if not names:  # the settings' own error: what to configure
            OidcWebSettings.from_mapping(None)
        name = idp or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise _unknown_provider(name, names)
        if name not in cache:
            try:
                settings = OidcWebSettings.from_mapping(
                    sections[name], getattr(config, "claims", None)
                )
            except ConfigurationError as exc:
                if name == DEFAULT_IDP:
                    raise
                text = str(exc).replace("QLIKAUTH OIDC", f"QLIKAUTH OIDC[{name!r}]", 1)
                raise ConfigurationError(text, key=getattr(exc, "key", None)) from None
            cache[name] = _Oidc(runtime, settings, name)
        return cache[name]


def _unknown_provider(name: str | None, names: list[str]) -> BridgeError:
    return unknown_idp(
        OidcError, "an OpenID provider", "OpenID providers", "/oidc/<name>/login", name, names
    )


def _record_idp(record: Any) -> str | None:
    """The provider a portal session's OIDC record was signed in with (None: the only one)."""
    name = record.get("idp") if isinstance(record, Mapping) else None
    return name if isinstance(name, str) else None


def startup_warnings(runtime: QlikAuthRuntime) -> list[str]:
    """Check the ``OIDC`` settings and build every relying party now (nothing is fetched: the
    discovery document and keys are read at the first sign-in); what they warn about.

    Raises :class:`ConfigurationError` for a setting it cannot use.
    """
    out = []
    for name in oidc_idp_names(runtime):
        o = _oidc(runtime, name)
        if o.settings.rp.allow_unverified_email:
            which = "" if name == DEFAULT_IDP else f"[{name!r}]"
            out.append(
                f"QLIKAUTH OIDC{which} ALLOW_UNVERIFIED_EMAIL is on: an e-mail address "
                "the provider does not mark verified can decide who signs in. Map a "
                "stable claim instead (docs/oidc.md: which claim to map)."
            )
    return out


def _method_not_allowed(*allowed: str) -> PlainAnswer:
    return PlainAnswer(
        status=405,
        body="Method not allowed.\n",
        headers=NO_STORE + (("Allow", ", ".join(allowed)),),
    )


# -- the flows -------------------------------------------------------------------------
def login(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``GET /oidc[/<idp>]/login[?target=...][&idp=name]``: send the browser to the provider (see
    the module docstring); with several providers the URL or ``?idp=`` names the one."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    target = request.args.get("target") or None
    nxt = request.args.get("next") or None
    if target is None and nxt is not None and runtime.local_redirect(nxt, "") == nxt:
        checked: str | None = (
            nxt  # a page of the portal: come back there, signed in (no ticket yet)
        )
    else:
        target = target or nxt
        checked = runtime.hub_policy.check(target) if target else None
    refused = refuse_cross_site_start(
        request,
        runtime,
        checked,
        {"target": request.args.get("target") or "", "next": request.args.get("next") or ""},
    )
    if refused is not None:
        return refused
    o = _oidc(runtime, idp or request.args.get("idp") or None)
    reauth = request.cookies.get(REAUTH_COOKIE) == "1" or (
        request.session is not None and bool(request.session.get(REAUTH_KEY))
    )
    auth = o.rp.begin(request.cookies.get(o.rp.settings.cookie_name), checked, force_reauth=reauth)
    return RedirectAnswer(location=auth.url, cookies=(auth.cookie,))


def callback(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``/oidc/callback``: verify, map, sign into Qlik, remember the SSO session."""
    if request.method == "GET":
        params = request.args
    elif request.method == "POST":
        params = request.form  # response_mode=form_post: state + browser binding stand in for CSRF
    else:
        return _method_not_allowed("GET", "POST")
    o = _oidc(runtime, idp)
    session = request.session
    if session is None:
        raise ConfigurationError(
            "OpenID Connect sign-in needs the portal's session (Django's "
            "SessionMiddleware, Flask's secret key)."
        )
    login_ = o.rp.complete(request.cookies.get(o.rp.settings.cookie_name), params)
    user = o.settings.mapping.to_user(dict(login_.claims), subject=login_.subject)
    key = SsoKey(login_.issuer, login_.subject, login_.sid)
    now = time.time()
    previous = session.get(OIDC_SESSION_KEY)
    if isinstance(previous, dict):
        runtime.store.delete(f"qlikauth:oidc:hint:{previous.get('hint')}")
    local = login_.next_url if login_.next_url and login_.next_url.startswith("/") else None
    # The whole sign-in, previous-user rule included: another person's sessions in this browser
    # end on every node before anything is made for this one.
    signed = sign_in(
        request,
        runtime,
        VerifiedLogin(user=user, via="oidc", sso=key),
        open_qlik=local is None,
        target=None if local else login_.next_url,
    )
    session.pop(REAUTH_KEY, None)
    rotate = getattr(session, "cycle_key", None)
    if callable(
        rotate
    ):  # Django: a new session key at sign-in (fixation); Flask rewrites its cookie
        rotate()
    lifetime = runtime.revocation_ttl
    hint = secrets.token_urlsafe(18)
    runtime.store.put(f"qlikauth:oidc:hint:{hint}", login_.id_token.encode(), lifetime)
    if login_.sid:
        runtime.store.put(
            f"qlikauth:oidc:sid:{_digest(login_.issuer, login_.sid)}",
            login_.subject.encode(),
            lifetime,
        )
    cookies: list[Cookie] = [c for c in (login_.clear_cookie,) if c is not None]
    cookies += signed.cookies
    if request.cookies.get(REAUTH_COOKIE):
        cookies.append(_reauth_cookie(runtime, False))
    session[OIDC_SESSION_KEY] = {
        "user": user.to_qps(),
        "key": key.as_dict(),
        "hint": hint,
        "started": now,
        "seen": now,
        "idp": o.name,
    }
    log.info(
        "OIDC sign-in of %s (provider session %s)",
        "\\".join(user.key),
        "yes" if login_.sid else "none",
    )
    return RedirectAnswer(location=str(local or signed.location), cookies=tuple(cookies))


def _end(
    runtime: QlikAuthRuntime,
    request: WebRequest | None,
    record: Mapping[str, Any] | None,
    reason: str,
) -> Any:
    """The one sign-out for an OIDC sign-in: its provider session's records taken from the
    registry, everything they made ended (``request``: this browser's own state too)."""
    key = SsoKey.from_dict(record.get("key")) if isinstance(record, Mapping) else None
    if isinstance(record, Mapping):
        try:
            runtime.store.delete(f"qlikauth:oidc:hint:{record.get('hint')}")
        except QlikAuthError:
            pass  # the hint expires with the sign-in anyway
    return sign_out_sso(request, runtime, key, reason=reason)


def sso_session(
    request: WebRequest, runtime: QlikAuthRuntime, *, now: float | None = None
) -> SsoSessionState:
    """The SSO user of this request, or the end of the SSO session (see the module docstring)."""
    session = request.session
    record = session.get(OIDC_SESSION_KEY) if session is not None else None
    if not isinstance(record, dict):
        return SsoSessionState(None)
    assert session is not None
    try:
        o = _oidc(runtime, _record_idp(record))
    except OidcError as exc:
        if exc.code != "idp":
            raise
        # signed in with a provider the settings no longer name: that sign-in ends here
        done = _end(runtime, request, record, "OIDC provider no longer configured")
        session.pop(OIDC_SESSION_KEY, None)
        return SsoSessionState(None, "the identity provider is no longer configured", done.cookies)
    now = time.time() if now is None else now
    s = o.settings
    reason = None
    if current_sign_in(session, runtime, now=now) is None:
        # Ended elsewhere (back-channel logout, single logout, a sign-out in another process):
        # whoever ended it ended its proxy sessions too; only this portal session is left.
        session.pop(OIDC_SESSION_KEY, None)
        log.info("OIDC session ended: signed out or logged out at the provider")
        return SsoSessionState(
            None, "logged out at the identity provider", (runtime.clear_cookie(),)
        )
    if s.session_max_age and now - float(record.get("started", 0)) > s.session_max_age:
        reason = "signed in longer than SESSION_MAX_AGE"
    elif s.session_idle_timeout and now - float(record.get("seen", 0)) > s.session_idle_timeout:
        reason = "idle longer than SESSION_IDLE_TIMEOUT"
    if reason is None:
        if now - float(record.get("seen", 0)) > _TOUCH_EVERY:
            session[OIDC_SESSION_KEY] = {**record, "seen": now}
        try:
            return SsoSessionState(QlikUser.from_qps(record.get("user") or {}))
        except QlikAuthError:
            reason = "the remembered user is damaged"
    done = _end(runtime, request, record, f"OIDC session cap: {reason}")
    cookies = done.cookies
    if reason.startswith("idle"):
        session[REAUTH_KEY] = True
        cookies += (_reauth_cookie(runtime, True),)
    log.info("OIDC session ended: %s", reason)
    return SsoSessionState(None, reason, cookies)


def logout(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``/oidc/logout``: ``GET`` a page with a sign-out button; ``POST`` signs out here and at the
    provider."""
    if request.method in ("GET", "HEAD"):
        context = {
            "action": request.path,
            "next_url": runtime.local_redirect(request.args.get("next"), "/"),
            "csrf_token_value": request.csrf_token or "",
        }
        return PageAnswer(
            template="qlikauth/logout.html",
            context=context,
            headers=NO_STORE
            + (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "frame-ancestors 'none'")),
        )
    if request.method != "POST":
        return _method_not_allowed("GET", "POST")
    if not request.csrf_verified and not same_origin(request):
        log.warning("OIDC: refused a cross-site logout POST")
        return PlainAnswer(status=403, body="Forbidden: sign out from the portal's own page.\n")
    record = request.session.get(OIDC_SESSION_KEY) if request.session is not None else None
    destination = runtime.local_redirect(request.form.get("next"), "/")
    raw = None
    if isinstance(record, dict):
        try:
            raw = runtime.store.take(f"qlikauth:oidc:hint:{record.get('hint')}")
        except QlikAuthError as exc:
            # The sign-out here never waits for the store: only the provider goes untold.
            log.warning("OIDC logout: signing out here, the provider is not told (%s)", exc)
    id_token = raw.decode() if raw else None
    done = _end(runtime, request, record, "OIDC logout")
    if id_token is None:
        return RedirectAnswer(location=destination, cookies=done.cookies)
    try:
        # The provider this browser signed in with, whatever logout URL was posted to.
        o = _oidc(runtime, _record_idp(record) or idp)
    except OidcError as exc:
        log.warning("OIDC logout: signed out here, the provider is not told (%s)", exc)
        return RedirectAnswer(location=destination, cookies=done.cookies)
    url = o.rp.logout_url(id_token, destination if destination != "/" else None)
    return RedirectAnswer(location=url or destination, cookies=done.cookies)


def logout_return(
    request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None
) -> Answer:
    """``GET /oidc/logged-out``: where the provider sends the browser after RP-initiated logout
    (register this URL as ``POST_LOGOUT_REDIRECT_URI``); on to the page the logout asked for,
    kept under the logout's ``state`` (a local path only), else the portal's home."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    nxt = _oidc(runtime, idp).rp.logout_return(request.args)
    return RedirectAnswer(location=runtime.local_redirect(nxt, "/"))


def backchannel_logout(
    request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None
) -> Answer:
    """``POST /oidc/backchannel-logout``: the provider's logout_token ends every Qlik session of it.

    Answers 200 when done, 400 (``invalid_request``) for a token that is refused, without
    saying why beyond the check's name; the full reason goes to the log, never the token.
    """
    if request.method != "POST":
        return _method_not_allowed("POST")
    o = _oidc(runtime, idp)
    try:
        event = o.rp.validate_logout_token(request.form.get("logout_token", ""))
    except OidcError as exc:
        log.warning("OIDC back-channel logout refused: %s", exc)
        return JsonAnswer(
            status=400, data={"error": "invalid_request", "error_description": exc.code}
        )
    subject = event.subject
    if subject is None and event.sid:
        raw = runtime.store.get(f"qlikauth:oidc:sid:{_digest(event.issuer, event.sid)}")
        subject = raw.decode() if raw else None
    if subject is None:
        log.info("OIDC back-channel logout for a provider session this portal never saw")
        return JsonAnswer(status=200, data={})
    found = o.registry.take(event.issuer, subject, [event.sid] if event.sid else None)
    done = sign_out_found(None, runtime, found, reason="OIDC back-channel logout")
    # The sign-in is revoked and what a node could not end is pending: the logout is done.
    log.info(
        "OIDC back-channel logout: %d proxy session(s) ended%s",
        done.report.ended,
        "" if done.report.complete else ", the rest pending",
    )
    return JsonAnswer(status=200, data={})


def frontchannel_logout(
    request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None
) -> Answer:
    """``GET /oidc/frontchannel-logout?iss=...&sid=...`` (see the module docstring); 404
    when off."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    o = _oidc(runtime, idp)
    if not o.settings.frontchannel_logout:
        return PlainAnswer(
            status=404, body="Front-channel logout is not enabled (FRONTCHANNEL_LOGOUT).\n"
        )
    session = request.session if request.session is not None else {}
    record = session.get(OIDC_SESSION_KEY)
    key = SsoKey.from_dict(record.get("key")) if isinstance(record, dict) else None
    iss, sid = request.args.get("iss"), request.args.get("sid")
    if (
        isinstance(record, dict)
        and key is not None
        and key.session
        and sid == key.session
        and iss == key.issuer
    ):
        done = _end(runtime, request, record, "OIDC front-channel logout")
        log.info("OIDC front-channel logout ended this browser's SSO session")
        return PlainAnswer(body="Signed out.\n", cookies=done.cookies)
    log.info("OIDC front-channel logout: iss/sid are not this browser's SSO session; nothing ended")
    return PlainAnswer(body="Nothing to sign out.\n")
