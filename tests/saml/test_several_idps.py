"""One portal trusting several identity providers: two SAML IdPs, and a SAML IdP beside qlikauth's
local OpenID provider, through flask_qlikauth and the QPS emulator (session mode, so each sign-in's
own proxy session can be told apart).

Each IdP has its own URLs, mapping and directory; a response from one is refused at the other's
endpoint; the same person through two IdPs is one Qlik user only when the mappings say so; the
single logout of each IdP ends only its own sign-ins; the chooser page lists every provider.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask, session
from flask_qlikauth import QlikAuth

from qlikauth.emulator.oidc_op import OidcProvider
from qlikauth.emulator.saml_idp import ENTRA_CLAIMS, SamlIdp
from qlikauth.web.saml import saml_parts, saml_user

PORTAL = "https://portal.test"
EMAIL = ENTRA_CLAIMS["email"]


def _claims(directory: str) -> dict[str, Any]:
    return {"USER_ID": EMAIL, "USER_ID_TRANSFORMS": ["lower"], "USER_DIRECTORY": directory}


def _saml(idp: SamlIdp, name: str, directory: str) -> dict[str, Any]:
    return {
        "BASE_URL": f"{PORTAL}/qlik/saml/{name}/",
        "IDP_METADATA": idp.metadata(),
        "CLAIMS": _claims(directory),
        "LABEL": f"{name.upper()} sign-in",
    }


@pytest.fixture
def emu(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    return emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])


@pytest.fixture
def two_idps() -> Any:
    a, b = SamlIdp(), SamlIdp()
    yield a, b
    a.stop()
    b.stop()


def make_app(emu: Any, saml: dict[str, Any], oidc: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        SESSION_COOKIE_SECURE=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url_for("mashup"),
        QLIKAUTH_VIRTUAL_PROXY="mashup",
        QLIKAUTH_MODE="session",
        QLIKAUTH_SAML=saml,
    )
    if oidc is not None:
        app.config["QLIKAUTH_OIDC"] = oidc
    ext = QlikAuth()

    @ext.user_loader
    def user() -> Any:
        from flask_qlikauth.oidc import QlikOidc

        return saml_user(session, ext.runtime) or (QlikOidc.current_user() if oidc else None)

    ext.init_app(app)
    if oidc is not None:
        from flask_qlikauth.oidc import QlikOidc

        QlikOidc(app)

    @app.get("/whoami")
    def whoami() -> str:
        u = ext.current_user()
        return u.qualified_name if u else "nobody"

    app.qlikauth = ext  # type: ignore[attr-defined]
    return app


class Browser:
    def __init__(self, app: Flask) -> None:
        self.client = app.test_client()

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, base_url=PORTAL, **kw)

    def saml_sign_in(
        self, idp: SamlIdp, name: str, user: str = "alice", login: str | None = None
    ) -> Any:
        r = self.get(login or f"/qlik/saml/{name}/login")
        assert r.status_code == 302, r.get_data(as_text=True)
        info = idp.parse_authn_request(r.headers["Location"])
        xml = idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        )
        path = urlsplit(info.acs_url).path
        return self.client.post(
            path,
            base_url=PORTAL,
            data=idp.post_form(xml, info.relay_state),
            headers={"Origin": "https://idp.test"},
        )

    def whoami(self) -> str:
        return self.get("/whoami").get_data(as_text=True)

    def proxy_session(self) -> str | None:
        cookie = self.client.get_cookie("X-Qlik-Session-mashup", domain="portal.test")
        return cookie.value if cookie is not None else None


def _trust(app: Flask, idp: SamlIdp, name: str) -> None:
    with app.app_context():
        idp.add_sp_metadata(saml_parts(app.qlikauth.runtime, name).sp.metadata())  # type: ignore[attr-defined]


def _live(emu: Any) -> set[str]:
    return {s.session_id for s in emu.state.sessions("mashup")}


def test_two_saml_idps_each_with_its_mapping_and_only_its_own_single_logout(
    emu: Any, two_idps: Any
) -> None:
    entra, adfs = two_idps
    app = make_app(
        emu, {"entra": _saml(entra, "entra", "AZURE"), "adfs": _saml(adfs, "adfs", "ADFS")}
    )
    _trust(app, entra, "entra")
    _trust(app, adfs, "adfs")
    office, clinic = Browser(app), Browser(app)
    assert office.saml_sign_in(entra, "entra").status_code == 302
    assert clinic.saml_sign_in(adfs, "adfs", login="/qlik/saml/login?idp=adfs").status_code == 302
    # the same person at two IdPs, two directories in the mappings: two Qlik users
    assert office.whoami() == "AZURE\\alice@example.com"
    assert clinic.whoami() == "ADFS\\alice@example.com"
    office_sid, clinic_sid = office.proxy_session(), clinic.proxy_session()
    assert office_sid and clinic_sid and {office_sid, clinic_sid} <= _live(emu)
    # ADFS's single logout (reaching the portal through a third browser) ends only its sign-in
    url = adfs.logout_request(adfs.sessions_of("alice")[-1], f"{PORTAL}/qlik/saml/adfs/slo")
    assert Browser(app).get(url[len(PORTAL) :]).status_code == 302
    assert clinic_sid not in _live(emu) and office_sid in _live(emu)
    assert clinic.whoami() == "nobody" and office.whoami() == "AZURE\\alice@example.com"
    # Entra's LogoutRequest sent to ADFS's endpoint is refused (another IdP's signature)
    wrong = entra.logout_request(entra.sessions_of("alice")[-1], f"{PORTAL}/qlik/saml/entra/slo")
    wrong = wrong[len(PORTAL) :].replace("/qlik/saml/entra/slo", "/qlik/saml/adfs/slo", 1)
    assert Browser(app).get(wrong).status_code == 401
    assert office_sid in _live(emu)
    url = entra.logout_request(entra.sessions_of("alice")[-1], f"{PORTAL}/qlik/saml/entra/slo")
    assert Browser(app).get(url[len(PORTAL) :]).status_code == 302
    assert office_sid not in _live(emu) and office.whoami() == "nobody"


def test_a_response_from_one_idp_is_refused_at_the_others_acs(emu: Any, two_idps: Any) -> None:
    entra, adfs = two_idps
    app = make_app(
        emu, {"entra": _saml(entra, "entra", "AZURE"), "adfs": _saml(adfs, "adfs", "ADFS")}
    )
    _trust(app, entra, "entra")
    _trust(app, adfs, "adfs")
    b = Browser(app)
    r = b.get("/qlik/saml/entra/login")
    info = entra.parse_authn_request(r.headers["Location"])
    # a response to Entra's request signed with ADFS's key: Entra's SP does not trust that key
    xml = entra.response_xml(
        "alice",
        in_response_to=info.id,
        acs_url=info.acs_url,
        sp_entity_id=info.sp_entity_id,
        key_file=adfs.key_file,
    )
    r = b.client.post(
        "/qlik/saml/entra/acs",
        base_url=PORTAL,
        data=entra.post_form(xml, None),
        headers={"Origin": "https://idp.test"},
    )
    assert r.status_code == 401 and b.whoami() == "nobody" and not _live(emu)


def test_one_qlik_user_through_two_idps_only_when_the_mappings_say_so(
    emu: Any, two_idps: Any
) -> None:
    entra, adfs = two_idps
    app = make_app(
        emu, {"entra": _saml(entra, "entra", "CORP"), "adfs": _saml(adfs, "adfs", "CORP")}
    )
    _trust(app, entra, "entra")
    _trust(app, adfs, "adfs")
    b = Browser(app)
    b.saml_sign_in(entra, "entra")
    first = b.proxy_session()
    b.saml_sign_in(adfs, "adfs")  # the same browser, the same person, the same Qlik user
    assert b.whoami() == "CORP\\alice@example.com"
    assert b.proxy_session() == first and first in _live(emu)  # the proxy session carries on


def test_which_idp_is_chosen_and_the_chooser_page(emu: Any, two_idps: Any) -> None:
    entra, adfs = two_idps
    app = make_app(
        emu, {"entra": _saml(entra, "entra", "AZURE"), "adfs": _saml(adfs, "adfs", "ADFS")}
    )
    b = Browser(app)
    none = b.get("/qlik/saml/login")
    assert none.status_code == 400 and "which identity provider" in none.get_data(as_text=True)
    assert b.get("/qlik/saml/okta/login").status_code == 404
    assert b.get("/qlik/saml/login?idp=entra").headers["Location"].startswith(entra.base_url)
    page = b.get("/qlik/sso?next=/reports").get_data(as_text=True)
    assert 'href="/qlik/saml/entra/login?next=%2Freports">ENTRA sign-in</a>' in page
    assert 'href="/qlik/saml/adfs/login?next=%2Freports">ADFS sign-in</a>' in page
    assert "evil" not in b.get("/qlik/sso?next=https://evil.example/").get_data(as_text=True)
    md = b.get("/qlik/saml/adfs/metadata").get_data(as_text=True)
    assert f"{PORTAL}/qlik/saml/adfs/acs" in md
    # signing out without a SAML sign-in needs no IdP name: nothing to tell any IdP
    out = b.client.post(
        "/qlik/saml/logout", base_url=PORTAL, data={"next": "/bye"}, headers={"Origin": PORTAL}
    )
    assert out.status_code == 302 and out.headers["Location"] == "/bye"


def test_several_idp_settings_are_checked_at_start_up(emu: Any, two_idps: Any) -> None:
    from qlikauth.exceptions import ConfigurationError

    entra, _ = two_idps
    with pytest.raises(ConfigurationError, match=r"SAML\['adfs'\] IDP_METADTA.*IDP_METADATA"):
        make_app(
            emu,
            {
                "entra": _saml(entra, "entra", "AZURE"),
                "adfs": {"BASE_URL": f"{PORTAL}/qlik/saml/adfs/", "IDP_METADTA": "x"},
            },
        )
    with pytest.raises(ConfigurationError, match="cannot name an identity provider"):
        make_app(emu, {"Entra ID": _saml(entra, "entra", "AZURE")})


# -- a SAML IdP and an OpenID provider in one portal --------------------------------------
def test_saml_and_oidc_in_one_portal_each_ending_only_its_own(emu: Any, two_idps: Any) -> None:
    entra, _ = two_idps
    secret = "imprivata-secret-" + "y" * 20
    callback = f"{PORTAL}/oidc/imprivata/callback"
    client = {"client_id": "portal", "client_secret": secret, "redirect_uris": [callback]}
    with OidcProvider(host="127.0.0.1", clients=[client]) as op:
        oidc = {
            "imprivata": {
                "ISSUER": op.issuer,
                "CLIENT_ID": "portal",
                "CLIENT_SECRET": secret,
                "REDIRECT_URI": callback,
                "SCOPES": "openid email profile",
                "LABEL": "Imprivata",
                "CLAIMS": {"USER_ID": "preferred_username", "USER_DIRECTORY": "CLINIC"},
            }
        }
        app = make_app(emu, {"entra": _saml(entra, "entra", "AZURE")}, oidc)
        _trust(app, entra, "entra")
        office, ward = Browser(app), Browser(app)
        office.saml_sign_in(entra, "entra")
        # the clinic workstation signs in at the OpenID provider
        r = ward.get("/oidc/imprivata/login?next=/whoami")
        assert r.status_code == 302 and r.headers["Location"].startswith(op.issuer + "/auth?")
        at_op = requests.Session()
        page = at_op.get(r.headers["Location"], timeout=10)
        action = page.text.split('action="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        back = at_op.post(
            op.issuer + action,
            data={"username": "alice", "password": "demo"},
            allow_redirects=False,
            timeout=10,
        )
        assert back.headers["Location"].startswith(callback)
        done = ward.get(back.headers["Location"][len(PORTAL) :])
        assert done.status_code == 302 and done.headers["Location"] == "/whoami"
        assert ward.whoami() == "CLINIC\\alice" and office.whoami() == "AZURE\\alice@example.com"
        ward_sid, office_sid = ward.proxy_session(), office.proxy_session()
        assert {ward_sid, office_sid} <= _live(emu)
        page = ward.get("/qlik/sso").get_data(as_text=True)
        assert 'href="/oidc/imprivata/login">Imprivata</a>' in page
        assert 'href="/qlik/saml/entra/login">ENTRA sign-in</a>' in page
        # the provider's back-channel logout ends the clinic sign-in only
        sid = next(iter(op.sessions))
        token = op.logout_token("portal", op.users["alice"].claims["sub"], sid)
        r = Browser(app).client.post(
            "/oidc/imprivata/backchannel-logout", base_url=PORTAL, data={"logout_token": token}
        )
        assert r.status_code == 200
        assert ward_sid not in _live(emu) and office_sid in _live(emu)
        assert ward.whoami() == "nobody" and office.whoami() == "AZURE\\alice@example.com"
        # /oidc/logout in a browser that signed in over SAML: its sign-in ends, no provider told
        out = office.client.post(
            "/oidc/logout", base_url=PORTAL, data={"next": "/bye"}, headers={"Origin": PORTAL}
        )
        assert out.status_code == 302 and out.headers["Location"] == "/bye"
        assert office_sid not in _live(emu) and office.whoami() == "nobody"
        # sent to the SAML IdP's name under /oidc: not an OpenID provider of this portal
        assert (
            Browser(app)
            .client.post(
                "/oidc/entra/backchannel-logout", base_url=PORTAL, data={"logout_token": token}
            )
            .status_code
            == 404
        )
