"""SAML and OIDC settings checked when the portal starts (Flask init_app, ``flask qlikauth check``,
Django system checks), and an SSO sign-in that is a Flask-Login sign-in too.

Each bad setting is refused before the first request with what to do; the IdP's certificate
expiry is reported by the start-up checks; a SAML sign-in signs the person in to Flask-Login and
each way its sign-in ends (single logout with this browser, single logout received without it,
a copy of the sign-in revoked elsewhere) logs that Flask-Login user out.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask_qlikauth import QlikAuth

from qlikauth.emulator.saml_idp import SamlIdp
from qlikauth.exceptions import ConfigurationError
from qlikauth.web.saml import saml_parts, saml_user

PORTAL = "https://portal.test"
BASE = PORTAL + "/qlik/saml/"
OIDC = {
    "ISSUER": "https://op.example.com",
    "CLIENT_ID": "portal",
    "CLIENT_SECRET": "s3cret",
    "REDIRECT_URI": PORTAL + "/oidc/callback",
}


def _app(emu: Any, **qlikauth: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        SESSION_COOKIE_SECURE=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url_for("sso"),
        QLIKAUTH_VIRTUAL_PROXY="sso",
    )
    app.config.update({f"QLIKAUTH_{k}": v for k, v in qlikauth.items()})
    return app


@pytest.fixture
def emu(emulator_factory: Any) -> Any:
    from qlikauth.emulator import VirtualProxy

    return emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="ticket")])


def _refused(app: Flask) -> str:
    with pytest.raises(ConfigurationError) as caught:
        QlikAuth(app, user_loader=lambda: None)
    return str(caught.value)


# -- refused at start-up ---------------------------------------------------------------
def test_init_app_refuses_unusable_saml_settings_with_what_to_do(
    emu: Any, idp: SamlIdp, tmp_path: Path
) -> None:
    md = idp.metadata()
    typo = _refused(_app(emu, SAML={"BASE_URL": BASE, "IDP_METADTA": md}))
    assert "IDP_METADTA" in typo and "Did you mean IDP_METADATA?" in typo
    missing = _refused(_app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": str(tmp_path / "no.xml")}))
    assert "IDP_METADATA" in missing and "cannot read" in missing
    http = _refused(
        _app(emu, SAML={"BASE_URL": "http://portal.test/qlik/saml/", "IDP_METADATA": md})
    )
    assert "BASE_URL" in http and "https" in http
    skew = _refused(_app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": md, "CLOCK_SKEW": 3600}))
    assert "CLOCK_SKEW" in skew
    url = _refused(_app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": "https://idp.test/md.xml"}))
    assert "never fetches metadata" in url and "curl" in url


def test_init_app_refuses_unusable_oidc_settings(emu: Any) -> None:
    typo = _refused(_app(emu, OIDC={**OIDC, "SESSION_IDLE_TIMOUT": 600}))
    assert "SESSION_IDLE_TIMOUT" in typo and "Did you mean" in typo
    http = _refused(_app(emu, OIDC={**OIDC, "ISSUER": "http://op.example.com"}))
    assert "http" in http and "ISSUER" in http.upper()
    leeway = _refused(_app(emu, OIDC={**OIDC, "LEEWAY": 86400}))
    assert "leeway" in leeway.lower() and "between" in leeway
    well_known = _refused(
        _app(
            emu, OIDC={**OIDC, "ISSUER": "https://op.example.com/.well-known/openid-configuration"}
        )
    )
    assert "drop /.well-known/openid-configuration" in well_known
    # Nothing is fetched at start-up: a provider nobody can reach still starts the portal.
    QlikAuth(_app(emu, OIDC=OIDC), user_loader=lambda: None)


def test_a_missing_saml_extra_is_named_at_start_up_not_at_the_first_request(
    emu: Any, idp: SamlIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "qlikauth.bridges.saml", raising=False)
    monkeypatch.setitem(sys.modules, "saml2", None)  # import saml2 raises ImportError
    text = _refused(_app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": idp.metadata()}))
    assert "pip install 'qlikauth[saml]'" in text and "QLIKAUTH SAML" in text


def _expiring_idp(tmp_path: Path, days: int) -> SamlIdp:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expiring IdP")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=300))
        .not_valid_after(now + datetime.timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "idp.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "idp.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return SamlIdp(key_dir=tmp_path)


def test_flask_check_command_reports_the_idp_certificate_expiry(
    emu: Any, tmp_path: Path, caplog: Any
) -> None:
    idp = _expiring_idp(tmp_path, 10)
    try:
        app = _app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": idp.metadata()})
        with caplog.at_level("WARNING"):
            QlikAuth(app, user_loader=lambda: None)
        assert any("expires on" in r.getMessage() for r in caplog.records)  # in the log at start
        out = app.test_cli_runner().invoke(args=["qlikauth", "check"])
        assert out.exit_code == 0, out.output
        assert "SAML settings OK" in out.output
        assert "warning: QLIKAUTH SAML: the IdP signing certificate" in out.output
        assert "in 9 day(s)" in out.output or "in 10 day(s)" in out.output
    finally:
        idp.stop()


def test_django_system_checks_report_sso_settings_and_certificate_expiry(
    tmp_path: Path, certs_dir: Any, idp: SamlIdp
) -> None:
    from _django_setup import configure_django

    configure_django()
    from django.core import checks
    from django.test import override_settings

    ok = {
        "QPS_NODES": "https://localhost:4243",
        "CERTS": str(certs_dir),
        "HUB_URL": "https://localhost/hub/",
        "USER_DIRECTORY": "PORTAL",
    }

    def found(**extra: Any) -> list[Any]:
        with override_settings(QLIKAUTH={**ok, **extra}):
            return list(checks.run_checks(tags=["qlikauth"]))

    assert found(SAML={"BASE_URL": BASE, "IDP_METADATA": idp.metadata()}) == []
    typo = found(SAML={"BASE_URL": BASE, "IDP_METADTA": idp.metadata()})
    assert [e.id for e in typo] == ["qlikauth.E008"] and "IDP_METADATA?" in typo[0].msg
    oidc_typo = found(OIDC={**OIDC, "SESSION_IDLE_TIMOUT": 60})
    assert [e.id for e in oidc_typo] == ["qlikauth.E008"]
    assert "SESSION_IDLE_TIMEOUT" in oidc_typo[0].msg
    expiring = _expiring_idp(tmp_path, 5)
    try:
        warned = found(SAML={"BASE_URL": BASE, "IDP_METADATA": expiring.metadata()})
    finally:
        expiring.stop()
    assert [e.id for e in warned] == ["qlikauth.W004"] and "expires on" in warned[0].msg


# -- an SSO sign-in as a Flask-Login sign-in ----------------------------------------------
CLAIMS = {"USER_ID": "$subject", "USER_DIRECTORY": "AZURE"}


class Browser:
    def __init__(self, app: Flask, idp: SamlIdp) -> None:
        self.client, self.idp = app.test_client(), idp

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, base_url=PORTAL, **kw)

    def sign_in(self, user: str = "alice") -> Any:
        r = self.get("/qlik/saml/login?next=/me")
        info = self.idp.parse_authn_request(r.headers["Location"])
        xml = self.idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        )
        return self.client.post(
            "/qlik/saml/acs",
            base_url=PORTAL,
            data=self.idp.post_form(xml, info.relay_state),
            headers={"Origin": "https://idp.test"},
        )


@pytest.fixture
def login_portal(emu: Any, idp: SamlIdp) -> tuple[Flask, list[str]]:
    from flask_login import LoginManager, UserMixin, current_user

    class User(UserMixin):
        def __init__(self, uid: str) -> None:
            self.id = uid

    known: dict[str, User] = {}
    made: list[str] = []
    app = _app(emu, SAML={"BASE_URL": BASE, "IDP_METADATA": idp.metadata()}, CLAIMS=CLAIMS)
    LoginManager(app).user_loader(known.get)

    def portal_user(qlik_user: Any) -> User:
        made.append(qlik_user.qualified_name)
        return known.setdefault(qlik_user.qualified_name, User(qlik_user.qualified_name))

    ext = QlikAuth(login_user_with=portal_user)
    ext.user_loader(lambda: saml_user(session, ext.runtime))
    ext.init_app(app)

    @app.get("/me")
    def me() -> str:
        return current_user.get_id() if current_user.is_authenticated else "anonymous"

    with app.app_context():
        idp.add_sp_metadata(saml_parts(ext.runtime).sp.metadata())
    return app, made


def test_a_saml_sign_in_is_a_flask_login_sign_in(login_portal: Any, idp: SamlIdp) -> None:
    app, made = login_portal
    b = Browser(app, idp)
    assert b.get("/me").get_data(as_text=True) == "anonymous"
    r = b.sign_in("alice")
    assert r.status_code == 302 and r.headers["Location"] == "/me"
    assert made == ["AZURE\\alice@example.com"]
    assert b.get("/me").get_data(as_text=True) == "AZURE\\alice@example.com"


def test_single_logout_with_this_browser_logs_the_flask_login_user_out(
    login_portal: Any, idp: SamlIdp
) -> None:
    app, _ = login_portal
    b = Browser(app, idp)
    b.sign_in("alice")
    url = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo")
    r = b.get(url.replace(PORTAL, ""))
    assert r.status_code == 302
    assert b.get("/me").get_data(as_text=True) == "anonymous"


def test_single_logout_received_without_the_browser_logs_it_out_at_its_next_request(
    login_portal: Any, idp: SamlIdp
) -> None:
    app, _ = login_portal
    b = Browser(app, idp)
    b.sign_in("alice")
    assert b.get("/me").get_data(as_text=True) == "AZURE\\alice@example.com"
    other = app.test_client()  # the IdP's LogoutRequest reaches the portal through another browser
    url = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo")
    assert other.get(url.replace(PORTAL, ""), base_url=PORTAL).status_code == 302
    assert b.get("/me").get_data(as_text=True) == "anonymous"


def test_the_portal_logout_user_ends_the_sso_sign_in(
    login_portal: Any, idp: SamlIdp, emu: Any
) -> None:
    from flask_login import logout_user

    app, _ = login_portal

    @app.post("/signout")
    def signout() -> str:
        logout_user()
        return "bye"

    b = Browser(app, idp)
    b.sign_in("alice")
    assert b.get("/me").get_data(as_text=True) == "AZURE\\alice@example.com"
    b.client.post("/signout", base_url=PORTAL)
    assert b.get("/me").get_data(as_text=True) == "anonymous"
    with b.client.session_transaction() as s:
        assert "_qlikauth_signin" not in s and "_qlikauth_saml" not in s
