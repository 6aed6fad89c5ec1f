"""What Qlik Cloud's /oauth/token accepts and the emulated tenant must not refuse: Basic client
credentials, the admin.users and offline_access scopes, and the refresh_token grant."""

from __future__ import annotations

import base64

import pytest
import requests

from .conftest import Person

ANN = Person("ann@example.com", "Ann Example", "ann@example.com", True, ())


def _post(tenant, path="/oauth/token", **kw):
    return requests.post(tenant.url + path, verify=str(tenant.root_pem), timeout=10, **kw)


def _basic(cid, secret):
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


def test_basic_client_credentials(tenant):
    ok = _post(
        tenant,
        data={"grant_type": "client_credentials", "scope": "admin_classic"},
        headers={"Authorization": _basic("admin-client", "admin-secret")},
    )
    assert ok.status_code == 200, ok.text
    assert tenant.token_valid(ok.json()["access_token"])
    wrong = _post(
        tenant,
        data={"grant_type": "client_credentials"},
        headers={"Authorization": _basic("admin-client", "nope")},
    )
    assert wrong.status_code == 401


def test_admin_users_scope_creates_users(tenant):
    tok = _post(
        tenant,
        json={
            "grant_type": "client_credentials",
            "client_id": "admin-client",
            "client_secret": "admin-secret",
            "scope": "admin.users",
        },
    )
    assert tok.status_code == 200, tok.text
    created = _post(
        tenant,
        "/api/v1/users",
        json={"subject": "carol@example.com", "name": "Carol"},
        headers={"Authorization": f"Bearer {tok.json()['access_token']}"},
    )
    assert created.status_code == 201, created.text


def test_offline_access_gives_a_refresh_token_that_refreshes_once(cloud, issuer, tenant):
    cloud.jwt_session(issuer.mint(ANN))
    from qlikauth.emulator.cloud import OAuthClientConfig

    tenant.add_oauth_client(OAuthClientConfig("app", client_secret="s"))
    first = _post(
        tenant,
        json={
            "grant_type": "urn:qlik:oauth:user-impersonation",
            "client_id": "app",
            "client_secret": "s",
            "scope": "user_default offline_access",
            "user_lookup": {"field": "subject", "value": ANN.sub},
        },
    )
    assert first.status_code == 200, first.text
    rt = first.json()["refresh_token"]
    again = _post(
        tenant,
        data={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": _basic("app", "s")},
    )
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["scope"] == "user_default offline_access" and body["refresh_token"] != rt
    assert cloud.me(access_token=body["access_token"])["subject"] == ANN.sub
    # the used refresh token is spent; another client cannot use the new one
    assert (
        _post(
            tenant,
            data={
                "grant_type": "refresh_token",
                "refresh_token": rt,
                "client_id": "app",
                "client_secret": "s",
            },
        ).status_code
        == 400
    )
    assert (
        _post(
            tenant,
            data={
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "client_id": "admin-client",
                "client_secret": "admin-secret",
            },
        ).status_code
        == 400
    )


@pytest.mark.parametrize("scope", ["user_default", "admin_classic"])
def test_without_offline_access_there_is_no_refresh_token(tenant, scope):
    r = _post(
        tenant,
        json={
            "grant_type": "client_credentials",
            "client_id": "admin-client",
            "client_secret": "admin-secret",
            "scope": scope,
        },
    )
    assert r.status_code == 200 and "refresh_token" not in r.json()
