"""django_qlikauth's SAML views: the IdP's cross-site POST needs no CSRF token, sign-in rotates the
session key, the hub gets the mapped user; SP-initiated logout needs Django's CSRF token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
from _django_setup import configure_django

configure_django()

from django.conf import settings  # noqa: E402
from django.test import Client, override_settings  # noqa: E402

from qlikauth.emulator import VirtualProxy  # noqa: E402
from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS, SamlIdp  # noqa: E402
from qlikauth.web.saml import SAML_SESSION_KEY  # noqa: E402

BASE = "https://testserver/qlik/saml/"


@pytest.fixture
def setup(emulator_factory: Any) -> Any:
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="ticket")])
    idp = SamlIdp()
    qlik = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("sso"),
        "VIRTUAL_PROXY": "sso",
        "SAML": {"BASE_URL": BASE, "IDP_METADATA": idp.metadata()},
        "CLAIMS": {
            "USER_ID": ENTRA_CLAIMS["email"],
            "USER_DIRECTORY": "AZURE",
            "GROUP_NAMES": {g: n for n, g in DEMO_GROUPS.items()},
        },
    }
    with override_settings(QLIKAUTH=qlik):
        client = Client(enforce_csrf_checks=True)
        md = client.get("/qlik/saml/metadata", secure=True)
        assert md.status_code == 200
        idp.add_sp_metadata(md.content)
        yield emu, idp, client
    idp.stop()


def test_django_saml_sign_in_and_sp_initiated_logout(setup: Any) -> None:
    emu, idp, client = setup
    session = client.session
    session["before"] = "x"
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = old_key = session.session_key
    r = client.get("/qlik/saml/login", secure=True)
    assert r.status_code == 302
    info = idp.parse_authn_request(r["Location"])
    form = idp.post_form(
        idp.response_xml(
            "alice", in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        ),
        info.relay_state,
    )
    r = client.post("/qlik/saml/acs", data=form, secure=True)  # no CSRF token: the IdP's POST
    assert r.status_code == 302 and "qlikTicket=" in r["Location"]
    new_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert new_key != old_key  # rotated at sign-in (fixation)
    assert client.session[SAML_SESSION_KEY]["user"]["UserId"] == "Alice@Example.com"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(Path(emu.certs_dir) / "root.pem")
    who = s.get(r["Location"], headers={"Accept": "application/json"}).json()
    assert who["userId"] == "Alice@Example.com" and [a["group"] for a in who["attributes"]] == [
        "Sales",
        "Finance",
    ]
    # a refusal is a page, no Qlik call
    before = emu.state.qps_requests
    r = client.post("/qlik/saml/acs", data=form, secure=True)
    assert (
        r.status_code == 401 and b"already used" in r.content and emu.state.qps_requests == before
    )
    # SP-initiated logout: without Django's CSRF token, 403; with it, off to the IdP
    assert client.post("/qlik/saml/logout", secure=True).status_code == 403
    page = client.get("/qlik/logout", secure=True).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/qlik/saml/logout",
        data={"csrfmiddlewaretoken": token, "next": "/"},
        secure=True,
        headers={"Referer": "https://testserver/page"},
    )
    assert r.status_code == 302 and r["Location"].startswith(idp.base_url + "/slo?SAMLRequest=")
    assert emu.state.sessions("sso") == []
    assert SAML_SESSION_KEY not in client.session


# -- the SAML sign-in as a Django sign-in (django_qlikauth.backends.SsoBackend) -----------------
SSO_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_qlikauth.middleware.SsoLoginMiddleware",
    "django_qlikauth.middleware.QlikSessionMiddleware",
]


def _acs(client: Client, idp: SamlIdp, user: str) -> Any:
    r = client.get("/qlik/saml/login", secure=True)
    info = idp.parse_authn_request(r["Location"])
    form = idp.post_form(
        idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        ),
        info.relay_state,
    )
    return client.post("/qlik/saml/acs", data=form, secure=True)


def test_saml_sign_in_signs_into_django_in_session_mode(emulator_factory: Any) -> None:
    from django.contrib.auth import get_user_model

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="session")])
    idp = SamlIdp()
    User = get_user_model()  # noqa: N806
    User.objects.filter(username__in=["AZURE\\Alice@Example.com", "carol"]).delete()
    carol = User.objects.create_user("carol", password="pw")
    qlik = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("sso"),
        "VIRTUAL_PROXY": "sso",
        "MODE": "session",
        "USER_DIRECTORY": "PORTAL",
        "SAML": {"BASE_URL": BASE, "IDP_METADATA": idp.metadata()},
        "CLAIMS": {
            "USER_ID": ENTRA_CLAIMS["email"],
            "USER_DIRECTORY": "AZURE",
            "GROUP_NAMES": {g: n for n, g in DEMO_GROUPS.items()},
        },
    }
    try:
        with override_settings(
            QLIKAUTH=qlik,
            MIDDLEWARE=SSO_MIDDLEWARE,
            ROOT_URLCONF="qlikauth_sso_login_urls",
            AUTHENTICATION_BACKENDS=[
                "django_qlikauth.backends.SsoBackend",
                "django.contrib.auth.backends.ModelBackend",
            ],
        ):
            client = Client()
            idp.add_sp_metadata(client.get("/qlik/saml/metadata", secure=True).content)
            client.force_login(carol, backend="django.contrib.auth.backends.ModelBackend")
            assert client.get("/me", secure=True).json()["username"] == "carol"
            assert [s.user.user_id for s in emu.state.sessions("sso")] == [
                "carol"
            ]  # her proxy session
            r = _acs(client, idp, "alice")
            assert r.status_code == 302 and r["Location"] == emu.hub_url_for("sso")
            me = client.get("/me", secure=True).json()
            assert me["username"] == "AZURE\\Alice@Example.com" and not me["usable_password"]
            assert not me["staff"] and not me["superuser"]
            assert (
                client.session[SAML_SESSION_KEY]["user"]["UserId"] == "Alice@Example.com"
            )  # survived login()
            made = [
                s.session_id for s in emu.state.sessions("sso")
            ]  # carol's, still in the browser, ended
            assert len(made) == 1 and client.cookies["X-Qlik-Session-sso"].value == made[0]
            assert [a for s in emu.state.sessions("sso") for a in s.user.groups] == [
                "Sales",
                "Finance",
            ]
            calls = emu.state.qps_requests
            client.get("/me", secure=True)  # page views reuse the ACS's proxy session: no QPS call
            assert [
                s.session_id for s in emu.state.sessions("sso")
            ] == made and emu.state.qps_requests == calls
            # IdP-initiated single logout over another channel: the next request is
            # signed out of Django
            form = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo", binding="post")
            assert Client().post("/qlik/saml/slo", data=form, secure=True).status_code == 302
            assert emu.state.sessions("sso") == []
            assert client.get("/me", secure=True).status_code == 302
            assert (
                emu.state.sessions("sso") == []
            )  # and no new proxy session for the logged-out user
            # again, then Django's own logout(): the SAML sign-in and every proxy session end
            assert _acs(client, idp, "alice").status_code == 302
            assert (
                client.get("/me", secure=True).status_code == 200
                and len(emu.state.sessions("sso")) == 1
            )
            assert client.get("/signout", secure=True).content == b"signed out"
            assert emu.state.sessions("sso") == [] and SAML_SESSION_KEY not in client.session
            assert User.objects.filter(username="AZURE\\Alice@Example.com").count() == 1
    finally:
        idp.stop()


# -- SsoBackend(include_directory=False): an SSO user named like a local account --------------
def _sso_user(user_id: str) -> Any:
    from qlikauth import QlikUser

    return QlikUser("AZURE", user_id)


@pytest.mark.parametrize(
    "local",
    [
        {"password": "pw"},  # a local account that signs in with a password
        {"password": None, "is_staff": True},  # staff
        {"password": None, "is_superuser": True},  # a superuser without a password
    ],
)
def test_bare_user_ids_never_take_over_a_local_or_privileged_account(local: dict) -> None:
    from django.contrib.auth import authenticate, get_user_model

    User = get_user_model()  # noqa: N806
    User.objects.filter(username="admin").delete()
    password = local.pop("password")
    admin = User.objects.create_user("admin", password=password, **local)
    before = (admin.password, admin.email)
    with override_settings(AUTHENTICATION_BACKENDS=["qlikauth_sso_login_urls.BareUserIds"]):
        assert authenticate(None, sso_user=_sso_user("admin")) is None
    with override_settings(AUTHENTICATION_BACKENDS=["qlikauth_sso_login_urls.BareUserIdsAdopting"]):
        assert authenticate(None, sso_user=_sso_user("admin")) == admin  # the integrator opted in
    admin.refresh_from_db()
    assert (admin.password, admin.email) == before
    User.objects.filter(username="admin").delete()


def test_bare_user_ids_still_sign_in_their_own_sso_made_users() -> None:
    from django.contrib.auth import authenticate, get_user_model
    from django_qlikauth.backends import SsoBackend

    User = get_user_model()  # noqa: N806
    User.objects.filter(username="dave").delete()
    with override_settings(AUTHENTICATION_BACKENDS=["qlikauth_sso_login_urls.BareUserIds"]):
        made = authenticate(None, sso_user=_sso_user("dave"))
        assert made is not None and made.get_username() == "dave" and not made.has_usable_password()
        assert authenticate(None, sso_user=_sso_user("dave")) == made  # the second sign-in too
    # The same rule by argument; and DIRECTORY\userid names (the default) are SSO-only names.
    assert (
        SsoBackend(include_directory=False).authenticate(None, sso_user=_sso_user("dave")) == made
    )
    User.objects.filter(username="dave").update(is_staff=True)
    assert (
        SsoBackend(include_directory=False).authenticate(None, sso_user=_sso_user("dave")) is None
    )
    assert (
        SsoBackend(include_directory=False, adopt_privileged_users=True).authenticate(
            None, sso_user=_sso_user("dave")
        )
        is not None
    )
    User.objects.filter(username="dave").delete()


def test_a_saml_sign_in_as_admin_does_not_become_the_local_admin(emulator_factory: Any) -> None:
    """End to end: the IdP's user whose mapped id equals a local superuser's username."""
    from django.contrib.auth import get_user_model

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="session")])
    idp = SamlIdp()
    User = get_user_model()  # noqa: N806
    User.objects.filter(username="Alice@Example.com").delete()
    User.objects.create_superuser("Alice@Example.com", password="local-admin-pw")
    qlik = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for("sso"),
        "VIRTUAL_PROXY": "sso",
        "MODE": "session",
        "USER_DIRECTORY": "PORTAL",
        "SAML": {"BASE_URL": BASE, "IDP_METADATA": idp.metadata()},
        "CLAIMS": {"USER_ID": ENTRA_CLAIMS["email"], "USER_DIRECTORY": "AZURE"},
    }
    try:
        with override_settings(
            QLIKAUTH=qlik,
            MIDDLEWARE=SSO_MIDDLEWARE,
            ROOT_URLCONF="qlikauth_sso_login_urls",
            AUTHENTICATION_BACKENDS=[
                "qlikauth_sso_login_urls.BareUserIds",
                "django.contrib.auth.backends.ModelBackend",
            ],
        ):
            client = Client()
            idp.add_sp_metadata(client.get("/qlik/saml/metadata", secure=True).content)
            _acs(client, idp, "alice")
            assert (
                client.get("/me", secure=True).status_code == 302
            )  # not signed in to Django as the admin
            assert "_auth_user_id" not in client.session
    finally:
        idp.stop()
        User.objects.filter(username="Alice@Example.com").delete()


def test_a_body_over_the_bound_is_refused_unread(setup: Any) -> None:
    """The SAML endpoints refuse a larger Content-Length (413) before request.POST reads it: were
    the short body read, it would be refused as a missing SAMLResponse instead."""
    emu, idp, client = setup
    r = client.post(
        "/qlik/saml/acs",
        data="SAMLResponse=",
        secure=True,
        content_type="application/x-www-form-urlencoded",
        CONTENT_LENGTH=str(32 * 1024 * 1024),
    )
    assert r.status_code == 413 and b"too large" in r.content.lower()
    assert emu.state.sessions() == []


def test_django_two_saml_idps_their_urls_and_the_chooser(emulator_factory: Any) -> None:
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="ticket")])
    entra, adfs = SamlIdp(), SamlIdp()
    try:

        def idp(i: SamlIdp, name: str, directory: str) -> dict[str, Any]:
            return {
                "BASE_URL": f"{BASE}{name}/",
                "IDP_METADATA": i.metadata(),
                "LABEL": name.upper(),
                "CLAIMS": {"USER_ID": ENTRA_CLAIMS["email"], "USER_DIRECTORY": directory},
            }

        qlik = {
            "QPS_NODES": emu.qps_url,
            "CERTS": str(emu.certs_dir),
            "HUB_URL": emu.hub_url_for("sso"),
            "VIRTUAL_PROXY": "sso",
            "SAML": {"entra": idp(entra, "entra", "AZURE"), "adfs": idp(adfs, "adfs", "ADFS")},
        }
        with override_settings(QLIKAUTH=qlik):
            client = Client(enforce_csrf_checks=True)
            for i, name in ((entra, "entra"), (adfs, "adfs")):
                i.add_sp_metadata(client.get(f"/qlik/saml/{name}/metadata", secure=True).content)
            r = client.get("/qlik/saml/adfs/login", secure=True)
            info = adfs.parse_authn_request(r["Location"])
            assert info.acs_url == f"{BASE}adfs/acs"
            form = adfs.post_form(
                adfs.response_xml(
                    "bob",
                    in_response_to=info.id,
                    acs_url=info.acs_url,
                    sp_entity_id=info.sp_entity_id,
                ),
                info.relay_state,
            )
            r = client.post("/qlik/saml/adfs/acs", data=form, secure=True)
            assert r.status_code == 302 and "qlikTicket=" in r["Location"]
            assert client.session[SAML_SESSION_KEY]["user"]["UserDirectory"] == "ADFS"
            assert client.session[SAML_SESSION_KEY]["idp"] == "adfs"
            page = client.get("/qlik/sso", secure=True).content.decode()
            assert 'href="/qlik/saml/entra/login">ENTRA</a>' in page
            assert 'href="/qlik/saml/adfs/login">ADFS</a>' in page
            assert client.get("/qlik/saml/login", secure=True).status_code == 400
    finally:
        entra.stop()
        adfs.stop()
