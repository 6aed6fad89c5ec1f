"""The SAML SP against a real IdP (pysaml2's Server signing with xmlsec1): sign-in, then every
refusal.

Each refusal starts from a response the IdP signed with its real key, then alters or replays
it; each is refused with its own ``SamlError.code`` (or ``ClaimsError.code`` at the mapping).
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from qlikauth import ClaimsError, ConfigurationError
from qlikauth.bridges.saml import SamlError, SamlServiceProvider, SamlSettings
from qlikauth.emulator.saml_idp import DIGEST_SHA1, SHA1
from qlikauth.mapping import ClaimsMapping

from .conftest import ACS, SP_ENTITY

A = "{urn:oasis:names:tc:SAML:2.0:assertion}"


def _xml(form: dict[str, str]) -> str:
    return base64.b64decode(form["SAMLResponse"]).decode()


def _form(xml: str, relay: str | None = "/portal/home") -> dict[str, str]:
    f = {"SAMLResponse": base64.b64encode(xml.encode()).decode()}
    if relay:
        f["RelayState"] = relay
    return f


def _iso(delta: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def refused(flow, form, code, token=None):
    with pytest.raises(SamlError) as err:
        flow.acs(form, token)
    assert err.value.code == code, f"{err.value.code}: {err.value}"
    assert "PHNhbWxw" not in str(err.value) and "SAMLResponse=" not in str(err.value)
    return err.value


# -- the happy path -------------------------------------------------------------------
def test_signed_response_signs_in_with_claims_session_index_and_relay_state(flow):
    form = flow.response("alice")
    a = flow.acs(form)
    assert a.name_id == "alice@example.com" and a.issuer == flow.idp.entity_id
    assert a.session_index and a.session_index in flow.idp.sessions
    assert a.relay_state == "/portal/home"
    email = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    assert a.claims[email] == ["Alice@Example.com"]
    user = ClaimsMapping(
        user_id=email, user_id_transforms=["lower"], user_directory="AZURE"
    ).to_user(a.claims, a.name_id)
    assert user.qualified_name == "AZURE\\alice@example.com" and len(user.groups) == 2
    assert a.logout_info()["session_index"] == a.session_index


def test_response_signed_only_or_assertion_signed_only(make_flow):
    f = make_flow(want_response_signed=True, want_assertions_signed=False)
    assert f.acs(f.response(sign_assertion=False)).name_id == "alice@example.com"
    f2 = make_flow()
    assert f2.acs(f2.response(sign_response=False)).name_id == "alice@example.com"


def test_encrypted_assertion_accepted_with_an_sp_key(make_flow, saml_keys):
    cert, key = saml_keys["sp"]
    f = make_flow(
        sp_cert=str(cert), sp_key=str(key), want_response_signed=True, want_assertions_signed=False
    )
    form = f.response(encrypt_cert=cert.read_text(), sign_assertion=False)
    assert "EncryptedAssertion" in _xml(form) and "alice@example.com" not in _xml(form)
    assert f.acs(form).name_id == "alice@example.com"


def test_sp_metadata_is_signed_when_a_key_is_configured(make_flow, saml_keys):
    cert, key = saml_keys["sp"]
    md = make_flow(sp_cert=str(cert), sp_key=str(key)).sp.metadata().decode()
    assert "SignatureValue" in md and "rsa-sha256" in md and ACS in md
    assert "SignatureValue" not in make_flow().sp.metadata().decode()


# -- refusals -----------------------------------------------------------------------------
def test_unsigned(flow):
    refused(flow, flow.response(sign_response=False, sign_assertion=False), "unsigned")


def test_signed_by_another_key(flow, saml_keys):
    refused(flow, flow.response(key_file=saml_keys["evil"][1]), "signature")


def test_attribute_modified_after_signing(flow):
    xml = _xml(flow.response()).replace("Alice Example", "Admin Example")
    refused(flow, _form(xml), "signature")


def _assertion_span(xml: str) -> tuple[int, int]:
    m = re.search(r"<(\w+):Assertion[ >]", xml)
    assert m
    end = xml.index(f"</{m.group(1)}:Assertion>") + len(f"</{m.group(1)}:Assertion>")
    return m.start(), end


def _evil_copy(assertion: str) -> str:
    evil = re.sub(r"<(\w+):Signature[ >].*?</\1:Signature>", "", assertion, flags=re.S)
    evil = re.sub(r'ID="[^"]+"', 'ID="_evil"', evil, count=1)
    return evil.replace("alice@example.com", "admin@example.com")


@pytest.mark.parametrize(
    "shape",
    ["beside_before", "beside_after", "wrapping_signed", "inside_signed", "response_wrapped"],
)
def test_signature_wrapping(flow, shape):
    xml = _xml(flow.response())
    s, e = _assertion_span(xml)
    signed = xml[s:e]
    evil = _evil_copy(signed)
    if shape == "beside_before":
        out = xml[:s] + evil + xml[s:]
    elif shape == "beside_after":
        out = xml[:e] + evil + xml[e:]
    elif shape == "wrapping_signed":  # the evil assertion holds the signed one (XSW 7/8 family)
        closing = evil.rindex("</")
        out = xml[:s] + evil[:closing] + signed + evil[closing:] + xml[e:]
    elif shape == "inside_signed":  # the evil assertion hidden in the signed one's Subject
        prefix = re.match(r"<(\w+):", signed).group(1)  # type: ignore[union-attr]
        inner = signed.replace(f"</{prefix}:Subject>", evil + f"</{prefix}:Subject>", 1)
        out = xml[:s] + inner + xml[e:]
    else:  # XSW1/2: a new Response around the signed one
        root_tag = re.match(r"(?s)<\?xml[^>]*>\s*(<(\w+):Response[^>]*>)", xml)
        assert root_tag
        body = xml[root_tag.end(1) :]
        wrapper = re.sub(r'ID="[^"]+"', 'ID="_evilresponse"', root_tag.group(1), count=1)
        out = (
            wrapper
            + f"<{root_tag.group(2)}:Extensions>"
            + root_tag.group(1)
            + body
            + f"</{root_tag.group(2)}:Extensions>"
            + evil
            + f"</{root_tag.group(2)}:Response>"
        )
    err = refused(flow, _form(out), "structure")
    assert "wrapping" in str(err) or "assertion" in str(err)


def test_comment_inside_the_name_id(flow):
    xml = _xml(flow.response())
    # exc-c14n drops comments, so the signature still verifies: the comment must be refused itself
    xml = xml.replace(">alice@example.com<", ">alice@example.com<!---->.evil.example<", 1)
    refused(flow, _form(xml), "comment")


@pytest.mark.parametrize(
    "doctype",
    [
        '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>',
        '<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
)
def test_xxe_and_entity_expansion(flow, doctype):
    xml = _xml(flow.response())
    decl_end = xml.index("?>") + 2
    xml = (
        xml[:decl_end]
        + doctype
        + xml[decl_end:].replace("Alice Example", "&x;" if 'SYSTEM "file' in doctype else "&c;", 1)
    )
    refused(flow, _form(xml), "doctype")


def _set_times(
    not_before: str | None = None, not_on_or_after: str | None = None, sc_nooa: str | None = None
):
    def mutate(root: ET.Element) -> None:
        for cond in root.iter(f"{A}Conditions"):
            if not_before:
                cond.set("NotBefore", not_before)
            if not_on_or_after:
                cond.set("NotOnOrAfter", not_on_or_after)
        for data in root.iter(f"{A}SubjectConfirmationData"):
            if sc_nooa:
                data.set("NotOnOrAfter", sc_nooa)

    return mutate


def test_expired(flow):
    err = refused(
        flow,
        flow.response(
            mutate=_set_times(not_before=_iso(-900), not_on_or_after=_iso(-600), sc_nooa=_iso(-600))
        ),
        "expired",
    )
    assert "clock" in str(err)


def test_not_yet_valid(flow):
    refused(
        flow,
        flow.response(mutate=_set_times(not_before=_iso(600), not_on_or_after=_iso(900))),
        "not_yet_valid",
    )


def test_within_clock_skew_is_accepted(flow):
    form = flow.response(mutate=_set_times(not_before=_iso(30)))
    assert flow.acs(form).name_id == "alice@example.com"


def test_wrong_audience(flow):
    def mutate(root):
        for aud in root.iter(f"{A}Audience"):
            aud.text = "https://other-app.example.com/metadata"

    err = refused(flow, flow.response(mutate=mutate), "audience")
    assert "Entity ID" in str(err)


def test_wrong_destination(flow):
    def mutate(root):
        root.set("Destination", "https://attacker.example.com/acs")

    refused(flow, flow.response(mutate=mutate), "destination")


def test_wrong_recipient(flow):
    def mutate(root):
        for data in root.iter(f"{A}SubjectConfirmationData"):
            data.set("Recipient", "https://attacker.example.com/acs")

    refused(flow, flow.response(mutate=mutate), "recipient")


def test_unknown_in_response_to(flow):
    flow.start()
    xml = flow.idp.response_xml(
        "alice", in_response_to="id-never-asked", acs_url=ACS, sp_entity_id=SP_ENTITY
    )
    refused(flow, _form(xml), "unknown_request")


def test_in_response_to_of_another_browser(flow):
    form = flow.response()
    refused(flow, form, "other_browser", token="B" * 43)
    refused(flow, form, "other_browser", token="")
    assert (
        flow.acs(form).name_id == "alice@example.com"
    )  # the right browser still can (nothing was used up)


def test_replayed(flow):
    form = flow.response()
    flow.acs(form)
    refused(flow, form, "replayed")


def test_replayed_unsolicited_assertion_id(make_flow):
    f = make_flow(allow_unsolicited=True)
    xml = f.idp.response_xml("alice", in_response_to=None, acs_url=ACS, sp_entity_id=SP_ENTITY)
    assert f.acs(_form(xml, None)).name_id == "alice@example.com"
    refused(f, _form(xml, None), "replayed")


def test_idp_initiated_when_off(flow):
    xml = flow.idp.response_xml("alice", in_response_to=None, acs_url=ACS, sp_entity_id=SP_ENTITY)
    err = refused(flow, _form(xml, None), "unsolicited")
    assert "ALLOW_UNSOLICITED" in str(err)


def test_unsolicited_allowed_still_checks_a_present_in_response_to(make_flow):
    # pysaml2 skips InResponseTo entirely under allow_unsolicited; qlikauth does not
    f = make_flow(allow_unsolicited=True)
    f.start()
    xml = f.idp.response_xml(
        "alice", in_response_to="id-never-asked", acs_url=ACS, sp_entity_id=SP_ENTITY
    )
    refused(f, _form(xml), "unknown_request")


def test_unsolicited_relay_state_goes_through_the_policy(make_flow):
    f = make_flow(allow_unsolicited=True)
    xml = f.idp.response_xml("alice", in_response_to=None, acs_url=ACS, sp_entity_id=SP_ENTITY)
    refused(f, _form(xml, "https://evil.example.com/"), "relay_state")


def test_relay_state_swapped_in_transit(flow):
    form = flow.response()
    form["RelayState"] = "/somewhere/else"
    refused(flow, form, "relay_state")


def test_sha1_refused_unless_enabled(make_flow):
    f = make_flow()
    err = refused(f, f.response(sign_alg=SHA1, digest_alg=DIGEST_SHA1), "algorithm")
    assert "SHA-256" in str(err)
    g = make_flow(allow_sha1=True)
    assert g.acs(g.response(sign_alg=SHA1, digest_alg=DIGEST_SHA1)).name_id == "alice@example.com"


def test_idp_error_status(flow):
    def mutate(root):
        protocol = "{urn:oasis:names:tc:SAML:2.0:protocol}"
        code = root.find(f"{protocol}Status/{protocol}StatusCode")
        code.set("Value", "urn:oasis:names:tc:SAML:2.0:status:Responder")

    refused(flow, flow.response(mutate=mutate), "idp_status")


def test_missing_subject(flow):
    def mutate(root):
        for subj in root.iter(f"{A}Subject"):
            subj.remove(subj.find(f"{A}NameID"))

    refused(flow, flow.response(mutate=mutate), "no_subject")


def test_garbage_and_oversize(flow):
    refused(flow, {"SAMLResponse": "not base64!!"}, "encoding")
    refused(flow, {"SAMLResponse": base64.b64encode(b"<a><b></a>").decode()}, "xml")
    refused(flow, {"SAMLResponse": "A" * (300 * 1024)}, "too_large")
    refused(flow, {}, "missing")


def test_missing_required_claim_and_unknown_group_are_refused_at_the_mapping(flow):
    a = flow.acs(flow.response("carol"))  # carol is in no group
    strict = ClaimsMapping.from_settings(
        {
            "USER_ID": "$subject",
            "USER_DIRECTORY": "AZURE",
            "REQUIRED": ["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
        }
    )
    with pytest.raises(ClaimsError) as err:
        strict.to_user(a.claims, a.name_id)
    assert err.value.code == "missing_claim"
    b = flow.acs(flow.response("alice"))
    table = ClaimsMapping.from_settings(
        {
            "USER_ID": "$subject",
            "USER_DIRECTORY": "AZURE",
            "GROUP_NAMES": {"6b8a5d1e-1c7f-4d3a-9a51-0c2d1e7f9b10": "Sales"},
            "UNKNOWN_GROUPS": "refuse",
        }
    )
    with pytest.raises(ClaimsError) as err:
        table.to_user(b.claims, b.name_id)
    assert err.value.code == "unknown_group" and "0f3c2b1a" in str(err.value)


# -- what pysaml2 alone accepts (the gaps qlikauth closes) --------------------------------
def test_gap_pysaml2_alone_accepts_a_replay(flow):
    from saml2 import BINDING_HTTP_POST

    info = flow.start()
    xml = flow.idp.response_xml(
        "alice", in_response_to=info.id, acs_url=ACS, sp_entity_id=SP_ENTITY
    )
    b64 = _form(xml)["SAMLResponse"]
    client = flow.sp.client
    first = client.parse_authn_request_response(b64, BINDING_HTTP_POST, outstanding={info.id: "/"})
    second = client.parse_authn_request_response(b64, BINDING_HTTP_POST, outstanding={info.id: "/"})
    assert (
        first.name_id.text == second.name_id.text == "alice@example.com"
    )  # pysaml2: the replay passes
    flow.acs(_form(xml))
    refused(flow, _form(xml), "replayed")


def test_sha1_is_refused_by_the_crypto_backend_too(flow):
    # pysaml2 on the xmlsec1 binary accepts RSA-SHA1; the in-process backend only enables
    # SHA-1 in libxmlsec1 with ALLOW_SHA1, so pysaml2's own parse refuses it as well
    from saml2 import BINDING_HTTP_POST

    info = flow.start()
    xml = flow.idp.response_xml(
        "alice",
        in_response_to=info.id,
        acs_url=ACS,
        sp_entity_id=SP_ENTITY,
        sign_alg=SHA1,
        digest_alg=DIGEST_SHA1,
    )
    with pytest.raises(Exception) as err:  # noqa: B017 - pysaml2 raises SignatureError here
        flow.sp.client.parse_authn_request_response(
            _form(xml)["SAMLResponse"], BINDING_HTTP_POST, outstanding={info.id: "/"}
        )
    assert "Signature" in type(err.value).__name__
    refused(flow, _form(xml), "algorithm")


def test_gap_pysaml2_returns_no_subject_for_a_wrong_destination(flow):
    from saml2 import BINDING_HTTP_POST

    info = flow.start()
    xml = flow.idp.response_xml(
        "alice",
        in_response_to=info.id,
        acs_url="https://elsewhere.example/acs",
        sp_entity_id=SP_ENTITY,
    )
    try:
        resp = flow.sp.client.parse_authn_request_response(
            _form(xml)["SAMLResponse"], BINDING_HTTP_POST, outstanding={info.id: "/"}
        )
        assert resp is None or resp.name_id is None  # pysaml2: no exception, no subject
    except Exception:  # noqa: BLE001 - some versions raise; either way qlikauth names the cause
        pass
    refused(flow, _form(xml), "destination")


def test_gap_pysaml2_skips_in_response_to_when_unsolicited_is_allowed(make_flow):
    from saml2 import BINDING_HTTP_POST

    f = make_flow(allow_unsolicited=True)
    xml = f.idp.response_xml(
        "alice", in_response_to="id-never-asked", acs_url=ACS, sp_entity_id=SP_ENTITY
    )
    resp = f.sp.client.parse_authn_request_response(_form(xml)["SAMLResponse"], BINDING_HTTP_POST)
    assert resp.name_id.text == "alice@example.com"
    f.start()
    refused(f, _form(xml), "unknown_request")


# -- settings ---------------------------------------------------------------------------------
def test_refuses_to_build_an_sp_that_accepts_unsigned_assertions(idp):
    with pytest.raises(ConfigurationError, match="unsigned"):
        SamlSettings(
            sp_entity_id=SP_ENTITY,
            acs_url=ACS,
            idp_metadata=idp.metadata(),
            want_response_signed=False,
            want_assertions_signed=False,
        )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (1, True),
        (0, False),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("off", False),
        ("", False),
    ],
)
def test_allow_http_reads_the_same_words_as_qlikauth_settings(idp, value, expected):
    settings = {
        "BASE_URL": "http://portal.example/qlik/saml/",
        "IDP_METADATA": idp.metadata(),
        "ALLOW_HTTP": value,
    }
    if expected:
        assert SamlSettings.from_settings(settings).acs_url == "http://portal.example/qlik/saml/acs"
    else:
        with pytest.raises(ConfigurationError, match="https"):
            SamlSettings.from_settings(settings)


@pytest.mark.parametrize("value", ["maybe", "ture", 2, 1.0, None, ["true"]])
def test_allow_http_that_is_not_a_boolean_is_refused_by_name(idp, value):
    with pytest.raises(ConfigurationError, match="ALLOW_HTTP: expected true or false"):
        SamlSettings.from_settings(
            {
                "BASE_URL": "https://portal.example/qlik/saml/",
                "IDP_METADATA": idp.metadata(),
                "ALLOW_HTTP": value,
            }
        )


def test_settings_from_plain_mapping(idp, tmp_path):
    md = tmp_path / "idp.xml"
    md.write_text(idp.metadata())
    s = SamlSettings.from_settings(
        {
            "base_url": "https://portal.example.com/qlik/saml",
            "idp_metadata": str(md),
            "allow_sha1": "false",
            "clock_skew": "30",
        }
    )
    assert s.acs_url == ACS and s.sp_entity_id == SP_ENTITY and s.clock_skew == 30
    with pytest.raises(ConfigurationError, match="Did you mean ALLOW_SHA1"):
        SamlSettings.from_settings(
            {"BASE_URL": "https://p.example/", "IDP_METADATA": str(md), "ALLOW_SHA": True}
        )
    with pytest.raises(ConfigurationError, match="https"):
        SamlSettings.from_settings({"BASE_URL": "http://p.example/", "IDP_METADATA": str(md)})
    sp = SamlServiceProvider(s)
    assert sp.idp_entity_id == idp.entity_id


def test_pysaml2_logs_stay_quiet(flow, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        form = flow.response()
        flow.acs(form)
        with pytest.raises(SamlError):
            flow.acs(form)
    text = caplog.text
    assert "alice@example.com" not in text and form["SAMLResponse"][:40] not in text
    assert "SignatureValue" not in text and flow.token not in text


def test_a_full_replay_cache_refuses_rather_than_forgets(make_flow):
    from qlikauth.exceptions import StoreFull
    from qlikauth.store import MemoryStore

    def unsolicited(f):
        return _form(
            f.idp.response_xml("alice", in_response_to=None, acs_url=ACS, sp_entity_id=SP_ENTITY),
            None,
        )

    # an evicting cache (what a plain cache does) forgets the oldest consumed id: its replay passes
    evicting = make_flow(allow_unsolicited=True)
    evicting.sp.replay_cache = MemoryStore(max_items=2, when_full="evict")
    first = unsolicited(evicting)
    for form in (first, unsolicited(evicting), unsolicited(evicting)):
        evicting.acs(form)
    assert evicting.acs(first).name_id == "alice@example.com"  # the replay got through
    # qlikauth's default: the cache refuses when full, so nothing consumed is forgotten
    strict = make_flow(allow_unsolicited=True)
    strict.sp.replay_cache = MemoryStore(max_items=2, when_full="refuse")
    first = unsolicited(strict)
    strict.acs(first)
    strict.acs(unsolicited(strict))
    with pytest.raises(StoreFull):
        strict.acs(unsolicited(strict))
    refused(strict, first, "replayed")


def test_the_default_replay_cache_refuses_when_full(flow):
    assert "refuse" in repr(flow.sp.replay_cache)


def test_signed_authn_and_logout_requests_verify_with_the_sp_certificate(make_flow, saml_keys):
    from urllib.parse import urlsplit

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    cert, key = saml_keys["sp"]
    f = make_flow(sp_cert=str(cert), sp_key=str(key), sign_requests=True)
    public = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()

    def verify(location: str, first: str) -> None:
        query = urlsplit(location).query
        signed, _, signature = query.rpartition("&Signature=")
        assert (
            signed.startswith(first + "=")
            and "SigAlg=http%3A%2F%2Fwww.w3.org%2F2001%2F04%2Fxmldsig-more%23rsa-sha256" in signed
        )
        from urllib.parse import unquote

        public.verify(
            base64.b64decode(unquote(signature)),
            signed.encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )

    start = f.sp.login("/x")
    verify(start.redirect.location, "SAMLRequest")
    a = f.acs(f.response())
    verify(f.sp.logout(a.logout_info(), "/bye", f.token).location, "SAMLRequest")
