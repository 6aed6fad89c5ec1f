"""The emulated proxy's browser side (port 443): ticket redemption, session cookies, the hub, header auth.

For a virtual proxy with prefix P every path under ``/P/`` belongs to it (the
default virtual proxy takes the rest). A request is authenticated as Qlik's proxy
does it: a ``qlikTicket`` parameter is redeemed into a session cookie, a session
cookie is looked up, a header virtual proxy reads its header on every request;
without any of them a browser is sent to the virtual proxy's authentication module.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

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


_ESCAPE = re.compile(r"%[0-9A-F]{2}")


def _qlik_quote(value: str) -> str:
    """Percent-encode as Qlik's proxy writes its redirect: every reserved character, lower-case hex."""
    return _ESCAPE.sub(lambda m: m.group(0).lower(), quote(value, safe=""))


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title></head><body>{body}</body></html>")


class Hub:
    """Serves the browser port of one emulated node."""

    def __init__(self, state: EmulatorState, proxies: Callable[[], dict[str, VirtualProxy]],
                 rest_uri_for: Callable[[str], str], default_host: Callable[[], str]) -> None:
        self.state = state
        self.proxies = proxies
        self.rest_uri_for = rest_uri_for
        self.default_host = default_host

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
    def __call__(self, req: Request) -> Response:
        host = self._host(req)
        if host is None:
            return Response.text(400, "Invalid Host header.\n", close=True)
        vp, rest = self._proxy_for(req.path)
        resp = self._serve(req, vp, rest, host)
        log.debug("hub %s %s%s -> %s", req.method, vp.path_prefix, rest.split("?")[0], resp.status)
        return resp

    def _serve(self, req: Request, vp: VirtualProxy, rest: str, host: str) -> Response:
        personal = rest.rstrip("/") == "/qps/user"
        set_cookie: list[tuple[str, str]] = []
        if vp.is_header:
            values = tuple(req.header_values(vp.header_name or ""))
            user: QlikUser | None = None
            if len(values) == 1:
                try:
                    user = vp.user_from_header(values[0])
                except IdentityError:
                    user = None
            self.state.record_header(HeaderRecord(vp.prefix, req.method, req.path,
                                                  user.qualified_name if user else None, values, user))
            if user is None:
                if personal and req.method in ("GET", "HEAD"):
                    return Response.json(200, {"session": "inactive"})
                problem = "is missing" if not values else "does not name a valid user"
                return self._deny(req, 401, "Not signed in",
                                  f"The {vp.header_name} header {problem}: this virtual proxy "
                                  "authenticates every request by that header.")
            session = self._session_from_cookie(req, vp)
            if session is None or not session.user.same_user(user) or session.user != user:
                # Like Qlik: the header decides who this is; a cookie of someone else is ignored.
                try:
                    session, _ = self.state.add_session(user, vp.prefix, "header")
                except TooManySessions as exc:
                    return self._deny(req, 403, "Too many sessions", str(exc))
                set_cookie.append(self._set_cookie(vp, session.session_id))
        else:
            ticket = self._ticket_param(req)
            session = self._session_from_cookie(req, vp)
            if session is None and not personal and req.method != "GET":
                return self._deny(req, 403, "Forbidden",
                                  'The initial authentication request must be a "GET" request.')
            if ticket is not None:
                redeemed = self._redeem(req, vp, ticket, host, signed_in=session is not None)
                if redeemed is not None:
                    return redeemed
                # A spent ticket left in the URL (a reload) with a live session: the session holds.
        if personal:
            return self._personal(req, vp, session, host, set_cookie)
        if session is None:
            return self._no_session(req, vp, host)
        if self._is_app_socket(rest) and req.websocket:
            return self._websocket(req, session, rest, set_cookie)
        return self._hub(req, vp, session, rest, set_cookie)

    def _no_session(self, req: Request, vp: VirtualProxy, host: str, problem: str | None = None) -> Response:
        """Qlik's answer to a request without a valid session: off to the authentication module."""
        if req.websocket:
            return self._deny(req, 401, "Not signed in",
                              "A websocket needs a proxy session (or, on a header virtual proxy, the header).")
        if vp.module_uri:
            target_id = self.state.add_target(vp.prefix, f"https://{host}{self._without_ticket(req.target)}")
            sep = "&" if "?" in vp.module_uri else "?"
            # As Qlik writes it: proxyRestUri first, then targetId, lower-case percent escapes.
            location = (f"{vp.module_uri}{sep}proxyRestUri={_qlik_quote(self.rest_uri_for(vp.prefix))}"
                        f"&targetId={_qlik_quote(target_id)}")
            return Response.html(302, _page("Redirect", f'<a href="{html.escape(location)}">Sign in</a>'),
                                 headers=[("Location", location), ("Cache-Control", "no-store")])
        return self._deny(req, 401, "Not signed in", problem or (
            "You are not signed in: this virtual proxy has no authentication module; "
            "a portal must send you here with a ticket or set the session cookie."))

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
        keep = [p for p in query.split("&")
                if p and unquote_plus(p.partition("=")[0]).lower() not in _TICKET_PARAMS]
        return path + ("?" + "&".join(keep) if keep else "")

    @staticmethod
    def _is_app_socket(rest: str) -> bool:
        parts = rest.split("/")
        return len(parts) >= 3 and parts[1] == "app" and bool(parts[2])

    def _deny(self, req: Request, status: int, title: str, message: str,
              headers: list[tuple[str, str]] | None = None) -> Response:
        if "application/json" in (req.header("Accept") or ""):
            return Response.json(status, {"error": title, "message": message}, headers=headers or [])
        return Response.html(status, _page(title, f"<h1>{html.escape(title)}</h1><p id=\"message\">"
                                                  f"{html.escape(message, quote=False)}</p>"), headers=headers or [])

    # -- ticket ---------------------------------------------------------------------------
    def _redeem(self, req: Request, vp: VirtualProxy, ticket: str, host: str, *,
                signed_in: bool = False) -> Response | None:
        """The answer to a request carrying a ticket; None when it is spent but a session holds."""
        rec = self.state.take_ticket(ticket, vp.prefix)
        if rec is None and signed_in:
            return None
        if rec is None:
            # Qlik: an invalid ticket is no authentication at all: back to the authentication module.
            log.info("hub: ticket %s refused on %r (invalid, used, expired or another node/proxy)",
                     mask(ticket), vp.prefix)
            return self._no_session(req, vp, host, problem=(
                "The ticket is invalid or expired (used, older than its minute, or issued by another "
                "node or virtual proxy), and this virtual proxy has no authentication module."))
        try:
            session, _ = self.state.add_session(rec.user, vp.prefix, "ticket")
        except TooManySessions as exc:
            return self._deny(req, 403, "Too many sessions", str(exc))
        log.info("hub: ticket %s redeemed: session %s for %s", mask(ticket), mask(session.session_id),
                 rec.user.qualified_name)
        cookie = self._set_cookie(vp, session.session_id)
        rest = self._proxy_for(req.path)[1]
        if self._is_app_socket(rest) and req.websocket:
            # Engine websocket URLs may carry the ticket themselves (QlikTicket=...).
            return self._websocket(req, session, rest, [cookie])
        # Qlik answers the resource itself, with the session cookie (the ticket stays in the URL).
        return self._hub(req, vp, session, rest, [cookie])

    # -- pages ----------------------------------------------------------------------------
    def _personal(self, req: Request, vp: VirtualProxy, session: SessionRecord | None, host: str,
                  set_cookie: list[tuple[str, str]]) -> Response:
        if req.method in ("GET", "HEAD"):
            if session is None:
                return Response.json(200, {"session": "inactive"}, headers=[("Cache-Control", "no-store")])
            u = session.user
            return Response.json(200, {
                "userDirectory": u.user_directory, "userId": u.user_id, "userName": u.user_id,
                "logoutUri": f"https://{host}{vp.path_prefix}/qps/user",
            }, headers=[("Cache-Control", "no-store"), *set_cookie])
        if req.method == "DELETE":
            if session is not None:
                self.state.end_session(session.session_id)
                log.info("hub: session %s logged out", mask(session.session_id))
            return Response.json(200, {"session": "inactive"},
                                 headers=[self._set_cookie(vp, "", clear=True), ("Cache-Control", "no-store")])
        return Response.text(405, "Use GET or DELETE.\n", headers=[("Allow", "GET, DELETE")])

    def _hub(self, req: Request, vp: VirtualProxy, session: SessionRecord, rest: str,
             set_cookie: list[tuple[str, str]]) -> Response:
        u = session.user
        security = security_header_value(u.attributes)
        headers = [("Cache-Control", "no-store"), *set_cookie]
        if "application/json" in (req.header("Accept") or ""):
            return Response.json(200, {
                "userDirectory": u.user_directory, "userId": u.user_id, "userName": u.user_id,
                "attributes": u.qps_attributes(), "security": security,
                "virtualProxy": vp.prefix, "path": rest.split("?")[0], "method": vp.method,
            }, headers=headers)
        attrs = "".join(f"<li>{html.escape(n)}={html.escape(v)}</li>" for n, v in u.attributes)
        body = (
            "<h1>Qlik Sense hub (qlikauth emulator)</h1>"
            f"<p id=\"signed-in\">Signed in as {html.escape(u.qualified_name)}</p>"
            f"<dl><dt>User</dt><dd id=\"user\">{html.escape(u.qualified_name)}</dd>"
            f"<dt>Virtual proxy</dt><dd id=\"virtual-proxy\">{html.escape(vp.prefix or '(default)')}</dd>"
            f"<dt>Path</dt><dd id=\"path\">{html.escape(rest.split('?')[0])}</dd></dl>"
            f"<h2>Attributes</h2><ul id=\"attributes\">{attrs}</ul>"
            f"<h2>X-Qlik-Security</h2><pre id=\"security\">{html.escape(security)}</pre>"
        )
        return Response.html(200, _page("Qlik Sense hub", body), headers=headers)

    def _websocket(self, req: Request, session: SessionRecord, rest: str,
                   set_cookie: list[tuple[str, str]]) -> Response:
        app_id = unquote(rest.split("/")[2])
        u = session.user
        greeting: dict[str, Any] = {"user": u.qualified_name, "attributes": u.qps_attributes(), "app": app_id}

        async def run(ws: WebSocket) -> None:
            # Qlik tears the engine connection down when the proxy session ends.
            def on_end() -> None:
                ws.close_soon(1000, "session ended")

            session.on_end.append(on_end)
            try:
                await ws.send_json(greeting)
                while True:
                    msg = await ws.receive()
                    if msg is None:
                        return
                    await ws.send(msg)
            finally:
                if on_end in session.on_end:
                    session.on_end.remove(on_end)

        return Response(101, b"", headers=set_cookie, content_type=None, websocket=run)
