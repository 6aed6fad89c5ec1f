"""The SAML SP at its edges: logout bindings, request size, IdP-initiated sign-in, certificate
rollover and expiry, metadata given as a URL, a response from an unknown issuer."""

from __future__ import annotations

import base64
import datetime
import logging
import zlib
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from qlikauth import ConfigurationError
from qlikauth.bridges.saml import (
    MAX_MESSAGE_BYTES,
    MAX_REQUEST_BYTES,
    IdpLogoutRequest,
    SamlError,
    SamlServiceProvider,
    SamlSettings,
    check_request_size,
)
from qlikauth.emulator.saml_idp import SamlIdp, write_self_signed

from .conftest import ACS, SLO, SP_ENTITY

A = "{urn:oasis:names:tc:SAML:2.0:assertion}"


def _form(xml, relay=None):
    f = {"SAMLResponse": base64.b64encode(xml.encode()).decode()}
    if relay:
        f["RelayState"] = relay
    return f


def _code(call, *args, **kwargs):
    with pytest.raises(SamlError) as err:
        call(*args, **kwargs)
    return err.value.code


# -- Redirect binding: the message comes from the pairs whose signature was checked ----------
def _signed_in(flow, user="alice"):
    a = flow.acs(flow.response(user))
    return a


def test_redirect_logout_request_is_read_from_the_signed_pairs_only(flow):
    alice = _signed_in(flow, "alice")
    bob = _signed_in(flow, "bob")
    signed = urlsplit(flow.idp.logout_request(bob.session_index, SLO)).query
    forged = dict(
        parse_qsl(urlsplit(flow.idp.logout_request(alice.session_index, SLO, sign=False)).query)
    )
    raw = f"SAML%52equest={quote(forged['SAMLRequest'], safe='')}&{signed}"
    framework = {}  # what Werkzeug's args.get / a first-wins reader hands over
    for k, v in parse_qsl(raw):
        framework.setdefault(k, v)
    assert "alice" in zlib.decompress(base64.b64decode(framework["SAMLRequest"]), -15).decode()
    assert _code(flow.sp.handle_slo, "redirect", framework, raw) == "structure"
    # the signed request alone, with params that disagree: the signed pairs decide
    result = flow.sp.handle_slo("redirect", framework, signed)
    assert isinstance(result, IdpLogoutRequest) and result.name_id == "bob@example.com"


@pytest.mark.parametrize(
    "query",
    [
        "SAMLRequest=a&SAMLRequest=b&SigAlg=x&Signature=y",
        "SAML%52equest=a&SigAlg=x&Signature=y",
        "SAMLRequest=a&Sig%41lg=x&Signature=y",
        "SAMLRequest=a&SAMLResponse=b&SigAlg=x&Signature=y",
        "SAMLRequest+=a&SigAlg=x&Signature=y",
    ],
)
def test_encoded_repeated_or_doubled_names_are_refused(flow, query):
    assert _code(flow.sp.handle_slo, "redirect", {}, query) == "structure"


def test_redirect_needs_the_raw_query(flow):
    assert _code(flow.sp.handle_slo, "redirect", {"SAMLRequest": "x"}, None) == "binding"


def test_a_logout_response_from_another_browser_leaves_the_logout_pending(flow):
    a = _signed_in(flow)
    out = flow.sp.logout(a.logout_info(), "/bye", flow.token)
    status, headers, _ = flow.idp.handle_slo(urlsplit(out.location).query)
    assert status == 302
    back = urlsplit(headers["Location"]).query
    assert _code(flow.sp.handle_slo, "redirect", None, back, "B" * 43) == "other_browser"
    assert _code(flow.sp.handle_slo, "redirect", None, back, None) == "other_browser"
    assert flow.sp.handle_slo("redirect", None, back, flow.token).location == "/bye"
    assert _code(flow.sp.handle_slo, "redirect", None, back, flow.token) == "unknown_request"


