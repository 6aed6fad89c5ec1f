"""django_qlikauth.oidc with Django's test client: the real provider, the emulator over mutual TLS.

The provider redirects to the portal's callback (the test client follows with the same query);
its back-channel logout_token, POSTed to the logout sink, is handed to the Django view as the
provider would send it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from _django_setup import configure_django

configure_django()

from django.conf import settings  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from qlikauth.emulator import VirtualProxy  # noqa: E402

from .site import SECRET  # noqa: E402

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django_qlikauth.oidc.OidcSessionMiddleware",
]


@pytest.fixture
def django_site(emulator_factory: Any, op: Any, logout_sink: Any) -> Any:
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="portal", method="ticket")])
    op.add_client(
        {
            "client_id": "portal-django",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            "redirect_uris": ["https://testserver/oidc/callback"],
            "post_logout_redirect_uris": ["https://testserver/"],
            "backchannel_logout_uri": logout_sink.url,
            "backchannel_logout_session_required": True,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
    )
    qlikauth = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("portal"),
        "VIRTUAL_PROXY": "portal",
        "OIDC": {
            "ISSUER": op.issuer,
            "CLIENT_ID": "portal-django",
            "CLIENT_SECRET": SECRET,
            "TOKEN_ENDPOINT_AUTH_METHOD": "client_secret_post",
            "REDIRECT_URI": "https://testserver/oidc/callback",
            "CA_BUNDLE": op.ca_bundle,
            "SCOPES": ["openid", "email", "profile", "groups"],
            "POST_LOGOUT_REDIRECT_URI": "https://testserver/",
            "CLAIMS": {
                "USER_ID": "preferred_username",
                "USER_DIRECTORY": "CLINIC",
                "ATTRIBUTES": {"group": "groups", "email": "email"},
            },
        },
    }
    with override_settings(
        QLIKAUTH=qlikauth, MIDDLEWARE=MIDDLEWARE, ROOT_URLCONF="oidc.oidc_django_urls"
    ):
        yield emu


def django_sign_in(client: Client, op: Any, user: str) -> Any:
    start = client.get("/oidc/login", secure=True)
    assert start.status_code == 302, start.content[:300]
    assert (
        "__Host-qlikauth-oidc" in start.cookies
        and start.cookies["__Host-qlikauth-oidc"]["samesite"] == "None"
    )
    answer = op.sign_in(start["Location"], user)
    parts = urlsplit(answer["url"])
    return client.get(parts.path, answer["params"], secure=True)


def test_django_sign_in_and_backchannel_logout(django_site: Any, op: Any, logout_sink: Any) -> None:
    emu = django_site
    client = Client()
    before_key = client.cookies.get("sessionid")
    answer = django_sign_in(client, op, "alice")
    assert answer.status_code == 302 and answer["Location"].startswith(emu.hub_url_for("portal"))
    assert "qlikTicket=" in answer["Location"] and answer["Cache-Control"] == "no-store"
    assert client.cookies["sessionid"] is not before_key
    # the hub redeems the ticket: a proxy session for the mapped user
    import requests

    hub = requests.Session()
    hub.trust_env = False
    page = hub.get(answer["Location"], verify=str(emu.certs_dir / "root.pem"), timeout=10)
    assert (
        '<dd id="user">CLINIC\\alice</dd>' in page.text and "email=alice@example.com" in page.text
    )
    assert client.get("/whoami", secure=True).json()["user"] == "CLINIC\\alice"
    # the provider's back-channel logout
    sessions = [s for s in emu.state.sessions("portal") if s.user.user_id == "alice"]
    assert len(sessions) == 1
    sid = client.session["_qlikauth_oidc"]["key"]["session"]
    op.backchannel_logout("portal-django", "a1b2c3-alice", sid)
    token = logout_sink.received[-1]["logout_token"]
    provider = Client()
    done = provider.post("/oidc/backchannel-logout", {"logout_token": token}, secure=True)
    assert done.status_code == 200 and done["Cache-Control"] == "no-store"
    assert [s for s in emu.state.sessions("portal") if s.user.user_id == "alice"] == []
    assert client.get("/whoami", secure=True).json()["user"] is None
    replay = provider.post("/oidc/backchannel-logout", {"logout_token": token}, secure=True)
    assert replay.status_code == 400 and replay.json()["error_description"] == "logout_replay"


def test_django_refusals_are_pages_without_tokens(django_site: Any, op: Any) -> None:
    emu = django_site
    client = Client()
    start = client.get("/oidc/login", secure=True)
    answer = op.sign_in(start["Location"], "bob")
    before = emu.state.qps_requests
    other = Client()
    stolen = other.get(urlsplit(answer["url"]).path, answer["params"], secure=True)
    assert stolen.status_code == 400 and b"<html" in stolen.content.lower()
    assert answer["params"]["code"].encode() not in stolen.content
    assert emu.state.qps_requests == before
    bad_target = client.get("/oidc/login", {"target": "https://evil.example/"}, secure=True)
    assert bad_target.status_code == 400
    # logout needs Django's CSRF token on the POST
    csrf_client = Client(enforce_csrf_checks=True)
    assert csrf_client.post("/oidc/logout", secure=True).status_code == 403


def test_no_token_code_or_state_in_the_logs(
    django_site: Any, op: Any, logout_sink: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    client = Client()
    start = client.get("/oidc/login", secure=True)
    answer = op.sign_in(start["Location"], "alice")
    path = urlsplit(answer["url"]).path
    assert client.get(path, answer["params"], secure=True).status_code == 302
    assert (
        client.get(path, answer["params"], secure=True).status_code == 400
    )  # replay: refused, logged
    record = client.session["_qlikauth_oidc"]
    op.backchannel_logout("portal-django", record["key"]["subject"], record["key"]["session"])
    token = logout_sink.received[-1]["logout_token"]
    Client().post("/oidc/backchannel-logout", {"logout_token": token}, secure=True)
    Client().post(
        "/oidc/backchannel-logout", {"logout_token": token}, secure=True
    )  # replay: refused, logged
    # the portal's own log lines (urllib3's lines here are the test browser's visits to the
    # provider)
    text = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith(("qlikauth", "django"))
    )
    assert "refused" in text or "already used" in text
    for secret in (
        answer["params"]["code"],
        answer["params"]["state"],
        token,
        token.split(".")[2],
        SECRET,
    ):
        assert secret not in text


def test_absolute_and_idle_caps_with_a_moved_clock(django_site: Any, op: Any) -> None:
    """sso_session with ``now`` moved past each cap: the SSO session ends and so do its proxy
    sessions."""
    import requests
    from django_qlikauth.conf import get_runtime

    from qlikauth.web import oidc
    from qlikauth.web.flows import WebRequest

    emu = django_site
    runtime = get_runtime()
    s = oidc._oidc(runtime).settings
    assert (s.session_max_age, s.session_idle_timeout) == (8 * 3600.0, 1800.0)  # the defaults
    hub = requests.Session()
    hub.trust_env = False
    for cap, offset in (
        ("SESSION_MAX_AGE", s.session_max_age + 1),
        ("SESSION_IDLE_TIMEOUT", s.session_idle_timeout + 1),
    ):
        client = Client()
        answer = django_sign_in(client, op, "alice")
        hub.get(answer["Location"], verify=str(emu.certs_dir / "root.pem"), timeout=10)
        record = dict(client.session["_qlikauth_oidc"])
        assert [x for x in emu.state.sessions("portal") if x.user.user_id == "alice"]
        session = {
            "_qlikauth_oidc": record,
            "_qlikauth_signin": dict(client.session["_qlikauth_signin"]),
        }
        started = record["started"]
        if (
            cap == "SESSION_IDLE_TIMEOUT"
        ):  # active until a while ago, started recently: only idle passes
            state = oidc.sso_session(
                WebRequest("GET", "/", session=session), runtime, now=started + 10
            )
            assert state.user is not None and state.ended is None
            record = session["_qlikauth_oidc"]
        now = record["seen"] + offset if cap == "SESSION_IDLE_TIMEOUT" else started + offset
        state = oidc.sso_session(WebRequest("GET", "/", session=session), runtime, now=now)
        assert state.user is None and cap in (state.ended or ""), state
        assert "_qlikauth_oidc" not in session
        assert state.cookies and state.cookies[0].deletes
        assert [x for x in emu.state.sessions("portal") if x.user.user_id == "alice"] == []


def test_frontchannel_logout_ends_only_this_browsers_own_session(django_site: Any, op: Any) -> None:

    emu = django_site
    client = Client()
    assert client.get("/oidc/frontchannel-logout", secure=True).status_code == 404  # off by default
    on = {**settings.QLIKAUTH, "OIDC": {**settings.QLIKAUTH["OIDC"], "FRONTCHANNEL_LOGOUT": True}}
    with override_settings(QLIKAUTH=on):
        _frontchannel(client, emu, op)


def _frontchannel(client: Client, emu: Any, op: Any) -> None:
    import requests

    hub = requests.Session()
    hub.trust_env = False
    answer = django_sign_in(client, op, "alice")
    hub.get(answer["Location"], verify=str(emu.certs_dir / "root.pem"), timeout=10)
    key = client.session["_qlikauth_oidc"]["key"]
    alive = lambda: [x for x in emu.state.sessions("portal") if x.user.user_id == "alice"]  # noqa: E731
    # a page that embeds the URL without this session's sid (or with another issuer) ends nothing
    for params in (
        {},
        {"iss": key["issuer"]},
        {"iss": key["issuer"], "sid": "guessed"},
        {"iss": "https://evil.example", "sid": key["session"]},
    ):
        r = client.get("/oidc/frontchannel-logout", params, secure=True)
        assert r.status_code == 200 and r.content == b"Nothing to sign out.\n"
        assert alive() and client.get("/whoami", secure=True).json()["user"] == "CLINIC\\alice"
    # another browser with the right iss/sid has no such session: nothing ended either
    assert (
        Client()
        .get(
            "/oidc/frontchannel-logout", {"iss": key["issuer"], "sid": key["session"]}, secure=True
        )
        .content
        == b"Nothing to sign out.\n"
    )
    assert alive()
    r = client.get(
        "/oidc/frontchannel-logout", {"iss": key["issuer"], "sid": key["session"]}, secure=True
    )
    assert (
        r.status_code == 200 and r.content == b"Signed out.\n" and r["Cache-Control"] == "no-store"
    )
    assert alive() == [] and client.get("/whoami", secure=True).json()["user"] is None


# -- the OIDC sign-in as a Django sign-in (django_qlikauth.backends.SsoBackend) -----------------
SSO_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_qlikauth.oidc.OidcSessionMiddleware",
    "django_qlikauth.middleware.SsoLoginMiddleware",
    "django_qlikauth.middleware.QlikSessionMiddleware",
]
SSO_BACKENDS = ["django_qlikauth.backends.SsoBackend", "django.contrib.auth.backends.ModelBackend"]


def _sso_login_settings(mode: str = "ticket", backends: list[str] = SSO_BACKENDS) -> Any:
    return override_settings(
        QLIKAUTH={**settings.QLIKAUTH, "MODE": mode},
        MIDDLEWARE=SSO_MIDDLEWARE,
        AUTHENTICATION_BACKENDS=backends,
        ROOT_URLCONF="qlikauth_sso_login_urls",
    )


def _hub(emu: Any) -> Any:
    import requests

    hub = requests.Session()
    hub.trust_env = False
    hub.verify = str(emu.certs_dir / "root.pem")
    return hub


def test_oidc_sign_in_signs_into_django_and_backchannel_logout_ends_it(
    django_site: Any, op: Any, logout_sink: Any
) -> None:
    from django.contrib.auth import get_user_model

    emu = django_site
    User = get_user_model()  # noqa: N806
    User.objects.filter(username__in=["CLINIC\\alice", "bob"]).delete()
    bob = User.objects.create_user("bob", password="pw")
    with _sso_login_settings():
        client = Client()
        client.force_login(
            bob, backend="django.contrib.auth.backends.ModelBackend"
        )  # another Django user
        assert client.get("/me", secure=True).json()["username"] == "bob"
        before_key = client.cookies["sessionid"].value
        answer = django_sign_in(client, op, "alice")
        assert answer.status_code == 302 and "qlikTicket=" in answer["Location"]
        assert client.cookies["sessionid"].value != before_key  # login(): a new session
        me = client.get("/me", secure=True).json()
        # DIRECTORY\userid; made on first sign-in with an unusable password and no privilege
        assert me == {
            "username": "CLINIC\\alice",
            "usable_password": False,
            "staff": False,
            "superuser": False,
            "email": "alice@example.com",
        }
        # the OIDC sign-in survived login()'s fresh session: the SSO user and its provider session
        record = client.session["_qlikauth_oidc"]
        assert client.get("/whoami", secure=True).json()["user"] == "CLINIC\\alice"
        _hub(emu).get(answer["Location"], timeout=10)
        assert [s for s in emu.state.sessions("portal") if s.user.user_id == "alice"]
        # the provider's back-channel logout (to another "process": no browser) ends the
        # Django sign-in too
        op.backchannel_logout("portal-django", record["key"]["subject"], record["key"]["session"])
        done = Client().post(
            "/oidc/backchannel-logout",
            {"logout_token": logout_sink.received[-1]["logout_token"]},
            secure=True,
        )
        assert done.status_code == 200
        assert [s for s in emu.state.sessions("portal") if s.user.user_id == "alice"] == []
        gone = client.get("/me", secure=True)
        assert gone.status_code == 302 and gone["Location"].startswith("/accounts/login/")
        assert "_auth_user_id" not in client.session
        # the second sign-in finds the Django user made by the first
        django_sign_in(client, op, "alice")
        assert client.get("/me", secure=True).json()["username"] == "CLINIC\\alice"
        assert User.objects.filter(username="CLINIC\\alice").count() == 1


def test_django_logout_ends_the_oidc_sign_in_and_every_proxy_session(
    django_site: Any, op: Any
) -> None:
    emu = django_site
    with _sso_login_settings():
        client = Client()
        answer = django_sign_in(client, op, "alice")
        hub = _hub(emu)
        hub.get(answer["Location"], timeout=10)
        other = Client()  # the same person in a second browser: a second proxy session
        _hub(emu).get(django_sign_in(other, op, "alice")["Location"], timeout=10)
        assert len([s for s in emu.state.sessions("portal") if s.user.user_id == "alice"]) == 2
        assert (
            client.get("/signout", secure=True).content == b"signed out"
        )  # django.contrib.auth.logout
        assert [s for s in emu.state.sessions("portal") if s.user.user_id == "alice"] == []
        assert "_qlikauth_oidc" not in client.session
        assert client.get("/whoami", secure=True).json()["user"] is None
        assert client.get("/me", secure=True).status_code == 302


def test_oidc_logout_view_logs_out_of_django(django_site: Any, op: Any) -> None:
    with _sso_login_settings():
        client = Client()
        django_sign_in(client, op, "alice")
        assert client.get("/me", secure=True).status_code == 200
        r = client.post("/oidc/logout", {"next": "/"}, secure=True)
        assert r.status_code == 302 and r["Location"].startswith(op.issuer)  # RP-initiated logout
        assert client.get("/me", secure=True).status_code == 302


def test_session_mode_page_views_reuse_the_callbacks_proxy_session(
    emulator_factory: Any, django_site: Any, op: Any
) -> None:
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="portal", method="session")])
    qlik = {**settings.QLIKAUTH, "QPS_NODES": emu.qps_url, "HUB_URL": emu.hub_url_for("portal")}
    with override_settings(QLIKAUTH=qlik), _sso_login_settings(mode="session"):
        client = Client()
        answer = django_sign_in(client, op, "alice")
        assert answer.status_code == 302
        made = [s.session_id for s in emu.state.sessions("portal")]
        assert len(made) == 1 and client.cookies["X-Qlik-Session-portal"].value == made[0]
        calls = emu.state.qps_requests
        for _ in range(2):  # QlikSessionMiddleware: the same owner and identity, so no new session
            assert client.get("/me", secure=True).json()["username"] == "CLINIC\\alice"
        assert [s.session_id for s in emu.state.sessions("portal")] == made
        assert emu.state.qps_requests == calls
        client.get("/signout", secure=True)
        assert emu.state.sessions("portal") == []


def test_without_the_backend_or_for_unknown_users_no_django_sign_in(
    django_site: Any, op: Any
) -> None:
    from django.contrib.auth import get_user_model

    User = get_user_model()  # noqa: N806
    User.objects.filter(username="CLINIC\\alice").delete()
    for backends in (
        ["django.contrib.auth.backends.ModelBackend"],
        ["qlikauth_sso_login_urls.ExistingUsersOnly"],
    ):
        with _sso_login_settings(backends=backends):
            client = Client()
            answer = django_sign_in(client, op, "alice")
            assert answer.status_code == 302
            assert (
                client.get("/whoami", secure=True).json()["user"] == "CLINIC\\alice"
            )  # the SSO sign-in
            assert client.get("/me", secure=True).status_code == 302  # but no Django sign-in
            assert not User.objects.filter(username="CLINIC\\alice").exists()
