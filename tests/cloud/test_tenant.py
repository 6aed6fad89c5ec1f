"""The qlikauth Qlik Cloud client against the emulated tenant, over real TLS.

Each Qlik Cloud JWT claim rule has a refusal test: the bad tokens are made with PyJWT (an
independent library) from the IdP's own key, so only the broken rule differs.
"""

from __future__ import annotations

import secrets
import time

import jwt as pyjwt
import pytest
import requests

from qlikauth.cloud import (
    AccessTokenCache,
    CloudAccess,
    CloudJwtIssuer,
    OAuthClient,
    QlikCloud,
    UserProvisioner,
)
from qlikauth.exceptions import QlikEndpointConnectionError, QlikEndpointHTTPError
from qlikauth.jwtkeys import SigningKey

from .conftest import ISSUER, PORTAL_ORIGIN, WEB_INTEGRATION, Person

ANN = Person("ann@example.com", "Ann Example", "ann@example.com", True, ("Sales", "Finance"))


def good_claims(**over):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": "qlik.api/login/jwt-session",
        "sub": "bob@example.com",
        "subType": "user",
        "name": "Bob",
        "email": "bob@example.com",
        "email_verified": True,
        "jti": secrets.token_hex(16),
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
        "groups": ["Ops"],
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def pem(key):
    return key.private_pem()


def make(idp_key, claims, *, alg="RS256", kid="portal-key-1", key=None):
    return pyjwt.encode(
        claims,
        key if key is not None else pem(idp_key),
        algorithm=alg,
        headers={"kid": kid} if kid else None,
    )


def refused(cloud, token, status, text, **kw):
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.jwt_session(token, **kw)
    assert exc.value.status_code == status, str(exc.value)
    assert text in str(exc.value), str(exc.value)
    return exc.value


# -- JWT login ---------------------------------------------------------------------------


def test_jwt_login_creates_the_user_with_groups_and_a_session(cloud, issuer, tenant):
    session = cloud.jwt_session(issuer.mint(ANN))
    assert set(session.cookies) == {"eas.sid", "eas.sid.sig", "_csrfToken", "_csrfToken.sig"}
    me = cloud.me(session=session)
    assert me["subject"] == "ann@example.com" and me["email"] == "ann@example.com"
    assert [g["name"] for g in me["assignedGroups"]] == ["Sales", "Finance"]
    csrf = cloud.csrf_token(session)
    assert csrf and csrf == session.cookies["_csrfToken"]
    # a second login with other groups updates the same user
    cloud.jwt_session(issuer.mint(Person(ANN.sub, ANN.name, ANN.email, True, ("Sales",))))
    assert len(tenant.state.users()) == 1
    assert tenant.state.user_by_subject(ANN.sub).groups == ["Sales"]


def test_browser_login_needs_an_allowed_origin_and_the_web_integration(cloud, issuer):
    ok = cloud.jwt_session(
        issuer.mint(ANN), web_integration_id=WEB_INTEGRATION, origin=PORTAL_ORIGIN
    )
    assert "eas.sid" in ok.cookies
    refused(cloud, issuer.mint(ANN), 403, "qlik-web-integration-id", origin=PORTAL_ORIGIN)
    refused(
        cloud,
        issuer.mint(ANN),
        403,
        "not allowed",
        web_integration_id=WEB_INTEGRATION,
        origin="https://evil.example.com",
    )
    refused(
        cloud,
        issuer.mint(ANN),
        403,
        "Unknown web integration",
        web_integration_id="nope",
        origin=PORTAL_ORIGIN,
    )


def test_deniedmissing_nbf_has_qliks_published_shape(cloud, idp_key):
    exc = refused(
        cloud,
        make(idp_key, good_claims(nbf=None)),
        400,
        "JWT_LOGIN_VALIDATIONS Missing required claim: nbf",
    )
    assert exc.errors == [
        {
            "title": "Invalid token request",
            "detail": "JWT_LOGIN_VALIDATIONS Missing required claim: nbf",
            "code": "INTERNAL-TOKEN-1",
            "status": "400",
        }
    ]


