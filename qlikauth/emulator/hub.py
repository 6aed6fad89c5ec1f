"""The emulated proxy's browser side (port 443): ticket redemption, session cookies, the hub, header
auth.

For a virtual proxy with prefix P every path under ``/P/`` belongs to it (the
default virtual proxy takes the rest). A request is authenticated as Qlik's proxy
does it: a ``qlikTicket`` parameter is redeemed into a session cookie, a session
cookie is looked up, a header virtual proxy reads its header on every request;
without any of them a browser is sent to the virtual proxy's authentication module.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import html
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from ..exceptions import IdentityError
from ..identity import QlikUser, security_header_value
from ._web import Request, Response, WebSocket
from .proxy import VirtualProxy
from .state import EmulatorState, HeaderRecord, SessionRecord, TooManySessions, mask

__all__ = ["Hub"]

log = logging.getLogger("qlikauth.emulator")

_TICKET_PARAMS = ("qlikticket", "x-qlik-ticket")
_HOST = re.compile(r"(?:[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_EXPIRED = "Thu, 01 Jan 1970 00:00:00 GMT"


#: The JSON-RPC notice the proxy sends before it closes the websocket, by why the proxy session
#: ended: method and ``params.message`` as Qlik's help shows them
#: (ProxyServiceAPI-Msgs-Proxy-Clients-*).
_END_NOTICES = {
    "timeout": ("OnSessionTimedOut", "Session timed out due to inactivity"),
    "logout": ("OnSessionLoggedOut", "User logged out manually"),
    "closed": ("OnSessionClosed", "Session closed by server"),
}
_LIFECYCLE_TICK = 1.0
#: A bound on remembered JWT-token sessions (the oldest is forgotten first).
_MAX_JWT_SESSIONS = 100_000

_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _qlik_quote(value: str) -> str:
    """Percent-encode as Qlik's proxy writes its redirect: every reserved character,
    lower-case hex."""
    return _ESCAPE.sub(lambda m: m.group(0).lower(), quote(value, safe=""))


def _timestamp() -> str:
    """Now in UTC as Qlik's notices write it: ``2014-01-10T08:55:17.3725148Z`` (7 fraction
    digits)."""
    now = datetime.datetime.now(datetime.UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond:06d}0Z"


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f"</title></head><body>{body}</body></html>"
    )


class Hub:
    """Serves the browser port of one emulated node."""

    def __init__(
        self,
        state: EmulatorState,
        proxies: Callable[[], dict[str, VirtualProxy]],
        rest_uri_for: Callable[[str], str],
        default_host: Callable[[], str],
        own_hosts: Callable[[], set[str]] | None = None,
    ) -> None:
        self.state = state
        self.proxies = proxies
        self.rest_uri_for = rest_uri_for
        self.default_host = default_host
        self.own_hosts = own_hosts or (lambda: {"localhost", "127.0.0.1"})
        #: JWT virtual proxies: the session a token made (by prefix and the token's digest).
        self._jwt_sessions: dict[str, str] = {}

    # -- helpers --------------------------------------------------------------------------
    def _proxy_for(self, path: str) -> tuple[VirtualProxy, str]:
        """The virtual proxy a path belongs to and the rest of the path (starting with '/')."""
        proxies = self.proxies()
        first, sep, rest = path[1:].partition("/")
        vp = proxies.get(unquote(first).lower()) if first else None
        if vp is not None and vp.prefix:
            return vp, "/" + rest if sep else "/"
        return proxies[""], path

    def _host(self, req: Request) -> str | None:
        host = req.header("Host")
        if host is None:
            return self.default_host()
        return host if _HOST.match(host) else None

    @staticmethod
    def _cookie_values(req: Request, name: str) -> list[str]:
        out = []
        for header in req.header_values("Cookie"):
            for part in header.split(";"):
                k, eq, v = part.strip().partition("=")
                if eq and k == name:
                    out.append(v.strip().strip('"'))
        return out

    @staticmethod
    def _set_cookie(vp: VirtualProxy, value: str, *, clear: bool = False) -> tuple[str, str]:
        parts = [f"{vp.session_cookie_name}={value}", "Path=/"]
        if clear:
            parts += [f"Expires={_EXPIRED}", "Max-Age=0"]
        parts.append("HttpOnly")
        if vp.secure:
            parts.append("Secure")
        if vp.samesite:
            parts.append(f"SameSite={vp.samesite}")
        return ("Set-Cookie", "; ".join(parts))

    def _session_from_cookie(self, req: Request, vp: VirtualProxy) -> SessionRecord | None:
        for value in self._cookie_values(req, vp.session_cookie_name or ""):
            rec = self.state.session(value, vp.prefix, touch=True)
            if rec is not None:
                return rec
        return None

    # -- entry ----------------------------------------------------------------------------
    def allowed(self, vp: VirtualProxy, host: str) -> bool:
        """Whether ``host`` (a Host or Origin authority, port allowed) is on ``vp``'s host allow
        list."""
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if host.startswith("[") and "]:" in host:
            name = host.rsplit(":", 1)[0]
        return name.lower() in (set(vp.host_allow_list) or self.own_hosts())

    def __call__(self, req: Request) -> Response:
        host = self._host(req)
        if host is None:
            return Response.text(400, "Invalid Host header.\n", close=True)
        vp, rest = self._proxy_for(req.path)
        if not self.allowed(vp, host):
            # Never build a TargetUri (or anything else) from a host the virtual proxy
            # does not list.
            resp = Response.text(
                403,
                "Forbidden: the Host header names a host that is not on "
                "this virtual proxy's host allow list.\n",
                close=True,
            )
        else:
            resp = self._serve(req, vp, rest, host)
        if vp.additional_response_headers and resp.websocket is None:
            resp.headers.extend(vp.additional_response_headers)
        log.debug("hub %s %s%s -> %s", req.method, vp.path_prefix, rest.split("?")[0], resp.status)
        return resp

    def _serve(self, req: Request, vp: VirtualProxy, rest: str, host: str) -> Response:
        if vp.uses_internal_module and rest.startswith(
            ("/internal_windows_authentication/", "/internal_forms_authentication/")
        ):
            return self._internal_module(req, vp, rest)
        personal = rest.rstrip("/") == "/qps/user"
        csrf = rest.rstrip("/") == "/qps/csrftoken"
        set_cookie: list[tuple[str, str]] = []
        # Who is this? The virtual proxy's authentication method decides (see AUTHENTICATE).
        found = self.AUTHENTICATE[vp.method](self, req, vp, host, personal, set_cookie)
        if isinstance(found, Response):
            return found
        session = found
        if personal:
            return self._personal(req, vp, session, host, set_cookie)
        if csrf and session is not None:
            # Qlik since November 2024: the token an engine websocket of this session must carry.
            return Response(
                204,
                headers=[
                    ("qlik-csrf-token", session.csrf_token),
                    ("Cache-Control", "no-store"),
                    *set_cookie,
                ],
                content_type=None,
            )
        if session is None:
            return self._no_session(req, vp, host)
        if self._is_app_socket(rest) and req.websocket:
            return self._websocket(req, vp, session, rest, set_cookie)
        return self._hub(req, vp, session, rest, set_cookie)

    # -- authentication methods -----------------------------------------------------------
    # Each takes the request and returns its proxy session (None: not signed in) or the answer to
    # give instead; cookies to set go into ``set_cookie``. A new kind of virtual proxy (JWT, ...)
    # adds its name to proxy.METHODS and one function to AUTHENTICATE.
    def _by_header(
        self,
        req: Request,
        vp: VirtualProxy,
        host: str,
        personal: bool,
        set_cookie: list[tuple[str, str]],
    ) -> SessionRecord | Response | None:
        values = tuple(req.header_values(vp.header_name or ""))
        user: QlikUser | None = None
        if len(values) == 1:
            try:
                user = vp.user_from_header(values[0])
            except IdentityError:
                user = None
        self.state.record_header(
            HeaderRecord(
                vp.prefix, req.method, req.path, user.qualified_name if user else None, values, user
            )
        )
        if user is None:
            # Qlik: no user in the header is no authentication at all, so the browser goes to
            # the virtual proxy's login (its module, else the internal Windows/form login):
            # the "fell back to Windows authentication" of header proxies in the field.
            log.info(
                "hub: %s header %s on %r: to the login",
                vp.header_name,
                "missing" if not values else "names no valid user",
                vp.prefix,
            )
            return None
        session = self._session_from_cookie(req, vp)
        if session is None or not session.user.same_user(user) or session.user != user:
            # Like Qlik: the header decides who this is; a cookie of someone else is ignored.
            try:
                session, _ = self.state.add_session(user, vp.prefix, "header")
            except TooManySessions as exc:
                return self._deny(req, 403, "Too many sessions", str(exc))
            set_cookie.append(self._set_cookie(vp, session.session_id))
        return session

    def _by_ticket_or_cookie(
        self,
        req: Request,
        vp: VirtualProxy,
        host: str,
        personal: bool,
        set_cookie: list[tuple[str, str]],
    ) -> SessionRecord | Response | None:
        ticket = self._ticket_param(req)
        session = self._session_from_cookie(req, vp)
        if session is None and not personal and req.method != "GET":
            return self._deny(
                req, 403, "Forbidden", 'The initial authentication request must be a "GET" request.'
            )
        if ticket is not None:
            redeemed = self._redeem(req, vp, ticket, host, signed_in=session is not None)
            if redeemed is not None:
                return redeemed
            # A spent ticket left in the URL (a reload) with a live session: the session holds.
        return session

    def _by_jwt(
        self,
        req: Request,
        vp: VirtualProxy,
        host: str,
        personal: bool,
        set_cookie: list[tuple[str, str]],
    ) -> SessionRecord | Response | None:
        """A JWT virtual proxy: ``Authorization: Bearer`` verified with the configured certificate.

        A valid token makes a session (the cookie is set); the same token again finds that
        session while it lives (a client that sends its token on every request keeps one
        session, as on Qlik); without a token the session cookie is used. A websocket that
        carries ``Authorization`` is refused with the CSWSH 403 Qlik gives non-browser clients
        that keep sending it (Qlik Community td-p/2539417).
        """
        auth = req.header("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return self._session_from_cookie(req, vp)
        if req.websocket and vp.websocket_csrf:
            return Response.text(
                403, "Cross-Site Websocket Hijacking attack prevention check failed\n"
            )
        from ..exceptions import JwtError
        from ..jose import verify_jwt
        from ..jwtkeys import RSA_ALGORITHMS, public_key_from_pem

        token = auth[7:].strip()
        try:
            cert_key = public_key_from_pem(vp.jwt_certificate or "")
            _, claims = verify_jwt(token, cert_key, RSA_ALGORITHMS)
        except JwtError as exc:
            return self._deny(req, 401, "Invalid JWT", f"The token was refused: {exc}")
        now = time.time()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp < now - 5:
            return self._deny(req, 401, "Invalid JWT", "The token has expired (exp).")
        if isinstance(nbf, (int, float)) and not isinstance(nbf, bool) and nbf > now + 5:
            return self._deny(req, 401, "Invalid JWT", "The token is not valid yet (nbf).")
        key = vp.prefix + "\0" + hashlib.sha256(token.encode()).hexdigest()
        known = self._jwt_sessions.get(key)
        if known is not None:
            rec = self.state.session(known, vp.prefix, touch=True)
            if rec is not None:
                return rec
        uid, udir = (
            claims.get(vp.jwt_user_id_attribute),
            claims.get(vp.jwt_user_directory_attribute),
        )
        attrs: list[tuple[str, str]] = []
        for claim, attribute in vp.jwt_attribute_map:
            value = claims.get(claim)
            for v in value if isinstance(value, list) else [value] if value is not None else []:
                attrs.append((attribute, str(v)))
        try:
            user = QlikUser(udir, uid, attrs)  # type: ignore[arg-type]  # QlikUser checks the types
        except IdentityError as exc:
            return self._deny(
                req,
                401,
                "Invalid JWT",
                f"The token names no valid user in {vp.jwt_user_id_attribute!r} / "
                f"{vp.jwt_user_directory_attribute!r}: {exc}",
            )
        try:
            session, _ = self.state.add_session(user, vp.prefix, "jwt")
        except TooManySessions as exc:
            return self._deny(req, 403, "Too many sessions", str(exc))
        if len(self._jwt_sessions) >= _MAX_JWT_SESSIONS:
            self._jwt_sessions.pop(next(iter(self._jwt_sessions)))
        self._jwt_sessions[key] = session.session_id
        set_cookie.append(self._set_cookie(vp, session.session_id))
        return session

    AUTHENTICATE: dict[str, Callable[..., SessionRecord | Response | None]] = {
        "jwt": _by_jwt,
        "ticket": _by_ticket_or_cookie,
        "session": _by_ticket_or_cookie,
        "header-static": _by_header,
        "header-dynamic": _by_header,
    }

    def _login_location(
        self, req: Request, vp: VirtualProxy, host: str, target_url: str
    ) -> str | None:
        """Where Qlik sends a browser to sign in for ``target_url``; None when nowhere.

        The external module (``module_uri``) gets ``proxyRestUri`` and ``targetId``; without one a
        ticket or session virtual proxy uses the internal module on the same port: Windows
        authentication when the ``User-Agent`` contains the *Windows authentication pattern*,
        else the form login, each with ``targetId``.
        """
        if vp.module_uri:
            target_id = self.state.add_target(vp.prefix, target_url)
            sep = "&" if "?" in vp.module_uri else "?"
            # As Qlik writes it: proxyRestUri first, then targetId, lower-case percent escapes.
            return (
                f"{vp.module_uri}{sep}proxyRestUri={_qlik_quote(self.rest_uri_for(vp.prefix))}"
                f"&targetId={_qlik_quote(target_id)}"
            )
        if vp.uses_internal_module:
            target_id = self.state.add_target(vp.prefix, target_url)
            kind = "windows" if vp.windows_login_for(req.header("User-Agent")) else "forms"
            return (
                f"https://{host}{vp.path_prefix}/internal_{kind}_authentication/"
                f"?targetId={target_id}"
            )
        return None

    def _no_session(
        self, req: Request, vp: VirtualProxy, host: str, problem: str | None = None
    ) -> Response:
        """Qlik's answer to a request without a valid session: off to the authentication module."""
        if req.websocket:
            return self._deny(
                req,
                401,
                "Not signed in",
                "A websocket needs a proxy session (or, on a header virtual proxy, the header).",
            )
        location = self._login_location(
            req, vp, host, f"https://{host}{self._without_ticket(req.target)}"
        )
        if location is not None:
            return Response.html(
                302,
                _page("Redirect", f'<a href="{html.escape(location)}">Sign in</a>'),
                headers=[("Location", location), ("Cache-Control", "no-store")],
            )
        return self._deny(
            req,
            401,
            "Not signed in",
            problem
            or (
                "You are not signed in: this virtual proxy has no authentication module; "
                "a portal must send you here with a ticket or set the session cookie."
            ),
        )

    def _internal_module(self, req: Request, vp: VirtualProxy, rest: str) -> Response:
        """Qlik's internal authentication module, as far as a browser that has not signed in sees
        it.

        Windows authentication answers 401 with ``WWW-Authenticate: Negotiate`` and ``NTLM``; the
        form login shows its form (``username``, ``pwd``). The emulator has no Windows accounts:
        it performs no NTLM/Kerberos and accepts no form credentials.
        """
        headers = [("Cache-Control", "no-store")]
        if rest.startswith("/internal_windows_authentication"):
            return self._deny(
                req,
                401,
                "Windows authentication",
                "Sign in with your Windows account (Negotiate/NTLM). The qlikauth emulator has no "
                "Windows accounts: sign in through an authentication module and a ticket instead.",
                headers=[("WWW-Authenticate", "Negotiate"), ("WWW-Authenticate", "NTLM"), *headers],
            )
        action = html.escape(req.target, quote=True)
        form = (
            f'<form method="post" action="{action}"><label>User name <input name="username" '
            'autocomplete="username"></label> <label>Password <input type="password" name="pwd" '
            'autocomplete="current-password"></label> <button type="submit">Log in</button></form>'
        )
        if req.method == "POST":
            message = (
                '<p id="message">Invalid user name or password: the qlikauth emulator has no '
                "Windows "
                "accounts; sign in through an authentication module and a ticket instead.</p>"
            )
            return Response.html(
                401, _page("Log in", f"<h1>Log in</h1>{message}{form}"), headers=headers
            )
        return Response.html(200, _page("Log in", f"<h1>Log in</h1>{form}"), headers=headers)

    @staticmethod
    def _target_uri_param(req: Request) -> str | None:
        for pair in req.query.split("&"):
            name, eq, value = pair.partition("=")
            if eq and unquote_plus(name).lower() == "targeturi":
                return unquote_plus(value)
        return None

    def _valid_target_uri(self, vp: VirtualProxy, target: str) -> bool:
        """Qlik's rule for the Personal API's ``targetUri``: it must name the node or a
        listed host."""
        try:
            parts = urlsplit(target)
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            return False
        if (
            parts.scheme not in ("https", "http")
            or not parts.hostname
            or any(c in target for c in "\r\n")
        ):
            return False
        netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
        return self.allowed(vp, netloc)

    @staticmethod
    def _ticket_param(req: Request) -> str | None:
        for pair in req.query.split("&"):
            name, eq, value = pair.partition("=")
            if unquote_plus(name).lower() in _TICKET_PARAMS:
                return unquote_plus(value)
        return None

    @staticmethod
    def _without_ticket(target: str) -> str:
        path, q, query = target.partition("?")
        if not q:
            return path
        keep = [
            p
            for p in query.split("&")
            if p and unquote_plus(p.partition("=")[0]).lower() not in _TICKET_PARAMS
        ]
        return path + ("?" + "&".join(keep) if keep else "")

    @staticmethod
    def _is_app_socket(rest: str) -> bool:
        parts = rest.split("/")
        return len(parts) >= 3 and parts[1] == "app" and bool(parts[2])

    def _deny(
        self,
        req: Request,
        status: int,
        title: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        if "application/json" in (req.header("Accept") or ""):
            return Response.json(
                status, {"error": title, "message": message}, headers=headers or []
            )
        return Response.html(
            status,
            _page(
                title,
                f'<h1>{html.escape(title)}</h1><p id="message">'
                f"{html.escape(message, quote=False)}</p>",
            ),
            headers=headers or [],
        )

    # -- ticket ---------------------------------------------------------------------------
    def _redeem(
        self, req: Request, vp: VirtualProxy, ticket: str, host: str, *, signed_in: bool = False
    ) -> Response | None:
        """The answer to a request carrying a ticket; None when it is spent but a session holds."""
        rec = self.state.take_ticket(ticket, vp.prefix)
        if rec is None and signed_in:
            return None
        if rec is None:
            # Qlik: an invalid ticket is no authentication at all: back to the
            # authentication module.
            log.info(
                "hub: ticket %s refused on %r (invalid, used, expired or another node/proxy)",
                mask(ticket),
                vp.prefix,
            )
            return self._no_session(
                req,
                vp,
                host,
                problem=(
                    "The ticket is invalid or expired (used, older than its minute, or issued by "
                    "another "
                    "node or virtual proxy), and this virtual proxy has no authentication module."
                ),
            )
        try:
            session, _ = self.state.add_session(rec.user, vp.prefix, "ticket")
        except TooManySessions as exc:
            return self._deny(req, 403, "Too many sessions", str(exc))
        log.info(
            "hub: ticket %s redeemed: session %s for %s",
            mask(ticket),
            mask(session.session_id),
            rec.user.qualified_name,
        )
        cookie = self._set_cookie(vp, session.session_id)
        rest = self._proxy_for(req.path)[1]
        if self._is_app_socket(rest) and req.websocket:
            # Engine websocket URLs may carry the ticket themselves (QlikTicket=...); the session is
            # new, so no CSRF token can exist for it yet (the Origin is still checked).
            return self._websocket(req, vp, session, rest, [cookie], fresh=True)
        # Qlik answers the resource itself, with the session cookie (the ticket stays in the URL).
        return self._hub(req, vp, session, rest, [cookie])

    # -- pages ----------------------------------------------------------------------------
    def _personal(
        self,
        req: Request,
        vp: VirtualProxy,
        session: SessionRecord | None,
        host: str,
        set_cookie: list[tuple[str, str]],
    ) -> Response:
        if req.method in ("GET", "HEAD"):
            if session is None:
                answer = {"session": "inactive"}
                target = self._target_uri_param(req)
                if target is not None and self._valid_target_uri(vp, target):
                    # Qlik: with a valid targetUri the answer carries the URI to log in with.
                    login = self._login_location(req, vp, host, target)
                    if login is not None:
                        answer["loginUri"] = login
                return Response.json(200, answer, headers=[("Cache-Control", "no-store")])
            u = session.user
            return Response.json(
                200,
                {
                    "userDirectory": u.user_directory,
                    "userId": u.user_id,
                    "userName": u.user_id,
                    "logoutUri": f"https://{host}{vp.path_prefix}/qps/user",
                },
                headers=[("Cache-Control", "no-store"), *set_cookie],
            )
        if req.method == "DELETE":
            if session is not None:
                self.state.end_session(session.session_id)
                log.info("hub: session %s logged out", mask(session.session_id))
            return Response.json(
                200,
                {"session": "inactive"},
                headers=[self._set_cookie(vp, "", clear=True), ("Cache-Control", "no-store")],
            )
        return Response.text(405, "Use GET or DELETE.\n", headers=[("Allow", "GET, DELETE")])

    def _hub(
        self,
        req: Request,
        vp: VirtualProxy,
        session: SessionRecord,
        rest: str,
        set_cookie: list[tuple[str, str]],
    ) -> Response:
        u = session.user
        security = security_header_value(u.attributes)
        headers = [("Cache-Control", "no-store"), *set_cookie]
        if "application/json" in (req.header("Accept") or ""):
            return Response.json(
                200,
                {
                    "userDirectory": u.user_directory,
                    "userId": u.user_id,
                    "userName": u.user_id,
                    "attributes": u.qps_attributes(),
                    "security": security,
                    "virtualProxy": vp.prefix,
                    "path": rest.split("?")[0],
                    "method": vp.method,
                },
                headers=headers,
            )
        attrs = "".join(f"<li>{html.escape(n)}={html.escape(v)}</li>" for n, v in u.attributes)
        body = (
            "<h1>Qlik Sense hub (qlikauth emulator)</h1>"
            f'<p id="signed-in">Signed in as {html.escape(u.qualified_name)}</p>'
            f'<dl><dt>User</dt><dd id="user">{html.escape(u.qualified_name)}</dd>'
            "<dt>Virtual proxy</dt><dd "
            f'id="virtual-proxy">{html.escape(vp.prefix or "(default)")}</dd>'
            f'<dt>Path</dt><dd id="path">{html.escape(rest.split("?")[0])}</dd></dl>'
            f'<h2>Attributes</h2><ul id="attributes">{attrs}</ul>'
            f'<h2>X-Qlik-Security</h2><pre id="security">{html.escape(security)}</pre>'
        )
        return Response.html(200, _page("Qlik Sense hub", body), headers=headers)

    def _websocket(
        self,
        req: Request,
        vp: VirtualProxy,
        session: SessionRecord,
        rest: str,
        set_cookie: list[tuple[str, str]],
        *,
        fresh: bool = False,
    ) -> Response:
        if vp.websocket_csrf:
            # Qlik since November 2024: an allowed Origin is required (a client without one is
            # refused too) and its scheme matters: the hub is https, so an http:// origin fails.
            origin = req.header("Origin") or ""
            scheme, sep, authority = origin.partition("://")
            origin_ok = (
                sep == "://"
                and scheme.lower() == "https"
                and self.allowed(vp, authority.split("/", 1)[0])
            )
            token_ok = fresh or any(
                unquote_plus(v) == session.csrf_token
                for k, _, v in (p.partition("=") for p in req.query.split("&"))
                if unquote_plus(k).lower() == "qlik-csrf-token"
            )
            if not origin_ok or not token_ok:
                log.info(
                    "hub: websocket refused on %r (%s)",
                    vp.prefix,
                    "no or wrong qlik-csrf-token"
                    if origin_ok
                    else "Origin missing, not https or not on the host allow list",
                )
                return Response.text(
                    403, "Cross-Site Websocket Hijacking attack prevention check failed\n"
                )
        app_id = unquote(rest.split("/")[2])
        u = session.user
        greeting: dict[str, Any] = {
            "user": u.qualified_name,
            "attributes": u.qps_attributes(),
            "app": app_id,
        }

        async def run(ws: WebSocket) -> None:
            # Qlik tears the engine connection down when the proxy session ends, after a
            # JSON-RPC notice saying why.
            def on_end() -> None:
                method, message = _END_NOTICES.get(session.end_reason, _END_NOTICES["closed"])
                params = {"severity": "fatal", "timestamp": _timestamp(), "message": message}

                async def notice() -> None:
                    await ws.send_json({"jsonrpc": "2.0", "method": method, "params": params})

                ws.close_soon(1000, "session ended", before=notice)

            session.on_end.append(on_end)
            try:
                await ws.send_json(greeting)
                while True:
                    try:
                        msg = await asyncio.wait_for(ws.receive(), _LIFECYCLE_TICK)
                    except TimeoutError:
                        # Idle: let an expired session end (and its notice go out) while open.
                        self.state.session(session.session_id)
                        continue
                    if msg is None:
                        return
                    # Engine traffic is activity: it keeps the proxy session alive.
                    self.state.session(session.session_id, touch=True)
                    await ws.send(msg)
            finally:
                if on_end in session.on_end:
                    session.on_end.remove(on_end)

        return Response(101, b"", headers=set_cookie, content_type=None, websocket=run)
