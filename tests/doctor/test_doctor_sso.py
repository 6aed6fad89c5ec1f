"""The doctor's single sign-on checks: SAML settings and certificates, the OIDC provider's
discovery.

SAML runs against the local pysaml2 IdP's metadata; OIDC against a provider's discovery and JWKS
served over TLS by a small server whose documents each test breaks in one way.
"""

from __future__ import annotations

import datetime as _dt
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from qlikauth.doctor import Doctor
from qlikauth.web.config import QlikAuthConfig

BASE = {"QPS_NODES": "https://localhost:4243", "HUB_URL": "https://localhost/hub/"}


def sso_report(certs_dir, **sso):
    config = QlikAuthConfig.from_mapping({**BASE, "CERTS": str(certs_dir), **sso})
    doctor = Doctor(config, timeout=3)
    doctor.check_saml()
    doctor.check_oidc()
    return doctor.report


def only_failure(report, check):
    fails = report.failed()
    assert [f.check for f in fails] == [check], report.text()
    assert fails[0].fix
    return fails[0]


# -- SAML ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def idp_dir(tmp_path_factory):
    from qlikauth.emulator.saml_idp import write_self_signed

    d = tmp_path_factory.mktemp("idp")
    write_self_signed(d, "idp")
    write_self_signed(d, "sp", "portal SP")
    return d


def idp_metadata(key_dir: Path) -> str:
    from qlikauth.emulator.saml_idp import SamlIdp

    idp = SamlIdp(key_dir=key_dir)
    try:
        return idp.metadata()
    finally:
        idp.stop()


def saml(idp_dir, **extra):
    return {
        "BASE_URL": "https://portal.example.com/qlik/saml/",
        "IDP_METADATA": idp_metadata(idp_dir),
        "SP_CERT": str(idp_dir / "sp.crt"),
        "SP_KEY": str(idp_dir / "sp.key"),
        **extra,
    }


def test_saml_healthy(certs_dir, idp_dir):
    report = sso_report(certs_dir, SAML=saml(idp_dir))
    assert report.ok, report.text()
    assert {f.check for f in report.findings} == {
        "saml.metadata",
        "saml.idp-cert",
        "saml.sp-cert",
        "saml.urls",
    }


def test_saml_metadata_not_readable(certs_dir, idp_dir):
    f = only_failure(
        sso_report(certs_dir, SAML=saml(idp_dir, IDP_METADATA="<not-metadata/>")), "saml.metadata"
    )
    assert "IDP_METADATA" in f.message + f.fix


def test_saml_idp_certificate_expired(certs_dir, tmp_path):
    from qlikauth.emulator.saml_idp import write_self_signed

    write_self_signed(tmp_path, "idp")
    key = serialization.load_pem_private_key((tmp_path / "idp.key").read_bytes(), None)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "old IdP")])
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=400))
        .not_valid_after(now - _dt.timedelta(days=3))
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "idp.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    settings = {
        "BASE_URL": "https://portal.example.com/qlik/saml/",
        "IDP_METADATA": idp_metadata(tmp_path),
    }
    f = only_failure(sso_report(certs_dir, SAML=settings), "saml.idp-cert")
    assert "expired on" in f.message and "metadata again" in f.fix


def test_saml_sp_key_not_matching(certs_dir, idp_dir):
    f = only_failure(
        sso_report(certs_dir, SAML=saml(idp_dir, SP_KEY=str(idp_dir / "idp.key"))), "saml.sp-cert"
    )
    assert "does not belong" in f.message


def test_saml_acs_over_http(certs_dir, idp_dir):
    f = only_failure(
        sso_report(
            certs_dir,
            SAML=saml(
                idp_dir,
                BASE_URL="http://localhost:5000/qlik/saml/",
                ALLOW_HTTP=True,
                BROWSER_COOKIE_SECURE=False,
            ),
        ),
        "saml.urls",
    )
    assert "ACS_URL" in f.message and "https" in f.fix


# -- OIDC ----------------------------------------------------------------------------------
class Provider:
    """Serves /.well-known/openid-configuration and /jwks over TLS (the site's server
    certificate)."""

    def __init__(self, certs_dir: Path) -> None:
        import ssl

        self.discovery: dict | None = None
        self.date: str | None = None
        self.jwks: dict = {
            "keys": [
                {"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256", "n": "sXch", "e": "AQAB"}
            ]
        }
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                doc = {
                    "/.well-known/openid-configuration": provider.discovery,
                    "/jwks": provider.jwks,
                }.get(self.path)
                body = json.dumps(doc).encode() if doc is not None else b"not found"
                self.send_response_only(200 if doc is not None else 404)
                self.send_header("Date", provider.date or self.date_time_string())
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs_dir / "server.pem", certs_dir / "server_key.pem")
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.issuer = f"https://localhost:{self.server.server_address[1]}"
        self.discovery = {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "jwks_uri": self.issuer + "/jwks",
            "code_challenge_methods_supported": ["S256"],
        }
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(certs_dir):
    p = Provider(certs_dir)
    yield p
    p.close()


def oidc(provider, certs_dir, **extra):
    return {
        "ISSUER": provider.issuer,
        "CLIENT_ID": "portal",
        "CLIENT_SECRET": "s3cret-value",
        "REDIRECT_URI": "https://portal.example.com/oidc/callback",
        "CA_BUNDLE": str(certs_dir / "root.pem"),
        **extra,
    }


