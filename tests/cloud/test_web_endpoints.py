"""The Qlik Cloud endpoints (qlikauth.web.cloud) in a real Flask app, against the emulated tenant
over TLS.

The access-token endpoint for qlik-embed's data-get-access-token: same-origin only, no-store,
never logged, one token request however often a page asks.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask, session
from flask_qlikauth import QlikAuth
from flask_qlikauth.cloud import cloud_blueprint

from qlikauth import QlikUser
from qlikauth.cloud import AccessTokenCache, CloudAccess, UserProvisioner
from qlikauth.web.cloud import CloudPortal, identity_from_user

from .conftest import PORTAL_ORIGIN, WEB_INTEGRATION

SAME = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def app(tenant, cloud, issuer, embed_client, emulator_factory) -> Any:
    emu = emulator_factory()
    tokens = AccessTokenCache(cloud, embed_client)
    portal = CloudPortal(
        access=CloudAccess(tokens, UserProvisioner(cloud, issuer=issuer, store=tokens.store)),
        jwt_issuer=issuer,
    )
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url + "/hub/",
        QLIKAUTH_MODE="session",
        QLIKAUTH_LOGIN_URL="/signin/nobody",
    )
    ext = QlikAuth()

    @ext.user_loader
    def load() -> QlikUser | None:
        name = session.get("user")
        return (
            QlikUser("ACME", name, [("group", "Sales"), ("name", "Ann Example")]) if name else None
        )

    ext.init_app(app)
    app.register_blueprint(cloud_blueprint(portal))

    @app.route("/signin/<name>")
    def signin(name: str) -> str:
        session["user"] = name
        return "ok"

    @app.post("/logout")
    def logout() -> Any:
        # the portal's own sign-out, as examples/flask_portal does it
        response = app.response_class("signed out")
        try:
            ext.end_sessions(response)
        finally:
            session.clear()
        return response

    app.portal = portal  # type: ignore[attr-defined]
    app.emu = emu  # type: ignore[attr-defined]
    return app


ANN = QlikUser("ACME", "ann@example.com")


def _hub_session_and_token(app, c):
    """Sign ann in: a proxy session on the QSEoW side (session mode) and a Qlik Cloud token."""
    c.get("/signin/ann@example.com")
    assert c.get("/qlik/login").status_code == 302
    assert len(app.emu.state.sessions(user=ANN)) == 1
    r = c.post("/qlik/cloud/access-token", headers=SAME)
    assert r.status_code == 200, r.data
    return r.get_data(as_text=True)


@pytest.mark.parametrize("how", ["portal sign-out (QlikAuth.end_sessions)", "POST /qlik/logout"])
def test_one_sign_out_ends_the_hub_sessions_and_the_cloud_token(app, cloud, tenant, how):
    c = app.test_client()
    token = _hub_session_and_token(app, c)
    if how == "POST /qlik/logout":
        assert c.post("/qlik/logout", data={"next": "/"}, headers=SAME).status_code == 302
    else:
        assert c.post("/logout").status_code == 200
    assert app.emu.state.sessions(user=ANN) == []  # every node's proxy sessions ended
    assert tenant.state.counter("tokens_revoked") == 1  # revoked at the tenant
    with pytest.raises(Exception, match="401"):
        cloud.me(access_token=token)
    if how == "POST /qlik/logout":  # still signed in to the portal: a new token
        fresh = c.post("/qlik/cloud/access-token", headers=SAME).get_data(as_text=True)
        assert fresh != token and cloud.me(access_token=fresh)["subject"] == "ann@example.com"
        assert tenant.state.counter("token_requests") == 2  # the cache forgot the revoked one
    else:  # signed out of the portal: refused
        assert c.post("/qlik/cloud/access-token", headers=SAME).status_code == 401


def test_cloud_token_is_revoked_even_when_qps_fails(app, cloud, tenant):
    c = app.test_client()
    token = _hub_session_and_token(app, c)
    app.emu.stop()  # QPS down at sign-out
    r = c.post("/qlik/logout", data={"next": "/"}, headers=SAME)
    # the sign-out finishes (what the node could not end is pending), the token is revoked
    assert r.status_code == 302
    assert app.extensions["qlikauth"].runtime.pending.count() >= 1
    assert tenant.state.counter("tokens_revoked") == 1
    with pytest.raises(Exception, match="401"):
        cloud.me(access_token=token)


def test_cloud_blueprint_before_init_app_is_a_configuration_error(cloud, embed_client):
    from qlikauth.exceptions import ConfigurationError

    portal = CloudPortal(access=CloudAccess(AccessTokenCache(cloud, embed_client)))
    with pytest.raises(ConfigurationError, match="after QlikAuth.init_app"):
        Flask(__name__).register_blueprint(cloud_blueprint(portal))


def test_access_token_for_qlik_embed(app, cloud, tenant, caplog):
    caplog.set_level(logging.DEBUG)
    c = app.test_client()
    assert c.post("/qlik/cloud/access-token", headers=SAME).status_code == 401  # not signed in
    c.get("/signin/ann@example.com")
    r = c.post("/qlik/cloud/access-token", headers=SAME)
    assert r.status_code == 200, r.data
    assert r.headers["Cache-Control"] == "no-store" and r.mimetype == "text/plain"
    assert "Access-Control-Allow-Origin" not in r.headers
    token = r.get_data(as_text=True)
    me = cloud.me(access_token=token)
    assert me["subject"] == "ann@example.com" and me["name"] == "Ann Example"
    assert [g["name"] for g in me["assignedGroups"]] == ["Sales"]  # ensure-user set the groups
    for _ in range(20):
        assert c.post("/qlik/cloud/access-token", headers=SAME).get_data(as_text=True) == token
    assert tenant.state.counter("token_requests") == 1 and tenant.state.counter("jwt_logins") == 1
    assert token not in caplog.text


def test_access_token_refuses_cross_site_and_get(app):
    c = app.test_client()
    c.get("/signin/ann@example.com")
    for headers in (
        {},
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example.com/page"},
    ):
        r = c.post("/qlik/cloud/access-token", headers=headers)
        assert r.status_code == 403, headers
        assert r.headers["Cache-Control"] == "no-store"
    assert c.get("/qlik/cloud/access-token").status_code == 405


def test_logout_revokes_the_token(app, cloud, tenant):
    c = app.test_client()
    c.get("/signin/ann@example.com")
    token = c.post("/qlik/cloud/access-token", headers=SAME).get_data(as_text=True)
    assert c.post("/qlik/cloud/logout", headers=SAME).status_code == 204
    assert tenant.state.counter("tokens_revoked") == 1
    with pytest.raises(Exception, match="401"):
        cloud.me(access_token=token)
    assert (
        c.post("/qlik/cloud/logout", headers={"Origin": "https://evil.example.com"}).status_code
        == 403
    )


def test_browser_jwt_sign_in(app, cloud):
    c = app.test_client()
    c.get("/signin/ann@example.com")
    jwt = c.post("/qlik/cloud/jwt", headers=SAME)
    assert jwt.status_code == 200 and jwt.headers["Cache-Control"] == "no-store"
    # what the browser then does itself, from the portal's origin
    s = cloud.jwt_session(
        jwt.get_data(as_text=True), web_integration_id=WEB_INTEGRATION, origin=PORTAL_ORIGIN
    )
    assert cloud.me(session=s)["subject"] == "ann@example.com"


def test_identity_from_user_follows_the_seed_000_convention():
    ident = identity_from_user(QlikUser("ACME", "ann@example.com", [("group", "Sales")]))
    assert (ident.sub, ident.email, ident.realm, tuple(ident.groups)) == (
        "ann@example.com",
        "ann@example.com",
        "ACME",
        ("Sales",),
    )
    assert identity_from_user(QlikUser("ACME", "jdoe")) is None
