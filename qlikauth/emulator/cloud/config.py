"""The tenant's configuration: JWT identity providers, OAuth clients, web integrations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ...jwtkeys import PublicKey

JWT_AUDIENCE = "qlik.api/login/jwt-session"
IMPERSONATION = "urn:qlik:oauth:user-impersonation"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ("RS256", "RS512", "ES384")
REQUIRED_CLAIMS = (
    "iss",
    "aud",
    "sub",
    "subType",
    "name",
    "email",
    "email_verified",
    "jti",
    "iat",
    "nbf",
    "exp",
)


@dataclass(frozen=True)
class JwtIdentityProvider:
    """A JWT identity provider of the tenant: its issuer and its key(s) by ``kid``."""

    issuer: str
    keys: Mapping[str, PublicKey]
    clock_tolerance: float = 5.0


@dataclass(frozen=True)
class OAuthClientConfig:
    """An OAuth client: secret and/or private_key_jwt keys, impersonation, scopes, origins."""

    client_id: str
    client_secret: str | None = None
    jwks: Mapping[str, PublicKey] = field(default_factory=dict)
    impersonation: bool = True
    scopes: tuple[str, ...] = ("user_default", "admin_classic", "admin.users", "offline_access")
    allowed_origins: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebIntegration:
    """A web integration: its id and the origins it allows (browsers calling the tenant);
    ``name`` is what the Management Console shows."""

    id: str
    origins: tuple[str, ...]
    name: str = ""
