"""``POST /login/jwt-session``: Qlik Cloud's JWT login, with every claim rule."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from ...exceptions import JwtError
from ...jose import verify_jwt
from ...jwtkeys import ASYMMETRIC_ALGORITHMS
from .._web import Request, Response
from .answers import error
from .browser import BrowserRules
from .config import (
    JWT_AUDIENCE,
    REQUIRED_CLAIMS,
)


class JwtLogin(BrowserRules):
    """The JWT login endpoint."""

    # -- /login/jwt-session --------------------------------------------------------
    def jwt_session(self, req: Request) -> Response:
        refused = self._origin_allowed(req)
        if refused is not None:
            return refused
        if not self.t.state.login_allowed(self.t.jwt_login_rate):
            return error(
                429, "Too many requests", "/login/jwt-session takes 100 calls a minute.", "HTTP-429"
            )
        auth = req.header("Authorization") or ""
        if not auth.lower().startswith("bearer ") or not auth[7:].strip():
            return error(401, "Unauthorized", "Missing bearer token.", "LOGIN-1")
        token = auth[7:].strip()

        def invalid(detail: str) -> Response:
            return error(
                400, "Invalid token request", f"JWT_LOGIN_VALIDATIONS {detail}", "INTERNAL-TOKEN-1"
            )

        try:
            header_raw = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
        except (ValueError, IndexError):
            return error(401, "Unauthorized", "The token is not a JWT.", "LOGIN-1")
        alg = header_raw.get("alg") if isinstance(header_raw, dict) else None
        if alg not in ASYMMETRIC_ALGORITHMS:
            return invalid(f"Unsupported algorithm: {alg}")
        kid = header_raw.get("kid")
        if not isinstance(kid, str) or not kid:
            return invalid("Missing required header: kid")
        idps = [i for i in self.t.jwt_idps if kid in i.keys]
        if not idps:
            return error(401, "Unauthorized", "No identity provider has this kid.", "LOGIN-2")
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
            return error(401, "Unauthorized", "The token's signature does not verify.", "LOGIN-2")
        for name in REQUIRED_CLAIMS:
            if name not in claims:
                return invalid(f"Missing required claim: {name}")
        if claims["iss"] != idp.issuer:
            return error(
                401, "Unauthorized", "The token's issuer matches no identity provider.", "LOGIN-2"
            )
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
        if groups is not None and (
            not isinstance(groups, list) or not all(isinstance(g, str) for g in groups)
        ):
            return invalid("groups must be an array of strings")
        if not self.t.state.use_jti("jwt:" + idp.issuer, claims["jti"], float(claims["exp"]) + tol):
            return invalid("jti has already been used")
        user = self.t.state.upsert_user(
            claims["sub"],
            claims["name"],
            claims["email"],
            claims["email_verified"],
            groups if groups is not None else [],
            "jwt",
        )
        self.t.state.count("jwt_logins")
        sid, csrf = self.t.state.new_session(user.id)
        attrs = "Path=/; Secure; HttpOnly; SameSite=None"
        cookies = [
            ("eas.sid", sid),
            ("eas.sid.sig", self.t.sign(sid)),
            ("_csrfToken", csrf),
            ("_csrfToken.sig", self.t.sign(csrf)),
        ]
        return Response.json(
            200, {}, headers=[("Set-Cookie", f"{n}={v}; {attrs}") for n, v in cookies]
        )
