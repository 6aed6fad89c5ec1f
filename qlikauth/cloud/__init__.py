"""Qlik Cloud: JWT sign-in, OAuth machine-to-machine impersonation for qlik-embed, ensure-user.

Qlik's own libraries for these are Node-only; this is the Python side, framework-free:

- :class:`CloudJwtIssuer` mints JWT-login tokens with every claim Qlik Cloud requires;
  :meth:`QlikCloud.jwt_session` exchanges one for a session, :meth:`QlikCloud.csrf_token`
  gets the CSRF token;
- :class:`OAuthClient` (``client_secret`` or ``private_key_jwt``) and
  :meth:`QlikCloud.token` get impersonation or client-credentials tokens;
  :class:`AccessTokenCache` keeps them per user in a :class:`~qlikauth.store.StateStore`
  (early refresh, single-flight across threads and processes);
- :class:`UserProvisioner` is the ensure-user step before the first impersonation, and
  :class:`CloudAccess` the two together, for the portal's token endpoint.
"""

from __future__ import annotations

from .client import (
    CLIENT_ASSERTION_TYPE,
    IMPERSONATION_GRANT,
    JWT_SESSION_AUDIENCE,
    SESSION_COOKIES,
    AccessToken,
    CloudJwtIssuer,
    CloudSession,
    CloudUser,
    OAuthClient,
    QlikCloud,
)
from .tokens import AccessTokenCache, CloudAccess, UserProvisioner

__all__ = [
    "QlikCloud",
    "CloudJwtIssuer",
    "CloudSession",
    "CloudUser",
    "OAuthClient",
    "AccessToken",
    "AccessTokenCache",
    "UserProvisioner",
    "CloudAccess",
    "JWT_SESSION_AUDIENCE",
    "IMPERSONATION_GRANT",
    "CLIENT_ASSERTION_TYPE",
    "SESSION_COOKIES",
]
