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

Split by job, as the QSEoW emulator is: ``config`` (identity providers, OAuth clients, web
integrations), ``state`` (users, sessions, tokens, counters), ``browser`` (origins, CORS, the
session cookie and bearer tokens), ``login`` (``/login/jwt-session``), ``apis`` (users, CSRF
token, OAuth tokens API), ``oauth`` (``/oauth/token``, ``/oauth/revoke``), ``handler`` (the
routes), ``tenant`` (the server), ``cli`` (``qlikauth cloud-emulator``).
"""

from __future__ import annotations

from .cli import add_arguments, main, parse_jwt_idp, parse_oauth_client, parse_web_integration, run
from .config import JwtIdentityProvider, OAuthClientConfig, WebIntegration
from .state import CloudTenantState, CloudUserRecord
from .tenant import CloudTenant

__all__ = [
    "CloudTenant",
    "CloudTenantState",
    "CloudUserRecord",
    "JwtIdentityProvider",
    "OAuthClientConfig",
    "WebIntegration",
    "add_arguments",
    "main",
    "parse_jwt_idp",
    "parse_oauth_client",
    "parse_web_integration",
    "run",
]
