"""Qlik Cloud's limits on /oauth/token, emulated, and how qlikauth's client copes with them.

qlik.dev *Rate limiting*: over a limit the tenant answers 429 with ``Retry-After`` (seconds) and
``{"errors": [{"code": "HTTP-429", ...}]}``; /oauth/token takes 100 calls a minute.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from qlikauth.cloud import AccessTokenCache, OAuthClient, QlikCloud, UserProvisioner
from qlikauth.exceptions import QlikEndpointHTTPError

from .conftest import ISSUER, PORTAL_ORIGIN, Person

ANN = Person("ann@example.com", "Ann Example", "ann@example.com", True, ("Sales",))
EMBED = OAuthClient("embed-client", client_secret="embed-secret")
ADMIN = OAuthClient(
    "admin-client", client_secret="admin-secret", scope="admin_classic user_default"
)


@pytest.fixture
def make_tenant(idp_key):
    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig

    started = []

    def make(**kw):
        t = CloudTenant(
            jwt_idps=[JwtIdentityProvider(ISSUER, {idp_key.kid: idp_key.public_key})],
            oauth_clients=[
                OAuthClientConfig(
                    "embed-client",
                    client_secret="embed-secret",
                    allowed_origins=(PORTAL_ORIGIN,),
                    scopes=("user_default",),
                ),
                OAuthClientConfig(
                    "admin-client", client_secret="admin-secret", impersonation=False
                ),
            ],
            **kw,
        ).start()
        started.append(t)
        return t

    yield make
    for t in started:
        t.stop()


def _post_token(tenant):
    return requests.post(
        tenant.token_endpoint,
        verify=str(tenant.root_pem),
        timeout=10,
        json={
            "grant_type": "client_credentials",
            "client_id": "admin-client",
            "client_secret": "admin-secret",
            "scope": "admin_classic",
        },
    )


def test_the_tenant_answers_429_with_retry_after_over_the_limit(make_tenant):
    tenant = make_tenant(token_rate=3)
    assert [_post_token(tenant).status_code for _ in range(3)] == [200, 200, 200]
    over = _post_token(tenant)
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    err = over.json()["errors"][0]
    assert err["code"] == "HTTP-429" and err["title"] == "API rate limit reached."
    assert tenant.state.counter("token_rate_limited") == 1


def test_the_client_waits_retry_after_and_tries_again(make_tenant):
    tenant = make_tenant(token_rate=1, token_rate_window=1.0)
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem, max_retry_wait=5)
    try:
        cloud.token(ADMIN)
        start = time.monotonic()
        assert cloud.token(ADMIN).access_token  # 429, Retry-After: 1, then 200
        assert time.monotonic() - start >= 0.9
        assert tenant.state.counter("token_rate_limited") >= 1
    finally:
        cloud.close()


def test_a_long_retry_after_is_raised_at_once(make_tenant):
    tenant = make_tenant(token_rate=1)
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem, max_retry_wait=2)
    try:
        cloud.token(ADMIN)
        start = time.monotonic()
        with pytest.raises(QlikEndpointHTTPError) as exc:
            cloud.token(ADMIN)
        assert exc.value.status_code == 429 and exc.value.retry_after > 2
        assert time.monotonic() - start < 1.5
        assert "AccessTokenCache" in str(exc.value)
    finally:
        cloud.close()


def test_the_cache_stays_single_flight_through_a_429(make_tenant, idp_key):
    from qlikauth.cloud import CloudJwtIssuer

    tenant = make_tenant(token_rate=1, token_rate_window=1.0)
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem, max_retry_wait=5)
    try:
        cloud.jwt_session(CloudJwtIssuer(idp_key, ISSUER).mint(ANN))
        cloud.token(EMBED)  # the client's budget for this second is spent
        cache = AccessTokenCache(cloud, EMBED)
        got: list[str] = []
        threads = [
            threading.Thread(target=lambda: got.append(cache.get(ANN.sub).access_token))
            for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(got) == 8 and len(set(got)) == 1
        assert cache.fetches == 1  # one caller waited out the 429; the others took its token
        assert tenant.state.counter("token_rate_limited") <= 2
    finally:
        cloud.close()


def test_the_tenant_refuses_a_token_beyond_the_maximum_with_403(make_tenant, idp_key):
    from qlikauth.cloud import CloudJwtIssuer

    tenant = make_tenant(max_tokens_per_user=2)
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem)
    try:
        cloud.jwt_session(CloudJwtIssuer(idp_key, ISSUER).mint(ANN))
        first = cloud.token(EMBED, subject=ANN.sub)
        cloud.token(EMBED, subject=ANN.sub)
        with pytest.raises(QlikEndpointHTTPError) as exc:
            cloud.token(EMBED, subject=ANN.sub)
        assert exc.value.status_code == 403 and "maximum number" in str(exc.value)
        cloud.revoke(EMBED, first)
        assert cloud.token(EMBED, subject=ANN.sub).access_token  # room again
    finally:
        cloud.close()


def test_users_api_provisioning_reuses_its_admin_token(make_tenant):
    tenant = make_tenant()
    cloud = QlikCloud(tenant.url, verify=tenant.root_pem)
    try:
        prov = UserProvisioner(cloud, method="users-api", admin_client=ADMIN)
        for i in range(4):
            assert prov.ensure(Person(f"u{i}@example.com", f"U{i}", f"u{i}@example.com")) is True
        assert prov.admin_tokens == 1 and tenant.state.counter("token_requests") == 1
        assert tenant.state.counter("users_created") == 4
        # the tenant ends the admin token early: one fresh token, and the user is still made
        tenant.state.expire_tokens()
        assert prov.ensure(Person("u9@example.com", "U9", "u9@example.com")) is True
        assert prov.admin_tokens == 2 and tenant.state.user_by_subject("u9@example.com") is not None
    finally:
        cloud.close()
