"""Browsers and callers: origins, web integrations, CORS, the session cookie, bearer tokens."""

from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING

from .._web import Request, Response
from .answers import cors_headers, error
from .state import TokenRecord

if TYPE_CHECKING:
    from .tenant import CloudTenant


class BrowserRules:
    """Who is calling and from where; the helpers every endpoint of the tenant shares."""

    t: CloudTenant

    # -- browsers ------------------------------------------------------------------
    def _origin_allowed(self, req: Request) -> Response | None:
        origin = req.header("Origin")
        if origin is None:
            return None  # a backend call
        wid = req.header("qlik-web-integration-id")
        if not wid:
            return error(
                403,
                "Forbidden",
                "A browser request needs the qlik-web-integration-id header.",
                "LOGIN-WEB-INTEGRATION-MISSING",
            )
        wi = self.t.web_integrations.get(wid)
        if wi is None:
            return error(
                403, "Forbidden", "Unknown web integration id.", "LOGIN-WEB-INTEGRATION-UNKNOWN"
            )
        if origin not in wi.origins:
            return error(
                403,
                "Forbidden",
                f"Origin {origin} is not allowed by the web integration.",
                "LOGIN-ORIGIN-NOT-ALLOWED",
            )
        return None

    def _browser_cookie_call(self, req: Request) -> Response | None:
        """A browser's call with the session cookie (no access token) names its web integration.

        Qlik checks the origin against the allow list of the web integration the call names in
        ``qlik-web-integration-id`` (help.qlik.com *Managing web integrations*); @qlik/api and
        mashups send the id on every call. An origin on another integration does not do.
        """
        if req.header("Origin") is None or (req.header("Authorization") or "").lower().startswith(
            "bearer "
        ):
            return None
        return self._origin_allowed(req)

    def _allowed_origin(self, origin: str | None) -> bool:
        return origin is not None and any(
            origin in wi.origins for wi in self.t.web_integrations.values()
        )

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
            resp.headers += cors_headers(origin)
        return resp

    def _preflight(self, req: Request) -> Response:
        # A preflight carries no credentials: allowed for a web integration's or an OAuth
        # client's origin.
        origin = req.header("Origin")
        if origin is None or not (self._allowed_origin(origin) or self._client_origin(origin)):
            return Response(403, b"")
        resp = Response(
            204,
            b"",
            content_type=None,
            headers=[
                ("Access-Control-Allow-Methods", "GET, POST, DELETE"),
                (
                    "Access-Control-Allow-Headers",
                    "authorization, content-type, qlik-web-integration-id, qlik-csrf-token",
                ),
                ("Access-Control-Max-Age", "600"),
            ],
        )
        resp.headers += cors_headers(origin)
        return resp

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

    def _bearer(self, req: Request) -> TokenRecord | None:
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
                return (
                    None,
                    False,
                    error(
                        401, "Unauthorized", "Invalid, expired or revoked access token.", "HTTP-401"
                    ),
                )
            return tok.owner(), "admin_classic" in tok.scope.split(), None
        s = self._session(req)
        if s is None:
            return (
                None,
                False,
                error(401, "Unauthorized", "An access token or a session is required.", "HTTP-401"),
            )
        if req.method not in ("GET", "HEAD") and req.header("qlik-csrf-token") != s[1]:
            return (
                None,
                False,
                error(
                    403,
                    "Forbidden",
                    "A state-changing call with a session needs qlik-csrf-token.",
                    "CSRF-1",
                ),
            )
        return s[0], False, None