def test_deniedmissing_jti(cloud, idp_key):
    refused(cloud, make(idp_key, good_claims(jti=None)), 400, "Missing required claim: jti")


def test_deniedreplayed_jti(cloud, idp_key):
    token = make(idp_key, good_claims())
    cloud.jwt_session(token)
    refused(cloud, token, 400, "jti has already been used")
    # the same jti in a freshly signed token is a replay too
    claims = pyjwt.decode(token, options={"verify_signature": False})
    refused(cloud, make(idp_key, good_claims(jti=claims["jti"])), 400, "jti has already been used")


def test_deniedwindow_over_an_hour(cloud, idp_key):
    now = int(time.time())
    refused(
        cloud,
        make(idp_key, good_claims(nbf=now - 5, exp=now + 3596)),
        400,
        "exp - nbf must not exceed 3600",
    )
    cloud.jwt_session(
        make(idp_key, good_claims(nbf=now - 5, exp=now + 3595))
    )  # exactly 3600: accepted


def test_deniedhs256_even_keyed_with_the_public_key(cloud, idp_key):
    token = pyjwt.encode(
        good_claims(),
        "a-shared-secret-of-32-bytes-long!",
        algorithm="HS256",
        headers={"kid": idp_key.kid},
    )
    refused(cloud, token, 400, "Unsupported algorithm: HS256")


def test_deniedwrong_audience(cloud, idp_key):
    refused(cloud, make(idp_key, good_claims(aud="qlik.api")), 400, "Invalid audience")


def test_deniedunknown_kid(cloud, idp_key):
    refused(
        cloud,
        make(idp_key, good_claims(), kid="other-key"),
        401,
        "No identity provider has this kid",
    )
    refused(cloud, make(idp_key, good_claims(), kid=None), 400, "Missing required header: kid")


def test_deniednbf_in_the_future(cloud, idp_key):
    now = int(time.time())
    refused(
        cloud,
        make(idp_key, good_claims(nbf=now + 120, iat=now, exp=now + 600)),
        400,
        "not yet valid",
    )


def test_deniedexpired_wrong_issuer_bad_signature_and_subtype(cloud, idp_key):
    now = int(time.time())
    refused(
        cloud,
        make(idp_key, good_claims(nbf=now - 700, iat=now - 700, exp=now - 60)),
        400,
        "Token expired",
    )
    refused(cloud, make(idp_key, good_claims(iss="https://portal.example")), 401, "issuer")
    other = SigningKey.generate("RS256", kid="portal-key-1")
    refused(cloud, make(idp_key, good_claims(), key=other.private_pem()), 401, "signature")
    refused(cloud, make(idp_key, good_claims(subType="client")), 400, "subType")
    refused(cloud, make(idp_key, good_claims(email_verified="yes")), 400, "email_verified")


def test_qlikauth_minted_tokens_pass_and_pyjwt_agrees(cloud, issuer, idp_key):
    token = issuer.mint(ANN)
    pyjwt.decode(
        token,
        idp_key.public_key,
        algorithms=["RS256"],
        audience="qlik.api/login/jwt-session",
        issuer=ISSUER,
    )
    assert "eas.sid" in cloud.jwt_session(token).cookies


@pytest.mark.parametrize("alg", ["ES256", "PS256"])
def test_other_families_are_accepted(tenant, cloud, alg):
    from qlikauth.emulator.cloud import JwtIdentityProvider

    key = SigningKey.generate(alg, kid=f"k-{alg}")
    tenant.add_jwt_idp(
        JwtIdentityProvider("https://other-idp.example.com", {key.kid: key.public_key})
    )
    assert (
        "eas.sid"
        in cloud.jwt_session(CloudJwtIssuer(key, "https://other-idp.example.com").mint(ANN)).cookies
    )


