"""Fixtures: one emulated Qlik Cloud tenant with a JWT IdP, two OAuth clients and a web
integration."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from qlikauth.cloud import CloudJwtIssuer, OAuthClient, QlikCloud
from qlikauth.jwtkeys import SigningKey

ISSUER = "https://portal.example.com"
PORTAL_ORIGIN = "https://portal.example.com"
WEB_INTEGRATION = "wi-portal-1"


@dataclass(frozen=True)
class Person:
    """A Qlik Cloud identity (what qlikauth.mapping.CloudIdentity carries)."""

    sub: str
    name: str
    email: str
    email_verified: bool = True
    groups: tuple[str, ...] = ()


@pytest.fixture(scope="session")
def idp_key():
    return SigningKey.generate("RS256", kid="portal-key-1")


@pytest.fixture(scope="session")
def client_key():
    return SigningKey.generate("ES384", kid="oauth-key-1")


@pytest.fixture
def tenant(idp_key, client_key):
    from qlikauth.emulator.cloud import (
        CloudTenant,
        JwtIdentityProvider,
        OAuthClientConfig,
        WebIntegration,
    )

    with CloudTenant(
        jwt_idps=[JwtIdentityProvider(ISSUER, {idp_key.kid: idp_key.public_key})],
        oauth_clients=[
            OAuthClientConfig(
                "embed-client",
                client_secret="embed-secret",
                allowed_origins=(PORTAL_ORIGIN,),
                scopes=("user_default",),
            ),
            OAuthClientConfig("pkjwt-client", jwks={client_key.kid: client_key.public_key}),
            OAuthClientConfig("admin-client", client_secret="admin-secret", impersonation=False),
        ],
        web_integrations=[WebIntegration(WEB_INTEGRATION, (PORTAL_ORIGIN,))],
    ) as t:
        yield t


@pytest.fixture
def cloud(tenant):
    c = QlikCloud(tenant.url, verify=tenant.root_pem)
    yield c
    c.close()


@pytest.fixture
def issuer(idp_key):
    return CloudJwtIssuer(idp_key, ISSUER)


@pytest.fixture
def embed_client():
    return OAuthClient("embed-client", client_secret="embed-secret")
