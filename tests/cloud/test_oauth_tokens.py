"""The emulated tenant's OAuth tokens API (qlik.dev: ``/api/v1/oauth-tokens``), over real TLS."""

from __future__ import annotations

import pytest
import requests

from qlikauth.cloud import OAuthClient
from qlikauth.exceptions import QlikEndpointHTTPError

from .conftest import Person

ANN = Person("ann@example.com", "Ann Example", "ann@example.com", True, ("Sales",))
BOB = Person("bob@example.com", "Bob Example", "bob@example.com", True, ())
ADMIN = OAuthClient(
    "admin-client", client_secret="admin-secret", scope="admin_classic user_default"
)


def call(tenant, method, path, token, **kw):
    return requests.request(
        method,
        tenant.url + path,
        verify=str(tenant.root_pem),
        timeout=10,
        headers={"Authorization": f"Bearer {token}", **kw.pop("headers", {})},
        **kw,
    )


@pytest.fixture
def two_users(cloud, issuer, embed_client):
    cloud.jwt_session(issuer.mint(ANN))
    cloud.jwt_session(issuer.mint(BOB))
    ann = cloud.token(embed_client, subject=ANN.sub)
    bob = cloud.token(embed_client, subject=BOB.sub)
    return ann, bob


def test_admin_lists_a_users_tokens_and_revokes_one(cloud, tenant, two_users):
    ann, bob = two_users
    ann_id = tenant.state.user_by_subject(ANN.sub).id
    admin = cloud.token(ADMIN)
    r = call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", admin.access_token)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["userId"] for t in body["data"]] == [ann_id]
    row = body["data"][0]
    assert row["tenantId"] == tenant.tenant_id and row["id"]
    assert set(row) <= {"id", "userId", "lastUsed", "tenantId", "deviceType", "description"}
    assert body["links"]["self"]["href"].startswith(tenant.url + "/api/v1/oauth-tokens")
    # the token works, then the admin revokes it by id and it works no more
    assert cloud.me(access_token=ann)["subject"] == ANN.sub
    assert tenant.token_valid(ann.access_token)
    d = call(tenant, "DELETE", f"/api/v1/oauth-tokens/{row['id']}", admin.access_token)
    assert d.status_code == 204, d.text
    assert not tenant.token_valid(ann.access_token)
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.me(access_token=ann)
    assert exc.value.status_code == 401
    # Bob's token is untouched; Ann's list is now empty; a second delete is 404
    assert tenant.token_valid(bob.access_token)
    assert cloud.me(access_token=bob)["subject"] == BOB.sub
    again = call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", admin.access_token)
    assert again.json()["data"] == []
    assert (
        call(tenant, "DELETE", f"/api/v1/oauth-tokens/{row['id']}", admin.access_token).status_code
        == 404
    )


def test_last_used_is_reported_after_use(cloud, tenant, two_users):
    ann, _ = two_users
    ann_id = tenant.state.user_by_subject(ANN.sub).id
    admin = cloud.token(ADMIN).access_token
    before = call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", admin).json()["data"][0]
    assert "lastUsed" not in before
    cloud.me(access_token=ann)
    after = call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", admin).json()["data"][0]
    assert after["lastUsed"].endswith("Z")


def test_a_user_sees_and_revokes_only_its_own_tokens(cloud, tenant, two_users):
    ann, bob = two_users
    ann_id = tenant.state.user_by_subject(ANN.sub).id
    bob_id = tenant.state.user_by_subject(BOB.sub).id
    # without TenantAdmin the list holds the caller's tokens only, whatever userId says
    own = call(tenant, "GET", "/api/v1/oauth-tokens", bob.access_token).json()["data"]
    assert {t["userId"] for t in own} == {bob_id}
    assert (
        call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", bob.access_token).json()[
            "data"
        ]
        == []
    )
    admin = cloud.token(ADMIN).access_token
    ann_tok = call(tenant, "GET", f"/api/v1/oauth-tokens?userId={ann_id}", admin).json()["data"][0][
        "id"
    ]
    refused = call(tenant, "DELETE", f"/api/v1/oauth-tokens/{ann_tok}", bob.access_token)
    assert refused.status_code == 403 and refused.json()["errors"][0]["title"] == "Forbidden"
    assert tenant.token_valid(ann.access_token)
    # a user may revoke its own token (its last call with it)
    assert (
        call(tenant, "DELETE", f"/api/v1/oauth-tokens/{own[0]['id']}", bob.access_token).status_code
        == 204
    )
    assert not tenant.token_valid(bob.access_token)