def test_oidc_healthy(certs_dir, provider):
    report = sso_report(certs_dir, OIDC=oidc(provider, certs_dir))
    assert report.ok, report.text()
    assert {f.check for f in report.findings} == {
        "oidc.settings",
        "oidc.discovery",
        "oidc.issuer",
        "oidc.clock",
        "oidc.jwks",
        "oidc.redirect",
    }


def test_oidc_provider_clock_off(certs_dir, provider):
    import email.utils

    provider.date = email.utils.format_datetime(
        _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=10), usegmt=True
    )
    f = only_failure(sso_report(certs_dir, OIDC=oidc(provider, certs_dir)), "oidc.clock")
    assert "behind this machine's" in f.message and "LEEWAY" in f.message


def test_oidc_issuer_differs(certs_dir, provider):
    provider.discovery["issuer"] = provider.issuer + "/"
    f = only_failure(sso_report(certs_dir, OIDC=oidc(provider, certs_dir)), "oidc.issuer")
    assert "issuer" in f.message and "exactly" in f.fix


def test_oidc_discovery_missing(certs_dir, provider):
    f = only_failure(
        sso_report(certs_dir, OIDC=oidc(provider, certs_dir, ISSUER=provider.issuer + "/tenant")),
        "oidc.discovery",
    )
    assert "404" in f.message


def test_oidc_provider_certificate_not_trusted(certs_dir, provider):
    settings = oidc(provider, certs_dir)
    del settings["CA_BUNDLE"]
    f = only_failure(sso_report(certs_dir, OIDC=settings), "oidc.discovery")
    assert "not trusted" in f.message and "CA_BUNDLE" in f.fix


def test_oidc_jwks_without_usable_key(certs_dir, provider):
    provider.jwks = {
        "keys": [
            {
                "kty": "EC",
                "kid": "e1",
                "use": "sig",
                "alg": "ES256",
                "crv": "P-256",
                "x": "AA",
                "y": "AA",
            }
        ]
    }
    f = only_failure(sso_report(certs_dir, OIDC=oidc(provider, certs_dir)), "oidc.jwks")
    assert "RS256" in f.message


def test_oidc_redirect_over_http(certs_dir, provider):
    f = only_failure(
        sso_report(
            certs_dir,
            OIDC=oidc(provider, certs_dir, REDIRECT_URI="http://localhost:5000/oidc/callback"),
        ),
        "oidc.redirect",
    )
    assert "REDIRECT_URI" in f.message


def test_oidc_settings_refused(certs_dir, provider):
    f = only_failure(
        sso_report(certs_dir, OIDC=oidc(provider, certs_dir, ISUER="typo")), "oidc.settings"
    )
    assert "ISUER" in f.message and "Did you mean ISSUER" in f.message


# -- several identity providers ------------------------------------------------------------
def test_several_saml_idps_each_checked_and_only_the_broken_one_fails(certs_dir, idp_dir):
    report = sso_report(
        certs_dir,
        SAML={
            "entra": saml(idp_dir, BASE_URL="https://portal.example.com/qlik/saml/entra/"),
            "okta": saml(
                idp_dir,
                BASE_URL="https://portal.example.com/qlik/saml/okta/",
                SP_KEY=str(idp_dir / "idp.key"),
                LABEL="Okta",
            ),
        },
    )
    checks = ("saml.metadata", "saml.idp-cert", "saml.sp-cert", "saml.urls")
    for idp in ("IdP entra", "IdP okta"):
        assert {f.check for f in report.findings if f.target == idp} == set(checks), report.text()
    fails = report.failed()
    assert [(f.check, f.target) for f in fails] == [("saml.sp-cert", "IdP okta")], report.text()
    assert "does not belong" in fails[0].message
    assert "FAIL saml.sp-cert [IdP okta]: " in report.text()
    assert "OK   saml.sp-cert [IdP entra]: " in report.text()


def test_several_oidc_providers_each_checked_and_only_the_broken_one_fails(certs_dir):
    good, bad = Provider(certs_dir), Provider(certs_dir)
    try:
        bad.discovery["issuer"] = bad.issuer + "/"
        report = sso_report(
            certs_dir,
            OIDC={"google": oidc(good, certs_dir), "keycloak": oidc(bad, certs_dir, LABEL="Staff")},
        )
    finally:
        good.close()
        bad.close()
    assert {f.check for f in report.findings if f.target == "IdP google"} == {
        "oidc.settings",
        "oidc.discovery",
        "oidc.issuer",
        "oidc.clock",
        "oidc.jwks",
        "oidc.redirect",
    }, report.text()
    fails = report.failed()
    assert [(f.check, f.target) for f in fails] == [("oidc.issuer", "IdP keycloak")], report.text()
    assert bad.issuer in fails[0].message and "exactly" in fails[0].fix
    # After a refused issuer that provider's keys are not fetched: one failure, named once.
    assert report.get("oidc.jwks", "IdP keycloak") is None


def test_a_setting_beside_several_idps_is_named(certs_dir, idp_dir):
    f = only_failure(
        sso_report(certs_dir, SAML={"entra": saml(idp_dir), "ALLOW_HTTP": True}), "saml.metadata"
    )
    assert "'ALLOW_HTTP' sits beside the identity providers entra" in f.message
