"""An emulated Qlik Cloud tenant over real TLS: JWT login, CSRF token, users, OAuth tokens.

What it serves, with Qlik's rules (qlik.dev: Login, CSRF token, Users and OAuth API references,
"Create signed tokens for JWT authorization", "Private Key JWT reference"):

- ``POST /login/jwt-session`` (``Authorization: Bearer``): the header ``kid`` and the ``iss``
  pick a configured JWT identity provider; RS/PS/ES only (never HS); required claims ``iss``,
  ``aud`` = ``qlik.api/login/jwt-session``, ``sub``, ``subType`` = ``user``, ``name``,
  ``email``, ``email_verified``, ``jti`` (each used once), ``iat``, ``nbf``, ``exp`` with
  ``exp - nbf <= 3600``; optional ``groups``. A browser (a request with ``Origin``) must send
  ``qlik-web-integration-id`` of a web integration that allows its origin. Success creates or
  updates the user (groups included) and sets ``eas.sid``, ``eas.sid.sig``, ``_csrfToken``,
  ``_csrfToken.sig``. Refusals are ``{"errors": [{"title", "detail", "code", "status"}]}``:
  400 ``INTERNAL-TOKEN-1`` "JWT_LOGIN_VALIDATIONS ..." for a claim rule (Qlik's published
  answer), 401 for a token no identity provider verifies, 403 for origin and web integration.
  100 calls a minute (429 beyond).
- ``GET /api/v1/csrf-token`` (session cookie): 204 with ``qlik-csrf-token``.
- CORS for browsers: a request with an access token is answered for an origin on the token's
  OAuth client's *Allowed origins* (qlik-embed with ``data-auth-type="OAuth2"``), one with the
  session cookie for a web integration's origins; preflights for either.
- ``GET /api/v1/users/me`` (session cookie or a user's access token); ``GET /api/v1/users``
  (``filter=subject eq "..."`` or ``email eq "..."``) and ``POST /api/v1/users`` (an access
  token whose scope holds ``admin_classic``; a session needs ``qlik-csrf-token``).
- ``POST /oauth/token`` (JSON or form): ``client_credentials`` and
  ``urn:qlik:oauth:user-impersonation`` (``user_lookup`` by ``subject`` or ``userId``; the
  user must exist and the client must have impersonation on), the client authenticated by
  ``client_secret`` or by a ``private_key_jwt`` assertion (RS256/RS512/ES384, ``iss`` =
  ``sub`` = the client id, ``aud`` = this token endpoint, ``exp - iat <= 300``, ``kid``, a
  fresh UUID ``jti``); a browser's ``Origin`` must be one of the client's allowed origins.
  Answers ``access_token`` (opaque), ``token_type``, ``expires_in`` and ``expires_at``.
- ``POST /oauth/revoke``: 200; a revoked or expired token is refused everywhere.
- ``GET /api/v1/oauth-tokens`` (``userId``, ``limit`` 1-100, ``page``, ``sort=userId``) and
  ``DELETE /api/v1/oauth-tokens/{tokenId}`` (204): an access token whose scope holds
  ``admin_classic`` acts as TenantAdmin (every user's tokens); any other token or a session
  sees and revokes only its own user's. A client_credentials token belongs to the client's bot
  user. :meth:`CloudTenant.token_valid` answers whether an access token still works.

Python::

    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig
    with CloudTenant(jwt_idps=[JwtIdentityProvider("https://portal", {"k1": key.public_key})],
                     oauth_clients=[OAuthClientConfig("cid", client_secret="s")]) as tenant:
        tenant.url, tenant.root_pem, tenant.state.users()

Command line: ``qlikauth cloud-emulator`` (``python -m qlikauth.emulator.cloud``). Served by
:class:`~qlikauth.emulator.serving.BackgroundServer` (the ``emulator`` extra).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import shutil
import signal
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from .._parse import FALSE_WORDS, TRUE_WORDS, parse_bool
from ..certgen import generate_certificates
from ..exceptions import CertificateError, ConfigurationError, JwtError
from ..jwtkeys import ASYMMETRIC_ALGORITHMS, PublicKey, public_key_from_pem, verify_jwt
from ._web import Request, Response, asgi_app
from .serving import BackgroundServer

__all__ = [
    "CloudTenant",
    "CloudTenantState",
    "CloudUserRecord",
    "JwtIdentityProvider",
    "OAuthClientConfig",
    "WebIntegration",
    "main",
]

log = logging.getLogger("qlikauth.emulator.cloud")

JWT_AUDIENCE = "qlik.api/login/jwt-session"
IMPERSONATION = "urn:qlik:oauth:user-impersonation"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS512", "ES384")
_REQUIRED = ("iss", "aud", "sub", "subType", "name", "email", "email_verified", "jti", "iat", "nbf", "exp")


@dataclass(frozen=True)
class JwtIdentityProvider:
    """A JWT identity provider of the tenant: its issuer and its key(s) by ``kid``."""

    issuer: str
    keys: Mapping[str, PublicKey]
    clock_tolerance: float = 5.0


@dataclass(frozen=True)
class OAuthClientConfig:
    """An OAuth client: secret and/or private_key_jwt keys, impersonation, scopes, allowed origins."""

    client_id: str
    client_secret: str | None = None
    jwks: Mapping[str, PublicKey] = field(default_factory=dict)
    impersonation: bool = True
    scopes: tuple[str, ...] = ("user_default", "admin_classic", "admin.users", "offline_access")
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebIntegration:
    """A web integration: its id and the origins it allows (browsers calling the tenant)."""

    id: str
    origins: tuple[str, ...]


@dataclass
class CloudUserRecord:
    """A user of the emulated tenant."""

    id: str
    subject: str
    name: str
    email: str
    email_verified: bool = False
    groups: list[str] = field(default_factory=list)
    status: str = "active"
    created_by: str = "jwt"

    def as_json(self, tenant_id: str) -> dict[str, Any]:
        """The user as ``/api/v1/users`` answers it."""
        return {"id": self.id, "tenantId": tenant_id, "subject": self.subject, "name": self.name,
                "email": self.email, "status": self.status,
                "assignedGroups": [{"id": _gid(g), "name": g} for g in self.groups]}


def _gid(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:24]


@dataclass
class _Token:
    client_id: str
    user_id: str | None
    scope: str
    expires_at: float
    revoked: bool = False
    id: str = field(default_factory=lambda: secrets.token_hex(12))
    last_used: float | None = None

    def owner(self) -> str:
        """The owning user's id; a client_credentials token belongs to the client's bot user."""
        return self.user_id if self.user_id is not None else _bot_user_id(self.client_id)

    def as_json(self, tenant_id: str) -> dict[str, Any]:
        """The token as ``GET /api/v1/oauth-tokens`` answers it (qlik.dev, OAuth tokens API)."""
        out: dict[str, Any] = {"id": self.id, "userId": self.owner(), "tenantId": tenant_id,
                               "description": self.client_id}
        if self.last_used is not None:
            out["lastUsed"] = _iso(self.last_used)
        return out


def _basic_credentials(req: Request) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (RFC 6749 section 2.3.1), or None."""
    auth = req.header("Authorization") or ""
    if not auth[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(auth[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    if not sep:
        return None
    return unquote_plus(cid), unquote_plus(secret)


def _is_uuid(value: Any) -> bool:
    """qlik.dev's private_key_jwt rule: ``jti`` is a UUID (a new one for each token request)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _bot_user_id(client_id: str) -> str:
    return "bot-" + hashlib.sha256(client_id.encode()).hexdigest()[:20]


def _iso(t: float) -> str:
    return (_dt.datetime.fromtimestamp(t, _dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"))


def _cors_headers(origin: str) -> list[tuple[str, str]]:
    """The CORS answer headers for an allowed ``origin``."""
    return [("Access-Control-Allow-Origin", origin), ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "qlik-csrf-token"), ("Vary", "Origin")]


def _error(status: int, title: str, detail: str = "", code: str = "") -> Response:
    err: dict[str, Any] = {"title": title, "status": str(status)}
    if detail:
        err["detail"] = detail
    if code:
        err["code"] = code
    return Response.json(status, {"errors": [err], "traceId": secrets.token_hex(16)})


class CloudTenantState:
    """Users, sessions, tokens and counters of the emulated tenant (thread-safe), for assertions."""

    def __init__(self, tenant_id: str) -> None:
        self.tenant_id = tenant_id
        self._lock = threading.Lock()
        self._users: dict[str, CloudUserRecord] = {}
        self._by_subject: dict[str, str] = {}
        self._sessions: dict[str, tuple[str, str]] = {}  # eas.sid -> (user id, csrf token)
        self._tokens: dict[str, _Token] = {}
        self._jtis: dict[str, float] = {}
        self._counters: dict[str, int] = {}
        self._login_times: deque[float] = deque()
        self._rates: dict[str, deque[float]] = {}
        self._refresh: dict[str, tuple[str, str | None, str]] = {}

    # -- counters ------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        """Add ``n`` to counter ``name``."""
        with self._lock:
            self._counters[name] = self._counters.get(name, 0) + n

    def counter(self, name: str) -> int:
        """The value of counter ``name`` (``token_requests``, ``jwt_logins``, ...)."""
        with self._lock:
            return self._counters.get(name, 0)

    # -- users ---------------------------------------------------------------------
    def users(self) -> list[CloudUserRecord]:
        """Every user."""
        with self._lock:
            return list(self._users.values())

    def user_by_subject(self, subject: str) -> CloudUserRecord | None:
        """The user with this subject, or None."""
        with self._lock:
            uid = self._by_subject.get(subject)
            return self._users.get(uid) if uid else None

    def user(self, user_id: str) -> CloudUserRecord | None:
        """The user with this id, or None."""
        with self._lock:
            return self._users.get(user_id)

    def upsert_user(self, subject: str, name: str, email: str, email_verified: bool,
                    groups: list[str] | None, created_by: str) -> CloudUserRecord:
        """Create the user, or update its name, e-mail and (when given) groups."""
        with self._lock:
            uid = self._by_subject.get(subject)
            rec = self._users.get(uid) if uid else None
            if rec is None:
                rec = CloudUserRecord(secrets.token_hex(12), subject, name, email, email_verified,
                                      list(groups or []), created_by=created_by)
                self._users[rec.id] = rec
                self._by_subject[subject] = rec.id
            else:
                rec.name, rec.email, rec.email_verified = name, email, email_verified
                if groups is not None:
                    rec.groups = list(groups)
            return rec

    # -- one-time jti ----------------------------------------------------------------
    def use_jti(self, scope: str, jti: str, until: float) -> bool:
        """Record ``jti`` until ``until``; False when it was already used."""
        now = time.time()
        with self._lock:
            if len(self._jtis) > 100_000:
                for k in [k for k, t in self._jtis.items() if t < now]:
                    del self._jtis[k]
            key = scope + "\0" + jti
            if key in self._jtis and self._jtis[key] >= now:
                return False
            self._jtis[key] = max(until, now + 60)
            return True

    def login_allowed(self, per_minute: int | None) -> bool:
        """The 100-calls-a-minute limit of /login/jwt-session."""
        if per_minute is None:
            return True
        now = time.monotonic()
        with self._lock:
            while self._login_times and self._login_times[0] < now - 60:
                self._login_times.popleft()
            if len(self._login_times) >= per_minute:
                return False
            self._login_times.append(now)
            return True

    def rate_wait(self, key: str, limit: int | None, window: float) -> float:
        """0 when one more call under ``key`` fits ``limit`` calls per ``window`` seconds
        (the call is counted); else the seconds until one fits (Qlik's ``Retry-After``)."""
        if limit is None:
            return 0.0
        now = time.monotonic()
        with self._lock:
            times = self._rates.setdefault(key, deque())
            while times and times[0] <= now - window:
                times.popleft()
            if len(times) >= limit:
                return max(times[0] + window - now, 0.001)
            times.append(now)
            return 0.0

    # -- sessions and tokens ---------------------------------------------------------
    def new_session(self, user_id: str) -> tuple[str, str]:
        """A new session for ``user_id``: (eas.sid, csrf token)."""
        sid, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        with self._lock:
            self._sessions[sid] = (user_id, csrf)
        return sid, csrf

    def session(self, sid: str) -> tuple[str, str] | None:
        """(user id, csrf token) of a session, or None."""
        with self._lock:
            return self._sessions.get(sid)

    def sessions(self) -> int:
        """How many sessions exist."""
        with self._lock:
            return len(self._sessions)

    def new_token(self, client_id: str, user_id: str | None, scope: str, lifetime: float) -> tuple[str, float]:
        """Issue an access token; (token, expires_at)."""
        tok = secrets.token_urlsafe(32)
        exp = time.time() + lifetime
        with self._lock:
            self._tokens[tok] = _Token(client_id, user_id, scope, exp)
        return tok, exp

    def token(self, tok: str) -> _Token | None:
        """A live (unexpired, unrevoked) token, or None."""
        with self._lock:
            t = self._tokens.get(tok)
        if t is None or t.revoked or t.expires_at <= time.time():
            return None
        return t

    def new_refresh(self, client_id: str, user_id: str | None, scope: str) -> str:
        """Issue a refresh token (the scope held ``offline_access``)."""
        rt = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[rt] = (client_id, user_id, scope)
        return rt

    def take_refresh(self, rt: str, client_id: str) -> tuple[str | None, str] | None:
        """Use a refresh token of ``client_id`` once: (user id, scope), or None. A used one
        is gone (the answer carries a new one), as rotating servers do."""
        with self._lock:
            entry = self._refresh.get(rt)
            if entry is None or entry[0] != client_id:
                return None
            del self._refresh[rt]
            return entry[1], entry[2]

    def revoke_refresh(self, rt: str) -> bool:
        """Revoke a refresh token; True when it existed."""
        with self._lock:
            return self._refresh.pop(rt, None) is not None

    def token_valid(self, access_token: str) -> bool:
        """Would the tenant accept ``access_token`` now (issued here, unexpired, unrevoked)?"""
        return self.token(access_token) is not None

    def live_tokens(self, user_id: str | None = None) -> list[_Token]:
        """The unexpired, unrevoked tokens (of one owning user when given), oldest first."""
        now = time.time()
        with self._lock:
            toks = list(self._tokens.values())
        return [t for t in toks if not t.revoked and t.expires_at > now
                and (user_id is None or t.owner() == user_id)]

    def revoke_id(self, token_id: str) -> bool:
        """Revoke the live token whose id is ``token_id``; True when there was one."""
        now = time.time()
        with self._lock:
            for t in self._tokens.values():
                if t.id == token_id and not t.revoked and t.expires_at > now:
                    t.revoked = True
                    return True
        return False

    def revoke(self, tok: str) -> bool:
        """Revoke a token; True when it existed."""
        with self._lock:
            t = self._tokens.get(tok)
            if t is None:
                return False
            t.revoked = True
            return True

    def expire_tokens(self) -> None:
        """Make every token expire now (for tests of a client's refresh)."""
        with self._lock:
            for t in self._tokens.values():
                t.expires_at = 0.0


class _TenantHandler:
    """The tenant's HTTP behaviour: ``Request -> Response``."""

    def __init__(self, tenant: CloudTenant) -> None:
        self.t = tenant

    def __call__(self, req: Request) -> Response:
        path = req.path
        if req.method == "OPTIONS":
            return self._preflight(req)
        if path == "/login/jwt-session" and req.method == "POST":
            return self._cors(req, self.jwt_session(req))
        handler: Callable[[Request], Response] | None = None
        if path == "/api/v1/csrf-token" and req.method == "GET":
            handler = self.csrf_token
        elif path == "/api/v1/users/me" and req.method == "GET":
            handler = self.me
        elif path == "/api/v1/users" and req.method in ("GET", "POST"):
            handler = self.users
        elif path == "/api/v1/oauth-tokens" and req.method == "GET":
            handler = self.list_tokens
        elif path.startswith("/api/v1/oauth-tokens/") and req.method == "DELETE":
            def handler(r: Request) -> Response:
                return self.delete_token(r, path[len("/api/v1/oauth-tokens/"):])
        if handler is not None:
            refused = self._browser_cookie_call(req)
            return self._cors(req, refused if refused is not None else handler(req))
        if path == "/oauth/token" and req.method == "POST":
            return self.token(req)
        if path == "/oauth/revoke" and req.method == "POST":
            return self.revoke(req)
        return _error(404, "Not found", f"{req.method} {path} is not emulated.", "HTTP-404")

    # -- browsers ------------------------------------------------------------------
    def _origin_allowed(self, req: Request) -> Response | None:
        origin = req.header("Origin")
        if origin is None:
            return None  # a backend call
        wid = req.header("qlik-web-integration-id")
        if not wid:
            return _error(403, "Forbidden", "A browser request needs the qlik-web-integration-id header.",
                          "LOGIN-WEB-INTEGRATION-MISSING")
        wi = self.t.web_integrations.get(wid)
        if wi is None:
            return _error(403, "Forbidden", "Unknown web integration id.", "LOGIN-WEB-INTEGRATION-UNKNOWN")
        if origin not in wi.origins:
            return _error(403, "Forbidden", f"Origin {origin} is not allowed by the web integration.",
                          "LOGIN-ORIGIN-NOT-ALLOWED")
        return None

    def _browser_cookie_call(self, req: Request) -> Response | None:
        """A browser's call with the session cookie (no access token) names its web integration.

        Qlik checks the origin against the allow list of the web integration the call names in
        ``qlik-web-integration-id`` (help.qlik.com *Managing web integrations*); @qlik/api and
        mashups send the id on every call. An origin on another integration does not do.
        """
        if req.header("Origin") is None or (req.header("Authorization") or "").lower().startswith(
                "bearer "):
            return None
        return self._origin_allowed(req)

    def _allowed_origin(self, origin: str | None) -> bool:
        return origin is not None and any(origin in wi.origins for wi in self.t.web_integrations.values())

    def _client_origin(self, origin: str | None, client_id: str | None = None) -> bool:
        """Is ``origin`` on an OAuth client's *Allowed origins* (that client's, when given)?"""
        if origin is None:
            return False
        clients = self.t.oauth_clients
        if client_id is not None:
            client = clients.get(client_id)
            return client is not None and origin in client.allowed_origins
        return any(origin in c.allowed_origins for c in clients.values())

    def _cors_allowed(self, req: Request, origin: str) -> bool:
        # A browser that calls the tenant with an access token (qlik-embed's OAuth2 auth) is
        # allowed from the origins of the token's OAuth client (qlik.dev: "If you plan to use the
        # access token from a browser application, add it to the Allowed Origins list"); a
        # token that is not (or no longer) valid, from any client's. Cookie sessions: the web
        # integrations' origins.
        if (req.header("Authorization") or "").lower().startswith("bearer "):
            tok = self._bearer(req)
            return self._client_origin(origin, tok.client_id if tok is not None else None)
        wi = self.t.web_integrations.get(req.header("qlik-web-integration-id") or "")
        return wi is not None and origin in wi.origins

    def _cors(self, req: Request, resp: Response) -> Response:
        origin = req.header("Origin")
        if origin is not None and self._cors_allowed(req, origin):
            assert origin is not None
            resp.headers += _cors_headers(origin)
        return resp

    def _preflight(self, req: Request) -> Response:
        # A preflight carries no credentials: allowed for a web integration's or an OAuth client's origin.
        origin = req.header("Origin")
        if origin is None or not (self._allowed_origin(origin) or self._client_origin(origin)):
            return Response(403, b"")
        resp = Response(204, b"", content_type=None, headers=[
            ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
            ("Access-Control-Allow-Headers", "authorization, content-type, qlik-web-integration-id, qlik-csrf-token"),
            ("Access-Control-Max-Age", "600")])
        resp.headers += _cors_headers(origin)
        return resp

    # -- /login/jwt-session --------------------------------------------------------
    def jwt_session(self, req: Request) -> Response:
        refused = self._origin_allowed(req)
        if refused is not None:
            return refused
        if not self.t.state.login_allowed(self.t.jwt_login_rate):
            return _error(429, "Too many requests", "/login/jwt-session takes 100 calls a minute.", "HTTP-429")
        auth = req.header("Authorization") or ""
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return _error(401, "Unauthorized", "Missing bearer token.", "LOGIN-1")
        token = auth[7:].strip()

        def invalid(detail: str) -> Response:
            return _error(400, "Invalid token request", f"JWT_LOGIN_VALIDATIONS {detail}", "INTERNAL-TOKEN-1")

        try:
            header_raw = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        except (ValueError, IndexError):
            return _error(401, "Unauthorized", "The token is not a JWT.", "LOGIN-1")
        alg = header_raw.get("alg") if isinstance(header_raw, dict) else None
        if alg not in ASYMMETRIC_ALGORITHMS:
            return invalid(f"Unsupported algorithm: {alg}")
        kid = header_raw.get("kid")
        if not isinstance(kid, str) or not kid:
            return invalid("Missing required header: kid")
        idps = [i for i in self.t.jwt_idps if kid in i.keys]
        if not idps:
            return _error(401, "Unauthorized", "No identity provider has this kid.", "LOGIN-2")
        claims: dict[str, Any] | None = None
        idp = idps[0]
        for candidate in idps:
            try:
                _, claims = verify_jwt(token, {kid: candidate.keys[kid]}, ASYMMETRIC_ALGORITHMS)
            except JwtError:
                continue
            idp = candidate
            break
        if claims is None:
            return _error(401, "Unauthorized", "The token's signature does not verify.", "LOGIN-2")
        for name in _REQUIRED:
            if name not in claims:
                return invalid(f"Missing required claim: {name}")
        if claims["iss"] != idp.issuer:
            return _error(401, "Unauthorized", "The token's issuer matches no identity provider.", "LOGIN-2")
        aud = claims["aud"]
        if aud != JWT_AUDIENCE and not (isinstance(aud, list) and JWT_AUDIENCE in aud):
            return invalid(f"Invalid audience: expected {JWT_AUDIENCE}")
        if claims["subType"] != "user":
            return invalid("subType must be user")
        for name in ("iat", "nbf", "exp"):
            if not isinstance(claims[name], (int, float)) or isinstance(claims[name], bool):
                return invalid(f"{name} must be a number")
        if not isinstance(claims["email_verified"], bool):
            return invalid("email_verified must be a boolean")
        for name in ("sub", "name", "email", "jti"):
            if not isinstance(claims[name], str) or not claims[name]:
                return invalid(f"{name} must be a non-empty string")
        now = time.time()
        tol = idp.clock_tolerance
        if claims["exp"] - claims["nbf"] > 3600:
            return invalid("exp - nbf must not exceed 3600 seconds")
        if claims["nbf"] > now + tol:
            return invalid("Token not yet valid (nbf is in the future)")
        if claims["exp"] <= now - tol:
            return invalid("Token expired")
        groups = claims.get("groups")
        if groups is not None and (not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)):
            return invalid("groups must be an array of strings")
        if not self.t.state.use_jti("jwt:" + idp.issuer, claims["jti"], float(claims["exp"]) + tol):
            return invalid("jti has already been used")
        user = self.t.state.upsert_user(claims["sub"], claims["name"], claims["email"],
                                        claims["email_verified"], groups if groups is not None else [], "jwt")
        self.t.state.count("jwt_logins")
        sid, csrf = self.t.state.new_session(user.id)
        attrs = "Path=/; Secure; HttpOnly; SameSite=None"
        cookies = [("eas.sid", sid), ("eas.sid.sig", self.t.sign(sid)), ("_csrfToken", csrf),
                   ("_csrfToken.sig", self.t.sign(csrf))]
        return Response.json(200, {}, headers=[("Set-Cookie", f"{n}={v}; {attrs}") for n, v in cookies])

    # -- sessions and bearer tokens ------------------------------------------------
    def _session(self, req: Request) -> tuple[str, str] | None:
        jar: dict[str, str] = {}
        for line in req.header_values("Cookie"):
            for part in line.split(";"):
                k, eq, v = part.strip().partition("=")
                if eq:
                    jar[k] = v
        sid = jar.get("eas.sid")
        if not sid or not hmac.compare_digest(jar.get("eas.sid.sig", ""), self.t.sign(sid)):
            return None
        return self.t.state.session(sid)

    def _bearer(self, req: Request) -> _Token | None:
        auth = req.header("Authorization") or ""
        if not auth.lower().startswith("bearer "):
            return None
        tok = self.t.state.token(auth[7:].strip())
        if tok is not None:
            tok.last_used = time.time()
        return tok

    def _caller(self, req: Request) -> tuple[str | None, bool, Response | None]:
        """(caller's user id, is tenant admin, refusal) for the user-facing APIs.

        An access token whose scope holds ``admin_classic`` acts with the TenantAdmin role (as
        ``POST /api/v1/users`` here); any other token or a session acts as its own user.
        """
        if (req.header("Authorization") or "").lower().startswith("bearer "):
            tok = self._bearer(req)
            if tok is None:
                return None, False, _error(401, "Unauthorized",
                                           "Invalid, expired or revoked access token.", "HTTP-401")
            return tok.owner(), "admin_classic" in tok.scope.split(), None
        s = self._session(req)
        if s is None:
            return None, False, _error(401, "Unauthorized",
                                       "An access token or a session is required.", "HTTP-401")
        if req.method not in ("GET", "HEAD") and req.header("qlik-csrf-token") != s[1]:
            return None, False, _error(403, "Forbidden",
                                       "A state-changing call with a session needs qlik-csrf-token.",
                                       "CSRF-1")
        return s[0], False, None

    # -- /api/v1/oauth-tokens (qlik.dev: OAuth tokens API) ------------------------------
    def list_tokens(self, req: Request) -> Response:
        caller, admin, refused = self._caller(req)
        if refused is not None:
            return refused
        q = parse_qs(req.query)
        user_id = (q.get("userId") or [None])[0]
        sort = (q.get("sort") or ["userId"])[0]
        if sort != "userId":
            return _error(400, "Bad request", 'sort must be "userId".', "OAUTH-TOKENS-400")
        try:
            limit = int((q.get("limit") or ["100"])[0])
            start = int((q.get("page") or ["0"])[0])
        except ValueError:
            return _error(400, "Bad request", "limit and page must be numbers.", "OAUTH-TOKENS-400")
        if not 1 <= limit <= 100 or start < 0:
            return _error(400, "Bad request", "limit must be 1 to 100.", "OAUTH-TOKENS-400")
        if not admin:
            # a user without TenantAdmin sees only its own tokens
            if user_id is not None and user_id != caller:
                return Response.json(200, {"data": [], "links": {
                    "self": {"href": f"{self.t.url}/api/v1/oauth-tokens"}}})
            user_id = caller
        toks = sorted(self.t.state.live_tokens(user_id), key=lambda t: t.owner())
        page = toks[start:start + limit]
        base = f"{self.t.url}/api/v1/oauth-tokens?limit={limit}" + (
            f"&userId={user_id}" if user_id is not None else "")
        links: dict[str, Any] = {"self": {"href": f"{base}&page={start}"}}
        if start + limit < len(toks):
            links["next"] = {"href": f"{base}&page={start + limit}"}
        if start > 0:
            links["prev"] = {"href": f"{base}&page={max(0, start - limit)}"}
        return Response.json(200, {"data": [t.as_json(self.t.tenant_id) for t in page],
                                   "links": links})

    def delete_token(self, req: Request, token_id: str) -> Response:
        caller, admin, refused = self._caller(req)
        if refused is not None:
            return refused
        mine = [t for t in self.t.state.live_tokens() if t.id == token_id]
        if not mine:
            return _error(404, "Not found", "No active OAuth token has this id.", "OAUTH-TOKENS-404")
        if not admin and mine[0].owner() != caller:
            return _error(403, "Forbidden",
                          "Revoking another user's token needs the TenantAdmin role.", "HTTP-403")
        if self.t.state.revoke_id(token_id):
            self.t.state.count("tokens_revoked")
        return Response(204, b"", content_type=None)

    def csrf_token(self, req: Request) -> Response:
        s = self._session(req)
        if s is None:
            return _error(401, "Unauthorized", "No session.", "HTTP-401")
        return Response(204, b"", content_type=None, headers=[("qlik-csrf-token", s[1])])

    def me(self, req: Request) -> Response:
        user_id: str | None = None
        if (req.header("Authorization") or "").lower().startswith("bearer "):
            tok = self._bearer(req)
            if tok is None:
                return _error(401, "Unauthorized", "Invalid, expired or revoked access token.", "HTTP-401")
            user_id = tok.user_id
            if user_id is None:
                return _error(403, "Forbidden", "A client_credentials token belongs to no user.", "HTTP-403")
        else:
            s = self._session(req)
            if s is None:
                return _error(401, "Unauthorized", "No session.", "HTTP-401")
            user_id = s[0]
        rec = self.t.state.user(user_id)
        if rec is None:
            return _error(404, "Not found", "The user no longer exists.", "HTTP-404")
        return Response.json(200, rec.as_json(self.t.tenant_id))

    def users(self, req: Request) -> Response:
        tok = self._bearer(req)
        session = None if tok is not None else self._session(req)
        if tok is None and session is None:
            return _error(401, "Unauthorized", "An access token or a session is required.", "HTTP-401")
        if req.method == "GET":
            q = parse_qs(req.query)
            flt = (q.get("filter") or [""])[0]
            users = self.t.state.users()
            if flt:
                m = re.fullmatch(r'\s*(subject|email|id)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', flt)
                if m is None:
                    return _error(400, "Bad request", "The emulator understands filter=subject|email|id eq \"...\".",
                                  "HTTP-400")
                field_name, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
                users = [u for u in users if str(getattr(u, field_name)).casefold() == value.casefold()]
            return Response.json(200, {"data": [u.as_json(self.t.tenant_id) for u in users], "links": {
                "self": {"href": f"{self.t.url}/api/v1/users"}}})
        if session is not None:
            if req.header("qlik-csrf-token") != session[1]:
                return _error(403, "Forbidden", "A state-changing call with a session needs qlik-csrf-token.",
                              "CSRF-1")
            return _error(403, "Forbidden", "Creating users needs the TenantAdmin role.", "HTTP-403")
        assert tok is not None
        if not {"admin_classic", "admin.users"} & set(tok.scope.split()):
            return _error(403, "Forbidden", "The access token's scope does not allow creating users.", "HTTP-403")
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return _error(400, "Bad request", "The body is not JSON.", "HTTP-400")
        subject = body.get("subject") if isinstance(body, dict) else None
        if not isinstance(subject, str) or not subject:
            return _error(400, "Bad request", "subject is required.", "HTTP-400")
        if self.t.state.user_by_subject(subject) is not None:
            return _error(409, "Conflict", "A user with this subject exists.", "USERS-409")
        rec = self.t.state.upsert_user(subject, str(body.get("name") or subject), str(body.get("email") or ""),
                                       False, None, "users-api")
        self.t.state.count("users_created")
        return Response.json(201, rec.as_json(self.t.tenant_id))

    # -- OAuth ---------------------------------------------------------------------
    def _body(self, req: Request) -> dict[str, Any] | None:
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype == "application/x-www-form-urlencoded":
                return {k: v[0] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()}
            data = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _client(self, body: Mapping[str, Any]) -> tuple[OAuthClientConfig | None, Response | None]:
        cid = body.get("client_id")
        client = self.t.oauth_clients.get(cid) if isinstance(cid, str) else None
        fail = _error(401, "Unauthorized", "Invalid client credentials.", "OAUTH-1")
        if client is None:
            return None, fail
        secret = body.get("client_secret")
        assertion = body.get("client_assertion")
        if isinstance(secret, str) and secret:
            if client.client_secret is None or not hmac.compare_digest(secret, client.client_secret):
                return None, fail
            return client, None
        if isinstance(assertion, str) and assertion:
            if body.get("client_assertion_type") != ASSERTION_TYPE or not client.jwks:
                return None, fail
            try:
                header, claims = verify_jwt(assertion, dict(client.jwks), ASSERTION_ALGORITHMS)
            except JwtError:
                return None, fail
            now = time.time()
            ok = (header.get("kid") in client.jwks and claims.get("iss") == client.client_id
                  and claims.get("sub") == client.client_id and claims.get("aud") == self.t.token_endpoint
                  and isinstance(claims.get("exp"), (int, float)) and isinstance(claims.get("iat"), (int, float))
                  and claims["exp"] > now - 5 and claims["exp"] - claims["iat"] <= 300
                  and claims["iat"] <= now + 5 and _is_uuid(claims.get("jti")))
            if not ok or not self.t.state.use_jti("assertion:" + client.client_id, claims["jti"],
                                                  float(claims["exp"]) + 5):
                return None, fail
            return client, None
        return None, fail

    def token(self, req: Request) -> Response:
        body = self._body(req)
        if body is None:
            return _error(400, "Bad request", "The body must be a JSON object or a form.", "OAUTH-400")
        basic = _basic_credentials(req)
        if basic is not None:
            body = {**body, "client_id": basic[0], "client_secret": basic[1]}
        client, refused = self._client(body)
        if refused is not None or client is None:
            return refused or _error(401, "Unauthorized", "Invalid client credentials.", "OAUTH-1")
        # qlik.dev: /oauth/token is Tier 2 (100 a minute); over it, 429 with Retry-After in
        # seconds and the errors shape of the *Rate limiting* page.
        wait = self.t.state.rate_wait("token:" + client.client_id, self.t.token_rate,
                                      self.t.token_rate_window)
        if wait:
            secs = max(1, math.ceil(wait))
            self.t.state.count("token_rate_limited")
            resp = _error(429, "API rate limit reached.",
                          f"You need to wait {secs} seconds until limit is lifted.", "HTTP-429")
            resp.headers.append(("Retry-After", str(secs)))
            return resp
        origin = req.header("Origin")
        if origin is not None and origin not in client.allowed_origins:
            return _error(403, "Forbidden", f"Origin {origin} is not allowed for this client.", "OAUTH-ORIGIN")
        scope = str(body.get("scope") or "user_default")
        if not set(scope.split()) <= set(client.scopes):
            return _error(400, "Invalid scope", f"The client may not request scope {scope!r}.", "OAUTH-SCOPE")
        grant = body.get("grant_type")
        user_id: str | None = None
        if grant == IMPERSONATION:
            if not client.impersonation:
                return _error(403, "Forbidden", "Machine-to-machine impersonation is off for this client.",
                              "OAUTH-IMPERSONATION")
            lookup = body.get("user_lookup")
            if not isinstance(lookup, dict) or lookup.get("field") not in ("subject", "userId") \
                    or not isinstance(lookup.get("value"), str):
                return _error(400, "Bad request", "user_lookup must be {field: subject|userId, value}.", "OAUTH-400")
            rec = (self.t.state.user_by_subject(lookup["value"]) if lookup["field"] == "subject"
                   else self.t.state.user(lookup["value"]))
            if rec is None or rec.status != "active":
                return _error(400, "Invalid user", "The user to impersonate does not exist in the tenant.",
                              "OAUTH-USER")
            user_id = rec.id
        elif grant == "refresh_token":
            old = self.t.state.take_refresh(str(body.get("refresh_token") or ""), client.client_id)
            if old is None:
                return _error(400, "Invalid grant", "The refresh token is invalid, used or revoked.",
                              "OAUTH-GRANT")
            user_id, granted = old
            # a refresh may narrow the scope, never widen it (RFC 6749 section 6)
            if body.get("scope") is None:
                scope = granted
            elif not set(scope.split()) <= set(granted.split()):
                return _error(400, "Invalid scope", "A refresh may not widen the scope.", "OAUTH-SCOPE")
        elif grant != "client_credentials":
            return _error(400, "Unsupported grant type", f"grant_type {grant!r} is not emulated.", "OAUTH-GRANT")
        cap = self.t.max_tokens_per_user
        owner = user_id if user_id is not None else _bot_user_id(client.client_id)
        if cap is not None and len(self.t.state.live_tokens(owner)) >= cap:
            return _error(403, "Forbidden", "The user has the maximum number of OAuth tokens: revoke "
                          "some (DELETE /api/v1/oauth-tokens/{id}) or reuse them.", "OAUTH-TOKEN-LIMIT")
        tok, exp = self.t.state.new_token(client.client_id, user_id, scope, self.t.token_lifetime)
        self.t.state.count("token_requests")
        if user_id is not None:
            self.t.state.count("token_requests:" + user_id)
        answer = {
            "access_token": tok, "token_type": "bearer", "expires_in": int(self.t.token_lifetime),
            "expires_at": _dt.datetime.fromtimestamp(exp, _dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"), "scope": scope}
        if "offline_access" in scope.split():
            answer["refresh_token"] = self.t.state.new_refresh(client.client_id, user_id, scope)
        return Response.json(200, answer, headers=[("Cache-Control", "no-store")])

    def revoke(self, req: Request) -> Response:
        body = self._body(req)
        tok = body.get("token") if body else None
        if not isinstance(tok, str) or not tok:
            return _error(400, "Bad request", "token is required.", "OAUTH-400")
        if self.t.state.revoke(tok) or self.t.state.revoke_refresh(tok):
            self.t.state.count("tokens_revoked")
        return Response(200, b"", content_type=None)


class CloudTenant:
    """An emulated Qlik Cloud tenant on a local TLS port.

    :param certs_dir: a directory with ``root.pem``, ``server.pem``, ``server_key.pem``;
        ``None`` generates them into a temporary directory (removed on :meth:`stop`).
    :param jwt_idps, oauth_clients, web_integrations: the tenant's configuration.
    :param token_lifetime: seconds an access token lives (Qlik: 6 hours).
    :param jwt_login_rate: ``/login/jwt-session`` calls a minute (Qlik: 100; None: no limit).
    :param token_rate, token_rate_window: ``/oauth/token`` calls per client per window
        (Qlik: 100 a minute; None: no limit); beyond it 429 with ``Retry-After``.
    :param max_tokens_per_user: live access tokens a user may hold; one more request answers 403
        (Qlik has such a maximum; its value is not published, so None: no maximum).
    """

    def __init__(self, certs_dir: str | Path | None = None, *, host: str = "localhost", bind: str = "127.0.0.1",
                 port: int = 0, jwt_idps: Iterable[JwtIdentityProvider] = (),
                 oauth_clients: Iterable[OAuthClientConfig] = (), web_integrations: Iterable[WebIntegration] = (),
                 token_lifetime: float = 21600.0, jwt_login_rate: int | None = 100,
                 tenant_id: str | None = None, token_rate: int | None = 100,
                 token_rate_window: float = 60.0, max_tokens_per_user: int | None = None) -> None:
        self.host, self.bind, self._want_port = host, bind, int(port)
        self._given = Path(certs_dir) if certs_dir is not None else None
        self._tmp: str | None = None
        self.jwt_idps: list[JwtIdentityProvider] = list(jwt_idps)
        self.oauth_clients: dict[str, OAuthClientConfig] = {c.client_id: c for c in oauth_clients}
        self.web_integrations: dict[str, WebIntegration] = {w.id: w for w in web_integrations}
        self.token_lifetime = float(token_lifetime)
        self.jwt_login_rate = jwt_login_rate
        self.token_rate = token_rate
        self.token_rate_window = float(token_rate_window)
        self.max_tokens_per_user = max_tokens_per_user
        self.tenant_id = tenant_id or secrets.token_urlsafe(24)
        self.state = CloudTenantState(self.tenant_id)
        self._sig_key = secrets.token_bytes(32)
        self._server: BackgroundServer | None = None
        self._certs: Path | None = None

    # -- configuration at run time ---------------------------------------------------
    def add_jwt_idp(self, idp: JwtIdentityProvider) -> None:
        """Add a JWT identity provider."""
        self.jwt_idps = [*self.jwt_idps, idp]

    def add_oauth_client(self, client: OAuthClientConfig) -> None:
        """Add (or replace) an OAuth client."""
        self.oauth_clients = {**self.oauth_clients, client.client_id: client}

    def add_web_integration(self, wi: WebIntegration) -> None:
        """Add (or replace) a web integration."""
        self.web_integrations = {**self.web_integrations, wi.id: wi}

    def new_refresh(self, client_id: str, user_id: str | None, scope: str) -> str:
        """Issue a refresh token (the scope held ``offline_access``)."""
        rt = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[rt] = (client_id, user_id, scope)
        return rt

    def take_refresh(self, rt: str, client_id: str) -> tuple[str | None, str] | None:
        """Use a refresh token of ``client_id`` once: (user id, scope), or None. A used one
        is gone (the answer carries a new one), as rotating servers do."""
        with self._lock:
            entry = self._refresh.get(rt)
            if entry is None or entry[0] != client_id:
                return None
            del self._refresh[rt]
            return entry[1], entry[2]

    def revoke_refresh(self, rt: str) -> bool:
        """Revoke a refresh token; True when it existed."""
        with self._lock:
            return self._refresh.pop(rt, None) is not None

    def token_valid(self, access_token: str) -> bool:
        """Would the tenant accept ``access_token`` now (not expired, not revoked)?"""
        return self.state.token_valid(access_token)

    def sign(self, value: str) -> str:
        """The ``.sig`` cookie value for ``value`` (the tenant's cookie signature)."""
        return base64.urlsafe_b64encode(hmac.new(self._sig_key, value.encode(), hashlib.sha1).digest()) \
            .rstrip(b"=").decode()

    # -- running ---------------------------------------------------------------------
    def start(self) -> CloudTenant:
        """Bind the port and serve; returns self."""
        if self._server is not None:
            return self
        d = self._given
        if d is None:
            self._tmp = tempfile.mkdtemp(prefix="qlikauth-cloud-")
            d = Path(self._tmp)
        if not (d / "root.pem").exists():
            generate_certificates(d, list(dict.fromkeys([self.host, self.bind])))
        self._certs = d
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
        except (OSError, ssl.SSLError) as exc:
            self.stop()
            raise CertificateError(f"cannot load {d / 'server.pem'}: {exc}", path=str(d / "server.pem")) from None
        ctx.set_alpn_protocols(["http/1.1"])
        server = BackgroundServer(asgi_app(_TenantHandler(self), name="cloud"), ctx, bind=self.bind,
                                  port=self._want_port, name="cloud")
        try:
            server.start()
        except BaseException:
            self.stop()
            raise
        self._server = server
        log.info("emulated Qlik Cloud tenant at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and remove generated certificates. Idempotent."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> CloudTenant:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the tenant is not running")
        return self._server.port

    @property
    def url(self) -> str:
        """``https://localhost:PORT`` (the tenant URL)."""
        return f"https://{self.host}:{self.port}"

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL (the ``aud`` of private_key_jwt assertions)."""
        return self.url + "/oauth/token"

    @property
    def root_pem(self) -> Path:
        """The CA that signed the tenant's certificate (pass it as ``verify=``)."""
        if self._certs is None:
            raise RuntimeError("the tenant is not running")
        return self._certs / "root.pem"


# -- command line ------------------------------------------------------------------------

def _spec(text: str, what: str, keys: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in text.split(","):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq or k not in keys:
            raise ConfigurationError(f"{what} {text!r}: {item!r} is not key=value with a key among {', '.join(keys)}.")
        out[k] = v.strip()
    return out


def _key_file(path: str, what: str) -> PublicKey:
    try:
        return public_key_from_pem(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigurationError(f"{what}: cannot read {path!r}: {exc.strerror}.") from None


def parse_jwt_idp(text: str) -> JwtIdentityProvider:
    """``issuer=URL,kid=ID,key=PEMFILE`` (a public key or certificate) -> :class:`JwtIdentityProvider`."""
    s = _spec(text, "--jwt-idp", ("issuer", "kid", "key"))
    if not all(s.get(k) for k in ("issuer", "kid", "key")):
        raise ConfigurationError("--jwt-idp needs issuer=, kid= and key=.")
    return JwtIdentityProvider(s["issuer"], {s["kid"]: _key_file(s["key"], "--jwt-idp")})


def parse_oauth_client(text: str) -> OAuthClientConfig:
    """``id=ID,secret=S,jwk=KID:PEMFILE,impersonation=true,scopes=a b,origins=URL|URL``."""
    s = _spec(text, "--oauth-client", ("id", "secret", "jwk", "impersonation", "scopes", "origins"))
    if not s.get("id"):
        raise ConfigurationError("--oauth-client needs id=.")
    jwks: dict[str, PublicKey] = {}
    if s.get("jwk"):
        kid, _, path = s["jwk"].partition(":")
        if not kid or not path:
            raise ConfigurationError("--oauth-client jwk= is KID:PEMFILE.")
        jwks[kid] = _key_file(path, "--oauth-client")
    if not s.get("secret") and not jwks:
        raise ConfigurationError("--oauth-client needs secret= or jwk=.")
    impersonation = parse_bool(s.get("impersonation", "true"))
    if impersonation is None:
        raise ConfigurationError(
            f"--oauth-client impersonation={s['impersonation']!r} is not a boolean; use one of "
            f"{', '.join(sorted(w for w in TRUE_WORDS | FALSE_WORDS if w))}.")
    return OAuthClientConfig(
        s["id"], s.get("secret") or None, jwks,
        impersonation=impersonation,
        scopes=tuple(s.get("scopes", "user_default admin_classic admin.users offline_access").split()),
        allowed_origins=tuple(o for o in s.get("origins", "").split("|") if o))


def parse_web_integration(text: str) -> WebIntegration:
    """``id=ID,origins=URL|URL`` -> :class:`WebIntegration`."""
    s = _spec(text, "--web-integration", ("id", "origins"))
    if not s.get("id") or not s.get("origins"):
        raise ConfigurationError("--web-integration needs id= and origins=.")
    return WebIntegration(s["id"], tuple(unquote_plus(o) for o in s["origins"].split("|") if o))


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``qlikauth cloud-emulator``."""
    p.add_argument("--certs", help="directory with root.pem/server.pem/server_key.pem (generated when missing)")
    p.add_argument("--host", default="localhost")
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8444)
    p.add_argument("--jwt-idp", action="append", default=[], metavar="SPEC",
                   help="issuer=URL,kid=ID,key=PUBLIC_KEY_OR_CERT_PEM (repeat)")
    p.add_argument("--oauth-client", action="append", default=[], metavar="SPEC",
                   help="id=ID,secret=S | jwk=KID:PUBLIC_KEY_PEM[,impersonation=true][,scopes='a b'][,origins=URL|URL]")
    p.add_argument("--web-integration", action="append", default=[], metavar="SPEC", help="id=ID,origins=URL|URL")
    p.add_argument("--token-lifetime", type=float, default=21600.0)
    p.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace, *, ready: Callable[[CloudTenant], None] | None = None) -> int:
    """Serve until SIGINT/SIGTERM."""
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO))
    tenant = CloudTenant(args.certs, host=args.host, bind=args.bind, port=args.port,
                         jwt_idps=[parse_jwt_idp(s) for s in args.jwt_idp],
                         oauth_clients=[parse_oauth_client(s) for s in args.oauth_client],
                         web_integrations=[parse_web_integration(s) for s in args.web_integration],
                         token_lifetime=args.token_lifetime)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tenant:
            print(f"Qlik Cloud tenant  {tenant.url}", flush=True)
            print(f"CA (verify=)       {tenant.root_pem}", flush=True)
            if ready is not None:
                ready(tenant)
            while not stop.wait(0.5):  # a timed wait: the signal handler runs promptly
                pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m qlikauth.emulator.cloud``."""
    p = argparse.ArgumentParser(prog="qlikauth cloud-emulator", description="Run an emulated Qlik Cloud tenant.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except ConfigurationError as exc:
        p.exit(2, f"qlikauth cloud-emulator: {exc}\n")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
