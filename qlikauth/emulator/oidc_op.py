"""A local OpenID provider behind a tiny login page, for development, demos and tests.

What a portal's relying party needs from a provider, and nothing more: discovery
(``/.well-known/openid-configuration``), its keys (``/jwks``), the authorization code flow
with PKCE S256 required (``/auth``, answered by query or ``form_post``), the token endpoint
(``client_secret_basic`` or ``client_secret_post``), userinfo, RP-initiated logout
(``/session/end``: ``id_token_hint``, registered ``post_logout_redirect_uri`` only, ``state``)
and back-channel logout to every registered client of the ended provider session. id_tokens
and logout tokens are signed RS256 with ``cryptography`` (:class:`qlikauth.jwtkeys.SigningKey`),
so it installs with pip and runs without node.

Demo users (password ``demo``) carry ``sub``, ``email`` (verified), ``name``,
``preferred_username`` and ``groups``; the browser keeps a provider session (a cookie) so a
second sign-in is single sign-on, unless the client asks ``prompt=login`` or a ``max_age`` the
session is older than. Never use it as a production provider: its users and passwords are for
demonstrations. The certified provider the tests hold qlikauth against is node's
``oidc-provider`` (tests/peers), an independent implementation.

>>> op = OidcProvider(clients=[{"client_id": "portal", "client_secret": "s3cret",  # doctest: +SKIP
...                             "redirect_uris": ["https://portal.example.com/oidc/callback"]}])
>>> op.start(); op.issuer  # doctest: +SKIP
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import logging
import secrets
import ssl
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..jwtkeys import SigningKey
from .threaded import ServedInThread, read_cookie, session_cookie

__all__ = ["OidcProvider", "OpUser", "DEMO_USERS", "BACKCHANNEL_EVENT"]

log = logging.getLogger("qlikauth.emulator.oidc")

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_CODE_TTL = 60.0
_TX_TTL = 600.0
_MAX_PENDING = 10_000
_MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class OpUser:
    """A user of the local provider: the password and the claims sent for them."""

    password: str
    claims: Mapping[str, Any] = field(default_factory=dict)


#: Demo users (password ``demo``), shaped as Entra and Okta send them: a stable opaque ``sub``,
#: a verified e-mail, a display name, the directory user name and group names.
DEMO_USERS: dict[str, OpUser] = {
    name: OpUser(
        "demo",
        {
            "sub": f"{hashlib.sha256(name.encode()).hexdigest()[:12]}-{name}",
            "email": f"{name}@example.com",
            "email_verified": True,
            "name": f"{name.capitalize()} Example",
            "preferred_username": name,
            "groups": list(groups),
        },
    )
    for name, groups in (("alice", ("Sales", "Finance")), ("bob", ("Marketing",)), ("carol", ()))
}

#: Which claims each scope releases (OpenID Connect Core 5.4; ``groups`` as Okta and Keycloak).
_SCOPE_CLAIMS = {
    "email": ("email", "email_verified"),
    "profile": ("name", "preferred_username"),
    "groups": ("groups",),
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class _Session:
    user: str
    auth_time: float
    clients: set[str] = field(default_factory=set)


class OidcProvider(ServedInThread):
    """The local provider (see the module docstring). ``start()`` serves it in a thread.

    :param clients: client registrations, as a provider's admin would make them: ``client_id``,
        ``client_secret``, ``redirect_uris``, and optionally ``post_logout_redirect_uris``,
        ``backchannel_logout_uri``, ``token_endpoint_auth_method`` (``client_secret_basic``
        by default, or ``client_secret_post``).
    :param tls: ``(certificate, key)`` PEM files to serve https (else http, loopback only).
    :param ca_bundle: the CA file that verifies the clients' back-channel logout URIs (default:
        the system's); also what a client should give as ``CA_BUNDLE`` when ``tls`` was issued
        by that CA.
    """

    thread_name = "oidc-op"

    def __init__(
        self,
        *,
        host: str = "localhost",
        bind: str = "127.0.0.1",
        port: int = 0,
        tls: tuple[Path | str, Path | str] | None = None,
        users: Mapping[str, OpUser] | None = None,
        clients: Iterable[Mapping[str, Any]] = (),
        ca_bundle: str | Path | None = None,
        id_token_ttl: float = 300.0,
        key: SigningKey | None = None,
    ) -> None:
        self.users = dict(users if users is not None else DEMO_USERS)
        self.key = key or SigningKey.generate("RS256", kid=f"op-{secrets.token_hex(4)}")
        self.id_token_ttl = float(id_token_ttl)
        self.ca_bundle = str(ca_bundle) if ca_bundle is not None else None
        self.clients: dict[str, dict[str, Any]] = {}
        for client in clients:
            self.add_client(client)
        self._lock = threading.Lock()
        self._tx: dict[str, tuple[float, dict[str, str]]] = {}
        self._codes: dict[str, tuple[float, dict[str, Any]]] = {}
        self._tokens: dict[str, tuple[float, str, str]] = {}  # access token -> (exp, sid, scope)
        #: Provider sessions: sid -> user, when they authenticated, the clients signed in by it.
        self.sessions: dict[str, _Session] = {}
        #: Back-channel logouts sent: (client_id, HTTP status or the error's name).
        self.logouts_sent: list[tuple[str, str]] = []
        self._httpd = ThreadingHTTPServer((bind, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.op = self  # type: ignore[attr-defined]
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self._httpd.socket = ctx.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.issuer = f"{'https' if tls is not None else 'http'}://{host}:{self.port}"
        self._thread: threading.Thread | None = None

    # -- registration and serving ------------------------------------------------------
    def add_client(self, client: Mapping[str, Any]) -> None:
        """Register (or replace) a client. Redirect URIs are compared exactly, as they must be."""
        cid = client.get("client_id")
        if not isinstance(cid, str) or not cid:
            raise ValueError("a client needs a client_id")
        if not client.get("client_secret"):
            raise ValueError(f"client {cid!r} needs a client_secret")
        uris = client.get("redirect_uris")
        if not uris or not all(isinstance(u, str) and u for u in uris):
            raise ValueError(f"client {cid!r} needs redirect_uris")
        method = client.get("token_endpoint_auth_method", "client_secret_basic")
        if method not in ("client_secret_basic", "client_secret_post"):
            raise ValueError(
                f"client {cid!r}: token_endpoint_auth_method {method!r} is not "
                "client_secret_basic or client_secret_post"
            )
        self.clients[cid] = {**client, "token_endpoint_auth_method": method}

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- documents ------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        """The discovery document."""
        i = self.issuer
        return {
            "issuer": i,
            "authorization_endpoint": f"{i}/auth",
            "token_endpoint": f"{i}/token",
            "jwks_uri": f"{i}/jwks",
            "userinfo_endpoint": f"{i}/me",
            "end_session_endpoint": f"{i}/session/end",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query", "form_post"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.key.algorithm],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "claims_supported": [
                "sub",
                "email",
                "email_verified",
                "name",
                "preferred_username",
                "groups",
                "sid",
                "auth_time",
            ],
            "authorization_response_iss_parameter_supported": True,
            "backchannel_logout_supported": True,
            "backchannel_logout_session_supported": True,
        }

    def jwks(self) -> dict[str, Any]:
        """The public signing keys."""
        return {"keys": [{**self.key.public_jwk(), "use": "sig"}]}

    # -- the authorization code flow -----------------------------------------------------
    def check_authorization(self, q: Mapping[str, str]) -> tuple[dict[str, str] | None, str | None]:
        """``(request, None)`` for a usable authorization request, else ``(None, why)``.

        Nothing is sent back to a ``redirect_uri`` that is not registered for the client.
        """
        client = self.clients.get(q.get("client_id", ""))
        if client is None:
            return None, "unknown client_id"
        if q.get("redirect_uri") not in client["redirect_uris"]:
            return None, "redirect_uri is not registered for this client"
        if q.get("response_type") != "code":
            return None, "response_type must be code"
        if "openid" not in q.get("scope", "").split():
            return None, "scope must include openid"
        if q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return None, "PKCE is required: code_challenge with code_challenge_method S256"
        if q.get("response_mode", "query") not in ("query", "form_post"):
            return None, "response_mode must be query or form_post"
        keep = (
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "nonce",
            "code_challenge",
            "response_mode",
            "prompt",
            "max_age",
        )
        return {k: q[k] for k in keep if q.get(k) is not None}, None

    def _put(self, table: dict[str, Any], value: Any, ttl: float) -> str:
        handle = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            if len(table) >= _MAX_PENDING:
                for k in [k for k, (exp, *_rest) in table.items() if exp < now] or list(table):
                    del table[k]
            table[handle] = (now + ttl, value)
        return handle

    def _take(self, table: dict[str, Any], handle: str) -> Any:
        with self._lock:
            found = table.pop(handle, None)
        if found is None or found[0] < time.time():
            return None
        return found[1]

    def reusable_session(self, sid: str | None, request: Mapping[str, str]) -> _Session | None:
        """The browser's provider session when this request may use it without a login page."""
        session = self.sessions.get(sid or "")
        if session is None or "login" in request.get("prompt", "").split():
            return None
        if request.get("max_age") is not None:
            try:
                max_age = float(request["max_age"])
            except ValueError:
                return None
            if time.time() - session.auth_time > max_age:
                return None
        return session

    def sign_in(self, username: str, password: str) -> str | None:
        """A new provider session for the right password (its ``sid``), else None."""
        user = self.users.get(username)
        if user is None or not secrets.compare_digest(user.password.encode(), password.encode()):
            return None
        sid = secrets.token_urlsafe(16)
        with self._lock:
            self.sessions[sid] = _Session(username, time.time())
        return sid

    def issue_code(self, sid: str, request: Mapping[str, str]) -> tuple[str, dict[str, str]]:
        """The redirect URI and the parameters that carry a new code for ``request``."""
        session = self.sessions[sid]
        session.clients.add(request["client_id"])
        code = self._put(self._codes, {"sid": sid, **request}, _CODE_TTL)
        params = {"code": code, "iss": self.issuer}
        if request.get("state") is not None:
            params["state"] = request["state"]
        return request["redirect_uri"], params

    def token(
        self, form: Mapping[str, str], authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        """The token endpoint: (status, JSON body)."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        method = "client_secret_post"
        if authorization and authorization.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authorization[6:], validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return 401, {"error": "invalid_client"}
            from urllib.parse import unquote

            cid, _, sec = raw.partition(":")
            client_id, secret, method = unquote(cid), unquote(sec), "client_secret_basic"
        client = self.clients.get(client_id or "")
        if (
            client is None
            or client["token_endpoint_auth_method"] != method
            or not secret
            or not secrets.compare_digest(str(client["client_secret"]).encode(), secret.encode())
        ):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        grant = self._take(self._codes, form.get("code", ""))
        if grant is None or grant["client_id"] != client_id:
            return 400, {
                "error": "invalid_grant",
                "error_description": "unknown, used or expired code",
            }
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant", "error_description": "redirect_uri differs"}
        verifier = form.get("code_verifier", "")
        if not secrets.compare_digest(
            _b64(hashlib.sha256(verifier.encode()).digest()), grant["code_challenge"]
        ):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        session = self.sessions.get(grant["sid"])
        if session is None:
            return 400, {"error": "invalid_grant", "error_description": "the session has ended"}
        access = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[access] = (time.time() + 3600, grant["sid"], grant["scope"])
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": client_id,
            "iat": now,
            "exp": now + int(self.id_token_ttl),
            "auth_time": int(session.auth_time),
            "sid": grant["sid"],
            "at_hash": _b64(hashlib.sha256(access.encode()).digest()[:16]),
            **self.claims_for(session.user, grant["scope"]),
        }
        if grant.get("nonce") is not None:
            claims["nonce"] = grant["nonce"]
        id_token = self.key.sign(claims, headers={"kid": self.key.kid, "typ": "JWT"})
        return 200, {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": id_token,
            "scope": grant["scope"],
        }

    def claims_for(self, username: str, scope: str) -> dict[str, Any]:
        """``sub`` and the claims ``scope`` releases for ``username``."""
        user = self.users[username].claims
        out = {"sub": user["sub"]}
        for word in scope.split():
            for name in _SCOPE_CLAIMS.get(word, ()):
                if name in user:
                    out[name] = user[name]
        return out

    def userinfo(self, authorization: str | None) -> tuple[int, dict[str, Any]]:
        """The userinfo endpoint for a Bearer access token."""
        token = authorization[7:] if authorization and authorization.startswith("Bearer ") else ""
        with self._lock:
            found = self._tokens.get(token)
        if found is None or found[0] < time.time() or found[1] not in self.sessions:
            return 401, {"error": "invalid_token"}
        return 200, self.claims_for(self.sessions[found[1]].user, found[2])

    # -- logout -----------------------------------------------------------------------------
    def read_id_token_hint(self, token: str) -> dict[str, Any] | None:
        """The claims of an id_token this provider signed (expiry not checked, as logout allows)."""
        try:
            header_b64, body_b64, sig_b64 = token.split(".")
            pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
            header = json.loads(base64.urlsafe_b64decode(pad(header_b64)))
            if header.get("alg") != self.key.algorithm or header.get("kid") != self.key.kid:
                return None
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import padding, rsa

            public = self.key.public_key
            if not isinstance(public, rsa.RSAPublicKey):
                return None
            public.verify(
                base64.urlsafe_b64decode(pad(sig_b64)),
                f"{header_b64}.{body_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(base64.urlsafe_b64decode(pad(body_b64)))
        except Exception:  # noqa: BLE001 - a hint that does not verify is no hint
            return None
        return claims if isinstance(claims, dict) and claims.get("iss") == self.issuer else None

    def end_session(self, sid: str) -> list[tuple[str, str]]:
        """End provider session ``sid``: back-channel logout to each of its clients that
        registered a ``backchannel_logout_uri``; returns (client_id, outcome) per client."""
        with self._lock:
            session = self.sessions.pop(sid, None)
            for token in [t for t, (_, s, _) in self._tokens.items() if s == sid]:
                del self._tokens[token]
        if session is None:
            return []
        outcomes = []
        for cid in sorted(session.clients):
            client = self.clients.get(cid)
            uri = client.get("backchannel_logout_uri") if client else None
            if uri:
                outcomes.append((cid, self._send_logout(cid, str(uri), session, sid)))
        self.logouts_sent.extend(outcomes)
        return outcomes

    def end_sessions_of(self, username: str) -> list[tuple[str, str]]:
        """End every provider session of ``username`` (an administrator's "sign out everywhere")."""
        sids = [sid for sid, s in list(self.sessions.items()) if s.user == username]
        return [o for sid in sids for o in self.end_session(sid)]

    def logout_token(self, client_id: str, sub: str, sid: str) -> str:
        """A signed logout token (Back-Channel Logout 1.0) for ``client_id``."""
        now = int(time.time())
        return self.key.sign(
            {
                "iss": self.issuer,
                "aud": client_id,
                "iat": now,
                "exp": now + 120,
                "jti": secrets.token_urlsafe(16),
                "sub": sub,
                "sid": sid,
                "events": {BACKCHANNEL_EVENT: {}},
            },
            headers={"kid": self.key.kid, "typ": "logout+jwt"},
        )

    def _send_logout(self, client_id: str, uri: str, session: _Session, sid: str) -> str:
        import requests

        token = self.logout_token(client_id, self.users[session.user].claims["sub"], sid)
        try:
            with requests.Session() as http:
                http.trust_env = False
                r = http.post(
                    uri,
                    data={"logout_token": token},
                    timeout=10,
                    verify=self.ca_bundle or True,
                    allow_redirects=False,
                )
            return str(r.status_code)
        except requests.RequestException as exc:
            log.warning(
                "back-channel logout to client %s failed: %s", client_id, type(exc).__name__
            )
            return type(exc).__name__


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:28rem;margin:3rem auto}"
        "label{display:block;margin:.5rem 0}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{html.escape(k, quote=True)}" '
        f'value="{html.escape(v, quote=True)}">'
        for k, v in fields.items()
    )


