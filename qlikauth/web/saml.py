"""The SAML endpoints as web flows: metadata, login, ACS, logout, single logout (framework-free).

Each is ``flow(request: WebRequest, runtime: QlikAuthRuntime) -> Answer`` like the other
flows in :mod:`qlikauth.web.flows`; the Django views and Flask routes only mount them.
The protocol is :class:`~qlikauth.bridges.saml.SamlServiceProvider`'s; here it meets the
portal: the verified assertion goes through the configured
:class:`~qlikauth.mapping.ClaimsMapping` to a :class:`~qlikauth.QlikUser`, which is signed
into Qlik (ticket or session mode, as ``MODE`` says); the IdP session, the user and the proxy
sessions made are recorded in the :class:`~qlikauth.bridges.registry.SsoSessionRegistry` so
single logout can end them on every QPS node, whichever portal instance made them.

The portal's session holds :data:`SAML_SESSION_KEY` (NameID, SessionIndex, the Qlik user):
:func:`saml_user` reads it, so a portal can use SAML as its own sign-in.

Settings: ``QLIKAUTH["SAML"]`` (:class:`~qlikauth.bridges.saml.SamlSettings`; one-time state
and the replay cache live in the runtime's ``STATE_STORE``, or in a ``STATE_STORE`` given inside
``SAML``) and ``QLIKAUTH["CLAIMS"]`` (:meth:`~qlikauth.mapping.ClaimsMapping.from_settings`).

Several IdPs: ``QLIKAUTH["SAML"] = {"entra": {...}, "adfs": {...}}``, each IdP its own service
provider (``/qlik/saml/<name>/...``; every flow takes ``idp=``), with its own ``CLAIMS`` and
``LABEL`` inside its settings (:func:`idp_sections`, :func:`saml_parts`). A LogoutRequest ends
only the sign-ins of the IdP that sent it: the registry is keyed by the IdP's issuer.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..bridges import MAX_REQUEST_BYTES
from ..bridges.registry import SsoKey, SsoSessionRegistry
from ..exceptions import (
    BridgeError,
    ConfigurationError,
    QlikAuthError,
    SamlError,
    StoreUnavailable,
)
from ..identity import QlikUser
from ..mapping import ClaimsMapping
from ..store import StateStore, open_store
from .flows import (
    NO_STORE,
    Answer,
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

__all__ = [
    "SAML_SESSION_KEY",
    "SamlParts",
    "DEFAULT_IDP",
    "idp_sections",
    "unknown_idp",
    "saml_idp_names",
    "saml_parts",
    "saml_user",
    "saml_metadata",
    "saml_login",
    "saml_acs",
    "saml_logout",
    "saml_slo",
    "saml_session_ended",
    "startup_warnings",
]

log = logging.getLogger("qlikauth.saml")

#: Where the SAML sign-in is kept in the portal's session (what SP-initiated logout needs).
SAML_SESSION_KEY = "_qlikauth_saml"
register_portal_key(SAML_SESSION_KEY)
_LOCK = threading.Lock()


@dataclass(frozen=True)
class SamlParts:
    """The SAML pieces of one identity provider: the SP, the claims mapping, the registry."""

    sp: Any  # SamlServiceProvider (imported lazily: the saml extra is optional)
    mapping: ClaimsMapping
    registry: SsoSessionRegistry
    store: StateStore
    #: The IdP's name in the portal's URLs (``/qlik/saml/<name>/...``); :data:`DEFAULT_IDP` for
    #: the single-IdP form of the settings.
    name: str = "default"
    #: What the chooser page shows for this IdP (``LABEL``).
    label: str = "SAML"


#: The name of the one IdP of the single-IdP settings form (``QLIKAUTH["SAML"] = {...keys}``).
DEFAULT_IDP = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_WEB_ONLY = ("STATE_STORE", "CLAIMS", "LABEL")


def idp_sections(
    value: Mapping[str, Any] | None, section: str, known: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """The IdPs of a ``SAML`` or ``OIDC`` setting: ``{name: settings}``.

    The single-IdP form (setting keys at the top) is ``{"default": settings}``; the several-IdP
    form is a mapping of names (lower-case letters, digits, ``-``, ``_``: they appear in URLs)
    to each IdP's settings.
    """
    if not value:
        return {}
    known_keys = {k.upper() for k in known}
    keys = [str(k) for k in value]
    nested = [k for k in keys if isinstance(value[k], Mapping) and k.upper() not in known_keys]
    if not nested:
        return {DEFAULT_IDP: dict(value)}
    if len(nested) != len(keys):
        flat = next(k for k in keys if k not in nested)
        raise ConfigurationError(
            f"QLIKAUTH {section}: {flat[:40]!r} sits beside the identity providers "
            f"{', '.join(nested[:5])}: with several providers every key is a provider's name "
            "and every value its settings; move it into each provider's settings.",
            key=section,
        )
    out = {}
    for name in keys:
        if not _NAME.fullmatch(name) or name == DEFAULT_IDP:
            raise ConfigurationError(
                f"QLIKAUTH {section}: {name[:40]!r} cannot name an identity provider: use "
                "lower-case letters, digits, '-' and '_' (it appears in the URLs, "
                f"/{section.lower()}/<name>/login), not 'default'.",
                key=section,
            )
        out[name] = dict(value[name])
    return out


def saml_idp_names(runtime: QlikAuthRuntime) -> list[str]:
    """The names of the configured SAML IdPs (``["default"]`` for the single-IdP form)."""
    from ..bridges.saml import SamlSettings

    return list(
        idp_sections(
            getattr(runtime.config, "saml", None), "SAML", (*SamlSettings._KEYS, *_WEB_ONLY)
        )
    )


def saml_parts(runtime: QlikAuthRuntime, idp: str | None = None) -> SamlParts:
    """The :class:`SamlParts` of IdP ``idp`` (None: the only one), built once from the ``SAML``
    and ``CLAIMS`` settings."""
    cache: dict[str, SamlParts] | None = getattr(runtime, "_qlikauth_saml_parts", None)
    if cache is not None and (idp or DEFAULT_IDP) in cache:
        return cache[idp or DEFAULT_IDP]
    with _LOCK:
        cache = getattr(runtime, "_qlikauth_saml_parts", None)
        if cache is None:
            cache = {}
            runtime._qlikauth_saml_parts = cache  # type: ignore[attr-defined]
        names = saml_idp_names(runtime)
        if not names:
            raise ConfigurationError(
                "QLIKAUTH SAML is not configured: give at least BASE_URL and IDP_METADATA.",
                key="SAML",
            )
        name = idp or (names[0] if len(names) == 1 else None)
        if name is None:
            raise _unknown(None, names)
        if name not in names:
            raise _unknown(name, names)
        if name not in cache:
            cache[name] = _build(runtime, name)
        return cache[name]


def unknown_idp(
    error: type[BridgeError], one: str, many: str, login: str, name: str | None, names: list[str]
) -> BridgeError:
    """The refusal of a sign-in that names no IdP while several are configured (400), or one
    this portal does not know (404), code ``idp``: the same for the SAML and OIDC endpoints."""
    known = ", ".join(names)
    if name is None:
        text = (
            f"this portal trusts several {many} ({known}): sign in through {login} "
            "or add ?idp=<name>."
        )
    else:
        text = f"{name[:40]!r} is not {one} of this portal (it knows {known})."
    refused = error(text, code="idp")
    refused.status = 400 if name is None else 404
    return refused


def _unknown(name: str | None, names: list[str]) -> BridgeError:
    return unknown_idp(
        SamlError,
        "a SAML identity provider",
        "SAML identity providers",
        "/qlik/saml/<name>/login",
        name,
        names,
    )


def _build(runtime: QlikAuthRuntime, name: str) -> SamlParts:
    from ..bridges.saml import SamlServiceProvider, SamlSettings

    sections = idp_sections(
        getattr(runtime.config, "saml", None), "SAML", (*SamlSettings._KEYS, *_WEB_ONLY)
    )
    settings = dict(sections[name])
    web: dict[str, Any] = {}
    for key in list(settings):
        if str(key).upper() in _WEB_ONLY:
            web[str(key).upper()] = settings.pop(key)
    store_setting = web.get("STATE_STORE")
    # The runtime's STATE_STORE (shared by every portal instance), unless SAML names its own.
    if store_setting is None:
        store, replay = runtime.store, runtime.replay_cache
    else:
        store = open_store(store_setting, namespace="qlikauth")
        replay = open_store(
            store_setting, namespace="qlikauth-replay", max_items=100_000, when_full="refuse"
        )
    try:
        sp_settings = SamlSettings.from_settings(settings)
    except ConfigurationError as exc:
        raise _named(exc, name) from None
    try:
        sp = SamlServiceProvider(
            sp_settings, store=store, replay_cache=replay, redirect_policy=_PortalOrHub(runtime)
        )
    except ConfigurationError as exc:
        raise _named(exc, name) from None
    # The IdP's own CLAIMS, else the portal's, else the NameID in USER_DIRECTORY.
    claims = (
        web.get("CLAIMS")
        or getattr(runtime.config, "claims", None)
        or {"USER_ID": "$subject", "USER_DIRECTORY": runtime.config.user_directory or "SAML"}
    )
    try:
        mapping = ClaimsMapping.from_settings(claims)
    except ConfigurationError as exc:
        raise _named(exc, name) from None
    label = str(web.get("LABEL") or ("SAML" if name == DEFAULT_IDP else name))
    return SamlParts(
        sp=sp, mapping=mapping, registry=registry(runtime), store=store, name=name, label=label
    )


def _named(exc: ConfigurationError, name: str) -> ConfigurationError:
    """``exc`` naming the IdP it is about (several IdPs: which one's settings are wrong)."""
    if name == DEFAULT_IDP:
        return exc
    text = str(exc).replace("QLIKAUTH SAML", f"QLIKAUTH SAML[{name!r}]", 1)
    return ConfigurationError(text, key=getattr(exc, "key", None))


def startup_warnings(runtime: QlikAuthRuntime) -> list[str]:
    """Build every configured SAML service provider now (settings, IdP metadata, keys) and return
    what their start-up checks warn about (IdP certificate expiry, login CSRF exposure).

    Raises :class:`ConfigurationError` for settings an SP cannot use and ImportError when the
    ``saml`` extra is missing (:func:`qlikauth.web.startup.check_sso` words both).
    """
    out = []
    for name in saml_idp_names(runtime):
        for warning in saml_parts(runtime, name).sp.startup_warnings():
            out.append(
                warning
                if name == DEFAULT_IDP
                else warning.replace("QLIKAUTH SAML", f"QLIKAUTH SAML[{name!r}]", 1)
            )
    return out


class _PortalOrHub:
    """RelayState may be a path on the portal or an allowed Qlik target (the hub policy)."""

    def __init__(self, runtime: QlikAuthRuntime) -> None:
        self.runtime = runtime

    def check(self, target: str) -> str:
        local = self.runtime.local_redirect(target, "")
        if local and local == target:
            return local
        return str(self.runtime.hub_policy.check(target))


def saml_user(session: Any, runtime: QlikAuthRuntime | None = None) -> QlikUser | None:
    """The Qlik user a SAML sign-in put into the portal's ``session``, or None.

    With ``runtime``, a sign-in that has ended (single logout received by any portal instance,
    a sign-out elsewhere, the IdP's ``SessionNotOnOrAfter``) is forgotten first
    (:func:`~qlikauth.web.lifecycle.current_sign_in`: one or two store reads).
    """
    if session is None:
        return None
    if runtime is not None and saml_session_ended(session, runtime):
        return None
    data = session.get(SAML_SESSION_KEY)
    if not isinstance(data, dict) or not isinstance(data.get("user"), dict):
        return None
    try:
        return QlikUser.from_qps(data["user"])
    except QlikAuthError:
        return None


def _key(data: Any) -> SsoKey | None:
    if not isinstance(data, dict):
        return None
    return SsoKey.from_dict(
        {
            "issuer": data.get("issuer"),
            "subject": data.get("name_id"),
            "session": data.get("session_index"),
        }
    )


def saml_session_ended(session: Any, runtime: QlikAuthRuntime) -> bool:
    """True (and the portal's SAML sign-in forgotten) when this browser's SAML sign-in has ended.

    The IdP's LogoutRequest may reach another portal instance, or come over a channel without
    this browser's cookies: the sign-in is then ended in the shared store, and this check drops
    it where the portal asks who is signed in.
    """
    if session is None or SAML_SESSION_KEY not in session:
        return False
    if current_sign_in(session, runtime) is not None:
        return False
    session.pop(SAML_SESSION_KEY, None)
    return True


def _method_not_allowed(*allowed: str) -> PlainAnswer:
    return PlainAnswer(
        status=405,
        body="Method not allowed.\n",
        headers=NO_STORE + (("Allow", ", ".join(allowed)),),
    )


# -- the endpoints -------------------------------------------------------------------------
def saml_metadata(
    request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None
) -> Answer:
    """``GET .../saml[/<idp>]/metadata``: the SP's metadata (signed when the SP has a key)."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    return PlainAnswer(
        body=saml_parts(runtime, idp).sp.metadata().decode(),
        content_type="application/samlmetadata+xml; charset=utf-8",
    )


def saml_login(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``GET .../saml[/<idp>]/login[?next=...][&idp=name]``: send the browser to the IdP with an
    AuthnRequest.

    ``next`` (a portal path or an allowed Qlik target) is vetted now; the request is bound
    to this browser by the ``qlikauth-saml`` cookie (set when the browser has none). With
    several IdPs, the URL or ``?idp=`` names the one to use.
    """
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed("GET")
    parts = saml_parts(runtime, idp or request.args.get("idp") or None)
    nxt = request.args.get("next") or None
    refused = refuse_cross_site_start(request, runtime, nxt, {"next": nxt or ""})
    if refused is not None:
        if nxt:
            _PortalOrHub(runtime).check(nxt)  # a bad next is refused first, with its own error
        return refused
    token = request.cookies.get(parts.sp.settings.browser_cookie)
    start = parts.sp.login(nxt, token)
    cookies = (start.cookie,) if start.cookie is not None else ()
    return RedirectAnswer(location=start.redirect.location, cookies=cookies)


def saml_acs(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``POST .../saml/acs``: verify the IdP's response, map the user, sign them into Qlik.

    Nothing reaches QPS unless the response and the claims passed every check. Ticket mode
    answers a redirect to the hub (or the allowed Qlik target in RelayState) with a ticket;
    session mode makes the proxy session, sets its cookie and goes to RelayState (or the
    hub). The portal's session then holds the SAML sign-in (:func:`saml_user`).
    """
    if request.method != "POST":
        return _method_not_allowed("POST")
    parts = saml_parts(runtime, idp)
    token = request.cookies.get(parts.sp.settings.browser_cookie)
    assertion = parts.sp.acs(request.form, token)
    user = parts.mapping.map(assertion.claims, assertion.name_id).user
    target = assertion.relay_state
    portal_path = target is not None and target.startswith("/")
    login = VerifiedLogin(
        user=user,
        via="saml",
        sso=SsoKey(assertion.issuer, assertion.name_id, assertion.session_index),
        expires=assertion.session_not_on_or_after,
    )
    # Back to a portal page: no ticket now (``/qlik/login`` makes one when Qlik is opened).
    signed = sign_in(
        request, runtime, login, open_qlik=not portal_path, target=None if portal_path else target
    )
    if request.session is not None:
        info = assertion.logout_info()
        info["user"] = user.to_qps()
        info["idp"] = parts.name  # which SP ends it (SP-initiated logout)
        request.session[SAML_SESSION_KEY] = info
    return RedirectAnswer(
        location=str(target if portal_path else signed.location), cookies=signed.cookies
    )


def saml_logout(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``POST .../saml/logout``: end the Qlik sessions and the portal's SAML sign-in, then
    send a LogoutRequest to the IdP (SP-initiated single logout).

    Same-origin (or framework-CSRF-checked) POSTs only. Local sessions end first: the IdP
    may never answer.
    """
    if request.method != "POST":
        return _method_not_allowed("POST")
    if not request.csrf_verified and not same_origin(request):
        return PlainAnswer(status=403, body="Forbidden: sign out from the portal's own page.\n")
    data = request.session.get(SAML_SESSION_KEY) if request.session is not None else None
    # The IdP this browser signed in with (whatever logout URL was posted to).
    signed_with = data.get("idp") if isinstance(data, dict) else None
    destination = runtime.local_redirect(request.form.get("next"), "/")
    key = _key(data)
    done = sign_out_sso(request, runtime, key, reason="SAML logout")
    if key is None:
        return RedirectAnswer(location=destination, cookies=done.cookies)
    try:
        parts = saml_parts(runtime, signed_with if isinstance(signed_with, str) else idp)
    except QlikAuthError as exc:
        # signed in with an IdP the settings no longer name: signed out here, nowhere to tell
        log.warning("SAML logout: signed out here, the IdP is not told (%s)", exc)
        return RedirectAnswer(location=destination, cookies=done.cookies)
    token = request.cookies.get(parts.sp.settings.browser_cookie)
    try:
        redirect = parts.sp.logout(data, destination, token)
    except ConfigurationError:
        return RedirectAnswer(
            location=destination, cookies=done.cookies
        )  # the IdP has no SLO endpoint
    except StoreUnavailable as exc:
        # its answer could not be matched to this request later: signed out here only
        log.warning("SAML logout: signed out here, the IdP is not told (%s)", exc)
        return RedirectAnswer(location=destination, cookies=done.cookies)
    return RedirectAnswer(location=redirect.location, cookies=done.cookies)


def saml_slo(request: WebRequest, runtime: QlikAuthRuntime, *, idp: str | None = None) -> Answer:
    """``GET|POST .../saml/slo``: the IdP's LogoutRequest (IdP-initiated single logout) or its
    LogoutResponse to ours.

    A verified LogoutRequest ends the proxy sessions of the IdP sessions it names on every
    QPS node (made by any portal instance), marks them ended for the portal instances
    holding those browsers' sessions, forgets this browser's SAML sign-in if it is the
    one named, and answers the IdP with a LogoutResponse.
    """
    from ..bridges.saml import IdpLogoutRequest

    if request.method not in ("GET", "POST"):
        return _method_not_allowed("GET", "POST")
    parts = saml_parts(runtime, idp)
    binding = "redirect" if request.method == "GET" else "post"
    params = request.args if binding == "redirect" else request.form
    raw_query = None
    if binding == "redirect":
        raw_query = (
            request.query_string
            if request.query_string is not None
            else (request.full_path or "").partition("?")[2]
        )
    token = request.cookies.get(parts.sp.settings.browser_cookie)
    result = parts.sp.handle_slo(binding, params, raw_query, token)
    if not isinstance(result, IdpLogoutRequest):
        return RedirectAnswer(location=result.location)
    found = parts.registry.take(result.issuer, result.name_id, result.session_indexes or None)
    session = request.session
    key = _key(session.get(SAML_SESSION_KEY) if session is not None else None)
    here = (
        key is not None
        and key.issuer == result.issuer
        and key.subject == result.name_id
        and (not result.session_indexes or key.session in result.session_indexes)
    )
    # The browser that carried the request (if it is the one named) is signed out here too.
    done = sign_out_found(request if here else None, runtime, found, reason="SAML single logout")
    return RedirectAnswer(location=result.response.location, cookies=done.cookies)


# The SAML endpoints that take a body: the integrations bound it before reading (a 32 MiB POST
# to the ACS is refused unread).
for _flow in (saml_acs, saml_slo):
    _flow.max_body = MAX_REQUEST_BYTES  # type: ignore[attr-defined]
