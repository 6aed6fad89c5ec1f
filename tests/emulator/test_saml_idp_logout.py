"""The demo SAML IdP's IdP-initiated logout (``GET /logout?user=...&sp_slo=...``) over HTTP.

It ends only the asking browser's own IdP session (the cookie its login page set) and sends the
browser only to a registered service provider's single logout URL, never to any URL given.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

try:
    import saml2  # noqa: F401
except ImportError:  # pragma: no cover - the saml extra is part of [all]
    if os.environ.get("QLIKAUTH_REQUIRE_ALL"):
        raise
    pytest.skip(
        "the saml extra is not installed: pip install 'qlikauth[saml]'", allow_module_level=True
    )

from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings  # noqa: E402
from qlikauth.emulator.saml_idp import SamlIdp  # noqa: E402

SP = "https://portal.example.com/qlik/saml/"


@pytest.fixture
def idp_and_sp():
    idp = SamlIdp().start()
    sp = SamlServiceProvider(
        SamlSettings(
            sp_entity_id=SP + "metadata",
            acs_url=SP + "acs",
            slo_url=SP + "slo",
            idp_metadata=idp.metadata(),
        )
    )
    idp.add_sp_metadata(sp.metadata())
    yield idp, sp
    idp.stop()


def _sign_in(idp: SamlIdp, sp: SamlServiceProvider, user: str) -> requests.Session:
    browser = requests.Session()
    start = sp.login("/home", None)
    q = dict(parse_qsl(urlsplit(start.redirect.location).query))
    r = browser.post(
        f"{idp.base_url}/sso/login",
        data={
            "username": user,
            "password": "demo",
            "SAMLRequest": q["SAMLRequest"],
            "RelayState": q.get("RelayState", ""),
        },
        timeout=10,
    )
    assert r.status_code == 200 and "qlikauth_idp_session" in browser.cookies
    assert (
        "httponly" in r.headers["Set-Cookie"].lower()
        and "samesite=lax" in r.headers["Set-Cookie"].lower()
    )
    return browser


def test_logout_needs_the_users_own_idp_session_and_a_registered_sp(idp_and_sp):
    idp, sp = idp_and_sp
    alice = _sign_in(idp, sp, "alice")
    bob = _sign_in(idp, sp, "bob")
    assert idp.sessions_of("alice") and idp.sessions_of("bob")
    logout = f"{idp.base_url}/logout"
    slo = {"user": "alice", "sp_slo": SP + "slo"}

    # Anyone without alice's IdP session: refused, nothing ended.
    r = requests.get(logout, params=slo, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    r = bob.get(logout, params=slo, allow_redirects=False, timeout=10)
    assert r.status_code == 403
    assert idp.sessions_of("alice")

    # Alice's own browser, but any URL as sp_slo: refused (no open redirect), nothing ended.
    for target in ("https://evil.example/steal", SP + "slo/../x", SP + "acs"):
        r = alice.get(
            logout, params={"user": "alice", "sp_slo": target}, allow_redirects=False, timeout=10
        )
        assert r.status_code == 400 and "registered service provider" in r.text
    assert idp.sessions_of("alice")

    # Her browser, the registered SP: a signed LogoutRequest to the SP, her IdP session ends.
    r = alice.get(logout, params=slo, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith(SP + "slo?SAMLRequest=")
    assert idp.sessions_of("alice") == [] and idp.sessions_of("bob")
    r = alice.get(logout, params=slo, allow_redirects=False, timeout=10)
    assert r.status_code == 403  # the IdP session cookie is gone with it
