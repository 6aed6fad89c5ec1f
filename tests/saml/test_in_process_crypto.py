"""SAML signatures, signing and decryption in the portal's process (libxmlsec1 through ``xmlsec``).

No ``xmlsec1`` subprocess and no temporary file for any SAML operation of the SP; the
crypto backend's own refusals (keys from the message, external references, RSA PKCS#1 v1.5
key transport, comments in a decrypted assertion); a mismatched lxml/xmlsec pair refused.
"""

from __future__ import annotations

import base64
import re
import subprocess
import tempfile

import pytest

from qlikauth import ConfigurationError
from qlikauth.bridges import saml_xmlsec
from qlikauth.bridges.saml import SamlError, SamlServiceProvider, SamlSettings, xmlsec_version

from .conftest import ACS, SLO, SP_ENTITY

ASSERTION = "urn:oasis:names:tc:SAML:2.0:assertion:Assertion"


def _xml(form):
    return base64.b64decode(form["SAMLResponse"]).decode()


def _form(xml, relay="/portal/home"):
    return {"SAMLResponse": base64.b64encode(xml.encode()).decode(), "RelayState": relay}


@pytest.fixture
def no_subprocess_no_tempfile(monkeypatch, tmp_path):
    """Fail any subprocess or named temporary file; PATH holds no xmlsec1."""
    import saml2.sigver

    calls: list[str] = []

    def refuse(what):
        def fail(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} called during a SAML operation")

        return fail

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(subprocess, "Popen", refuse("subprocess.Popen"))
    monkeypatch.setattr(saml2.sigver, "Popen", refuse("saml2.sigver.Popen"))
    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse("tempfile.NamedTemporaryFile"))
    monkeypatch.setattr(
        saml2.sigver, "NamedTemporaryFile", refuse("saml2.sigver.NamedTemporaryFile")
    )
    return calls


def test_every_sp_operation_runs_without_xmlsec1_subprocess_or_temp_file(
    idp, saml_keys, no_subprocess_no_tempfile
):
    cert, key = saml_keys["sp"]
    # built, metadata signed, AuthnRequest signed: all with no xmlsec1 on PATH
    sp = SamlServiceProvider(
        SamlSettings(
            sp_entity_id=SP_ENTITY,
            acs_url=ACS,
            slo_url=SLO,
            idp_metadata=idp.metadata(),
            sp_cert=str(cert),
            sp_key=str(key),
            sign_requests=True,
            want_response_signed=True,
            want_assertions_signed=False,
        )
    )
    metadata = sp.metadata().decode()
    assert "SignatureValue" in metadata
    idp.add_sp_metadata(metadata)
    start = sp.login("/portal/home")
    token = start.cookie.value
    info = idp.parse_authn_request(start.redirect.location)
    # the IdP signs (response and assertion) in process too
    signed = idp.response_xml("alice", in_response_to=info.id, acs_url=ACS, sp_entity_id=SP_ENTITY)
    a = sp.acs(_form(signed, info.relay_state), token)
    assert a.name_id == "alice@example.com"
    # an encrypted assertion, decrypted in process (the IdP's encryption writes its cert to a file)
    start = sp.login("/portal/home", token)
    info = idp.parse_authn_request(start.redirect.location)
    encrypted = _encrypted_response(idp, info.id, cert)
    assert "EncryptedAssertion" in encrypted and "alice@example.com" not in encrypted
    assert sp.acs(_form(encrypted, info.relay_state), token).name_id == "alice@example.com"
    # a POST-binding LogoutRequest with an enveloped signature, verified in process
    form = idp.logout_request(a.session_index, SLO, binding="post")
    assert sp.handle_slo("post", form).name_id == "alice@example.com"
    # SP-initiated logout, signed
    assert "Signature=" in sp.logout(a.logout_info(), "/bye", token).location
    assert no_subprocess_no_tempfile == []
    assert "xmlsec" in xmlsec_version() and "lxml" in xmlsec_version()