def test_callers_without_a_valid_token_or_session_are_refused(tenant, cloud, two_users):
    ann, _ = two_users
    r = requests.get(tenant.url + "/api/v1/oauth-tokens", verify=str(tenant.root_pem), timeout=10)
    assert r.status_code == 401
    assert call(tenant, "GET", "/api/v1/oauth-tokens", "not-a-token").status_code == 401
    assert call(tenant, "DELETE", "/api/v1/oauth-tokens/abc", "not-a-token").status_code == 401
    cloud.revoke(OAuthClient("embed-client", client_secret="embed-secret"), ann)
    assert call(tenant, "GET", "/api/v1/oauth-tokens", ann.access_token).status_code == 401


def test_a_session_needs_the_csrf_token_to_revoke(cloud, issuer, tenant, embed_client):
    session = cloud.jwt_session(issuer.mint(ANN))
    tok = cloud.token(embed_client, subject=ANN.sub)
    jar = {"Cookie": session.cookie_header()}
    listed = requests.get(
        tenant.url + "/api/v1/oauth-tokens", headers=jar, verify=str(tenant.root_pem), timeout=10
    )
    assert listed.status_code == 200
    tid = listed.json()["data"][0]["id"]
    url = f"{tenant.url}/api/v1/oauth-tokens/{tid}"
    no_csrf = requests.delete(url, headers=jar, verify=str(tenant.root_pem), timeout=10)
    assert no_csrf.status_code == 403 and tenant.token_valid(tok.access_token)
    ok = requests.delete(
        url,
        headers={**jar, "qlik-csrf-token": cloud.csrf_token(session)},
        verify=str(tenant.root_pem),
        timeout=10,
    )
    assert ok.status_code == 204 and not tenant.token_valid(tok.access_token)


def test_paging_and_parameter_checks(cloud, tenant, embed_client, issuer):
    cloud.jwt_session(issuer.mint(ANN))
    for _ in range(3):
        cloud.token(embed_client, subject=ANN.sub)
    admin = cloud.token(ADMIN).access_token
    first = call(tenant, "GET", "/api/v1/oauth-tokens?limit=2", admin).json()
    assert len(first["data"]) == 2 and "next" in first["links"]
    nxt = requests.get(
        first["links"]["next"]["href"],
        headers={"Authorization": f"Bearer {admin}"},
        verify=str(tenant.root_pem),
        timeout=10,
    ).json()
    ids = {t["id"] for t in first["data"]} | {t["id"] for t in nxt["data"]}
    assert len(ids) == 4 and "prev" in nxt["links"]  # 3 of Ann's and the admin client's own
    assert call(tenant, "GET", "/api/v1/oauth-tokens?limit=0", admin).status_code == 400
    assert call(tenant, "GET", "/api/v1/oauth-tokens?limit=101", admin).status_code == 400
    assert call(tenant, "GET", "/api/v1/oauth-tokens?sort=name", admin).status_code == 400


def test_token_valid_follows_expiry_and_unknown_tokens(cloud, tenant, two_users):
    ann, _ = two_users
    assert tenant.token_valid(ann.access_token)
    assert not tenant.token_valid("never-issued")
    tenant.state.expire_tokens()
    assert not tenant.token_valid(ann.access_token)


def test_cloud_access_sign_out_revokes_every_token_of_the_user(
    cloud, tenant, two_users, embed_client
):
    """CloudAccess(revoke_all_with=admin): a sign-out revokes the cached token and every other OAuth
    token of the user (another process's, minted outside this cache); other users keep theirs."""
    from qlikauth.cloud import AccessTokenCache, CloudAccess

    ann_elsewhere, bob = two_users
    access = CloudAccess(AccessTokenCache(cloud, embed_client), revoke_all_with=ADMIN)
    cached = access.access_token(ANN)
    assert tenant.token_valid(cached.access_token) and tenant.token_valid(
        ann_elsewhere.access_token
    )
    assert access.logout(ANN) is True
    assert not tenant.token_valid(cached.access_token)
    assert not tenant.token_valid(ann_elsewhere.access_token)
    assert tenant.token_valid(bob.access_token)
    # a user with no tokens left (or unknown to the tenant) is nothing to do, not an error
    assert access.logout(ANN) is False
    # without the admin client only the cached token is revoked
    only_cached = CloudAccess(AccessTokenCache(cloud, embed_client))
    mine, other = only_cached.access_token(BOB), bob
    assert only_cached.logout(BOB) is True
    assert not tenant.token_valid(mine.access_token) and tenant.token_valid(other.access_token)
