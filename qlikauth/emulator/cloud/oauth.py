"""``POST /oauth/token`` and ``POST /oauth/revoke``: client authentication, grants, limits."""

from __future__ import annotations

import hmac
import json
import math
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from ...exceptions import JwtError
from ...jose import verify_jwt
from .._web import Request, Response
from .answers import basic_credentials, error, is_uuid
from .browser import BrowserRules
from .config import (
    ASSERTION_ALGORITHMS,
    ASSERTION_TYPE,
    IMPERSONATION,
    OAuthClientConfig,
)
from .state import bot_user_id, iso_time


class OAuthEndpoints(BrowserRules):
    """The OAuth token and revocation endpoints."""

    # -- OAuth ---------------------------------------------------------------------
    def _body(self, req: Request) -> dict[str, Any] | None:
        ctype = (req.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype == "application/x-www-form-urlencoded":
                return {
                    k: v[0] for k, v in parse_qs(req.body.decode(), keep_blank_values=True).items()
                }
            data = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _client(self, body: Mapping[str, Any]) -> tuple[OAuthClientConfig | None, Response | None]:
        cid = body.get("client_id")
        client = self.t.oauth_clients.get(cid) if isinstance(cid, str) else None
        fail = error(401, "Unauthorized", "Invalid client credentials.", "OAUTH-1")
        if client is None:
            return None, fail
        secret = body.get("client_secret")
        assertion = body.get("client_assertion")
        if isinstance(secret, str) and secret:
            if client.client_secret is None or not hmac.compare_digest(
                secret, client.client_secret
            ):
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
            ok = (
                header.get("kid") in client.jwks
                and claims.get("iss") == client.client_id
                and claims.get("sub") == client.client_id
                and claims.get("aud") == self.t.token_endpoint
                and isinstance(claims.get("exp"), (int, float))
                and isinstance(claims.get("iat"), (int, float))
                and claims["exp"] > now - 5
                and claims["exp"] - claims["iat"] <= 300
                and claims["iat"] <= now + 5
                and is_uuid(claims.get("jti"))
            )
            if not ok or not self.t.state.use_jti(
                "assertion:" + client.client_id, claims["jti"], float(claims["exp"]) + 5
            ):
                return None, fail
            return client, None
        return None, fail

    def token(self, req: Request) -> Response:
        body = self._body(req)
        if body is None:
            return error(
                400, "Bad request", "The body must be a JSON object or a form.", "OAUTH-400"
            )
        basic = basic_credentials(req)
        if basic is not None:
            body = {**body, "client_id": basic[0], "client_secret": basic[1]}
        client, refused = self._client(body)
        if refused is not None or client is None:
            return refused or error(401, "Unauthorized", "Invalid client credentials.", "OAUTH-1")
        # qlik.dev: /oauth/token is Tier 2 (100 a minute); over it, 429 with Retry-After in
        # seconds and the errors shape of the *Rate limiting* page.
        wait = self.t.state.rate_wait(
            "token:" + client.client_id, self.t.token_rate, self.t.token_rate_window
        )
        if wait:
            secs = max(1, math.ceil(wait))
            self.t.state.count("token_rate_limited")
            resp = error(
                429,
                "API rate limit reached.",
                f"You need to wait {secs} seconds until limit is lifted.",
                "HTTP-429",
            )
            resp.headers.append(("Retry-After", str(secs)))
            return resp
        origin = req.header("Origin")
        if origin is not None and origin not in client.allowed_origins:
            return error(
                403, "Forbidden", f"Origin {origin} is not allowed for this client.", "OAUTH-ORIGIN"
            )
        scope = str(body.get("scope") or "user_default")
        if not set(scope.split()) <= set(client.scopes):
            return error(
                400, "Invalid scope", f"The client may not request scope {scope!r}.", "OAUTH-SCOPE"
            )
        grant = body.get("grant_type")
        user_id: str | None = None
        if grant == IMPERSONATION:
            if not client.impersonation:
                return error(
                    403,
                    "Forbidden",
                    "Machine-to-machine impersonation is off for this client.",
                    "OAUTH-IMPERSONATION",
                )
            lookup = body.get("user_lookup")
            if (
                not isinstance(lookup, dict)
                or lookup.get("field") not in ("subject", "userId")
                or not isinstance(lookup.get("value"), str)
            ):
                return error(
                    400,
                    "Bad request",
                    "user_lookup must be {field: subject|userId, value}.",
                    "OAUTH-400",
                )
            rec = (
                self.t.state.user_by_subject(lookup["value"])
                if lookup["field"] == "subject"
                else self.t.state.user(lookup["value"])
            )
            if rec is None or rec.status != "active":
                return error(
                    400,
                    "Invalid user",
                    "The user to impersonate does not exist in the tenant.",
                    "OAUTH-USER",
                )
            user_id = rec.id
        elif grant == "refresh_token":
            old = self.t.state.take_refresh(str(body.get("refresh_token") or ""), client.client_id)
            if old is None:
                return error(
                    400,
                    "Invalid grant",
                    "The refresh token is invalid, used or revoked.",
                    "OAUTH-GRANT",
                )
            user_id, granted = old
            # a refresh may narrow the scope, never widen it (RFC 6749 section 6)
            if body.get("scope") is None:
                scope = granted
            elif not set(scope.split()) <= set(granted.split()):
                return error(
                    400, "Invalid scope", "A refresh may not widen the scope.", "OAUTH-SCOPE"
                )
        elif grant != "client_credentials":
            return error(
                400,
                "Unsupported grant type",
                f"grant_type {grant!r} is not emulated.",
                "OAUTH-GRANT",
            )
        cap = self.t.max_tokens_per_user
        owner = user_id if user_id is not None else bot_user_id(client.client_id)
        if cap is not None and len(self.t.state.live_tokens(owner)) >= cap:
            return error(
                403,
                "Forbidden",
                "The user has the maximum number of OAuth tokens: revoke "
                "some (DELETE /api/v1/oauth-tokens/{id}) or reuse them.",
                "OAUTH-TOKEN-LIMIT",
            )
        tok, exp = self.t.state.new_token(client.client_id, user_id, scope, self.t.token_lifetime)
        self.t.state.count("token_requests")
        if user_id is not None:
            self.t.state.count("token_requests:" + user_id)
        answer = {
            "access_token": tok,
            "token_type": "bearer",
            "expires_in": int(self.t.token_lifetime),
            "expires_at": iso_time(exp),
            "scope": scope,
        }
        if "offline_access" in scope.split():
            answer["refresh_token"] = self.t.state.new_refresh(client.client_id, user_id, scope)
        return Response.json(200, answer, headers=[("Cache-Control", "no-store")])

    def revoke(self, req: Request) -> Response:
        body = self._body(req)
        tok = body.get("token") if body else None
        if not isinstance(tok, str) or not tok:
            return error(400, "Bad request", "token is required.", "OAUTH-400")
        if self.t.state.revoke(tok) or self.t.state.revoke_refresh(tok):
            self.t.state.count("tokens_revoked")
        return Response(200, b"", content_type=None)