def _encrypted_response(idp, request_id, sp_cert):
    """An encrypted (response-signed) answer, made with the tempfile guard lifted for the
    IdP only."""
    import saml2.sigver

    with pytest.MonkeyPatch.context() as m:
        m.setattr(saml2.sigver, "NamedTemporaryFile", _real_named_temporary_file)
        m.setattr(tempfile, "NamedTemporaryFile", _real_named_temporary_file)
        return idp.response_xml(
            "alice",
            in_response_to=request_id,
            acs_url=ACS,
            sp_entity_id=SP_ENTITY,
            encrypt_cert=sp_cert.read_text(),
            sign_assertion=False,
        )


_real_named_temporary_file = tempfile.NamedTemporaryFile


def test_a_key_in_the_message_is_never_used(flow, saml_keys):
    # the attacker signs with their own key and ships their certificate in KeyInfo
    evil_cert, evil_key = saml_keys["evil"]
    body = re.sub(r"-----[^-]+-----|\s+", "", evil_cert.read_text())
    xml = flow.idp.response_xml(
        "alice",
        in_response_to=flow.start().id,
        acs_url=ACS,
        sp_entity_id=SP_ENTITY,
        key_file=evil_key,
    )
    key_info = (
        "<ds:KeyInfo><ds:X509Data>"
        f"<ds:X509Certificate>{body}</ds:X509Certificate>"
        "</ds:X509Data></ds:KeyInfo>"
    )
    xml = re.sub(
        r"(</ds:SignatureValue>)(\s*<ds:KeyInfo>.*?</ds:KeyInfo>)?",
        r"\1" + key_info,
        xml,
        flags=re.S,
    )
    assert xml.count(body) == 2  # both signatures name the attacker's certificate
    with pytest.raises(SamlError) as err:
        flow.acs(_form(xml))
    assert err.value.code == "signature"


def test_backend_refuses_a_reference_outside_the_document(flow):
    xml = _xml(flow.response(sign_response=False))
    assertion_id = re.search(r'<saml:Assertion[^>]* ID="([^"]+)"', xml).group(1)
    outside = xml.replace(f'URI="#{assertion_id}"', 'URI="file:///etc/hostname"', 1)
    backend = flow.sp.client.sec.crypto
    ref = backend.cert_ref(flow.idp.cert_file.read_text())
    from saml2.sigver import XmlsecError

    assert backend.validate_signature(xml, ref, "pem", ASSERTION, assertion_id) is True
    with pytest.raises(XmlsecError, match="outside the document"):
        backend.validate_signature(outside, ref, "pem", ASSERTION, assertion_id)


def test_backend_enables_sha1_only_when_allowed(make_flow):
    from saml2.sigver import XmlsecError

    from qlikauth.emulator.saml_idp import DIGEST_SHA1, SHA1

    f = make_flow()
    xml = _xml(f.response(sign_response=False, sign_alg=SHA1, digest_alg=DIGEST_SHA1))
    assertion_id = re.search(r'<saml:Assertion[^>]* ID="([^"]+)"', xml).group(1)
    strict = saml_xmlsec.XmlSecBackend()
    lenient = saml_xmlsec.XmlSecBackend(allow_sha1=True)
    pem = f.idp.cert_file.read_text()
    with pytest.raises(XmlsecError):
        strict.validate_signature(xml, strict.cert_ref(pem), "pem", ASSERTION, assertion_id)
    assert lenient.validate_signature(xml, lenient.cert_ref(pem), "pem", ASSERTION, assertion_id)


def _encrypt(backend, response_xml, cert, key_enc=None):
    from lxml import etree
    from saml2.sigver import pre_encryption_part

    # self-contained, as an IdP encrypts it: the assertion carries its namespace declarations
    assertion = etree.fromstring(response_xml.encode()).find(
        "{urn:oasis:names:tc:SAML:2.0:assertion}Assertion"
    )
    standalone = etree.tostring(assertion).decode()
    wrapped = re.sub(
        r"<(\w+):Assertion[ >].*</\1:Assertion>",
        lambda m: (
            f"<{m.group(1)}:EncryptedAssertion>{standalone}</{m.group(1)}:EncryptedAssertion>"
        ),
        response_xml,
        flags=re.S,
    )
    body = re.sub(r"-----[^-]+-----|\s+", "", cert.read_text())
    kwargs = {"key_enc": key_enc} if key_enc else {}
    return backend.encrypt_assertion(
        wrapped, str(cert), pre_encryption_part(encrypt_cert=body, **kwargs)
    )


