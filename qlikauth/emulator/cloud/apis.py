"""The REST APIs: users, the CSRF token, the OAuth tokens API, and (read-only, TenantAdmin)
web integrations and identity providers."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, quote

from cryptography.hazmat.primitives import serialization

from .._web import Request, Response
from .answers import error
from .browser import BrowserRules


class UserApis(BrowserRules):
    """``/api/v1/users``, ``/api/v1/users/me``, ``/api/v1/csrf-token``, ``/api/v1/oauth-tokens``,
    ``GET /api/v1/web-integrations/{id}`` and ``GET /api/v1/identity-providers``."""

    # -- read-only tenant configuration (qlik.dev: Web integrations, Identity providers) --
    def _admin(self, req: Request) -> Response | None:
        """The refusal for a caller without the TenantAdmin role, else None."""
        _, admin, refused = self._caller(req)
        if refused is not None:
            return refused
        if not admin:
            return error(403, "Forbidden", "This API needs the TenantAdmin role.", "HTTP-403")
        return None

    def web_integration(self, req: Request, wid: str) -> Response:
        refused = self._admin(req)
        if refused is not None:
            return refused
        wi = self.t.web_integrations.get(wid)
        if wi is None:
            return error(404, "Not found", "No web integration has this id.", "HTTP-404")
        return Response.json(
            200,
            {
                "id": wi.id,
                "name": wi.name or wi.id,
                "validOrigins": list(wi.origins),
                "tenantId": self.t.tenant_id,
                "links": {"self": {"href": f"{self.t.url}/api/v1/web-integrations/{quote(wi.id)}"}},
            },
        )

    def identity_providers(self, req: Request) -> Response:
        refused = self._admin(req)
        if refused is not None:
            return refused
        data = []
        for n, idp in enumerate(self.t.jwt_idps):
            keys = [
                {
                    "kid": kid,
                    "pem": key.public_bytes(
                        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                    ).decode("ascii"),
                }
                for kid, key in idp.keys.items()
            ]
            data.append(
                {
                    "id": f"jwt-{n}",
                    "tenantIds": [self.t.tenant_id],
                    "provider": "external",
                    "protocol": "jwtAuth",
                    "interactive": False,
                    "active": True,
                    "clockToleranceSec": idp.clock_tolerance,
                    "options": {"jwtLoginEnabled": True, "issuer": idp.issuer, "staticKeys": keys},
                }
            )
        return Response.json(
            200,
            {"data": data, "links": {"self": {"href": f"{self.t.url}/api/v1/identity-providers"}}},
        )

    # -- /api/v1/oauth-tokens (qlik.dev: OAuth tokens API) ------------------------------
    def list_tokens(self, req: Request) -> Response:
        caller, admin, refused = self._caller(req)
        if refused is not None:
            return refused
        q = parse_qs(req.query)
        user_id: str | None = q["userId"][0] if q.get("userId") else None
        sort = (q.get("sort") or ["userId"])[0]
        if sort != "userId":
            return error(400, "Bad request", 'sort must be "userId".', "OAUTH-TOKENS-400")
        try:
            limit = int((q.get("limit") or ["100"])[0])
            start = int((q.get("page") or ["0"])[0])
        except ValueError:
            return error(400, "Bad request", "limit and page must be numbers.", "OAUTH-TOKENS-400")
        if not 1 <= limit <= 100 or start < 0:
            return error(400, "Bad request", "limit must be 1 to 100.", "OAUTH-TOKENS-400")
        if not admin:
            # a user without TenantAdmin sees only its own tokens
            if user_id is not None and user_id != caller:
                return Response.json(
                    200,
                    {"data": [], "links": {"self": {"href": f"{self.t.url}/api/v1/oauth-tokens"}}},
                )
            user_id = caller
        toks = sorted(self.t.state.live_tokens(user_id), key=lambda t: t.owner())
        page = toks[start : start + limit]
        base = f"{self.t.url}/api/v1/oauth-tokens?limit={limit}" + (
            f"&userId={quote(user_id, safe='')}" if user_id is not None else ""
        )
        links: dict[str, Any] = {"self": {"href": f"{base}&page={start}"}}
        if start + limit < len(toks):
            links["next"] = {"href": f"{base}&page={start + limit}"}
        if start > 0:
            links["prev"] = {"href": f"{base}&page={max(0, start - limit)}"}
        return Response.json(
            200, {"data": [t.as_json(self.t.tenant_id) for t in page], "links": links}
        )

    def delete_token(self, req: Request, token_id: str) -> Response:
        caller, admin, refused = self._caller(req)
        if refused is not None:
            return refused
        mine = [t for t in self.t.state.live_tokens() if t.id == token_id]
        if not mine:
            return error(404, "Not found", "No active OAuth token has this id.", "OAUTH-TOKENS-404")
        if not admin and mine[0].owner() != caller:
            return error(
                403,
                "Forbidden",
                "Revoking another user's token needs the TenantAdmin role.",
                "HTTP-403",
            )
        if self.t.state.revoke_id(token_id):
            self.t.state.count("tokens_revoked")
        return Response(204, b"", content_type=None)

    def csrf_token(self, req: Request) -> Response:
        s = self._session(req)
        if s is None:
            return error(401, "Unauthorized", "No session.", "HTTP-401")
        return Response(204, b"", content_type=None, headers=[("qlik-csrf-token", s[1])])

    def me(self, req: Request) -> Response:
        user_id: str | None = None
        if (req.header("Authorization") or "").lower().startswith("bearer "):
            tok = self._bearer(req)
            if tok is None:
                return error(
                    401, "Unauthorized", "Invalid, expired or revoked access token.", "HTTP-401"
                )
            user_id = tok.user_id
            if user_id is None:
                return error(
                    403, "Forbidden", "A client_credentials token belongs to no user.", "HTTP-403"
                )
        else:
            s = self._session(req)
            if s is None:
                return error(401, "Unauthorized", "No session.", "HTTP-401")
            user_id = s[0]
        rec = self.t.state.user(user_id)
        if rec is None:
            return error(404, "Not found", "The user no longer exists.", "HTTP-404")
        return Response.json(200, rec.as_json(self.t.tenant_id))

    def users(self, req: Request) -> Response:
        tok = self._bearer(req)
        session = None if tok is not None else self._session(req)
        if tok is None and session is None:
            return error(
                401, "Unauthorized", "An access token or a session is required.", "HTTP-401"
            )
        if req.method == "GET":
            q = parse_qs(req.query)
            flt = (q.get("filter") or [""])[0]
            users = self.t.state.users()
            if flt:
                m = re.fullmatch(r'\s*(subject|email|id)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', flt)
                if m is None:
                    return error(
                        400,
                        "Bad request",
                        'The emulator understands filter=subject|email|id eq "...".',
                        "HTTP-400",
                    )
                field_name, value = m.group(1), re.sub(r"\\(.)", r"\1", m.group(2))
                users = [
                    u for u in users if str(getattr(u, field_name)).casefold() == value.casefold()
                ]
            return Response.json(
                200,
                {
                    "data": [u.as_json(self.t.tenant_id) for u in users],
                    "links": {"self": {"href": f"{self.t.url}/api/v1/users"}},
                },
            )
        if session is not None:
            if req.header("qlik-csrf-token") != session[1]:
                return error(
                    403,
                    "Forbidden",
                    "A state-changing call with a session needs qlik-csrf-token.",
                    "CSRF-1",
                )
            return error(403, "Forbidden", "Creating users needs the TenantAdmin role.", "HTTP-403")
        assert tok is not None
        if not {"admin_classic", "admin.users"} & set(tok.scope.split()):
            return error(
                403,
                "Forbidden",
                "The access token's scope does not allow creating users.",
                "HTTP-403",
            )
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            return error(400, "Bad request", "The body is not JSON.", "HTTP-400")
        subject = body.get("subject") if isinstance(body, dict) else None
        if not isinstance(subject, str) or not subject:
            return error(400, "Bad request", "subject is required.", "HTTP-400")
        if self.t.state.user_by_subject(subject) is not None:
            return error(409, "Conflict", "A user with this subject exists.", "USERS-409")
        rec = self.t.state.upsert_user(
            subject,
            str(body.get("name") or subject),
            str(body.get("email") or ""),
            False,
            None,
            "users-api",
        )
        self.t.state.count("users_created")
        return Response.json(201, rec.as_json(self.t.tenant_id))