def test_csrf_and_me_need_a_session(cloud, tenant):
    from qlikauth.cloud import CloudSession

    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.csrf_token(CloudSession({"eas.sid": "forged", "eas.sid.sig": "x"}))
    assert exc.value.status_code == 401


def test_tls_is_verified(tenant):
    c = QlikCloud(tenant.url)  # system trust: the emulator's CA is not in it
    with pytest.raises(QlikEndpointConnectionError, match="TLS"):
        c.me(access_token="x")


# -- OAuth -------------------------------------------------------------------------------


def test_impersonation_needs_the_user_first(cloud, embed_client, issuer):
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.token(embed_client, subject=ANN.sub)
    assert exc.value.status_code == 400 and "does not exist" in str(exc.value)
    cloud.jwt_session(issuer.mint(ANN))
    token = cloud.token(embed_client, subject=ANN.sub)
    assert 21500 < token.expires_in() <= 21600
    me = cloud.me(access_token=token)
    assert me["subject"] == ANN.sub and [g["name"] for g in me["assignedGroups"]] == [
        "Sales",
        "Finance",
    ]
    by_id = cloud.token(embed_client, user_id=me["id"])
    assert cloud.me(access_token=by_id)["id"] == me["id"]


def test_private_key_jwt_client(cloud, issuer, client_key, tenant):
    cloud.jwt_session(issuer.mint(ANN))
    client = OAuthClient("pkjwt-client", private_key=client_key)
    assert cloud.me(access_token=cloud.token(client, subject=ANN.sub))["subject"] == ANN.sub
    assert cloud.token(client).access_token  # client_credentials
    # an assertion is used once
    body = {"grant_type": "client_credentials", **client.credentials(cloud.token_endpoint)}
    ok = requests.post(cloud.token_endpoint, json=body, verify=str(tenant.root_pem), timeout=10)
    again = requests.post(cloud.token_endpoint, json=body, verify=str(tenant.root_pem), timeout=10)
    assert ok.status_code == 200 and again.status_code == 401
    # an assertion for another audience, or by another key, is refused
    wrong_aud = client.credentials("https://other-tenant.example.com/oauth/token")
    other = OAuthClient("pkjwt-client", private_key=SigningKey.generate("ES384", kid="oauth-key-1"))
    for creds in (wrong_aud, other.credentials(cloud.token_endpoint)):
        r = requests.post(
            cloud.token_endpoint,
            json={"grant_type": "client_credentials", **creds},
            verify=str(tenant.root_pem),
            timeout=10,
        )
        assert r.status_code == 401


def test_private_key_jwt_assertion_jti_is_a_new_uuid(cloud, issuer, client_key, tenant):
    """qlik.dev (Private Key JWT reference): jti is "a new UUID for each token request"."""
    import uuid

    client = OAuthClient("pkjwt-client", private_key=client_key)
    jtis = [
        pyjwt.decode(
            client.credentials(cloud.token_endpoint)["client_assertion"],
            options={"verify_signature": False},
        )["jti"]
        for _ in range(3)
    ]
    assert len(set(jtis)) == 3 and all(str(uuid.UUID(j)) == j for j in jtis)
    assert cloud.token(client).access_token
    # the tenant refuses an assertion whose jti is not a UUID (signed by the right key)
    now = int(time.time())
    claims = {
        "iss": "pkjwt-client",
        "sub": "pkjwt-client",
        "aud": cloud.token_endpoint,
        "jti": secrets.token_urlsafe(24),
        "iat": now,
        "exp": now + 60,
    }
    bad = client_key.sign(claims)
    r = requests.post(
        cloud.token_endpoint,
        verify=str(tenant.root_pem),
        timeout=10,
        json={
            "grant_type": "client_credentials",
            "client_id": "pkjwt-client",
            "client_assertion": bad,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },
    )
    assert r.status_code == 401