def test_rsa_pkcs1_v15_key_transport_is_refused(make_flow, saml_keys):
    from saml2.sigver import XmlsecError

    cert, key = saml_keys["sp"]
    f = make_flow(sp_cert=str(cert), sp_key=str(key))
    backend = f.sp.client.sec.crypto
    xml = _xml(f.response(sign_response=False))
    good = _encrypt(backend, xml, cert)
    assert "alice@example.com" in backend.decrypt(good, str(key))
    bad = _encrypt(backend, xml, cert, key_enc="http://www.w3.org/2001/04/xmlenc#rsa-1_5")
    with pytest.raises(XmlsecError, match="PKCS#1 v1.5"):
        backend.decrypt(bad, str(key))


def test_a_comment_inside_an_encrypted_assertion_is_refused(make_flow, saml_keys):
    # the comment trick, hidden from the guards that read the posted (encrypted) document
    from saml2.sigver import XmlsecError

    cert, key = saml_keys["sp"]
    f = make_flow(sp_cert=str(cert), sp_key=str(key))

    def encrypted(comment: bool):
        info = f.start()
        xml = f.idp.response_xml(
            "alice",
            in_response_to=info.id,
            acs_url=ACS,
            sp_entity_id=SP_ENTITY,
            sign_response=False,
        )
        if comment:
            xml = xml.replace(">alice@example.com<", ">alice@example.com<!---->.evil.example<", 1)
        return _form(_encrypt(f.sp.client.sec.crypto, xml, cert), info.relay_state)

    assert f.acs(encrypted(False)).name_id == "alice@example.com"  # the same without the comment
    form = encrypted(True)
    assert "evil.example" not in _xml(form)
    with pytest.raises(XmlsecError, match="comments"):
        f.sp.client.sec.crypto.decrypt(_xml(form), str(key))
    with pytest.raises(SamlError) as err:
        f.acs(form)
    assert err.value.code == "no_subject"


def test_a_mismatched_lxml_xmlsec_pair_is_refused_at_start_up(monkeypatch, idp):
    import xmlsec

    monkeypatch.setattr(saml_xmlsec, "_CHECKED", None)
    monkeypatch.setattr(xmlsec, "get_libxml_version", lambda: (2, 9, 14))
    with pytest.raises(ConfigurationError) as err:
        SamlServiceProvider(
            SamlSettings(sp_entity_id=SP_ENTITY, acs_url=ACS, idp_metadata=idp.metadata())
        )
    assert "libxml2 2.9.14" in str(err.value) and "pip install 'qlikauth[saml]'" in str(err.value)


