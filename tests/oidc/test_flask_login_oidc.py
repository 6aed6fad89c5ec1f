"""An OIDC sign-in as a Flask-Login sign-in (``QlikOidc(login_user_with=...)``), against qlikauth's
local OpenID provider and the QPS emulator: each way the sign-in ends (back-channel logout received
without the browser, the idle cap, ``/oidc/logout``) logs the Flask-Login user out."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from flask import Flask
from flask_login import LoginManager, UserMixin, current_user
from flask_qlikauth import QlikAuth
from flask_qlikauth.oidc import QlikOidc

from qlikauth.emulator.oidc_op import OidcProvider
from qlikauth.web import oidc

PORTAL = "https://portal.test"
SECRET = "portal-secret-" + "z" * 20
CALLBACK = f"{PORTAL}/oidc/callback"


class User(UserMixin):
    def __init__(self, uid: str) -> None:
        self.id = uid


@pytest.fixture
def portal(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="ticket")])
    client = {"client_id": "portal", "client_secret": SECRET, "redirect_uris": [CALLBACK]}
    with OidcProvider(host="127.0.0.1", clients=[client]) as op:
        app = Flask(__name__)
        app.config.update(
            SECRET_KEY="test",
            TESTING=True,
            SESSION_COOKIE_SECURE=True,
            QLIKAUTH_QPS_NODES=emu.qps_url,
            QLIKAUTH_CERTS=str(emu.certs_dir),
            QLIKAUTH_HUB_URL=emu.hub_url_for("sso"),
            QLIKAUTH_VIRTUAL_PROXY="sso",
            QLIKAUTH_OIDC={
                "ISSUER": op.issuer,
                "CLIENT_ID": "portal",
                "CLIENT_SECRET": SECRET,
                "REDIRECT_URI": CALLBACK,
                "SESSION_IDLE_TIMEOUT": 600,
            },
        )
        known: dict[str, User] = {}
        LoginManager(app).user_loader(known.get)
        QlikAuth(app, user_loader=QlikOidc.current_user)
        QlikOidc(
            app,
            login_user_with=lambda u: known.setdefault(u.qualified_name, User(u.qualified_name)),
        )

        @app.get("/me")
        def me() -> str:
            return current_user.get_id() if current_user.is_authenticated else "anonymous"

        yield app, op


def _sign_in(app: Flask, op: OidcProvider) -> Any:
    b = app.test_client()
    r = b.get("/oidc/login?next=/me", base_url=PORTAL)
    at_op = requests.Session()
    page = at_op.get(r.headers["Location"], timeout=10)
    action = page.text.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
    back = at_op.post(
        op.issuer + action,
        data={"username": "alice", "password": "demo"},
        allow_redirects=False,
        timeout=10,
    )
    done = b.get(back.headers["Location"][len(PORTAL) :], base_url=PORTAL)
    assert done.status_code == 302 and done.headers["Location"] == "/me"
    assert b.get("/me", base_url=PORTAL).get_data(as_text=True) == "OIDC\\alice@example.com"
    return b


def test_back_channel_logout_logs_the_flask_login_user_out(portal: Any) -> None:
    app, op = portal
    b = _sign_in(app, op)
    sid = next(iter(op.sessions))
    token = op.logout_token("portal", op.users["alice"].claims["sub"], sid)
    assert (
        app.test_client()
        .post("/oidc/backchannel-logout", base_url=PORTAL, data={"logout_token": token})
        .status_code
        == 200
    )
    assert b.get("/me", base_url=PORTAL).get_data(as_text=True) == "anonymous"


def test_the_idle_cap_logs_the_flask_login_user_out(portal: Any) -> None:
    app, op = portal
    b = _sign_in(app, op)
    with b.session_transaction(base_url=PORTAL) as s:
        record = dict(s[oidc.OIDC_SESSION_KEY])
        record["seen"] = time.time() - 3600  # idle an hour, past SESSION_IDLE_TIMEOUT
        s[oidc.OIDC_SESSION_KEY] = record
    assert b.get("/me", base_url=PORTAL).get_data(as_text=True) == "anonymous"
    assert b.get("/me", base_url=PORTAL).get_data(as_text=True) == "anonymous"


def test_oidc_logout_logs_the_flask_login_user_out(portal: Any) -> None:
    app, op = portal
    b = _sign_in(app, op)
    r = b.post("/oidc/logout", base_url=PORTAL, data={"next": "/"}, headers={"Origin": PORTAL})
    assert r.status_code == 302
    assert b.get("/me", base_url=PORTAL).get_data(as_text=True) == "anonymous"