def test_a_tampered_signed_logout_response_is_refused(flow):
    a = _signed_in(flow)
    out = flow.sp.logout(a.logout_info(), "/bye", flow.token)
    _, headers, _ = flow.idp.handle_slo(urlsplit(out.location).query)
    back = urlsplit(headers["Location"]).query
    assert "Signature=" in back
    tampered = (
        back.replace("RelayState=%2Fbye", "RelayState=%2Fevil")
        if "RelayState=" in back
        else back.replace("SigAlg=", "RelayState=%2Fevil&SigAlg=")
    )
    assert _code(flow.sp.handle_slo, "redirect", None, tampered, flow.token) == "logout_signature"


# -- request size -------------------------------------------------------------------------------
def test_request_size_bound_is_checked_before_reading():
    assert MAX_REQUEST_BYTES >= 3 * MAX_MESSAGE_BYTES
    check_request_size(None)
    check_request_size("12000")
    check_request_size(MAX_REQUEST_BYTES)
    for bad in (MAX_REQUEST_BYTES + 1, 32 * 1024 * 1024, "-1", "lots"):
        with pytest.raises(SamlError) as err:
            check_request_size(bad)
        assert err.value.code == "too_large"


def test_an_oversized_query_is_refused_unparsed(flow):
    assert (
        _code(flow.sp.handle_slo, "redirect", {}, "SAMLRequest=" + "A" * MAX_REQUEST_BYTES)
        == "too_large"
    )


# -- IdP-initiated sign-in: login CSRF and its mitigation --------------------------------------
def test_unsolicited_relay_states_allow_list(make_flow, caplog):
    with caplog.at_level(logging.WARNING, logger="qlikauth.saml"):
        open_flow = make_flow(allow_unsolicited=True)
    assert "login CSRF" in caplog.text
    assert any("login CSRF" in w for w in open_flow.sp.startup_warnings())
    f = make_flow(allow_unsolicited=True, unsolicited_relay_states=("/portal/home",))
    assert not any("login CSRF" in w for w in f.sp.startup_warnings())

    def unsolicited(relay):
        return _form(
            f.idp.response_xml("alice", in_response_to=None, acs_url=ACS, sp_entity_id=SP_ENTITY),
            relay,
        )

    assert f.acs(unsolicited("/portal/home")).relay_state == "/portal/home"
    assert f.acs(unsolicited(None)).relay_state is None
    assert _code(f.acs, unsolicited("/portal/admin")) == "relay_state"
    # a solicited sign-in is not limited by the list
    assert f.acs(f.response()).relay_state == "/portal/home"


def test_unsolicited_relay_states_from_settings(idp):
    base = {"BASE_URL": "https://portal.example.com/qlik/saml/", "IDP_METADATA": idp.metadata()}
    s = SamlSettings.from_settings(
        {**base, "ALLOW_UNSOLICITED": True, "UNSOLICITED_RELAY_STATES": ["/a", "/b"]}
    )
    assert s.unsolicited_relay_states == ("/a", "/b")
    with pytest.raises(ConfigurationError, match="only used with ALLOW_UNSOLICITED"):
        SamlSettings.from_settings({**base, "UNSOLICITED_RELAY_STATES": ["/a"]})
    with pytest.raises(ConfigurationError, match="UNSOLICITED_RELAY_STATES"):
        SamlSettings.from_settings(
            {**base, "ALLOW_UNSOLICITED": True, "UNSOLICITED_RELAY_STATES": [3]}
        )


