"""The tenant's routes: each request to the endpoint that does its job."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import unquote

from .._web import Request, Response
from .answers import error
from .apis import UserApis
from .login import JwtLogin
from .oauth import OAuthEndpoints

if TYPE_CHECKING:
    from .tenant import CloudTenant


class TenantHandler(JwtLogin, UserApis, OAuthEndpoints):
    """The tenant's HTTP behaviour: ``Request -> Response``, routed to the endpoint of each job."""

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
        elif path == "/api/v1/identity-providers" and req.method == "GET":
            handler = self.identity_providers
        elif path.startswith("/api/v1/web-integrations/") and req.method == "GET":
            wid = unquote(path[len("/api/v1/web-integrations/") :])

            def handler(r: Request) -> Response:
                return self.web_integration(r, wid)

        elif path.startswith("/api/v1/oauth-tokens/") and req.method == "DELETE":

            def handler(r: Request) -> Response:
                return self.delete_token(r, path[len("/api/v1/oauth-tokens/") :])

        if handler is not None:
            refused = self._browser_cookie_call(req)
            return self._cors(req, refused if refused is not None else handler(req))
        if path == "/oauth/token" and req.method == "POST":
            return self.token(req)
        if path == "/oauth/revoke" and req.method == "POST":
            return self.revoke(req)
        return error(404, "Not found", f"{req.method} {path} is not emulated.", "HTTP-404")