def test_client_auth_origin_and_impersonation_rules(cloud, issuer, tenant):
    cloud.jwt_session(issuer.mint(ANN))
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.token(OAuthClient("embed-client", client_secret="wrong"), subject=ANN.sub)
    assert exc.value.status_code == 401
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.token(OAuthClient("admin-client", client_secret="admin-secret"), subject=ANN.sub)
    assert exc.value.status_code == 403  # impersonation off for this client
    r = requests.post(
        cloud.token_endpoint,
        verify=str(tenant.root_pem),
        timeout=10,
        headers={"Origin": "https://evil.example.com"},
        json={
            "grant_type": "client_credentials",
            "client_id": "embed-client",
            "client_secret": "embed-secret",
        },
    )
    assert r.status_code == 403
    with pytest.raises(QlikEndpointHTTPError, match="scope"):
        cloud.token(
            OAuthClient("embed-client", client_secret="embed-secret"), scope="admin_classic"
        )


def test_revoke_and_expiry_end_a_token(cloud, embed_client, issuer, tenant):
    cloud.jwt_session(issuer.mint(ANN))
    token = cloud.token(embed_client, subject=ANN.sub)
    cloud.revoke(embed_client, token)
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.me(access_token=token)
    assert exc.value.status_code == 401
    second = cloud.token(embed_client, subject=ANN.sub)
    tenant.state.expire_tokens()
    with pytest.raises(QlikEndpointHTTPError):
        cloud.me(access_token=second)


def test_users_api_ensure_user(cloud, tenant):
    admin = OAuthClient(
        "admin-client", client_secret="admin-secret", scope="admin_classic user_default"
    )
    prov = UserProvisioner(cloud, method="users-api", admin_client=admin)
    carol = Person("carol@example.com", "Carol", "carol@example.com")
    assert prov.ensure(carol) is True
    assert tenant.state.user_by_subject(carol.sub).created_by == "users-api"
    prov.forget(carol)
    assert prov.ensure(carol) is True  # runs again: finds the user, creates nothing
    assert tenant.state.counter("users_created") == 1
    token = cloud.token(
        OAuthClient("embed-client", client_secret="embed-secret"), subject=carol.sub
    )
    assert cloud.me(access_token=token)["subject"] == carol.sub


def test_cloud_access_ensures_then_caches(cloud, issuer, embed_client, tenant):
    tokens = AccessTokenCache(cloud, embed_client)
    access = CloudAccess(tokens, UserProvisioner(cloud, issuer=issuer, store=tokens.store))
    first = access.access_token(ANN)
    for _ in range(20):
        assert access.access_token(ANN).access_token == first.access_token
    assert tenant.state.counter("jwt_logins") == 1
    assert tenant.state.counter("token_requests") == 1
    assert access.logout(ANN) is True
    assert tenant.state.counter("tokens_revoked") == 1
    assert access.access_token(ANN).access_token != first.access_token


def test_cache_refreshes_before_the_tenant_expires_the_token(tenant, cloud, issuer, embed_client):
    tenant.token_lifetime = 62.0
    cloud.jwt_session(issuer.mint(ANN))
    cache = AccessTokenCache(cloud, embed_client, refresh_margin=60.5)
    first = cache.get(ANN.sub)
    time.sleep(1.7)  # now inside the refresh margin, still valid at the tenant
    second = cache.get(ANN.sub)
    assert second.access_token != first.access_token
    assert cloud.me(access_token=first)["subject"] == ANN.sub  # the old one was still valid
    assert tenant.state.counter("token_requests") == 2


def test_a_ca_bundle_that_went_away_is_a_connection_error(tenant, tmp_path):
    """requests raises a bare OSError for a missing CA file; the channel names the endpoint
    instead."""
    import shutil

    from qlikauth.cloud import QlikCloud
    from qlikauth.exceptions import QlikEndpointConnectionError

    ca = tmp_path / "root.pem"
    shutil.copy(tenant.root_pem, ca)
    cloud = QlikCloud(tenant.url, verify=ca)
    ca.unlink()
    with pytest.raises(QlikEndpointConnectionError, match="CA bundle"):
        cloud.me(access_token="x")
    cloud.close()