def _login_form(tx: str) -> str:
    # the sign-in's handle in the action URL, as certified providers put their interaction id
    return (
        f'<form id="login" method="post" action="/login?{urlencode({"tx": tx})}">'
        + '<label>User <input id="username" name="username" autofocus></label>'
        '<label>Password <input id="password" name="password" type="password"></label>'
        '<button id="submit" type="submit">Sign in</button></form>'
    )


class _Handler(BaseHTTPRequestHandler):
    server_version = "qlikauth-oidc-op"
    _COOKIE = "qlikauth_op_session"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - queries carry codes
        return

    @property
    def op(self) -> OidcProvider:
        return self.server.op  # type: ignore[attr-defined,no-any-return]

    def _send(
        self,
        status: int,
        body: str | bytes,
        ctype: str = "text/html; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.end_headers()
        self.wfile.write(data)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data), "application/json")

    def _sid(self) -> str | None:
        return read_cookie(self.headers.get("Cookie"), self._COOKIE)

    def _cookie(self, value: str, max_age: int | None = None) -> str:
        return session_cookie(
            self._COOKIE, value, secure=self.op.issuer.startswith("https:"), max_age=max_age
        )

    def _form(self) -> dict[str, str]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return {}
        if not 0 <= length <= _MAX_BODY:
            return {}
        return dict(parse_qsl(self.rfile.read(length).decode("utf-8", "replace")))

    def _answer_code(self, sid: str, request: Mapping[str, str], set_cookie: bool) -> None:
        uri, params = self.op.issue_code(sid, request)
        headers = {"Set-Cookie": self._cookie(sid)} if set_cookie else {}
        if request.get("response_mode") == "form_post":
            body = (
                f"<form id='cb' method='post' action='{html.escape(uri, quote=True)}'>"
                f"{_hidden(params)}<noscript><button type='submit'>Continue</button></noscript>"
                "</form><script>document.getElementById('cb').submit()</script>"
            )
            self._send(200, _page("Signing in...", body), headers=headers)
            return
        sep = "&" if urlsplit(uri).query else "?"
        self._send(302, "", headers={"Location": f"{uri}{sep}{urlencode(params)}", **headers})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        q = dict(parse_qsl(parts.query))
        if parts.path == "/.well-known/openid-configuration":
            self._json(200, self.op.discovery())
        elif parts.path == "/jwks":
            self._json(200, self.op.jwks())
        elif parts.path == "/auth":
            request, why = self.op.check_authorization(q)
            if request is None:
                self._send(400, _page("Sign-in refused", f"<p>{html.escape(str(why))}.</p>"))
                return
            sid = self._sid()
            if self.op.reusable_session(sid, request) is not None:
                assert sid is not None
                self._answer_code(sid, request, set_cookie=False)
                return
            tx = self.op._put(self.op._tx, request, _TX_TTL)
            users = ", ".join(sorted(self.op.users))
            body = (
                _login_form(tx)
                + f"<p>Demo users: {html.escape(users)} (password <code>demo</code>).</p>"
            )
            self._send(200, _page("Local OpenID provider", body))
        elif parts.path == "/me":
            status, data = self.op.userinfo(self.headers.get("Authorization"))
            self._json(status, data)
        elif parts.path == "/session/end":
            self._end_session(q)
        else:
            self._send(404, "not found", "text/plain")

    def _end_session(self, q: Mapping[str, str]) -> None:
        claims = self.op.read_id_token_hint(q["id_token_hint"]) if q.get("id_token_hint") else None
        aud = claims.get("aud") if claims else q.get("client_id")
        client = self.op.clients.get(aud if isinstance(aud, str) else "")
        back = q.get("post_logout_redirect_uri")
        if back is not None and (
            client is None
            or claims is None
            or back not in client.get("post_logout_redirect_uris", ())
        ):
            self._send(
                400,
                _page(
                    "Sign-out refused",
                    "<p>post_logout_redirect_uri is not "
                    "registered for this client (or no valid id_token_hint).</p>",
                ),
            )
            return
        ended = set()
        if claims and isinstance(claims.get("sid"), str):
            ended.add(claims["sid"])
        own = self._sid()
        if own:
            ended.add(own)
        for sid in ended:
            self.op.end_session(sid)
        headers = {"Set-Cookie": self._cookie("", 0)}
        if back is not None:
            sep = "&" if urlsplit(back).query else "?"
            state = q.get("state")
            location = back + (f"{sep}{urlencode({'state': state})}" if state else "")
            self._send(302, "", headers={"Location": location, **headers})
            return
        self._send(
            200, _page("Signed out", "<p>You are signed out of the provider.</p>"), headers=headers
        )

    def do_POST(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path = parts.path
        form = self._form()
        if path == "/token":
            status, data = self.op.token(form, self.headers.get("Authorization"))
            self._json(status, data)
        elif path == "/login":
            tx = dict(parse_qsl(parts.query)).get("tx", "")
            request = self.op._take(self.op._tx, tx)
            if request is None:
                self._send(
                    400,
                    _page(
                        "Sign-in refused",
                        "<p>This sign-in is too old or was "
                        "used already: start again at the portal.</p>",
                    ),
                )
                return
            sid = self.op.sign_in(form.get("username", ""), form.get("password", ""))
            if sid is None:
                tx = self.op._put(self.op._tx, request, _TX_TTL)  # another try, same request
                body = "<p>Wrong user or password.</p>" + _login_form(tx)
                self._send(401, _page("Local OpenID provider", body))
                return
            old = self._sid()
            if old and old != sid:
                self.op.end_session(old)  # another person signs in in this browser
            self._answer_code(sid, request, set_cookie=True)
        else:
            self._send(404, "not found", "text/plain")