def test_a_missing_xmlsec_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setattr(saml_xmlsec, "_CHECKED", None)
    monkeypatch.setitem(sys.modules, "xmlsec", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'qlikauth\[saml\]'"):
        saml_xmlsec.check_xml_libraries()


def _schema_cases(xml):
    from lxml import etree

    a = "{urn:oasis:names:tc:SAML:2.0:assertion}"
    root = etree.fromstring(xml.encode())
    assertion = root.find(f"{a}Assertion")
    for sig in assertion.findall("{http://www.w3.org/2000/09/xmldsig#}Signature"):
        assertion.remove(sig)
    base = etree.tostring(assertion).decode()

    def edit(change):
        el = etree.fromstring(base.encode())
        change(el)
        return etree.tostring(el).decode()

    def issuer_last(el):
        issuer = el.find(f"{a}Issuer")
        el.remove(issuer)
        el.append(issuer)

    return {
        "assertion": (base, True),
        "issuer moved after the statements": (edit(issuer_last), False),
        "unknown element": (
            edit(lambda el: el.find(f"{a}Issuer").addnext(etree.Element(f"{a}Bogus"))),
            False,
        ),
        "no Version": (edit(lambda el: el.attrib.pop("Version")), False),
        "IssueInstant not a dateTime": (
            edit(lambda el: el.set("IssueInstant", "yesterday")),
            False,
        ),
        "unknown attribute": (edit(lambda el: el.set("Role", "admin")), False),
    }


def test_the_schema_check_agrees_with_pysaml2s(flow):
    from saml2.xml.schema import validate as pysaml2_validate

    def verdict(check, doc):
        try:
            check(doc)
            return True
        except Exception:  # noqa: BLE001 - each raises its own kind
            return False

    xml = _xml(flow.response())
    cases = _schema_cases(xml)
    response = xml.split("?>", 1)[1]
    cases["response"] = (response, True)
    cases["response without Status"] = (
        re.sub(r"<(\w+):Status>.*?</\1:Status>", "", response, flags=re.S),
        False,
    )
    a = flow.acs(flow.response())
    form = flow.idp.logout_request(a.session_index, SLO, binding="post")
    logout = base64.b64decode(form["SAMLRequest"]).decode()
    cases["logout request"] = (logout, True)
    cases["logout request without NameID"] = (
        re.sub(r"<(\w+):NameID[^>]*>[^<]*</\1:NameID>", "", logout),
        False,
    )
    for name, (doc, valid) in cases.items():
        assert verdict(pysaml2_validate, doc) is valid, f"pysaml2: {name}"
        assert verdict(saml_xmlsec.validate_saml_schema, doc) is valid, f"qlikauth: {name}"


def test_a_signed_assertion_outside_the_schema_is_refused(flow):
    a = "{urn:oasis:names:tc:SAML:2.0:assertion}"

    def mutate(root):
        import xml.etree.ElementTree as ET

        assertion = root.find(f"{a}Assertion")
        assertion.insert(1, ET.Element(f"{a}Bogus"))

    with pytest.raises(SamlError) as err:
        flow.acs(flow.response(mutate=mutate))
    assert err.value.code == "structure" and "schema" in str(err.value)


def test_xmlsec_refusing_to_load_beside_lxml_says_what_to_install(monkeypatch):
    import sys

    class MismatchedXmlsec:  # what xmlsec's import does when lxml carries another libxml2
        def find_spec(self, name, path=None, target=None):
            if name == "xmlsec":
                raise RuntimeError("(-1, 'lxml & xmlsec libxml2 library version mismatch')")
            return None

    monkeypatch.setattr(saml_xmlsec, "_CHECKED", None)
    monkeypatch.delitem(sys.modules, "xmlsec")
    monkeypatch.setattr(sys, "meta_path", [MismatchedXmlsec(), *sys.meta_path])
    with pytest.raises(ConfigurationError) as err:
        saml_xmlsec.check_xml_libraries()
    text = str(err.value)
    assert "version mismatch" in text and "lxml" in text and "pip install 'qlikauth[saml]'" in text


def test_an_encrypted_signed_assertion_is_decrypted_then_verified(make_flow, saml_keys):
    cert, key = saml_keys["sp"]
    f = make_flow(sp_cert=str(cert), sp_key=str(key))  # the assertion's own signature is required
    info = f.start()
    xml = f.idp.response_xml(
        "alice", in_response_to=info.id, acs_url=ACS, sp_entity_id=SP_ENTITY, sign_response=False
    )
    encrypted = _encrypt(f.sp.client.sec.crypto, xml, cert)
    assert "alice@example.com" not in encrypted
    assert f.acs(_form(encrypted, info.relay_state)).name_id == "alice@example.com"
    # the same, its assertion altered before encryption: the signature inside still catches it
    info = f.start()
    xml = f.idp.response_xml(
        "alice", in_response_to=info.id, acs_url=ACS, sp_entity_id=SP_ENTITY, sign_response=False
    ).replace("Alice Example", "Admin Example")
    with pytest.raises(SamlError) as err:
        f.acs(_form(_encrypt(f.sp.client.sec.crypto, xml, cert), info.relay_state))
    assert err.value.code == "signature"