def test_cors_for_access_tokens_follows_the_oauth_clients_allowed_origins(
    tenant, cloud, issuer, embed_client
):
    """A browser calling the tenant with an access token: CORS for the token's client's allowed
    origins only."""
    from qlikauth.emulator.cloud import OAuthClientConfig

    embed_origin = "https://embed.example.com"
    tenant.add_oauth_client(
        OAuthClientConfig(
            "embed-2", client_secret="s2", scopes=("user_default",), allowed_origins=(embed_origin,)
        )
    )
    cloud.jwt_session(issuer.mint(ANN))
    other = cloud.token(OAuthClient("embed-2", client_secret="s2"), subject=ANN.sub).access_token
    portal_token = cloud.token(
        embed_client, subject=ANN.sub
    ).access_token  # allowed origin: PORTAL_ORIGIN
    url = tenant.url + "/api/v1/users/me"

    def get(token, origin):
        return requests.get(
            url,
            headers={"Authorization": f"Bearer {token}", "Origin": origin},
            verify=tenant.root_pem,
            timeout=10,
        )

    def preflight(origin):
        return requests.options(
            url,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
            verify=tenant.root_pem,
            timeout=10,
        )

    ok = preflight(embed_origin)  # an OAuth client's origin, on no web integration
    assert ok.status_code == 204 and ok.headers["Access-Control-Allow-Origin"] == embed_origin
    assert "authorization" in ok.headers["Access-Control-Allow-Headers"]
    evil = preflight("https://evil.example.com")
    assert evil.status_code == 403 and "Access-Control-Allow-Origin" not in evil.headers

    r = get(other, embed_origin)
    assert r.status_code == 200 and r.json()["email"] == ANN.email
    assert r.headers["Access-Control-Allow-Origin"] == embed_origin
    crossed = get(portal_token, embed_origin)  # a token of a client that does not allow this origin
    assert "Access-Control-Allow-Origin" not in crossed.headers
    assert get(portal_token, PORTAL_ORIGIN).headers["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
    assert "Access-Control-Allow-Origin" not in get(other, "https://evil.example.com").headers
    cloud.revoke(OAuthClient("embed-2", client_secret="s2"), other)
    revoked = get(other, embed_origin)  # the page can read that its token is no longer good
    assert (
        revoked.status_code == 401
        and revoked.headers["Access-Control-Allow-Origin"] == embed_origin
    )


def test_warm_cache_look_ups_follow_the_store(cloud, issuer, embed_client, tenant):
    """The warm path remembers store keys and the parse of the exact stored bytes: the store
    still decides. Another process's logout (same store) is seen at once, a revoked token is
    not kept in this process, and a changed group set runs ensure-user again."""
    from qlikauth.store import MemoryStore

    shared = MemoryStore()
    here = CloudAccess(
        AccessTokenCache(cloud, embed_client, shared),
        UserProvisioner(cloud, issuer=issuer, store=shared),
    )
    there = CloudAccess(
        AccessTokenCache(cloud, embed_client, shared),
        UserProvisioner(cloud, issuer=issuer, store=shared),
    )
    first = here.access_token(ANN)
    assert there.access_token(ANN).access_token == first.access_token
    assert tenant.state.counter("token_requests") == 1
    assert there.logout(ANN) is True  # the other process signs the user out
    second = here.access_token(ANN)
    assert second.access_token != first.access_token and tenant.state.counter("token_requests") == 2
    assert here.logout(ANN) is True
    kept = b"".join(
        raw for raw in here.tokens._parsed
    )  # this process forgets the revoked token's bytes
    assert second.access_token.encode() not in kept
    assert tenant.state.counter("jwt_logins") == 1
    regrouped = Person(ANN.sub, ANN.name, ANN.email, groups=("Only",))
    here.access_token(
        regrouped
    )  # another group set: ensure-user again (a JWT login sets the groups)
    assert tenant.state.counter("jwt_logins") == 2
    narrower = AccessTokenCache(cloud, embed_client, shared)
    narrower.scope = "user_default admin_classic"  # another scope is another token
    assert narrower._key(ANN.sub) != here.tokens._key(ANN.sub)


def test_cookie_calls_from_a_browser_name_the_web_integration_of_their_origin(
    tenant, cloud, issuer
):
    """A browser's cookie call needs qlik-web-integration-id, and the origin must be on THAT one."""
    from qlikauth.emulator.cloud import WebIntegration

    other_origin = "https://other.example.com"
    tenant.add_web_integration(WebIntegration("wi-other", (other_origin,)))
    session = cloud.jwt_session(
        issuer.mint(ANN), web_integration_id=WEB_INTEGRATION, origin=PORTAL_ORIGIN
    )

    def get(path, origin, wid=None):
        headers = {"Cookie": session.cookie_header(), "Origin": origin}
        if wid is not None:
            headers["qlik-web-integration-id"] = wid
        return requests.get(tenant.url + path, headers=headers, verify=tenant.root_pem, timeout=10)

    for path in ("/api/v1/users/me", "/api/v1/csrf-token"):
        missing = get(path, PORTAL_ORIGIN)
        assert missing.status_code == 403, path
        assert "qlik-web-integration-id" in missing.json()["errors"][0]["detail"]
        # the origin is allowed by some web integration, but not by the one the call names
        crossed = get(path, PORTAL_ORIGIN, "wi-other")
        assert crossed.status_code == 403 and "Access-Control-Allow-Origin" not in crossed.headers
        assert get(path, other_origin, WEB_INTEGRATION).status_code == 403
        ok = get(path, PORTAL_ORIGIN, WEB_INTEGRATION)
        assert ok.status_code in (200, 204), ok.text
        assert ok.headers["Access-Control-Allow-Origin"] == PORTAL_ORIGIN
    # a backend call (no Origin) needs no web integration
    assert cloud.me(session=session)["subject"] == ANN.sub


def test_web_integration_and_identity_providers_read_by_a_tenant_admin(tenant, cloud, idp_key):
    from cryptography.hazmat.primitives import serialization

    from qlikauth.jwtkeys import public_key_from_pem

    admin = cloud.token(
        OAuthClient("admin-client", client_secret="admin-secret"), scope="admin_classic"
    )
    wi = cloud.web_integration(WEB_INTEGRATION, access_token=admin)
    assert wi["id"] == WEB_INTEGRATION and wi["validOrigins"] == [PORTAL_ORIGIN]
    with pytest.raises(QlikEndpointHTTPError) as missing:
        cloud.web_integration("wi-nope", access_token=admin)
    assert missing.value.status_code == 404
    [idp] = cloud.identity_providers(access_token=admin)
    assert idp["protocol"] == "jwtAuth" and idp["options"]["issuer"] == ISSUER
    [key] = idp["options"]["staticKeys"]
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key["kid"] == idp_key.kid
    assert public_key_from_pem(key["pem"]).public_bytes(*der) == idp_key.public_key.public_bytes(
        *der
    )
    # Not a tenant admin (no admin_classic) or no token at all: refused.
    user_token = cloud.token(OAuthClient("admin-client", client_secret="admin-secret"))
    for call in (
        lambda: cloud.identity_providers(access_token=user_token),
        lambda: cloud.web_integration(WEB_INTEGRATION, access_token=user_token),
        lambda: cloud.identity_providers(access_token="not-a-token"),
    ):
        with pytest.raises(QlikEndpointHTTPError) as denied:
            call()
        assert denied.value.status_code in (401, 403)