# -- the IdP's signing certificate: expiry warning, rollover -----------------------------------
def _cert_expiring_in(directory: Path, days: int) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expiring IdP")])
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
    (directory / "idp.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / "idp.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_an_idp_certificate_close_to_expiry_is_warned_about(tmp_path, caplog):
    _cert_expiring_in(tmp_path / "k", 10)
    idp = SamlIdp(key_dir=tmp_path / "k")
    try:
        with caplog.at_level(logging.WARNING, logger="qlikauth.saml"):
            sp = SamlServiceProvider(
                SamlSettings(sp_entity_id=SP_ENTITY, acs_url=ACS, idp_metadata=idp.metadata())
            )
        assert "expires on" in caplog.text and (
            "in 9 day(s)" in caplog.text or "in 10 day(s)" in caplog.text
        )
        assert "IDP_NEXT_CERT" in caplog.text
        quiet = SamlServiceProvider(
            SamlSettings(
                sp_entity_id=SP_ENTITY,
                acs_url=ACS,
                idp_metadata=idp.metadata(),
                cert_expiry_warning_days=5,
            )
        )
        assert quiet.certificate_warnings() == []
        later = sp.certificate_warnings(now=sp._now() + 11 * 86400)
        assert len(later) == 1 and "expired on" in later[0]
    finally:
        idp.stop()


def test_two_idp_certificates_are_trusted_during_a_rollover(idp, saml_keys, tmp_path):
    new_cert, new_key = write_self_signed(tmp_path / "next", "next")
    f_settings = {
        "sp_entity_id": SP_ENTITY,
        "acs_url": ACS,
        "slo_url": SLO,
        "idp_metadata": idp.metadata(),
        "idp_next_cert": new_cert.read_text(),
    }
    sp = SamlServiceProvider(SamlSettings(**f_settings))
    idp.add_sp_metadata(sp.metadata())
    assert len(sp._idp_certs) == 2

    def sign_in(key_file=None):
        start = sp.login("/home")
        info = idp.parse_authn_request(start.redirect.location)
        xml = idp.response_xml(
            "alice",
            in_response_to=info.id,
            acs_url=ACS,
            sp_entity_id=SP_ENTITY,
            key_file=key_file,
            mutate=lambda root: None,
        )
        return sp.acs(_form(xml, info.relay_state), start.cookie.value)

    assert sign_in().name_id == "alice@example.com"  # the current certificate
    assert sign_in(new_key).name_id == "alice@example.com"  # the next one
    assert _code(sign_in, saml_keys["evil"][1]) == "signature"  # any other key: refused
    # Redirect-binding LogoutRequests signed with the next key verify too
    a = sign_in(new_key)
    original = idp.key_file
    idp.key_file = new_key
    try:
        url = idp.logout_request(a.session_index, SLO)
    finally:
        idp.key_file = original
    assert sp.handle_slo("redirect", None, urlsplit(url).query).name_id == "alice@example.com"


def test_idp_next_cert_from_settings(idp, tmp_path):
    cert, _ = write_self_signed(tmp_path / "n", "n")
    base = {"BASE_URL": "https://portal.example.com/qlik/saml/", "IDP_METADATA": idp.metadata()}
    assert (
        "BEGIN CERTIFICATE"
        in SamlSettings.from_settings({**base, "IDP_NEXT_CERT": str(cert)}).idp_next_cert
    )
    with pytest.raises(ConfigurationError, match="IDP_NEXT_CERT: not a PEM certificate"):
        SamlSettings.from_settings({**base, "IDP_NEXT_CERT": "-----BEGIN CERTIFICATE-----\nnope\n"})


# -- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "https://login.microsoftonline.com/tenant/federationmetadata/2007-06/"
        "federationmetadata.xml?appid=1",
        "http://idp.example/metadata",
    ],
)
def test_idp_metadata_as_a_url_is_refused_with_how_to_download_it(url):
    with pytest.raises(ConfigurationError) as err:
        SamlSettings.from_settings(
            {"BASE_URL": "https://portal.example.com/qlik/saml/", "IDP_METADATA": url}
        )
    text = str(err.value)
    assert "never fetches" in text and "curl" in text and "IDP_METADATA = '/path/to" in text
    assert url not in text or len(url) <= 80


# -- an unknown issuer ------------------------------------------------------------------------
@pytest.mark.parametrize("where", ["both", "assertion", "response"])
def test_a_response_from_an_unknown_issuer_is_refused_as_issuer(flow, where):
    def mutate(root):
        targets = []
        if where in ("both", "response"):
            targets.append(root.find(f"{A}Issuer"))
        if where in ("both", "assertion"):
            targets.append(root.find(f"{A}Assertion").find(f"{A}Issuer"))
        for issuer in targets:
            issuer.text = "https://unknown-idp.example/metadata"

    err_code = _code(flow.acs, flow.response(mutate=mutate))
    assert err_code == "issuer"
