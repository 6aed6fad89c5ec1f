"""django_qlikauth.cloud: the access-token endpoint behind Django's CSRF check, against the emulated
tenant."""

from __future__ import annotations

import pytest
from _django_setup import configure_django

configure_django()

import qlikauth_cloud_test_urls as urls  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django_qlikauth.cloud import cloud_urls  # noqa: E402
from django_qlikauth.conf import remove_sign_out  # noqa: E402

from qlikauth.cloud import (  # noqa: E402
    AccessTokenCache,
    CloudAccess,
    CloudJwtIssuer,
    OAuthClient,
    QlikCloud,
    UserProvisioner,
)
from qlikauth.jwtkeys import SigningKey  # noqa: E402
from qlikauth.mapping import CloudIdentity  # noqa: E402
from qlikauth.web.cloud import CloudPortal  # noqa: E402


@pytest.fixture
def tenant_and_portal():
    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig

    key = SigningKey.generate("RS256", kid="dj")
    with CloudTenant(
        jwt_idps=[JwtIdentityProvider("https://dj-portal", {"dj": key.public_key})],
        oauth_clients=[OAuthClientConfig("dj", client_secret="dj-secret")],
    ) as tenant:
        cloud = QlikCloud(tenant.url, verify=tenant.root_pem)
        tokens = AccessTokenCache(cloud, OAuthClient("dj", client_secret="dj-secret"))
        access = CloudAccess(
            tokens,
            UserProvisioner(
                cloud, issuer=CloudJwtIssuer(key, "https://dj-portal"), store=tokens.store
            ),
        )

        def identity(req):
            sub = (req.session or {}).get("cloud_sub")
            return (
                CloudIdentity(
                    sub=sub,
                    name=sub,
                    email=sub,
                    email_verified=True,
                    groups=("Sales",),
                    realm="ACME",
                )
                if sub
                else None
            )

        portal = CloudPortal(access=access, identity=identity)
        urls.urlpatterns = urls.base + cloud_urls(portal)
        yield tenant, cloud
        remove_sign_out(portal)  # this test's tenant is gone: later sign-outs must not ask it
        cloud.close()


@override_settings(ROOT_URLCONF="qlikauth_cloud_test_urls")
def test_access_token_needs_djangos_csrf_token(tenant_and_portal):
    tenant, cloud = tenant_and_portal
    c = Client(enforce_csrf_checks=True)
    csrf = c.get("/signin/alice").content.decode()
    assert c.post("/qlik/cloud/access-token").status_code == 403  # no CSRF token
    assert c.get("/qlik/cloud/access-token").status_code == 405
    r = c.post("/qlik/cloud/access-token", HTTP_X_CSRFTOKEN=csrf)
    assert r.status_code == 200, r.content
    assert r["Cache-Control"] == "no-store" and r["Content-Type"].startswith("text/plain")
    assert cloud.me(access_token=r.content.decode())["subject"] == "alice@example.com"
    assert (
        c.post(
            "/qlik/cloud/access-token", HTTP_X_CSRFTOKEN=csrf, HTTP_SEC_FETCH_SITE="cross-site"
        ).status_code
        == 403
    )
    assert Client(enforce_csrf_checks=True).post("/qlik/cloud/access-token").status_code == 403
    assert tenant.state.counter("token_requests") == 1


@pytest.mark.parametrize("how", ["Django logout", "POST /qlik/logout"])
def test_one_sign_out_ends_the_hub_sessions_and_the_cloud_token(
    tenant_and_portal, emulator_factory, how
):
    from qlikauth import QlikUser
    from qlikauth.emulator import VirtualProxy

    tenant, cloud = tenant_and_portal
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])
    qlik = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("mashup"),
        "VIRTUAL_PROXY": "mashup",
        "USER_DIRECTORY": "PORTAL",
        "MODE": "session",
    }
    alice = QlikUser("PORTAL", "alice")
    with override_settings(ROOT_URLCONF="qlikauth_cloud_test_urls", QLIKAUTH=qlik):
        c = Client(enforce_csrf_checks=True)
        csrf = c.get("/signin/alice").content.decode()
        assert c.get("/qlik/login").status_code == 302
        assert len(emu.state.sessions(user=alice)) == 1
        token = c.post("/qlik/cloud/access-token", HTTP_X_CSRFTOKEN=csrf).content.decode()
        assert cloud.me(access_token=token)["subject"] == "alice@example.com"
        if how == "Django logout":
            assert c.get("/signout").status_code == 200
        else:
            assert c.post("/qlik/logout", {"next": "/"}, HTTP_X_CSRFTOKEN=csrf).status_code == 302
        assert emu.state.sessions(user=alice) == []  # every node's proxy sessions ended
        assert tenant.state.counter("tokens_revoked") == 1  # the cloud token revoked ...
        with pytest.raises(Exception, match="401"):
            cloud.me(access_token=token)
        again = c.post("/qlik/cloud/access-token", HTTP_X_CSRFTOKEN=c.cookies["csrftoken"].value)
        if how == "Django logout":
            assert again.status_code == 401  # ... and the endpoint refuses
        else:  # ... and forgotten: a fresh one
            assert again.status_code == 200 and again.content.decode() != token
            assert tenant.state.counter("token_requests") == 2
