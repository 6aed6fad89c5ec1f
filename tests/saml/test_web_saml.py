"""The SAML endpoints through flask_qlikauth (and django_qlikauth), a real IdP and the QPS emulator.

Sign-in lands on the hub as the mapped user with the mapped groups; each refusal is its own
clear error page and reaches no QPS endpoint (the emulator counts every API request); single
logout, SP- and IdP-initiated, ends the proxy sessions on the emulator.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from flask import Flask, session
from flask_qlikauth import QlikAuth

from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS, SamlIdp
from qlikauth.web.saml import SAML_SESSION_KEY, saml_parts, saml_user

PORTAL = "https://portal.test"
BASE = PORTAL + "/qlik/saml/"
A = "{urn:oasis:names:tc:SAML:2.0:assertion}"
CLAIMS = {
    "USER_ID": ENTRA_CLAIMS["email"],
    "USER_ID_TRANSFORMS": ["lower"],
    "USER_DIRECTORY": "AZURE",
    "GROUP_NAMES": {guid: name for name, guid in DEMO_GROUPS.items()},
    "UNKNOWN_GROUPS": "refuse",
    "REQUIRED": [ENTRA_CLAIMS["email"]],
    "IDP": "the test IdP",
}


def make_app(
    emu: Any, idp: SamlIdp, prefix: str, mode: str, claims: dict[str, Any] | None = None
) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        TESTING=True,
        SESSION_COOKIE_SECURE=True,
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url_for(prefix),
        QLIKAUTH_VIRTUAL_PROXY=prefix,
        QLIKAUTH_MODE=mode,
        QLIKAUTH_ALLOWED_TARGETS=[emu.hub_url],
        QLIKAUTH_SAML={"BASE_URL": BASE, "IDP_METADATA": idp.metadata()},
        QLIKAUTH_CLAIMS=claims or CLAIMS,
    )
    ext = QlikAuth()

    @ext.user_loader
    def user() -> Any:
        return saml_user(session, ext.runtime)

    ext.init_app(app)  # after the user loader: init_app refuses to run without one

    @app.get("/whoami")
    def whoami() -> str:
        u = ext.current_user()
        return u.qualified_name if u else "nobody"

    with app.app_context():
        idp.add_sp_metadata(saml_parts(ext.runtime).sp.metadata())
    app.qlikauth = ext  # type: ignore[attr-defined]
    return app


@pytest.fixture
def idp(saml_keys: Any) -> Any:
    i = SamlIdp(key_dir=saml_keys["idp"][0].parent)
    yield i
    i.stop()


@pytest.fixture
def ticket_portal(emulator_factory: Any, idp: SamlIdp) -> tuple[Any, Flask]:
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="sso", method="ticket")])
    return emu, make_app(emu, idp, "sso", "ticket")


@pytest.fixture
def session_portal(emulator_factory: Any, idp: SamlIdp) -> tuple[Any, Flask]:
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])
    return emu, make_app(emu, idp, "mashup", "session")


class Browser:
    """Flask's test client as one browser (https, so Secure cookies travel)."""

    def __init__(self, app: Flask, idp: SamlIdp) -> None:
        self.client = app.test_client()
        self.idp = idp

    def get(self, path: str, **kw: Any) -> Any:
        return self.client.get(path, base_url=PORTAL, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.client.post(path, base_url=PORTAL, **kw)

    def start(self, next_url: str | None = None) -> Any:
        r = self.get("/qlik/saml/login" + (f"?next={next_url}" if next_url else ""))
        assert r.status_code == 302, r.get_data(as_text=True)
        return self.idp.parse_authn_request(r.headers["Location"])

    def idp_form(
        self, user: str = "alice", next_url: str | None = None, **kw: Any
    ) -> dict[str, str]:
        info = self.start(next_url)
        xml = self.idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id, **kw
        )
        return self.idp.post_form(xml, info.relay_state)

    def acs(self, form: dict[str, str]) -> Any:
        return self.post("/qlik/saml/acs", data=form, headers={"Origin": "https://idp.test"})


def hub_identity(emu: Any, location: str) -> dict[str, Any]:
    s = requests.Session()
    s.trust_env = False
    s.verify = str(Path(emu.certs_dir) / "root.pem")
    r = s.get(location, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text[:300]
    return r.json()


# -- sign-in ---------------------------------------------------------------------------
def test_ticket_mode_lands_on_the_hub_as_the_mapped_user_with_groups(ticket_portal, idp):
    emu, app = ticket_portal
    b = Browser(app, idp)
    r = b.acs(b.idp_form("alice"))
    assert r.status_code == 302 and "qlikTicket=" in r.headers["Location"]
    assert r.headers["Location"].startswith(emu.hub_url_for("sso"))
    who = hub_identity(emu, r.headers["Location"])
    assert (who["userDirectory"], who["userId"]) == ("AZURE", "alice@example.com")
    assert [a["group"] for a in who["attributes"]] == ["Sales", "Finance"]
    assert b.get("/whoami").get_data(as_text=True) == "AZURE\\alice@example.com"


def test_relay_state_back_to_a_portal_page_makes_no_ticket(ticket_portal, idp):
    emu, app = ticket_portal
    b = Browser(app, idp)
    before = emu.state.qps_requests
    r = b.acs(b.idp_form("bob", next_url="/reports"))
    assert r.status_code == 302 and r.headers["Location"] == "/reports"
    assert emu.state.qps_requests == before
    r = b.get("/qlik/login")  # opening Qlik later makes the ticket
    assert "qlikTicket=" in r.headers["Location"]
    assert [a["group"] for a in hub_identity(emu, r.headers["Location"])["attributes"]] == [
        "Marketing"
    ]


def test_login_refuses_an_offsite_next(ticket_portal, idp):
    _emu, app = ticket_portal
    r = Browser(app, idp).get("/qlik/saml/login?next=https://evil.example.com/")
    assert r.status_code == 401 and "evil.example.com" not in r.headers.get("Location", "")


def test_browser_cookie_is_secure_samesite_none_and_session_only(ticket_portal, idp):
    _emu, app = ticket_portal
    r = Browser(app, idp).get("/qlik/saml/login")
    cookie = next(c for c in r.headers.getlist("Set-Cookie") if c.startswith("qlikauth-saml="))
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attrs and "httponly" in attrs and "samesite=none" in attrs
    assert not any(a.startswith(("max-age", "expires")) for a in attrs)


def test_metadata_endpoint(ticket_portal, idp):
    _emu, app = ticket_portal
    r = Browser(app, idp).get("/qlik/saml/metadata")
    assert r.status_code == 200 and "samlmetadata+xml" in r.headers["Content-Type"]
    assert BASE + "acs" in r.get_data(as_text=True)


# -- refusals: each its own error, no Qlik call ------------------------------------------
def _iso(delta: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _expire(root: ET.Element) -> None:
    for el in root.iter(f"{A}Conditions"):
        el.set("NotBefore", _iso(-900))
        el.set("NotOnOrAfter", _iso(-600))
    for el in root.iter(f"{A}SubjectConfirmationData"):
        el.set("NotOnOrAfter", _iso(-600))


def _audience(root: ET.Element) -> None:
    for el in root.iter(f"{A}Audience"):
        el.text = "https://someone-else.example.com/metadata"


def _no_email(root: ET.Element) -> None:
    for st in root.iter(f"{A}AttributeStatement"):
        for attr in list(st):
            if attr.get("Name") == ENTRA_CLAIMS["email"]:
                st.remove(attr)


def _unknown_group(root: ET.Element) -> None:
    for attr in root.iter(f"{A}Attribute"):
        if attr.get("Name") == ENTRA_CLAIMS["groups"]:
            attr[0].text = "99999999-9999-4999-8999-999999999999"


CASES = {
    "unsigned": (dict(sign_response=False, sign_assertion=False), 401, "not signed"),
    "signature": ("evil", 401, "no valid signature"),
    "expired": (dict(mutate=_expire), 401, "expired"),
    "audience": (dict(mutate=_audience), 401, "another application"),
    "missing_claim": (dict(mutate=_no_email), 403, "did not send information"),
    "unknown_group": (dict(mutate=_unknown_group), 403, "groups is not known"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_refusal_is_a_clear_page_and_no_qlik_call(ticket_portal, idp, saml_keys, case, caplog):
    emu, app = ticket_portal
    kwargs, status, text = CASES[case]
    if kwargs == "evil":
        kwargs = {"key_file": saml_keys["evil"][1]}
    b = Browser(app, idp)
    form = b.idp_form("alice", **kwargs)
    before = emu.state.qps_requests
    r = b.acs(form)
    page = r.get_data(as_text=True)
    assert r.status_code == status, page[:500]
    assert text in page and "qlikTicket" not in page
    assert emu.state.qps_requests == before  # no Qlik call
    assert form["SAMLResponse"][:60] not in page and form["SAMLResponse"][:60] not in caplog.text
    assert b.get("/whoami").get_data(as_text=True) == "nobody"


def test_replay_and_another_browser_refused_without_a_qlik_call(ticket_portal, idp):
    emu, app = ticket_portal
    a, b = Browser(app, idp), Browser(app, idp)
    form = a.idp_form("alice")
    before = emu.state.qps_requests
    r = b.acs(form)  # another browser (no qlikauth-saml cookie of that request)
    assert r.status_code == 401 and "another browser" in r.get_data(as_text=True)
    assert emu.state.qps_requests == before
    assert a.acs(form).status_code == 302
    after_first = emu.state.qps_requests
    r = a.acs(form)
    assert r.status_code == 401 and "already used" in r.get_data(as_text=True)
    assert emu.state.qps_requests == after_first


def test_idp_initiated_refused_when_off(ticket_portal, idp):
    emu, app = ticket_portal
    xml = idp.response_xml(
        "alice", in_response_to=None, acs_url=BASE + "acs", sp_entity_id=BASE + "metadata"
    )
    before = emu.state.qps_requests
    r = Browser(app, idp).acs(idp.post_form(xml))
    assert r.status_code == 401 and "own page" in r.get_data(as_text=True)
    assert emu.state.qps_requests == before


# -- single logout --------------------------------------------------------------------------
def _signed_in_session(
    emu: Any, app: Flask, idp: SamlIdp, user: str = "alice"
) -> tuple[Browser, str]:
    b = Browser(app, idp)
    r = b.acs(b.idp_form(user))
    assert r.status_code == 302
    cookie = next(
        c for c in r.headers.getlist("Set-Cookie") if c.startswith("X-Qlik-Session-mashup=")
    )
    assert "secure" in cookie.lower() and "max-age" not in cookie.lower()  # browser-session cookie
    return b, cookie.split(";")[0].split("=", 1)[1]


def test_idp_initiated_logout_ends_the_proxy_session_and_answers_the_idp(session_portal, idp):
    emu, app = session_portal
    alice, _sid = _signed_in_session(emu, app, idp, "alice")
    bob, _ = _signed_in_session(emu, app, idp, "bob")
    assert {s.user.user_id for s in emu.state.sessions("mashup")} == {
        "alice@example.com",
        "bob@example.com",
    }
    url = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo")
    r = alice.get(url[len(PORTAL) :])
    assert r.status_code == 302, r.get_data(as_text=True)
    assert r.headers["Location"].startswith(idp.base_url + "/slo?SAMLResponse=")
    assert {s.user.user_id for s in emu.state.sessions("mashup")} == {"bob@example.com"}
    assert alice.get("/whoami").get_data(as_text=True) == "nobody"
    assert bob.get("/whoami").get_data(as_text=True) == "AZURE\\bob@example.com"
    # the IdP understands our LogoutResponse
    status, _, _ = idp.handle_slo(urlsplit(r.headers["Location"]).query)
    assert status == 200


def test_idp_logout_over_another_channel_ends_the_portal_sign_in_on_the_next_request(
    session_portal, idp
):
    emu, app = session_portal
    alice, _ = _signed_in_session(emu, app, idp, "alice")
    form = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo", binding="post")
    assert isinstance(form, dict)
    other = Browser(app, idp)  # the POST binding through a browser without alice's cookies
    r = other.post("/qlik/saml/slo", data=form)
    assert r.status_code == 302
    assert emu.state.sessions("mashup") == []
    assert alice.get("/whoami").get_data(as_text=True) == "nobody"  # registry: IdP session ended


@pytest.mark.parametrize(
    "how, code_text",
    [
        ("unsigned-redirect", "not signed"),
        ("unsigned-post", "not signed"),
        ("tampered-redirect", "no valid signature"),
        ("old", "too old"),
        ("sha1", "algorithm this portal refuses"),
    ],
)
def test_forged_logout_requests_are_refused_and_end_nothing(session_portal, idp, how, code_text):
    emu, app = session_portal
    alice, _ = _signed_in_session(emu, app, idp, "alice")
    si = idp.sessions_of("alice")[-1]
    if how == "unsigned-redirect":
        r = alice.get(idp.logout_request(si, BASE + "slo", sign=False)[len(PORTAL) :])
    elif how == "unsigned-post":
        r = alice.post(
            "/qlik/saml/slo", data=idp.logout_request(si, BASE + "slo", binding="post", sign=False)
        )
    elif how == "tampered-redirect":
        url = idp.logout_request(si, BASE + "slo", relay_state="/a")
        r = alice.get(url[len(PORTAL) :].replace("RelayState=%2Fa", "RelayState=%2Fb"))
    elif how == "old":
        r = alice.post(
            "/qlik/saml/slo",
            data=idp.logout_request(si, BASE + "slo", binding="post", issue_instant=_iso(-3600)),
        )
    else:
        from qlikauth.emulator.saml_idp import SHA1

        r = alice.get(idp.logout_request(si, BASE + "slo", sign_alg=SHA1)[len(PORTAL) :])
    page = r.get_data(as_text=True)
    assert r.status_code == 401 and code_text in page, page[:400]
    assert [s.user.user_id for s in emu.state.sessions("mashup")] == ["alice@example.com"]
    assert alice.get("/whoami").get_data(as_text=True) == "AZURE\\alice@example.com"


@pytest.mark.parametrize("shape", ["encoded-name-first", "encoded-name-last", "repeated-name"])
def test_a_signed_logout_request_cannot_carry_another_unsigned_one(session_portal, idp, shape):
    # the attacker's own IdP-signed LogoutRequest (bob), with an unsigned one naming alice beside it
    emu, app = session_portal
    alice, _ = _signed_in_session(emu, app, idp, "alice")
    bob, _ = _signed_in_session(emu, app, idp, "bob")
    signed = urlsplit(idp.logout_request(idp.sessions_of("bob")[-1], BASE + "slo")).query
    forged = dict(
        parse_qsl(
            urlsplit(
                idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo", sign=False)
            ).query
        )
    )["SAMLRequest"]
    from urllib.parse import quote

    if shape == "encoded-name-first":
        query = f"SAML%52equest={quote(forged, safe='')}&{signed}"
    elif shape == "encoded-name-last":
        query = f"{signed}&SAML%52equest={quote(forged, safe='')}"
    else:
        query = f"SAMLRequest={quote(forged, safe='')}&{signed}"
    r = bob.get("/qlik/saml/slo?" + query)
    assert r.status_code == 401, r.get_data(as_text=True)[:300]
    assert sorted(s.user.user_id for s in emu.state.sessions("mashup")) == [
        "alice@example.com",
        "bob@example.com",
    ]
    assert alice.get("/whoami").get_data(as_text=True) == "AZURE\\alice@example.com"


def test_gap_pysaml2_accepts_an_unsigned_logout_request(session_portal, idp):
    from saml2 import BINDING_HTTP_REDIRECT

    emu, app = session_portal
    _signed_in_session(emu, app, idp, "alice")
    url = idp.logout_request(idp.sessions_of("alice")[-1], BASE + "slo", sign=False)
    q = dict(parse_qsl(urlsplit(url).query))
    with app.app_context():
        sp = saml_parts(app.qlikauth.runtime).sp  # type: ignore[attr-defined]
        req = sp.client.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
    assert (
        req is not None and req.message.name_id.text == "alice@example.com"
    )  # pysaml2 alone: accepted


def test_sp_initiated_logout(session_portal, idp):
    emu, app = session_portal
    alice, _ = _signed_in_session(emu, app, idp, "alice")
    r = alice.post("/qlik/saml/logout", data={"next": "/bye"})  # no Origin: refused (CSRF)
    assert r.status_code == 403 and len(emu.state.sessions("mashup")) == 1
    r = alice.post("/qlik/saml/logout", data={"next": "/bye"}, headers={"Origin": PORTAL})
    assert r.status_code == 302 and r.headers["Location"].startswith(
        idp.base_url + "/slo?SAMLRequest="
    )
    assert emu.state.sessions("mashup") == []  # ended before the browser goes to the IdP
    cleared = [c for c in r.headers.getlist("Set-Cookie") if c.startswith("X-Qlik-Session-mashup=")]
    assert cleared and "max-age=0" in cleared[0].lower()
    assert alice.get("/whoami").get_data(as_text=True) == "nobody"
    status, headers, _ = idp.handle_slo(urlsplit(r.headers["Location"]).query)
    assert status == 302 and idp.logouts_received == ["alice@example.com"]
    back = headers["Location"]
    r = alice.get(back[len(PORTAL) :])
    assert r.status_code == 302 and r.headers["Location"] == "/bye"
    r = alice.get(back[len(PORTAL) :])  # the same LogoutResponse again: refused
    assert r.status_code == 401


def test_unconfigured_saml_is_a_configuration_page(emulator_factory, caplog):
    emu = emulator_factory()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="x",
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(emu.certs_dir),
        QLIKAUTH_HUB_URL=emu.hub_url + "/hub/",
    )
    QlikAuth(app, user_loader=lambda: None)  # init_app refuses to run without a user loader
    r = app.test_client().get("/qlik/saml/login", base_url=PORTAL)
    page = r.get_data(as_text=True)
    assert r.status_code == 500 and "not set up correctly" in page and "IDP_METADATA" not in page
    assert (
        "QLIKAUTH SAML is not configured" in caplog.text
    )  # the administrator's text is in the log


def test_session_key_holds_no_assertion(ticket_portal, idp):
    _emu, app = ticket_portal
    b = Browser(app, idp)
    b.acs(b.idp_form("alice"))
    with b.client.session_transaction(base_url=PORTAL) as s:
        data = s[SAML_SESSION_KEY]
    assert set(data) == {
        "issuer",
        "name_id",
        "format",
        "name_qualifier",
        "sp_name_qualifier",
        "session_index",
        "user",
        "idp",
    }
    assert data["idp"] == "default"  # which SP ends it (several IdPs: the IdP's name)
    assert not re.search(r"Signature|Assertion", repr(data))


def test_a_body_over_the_bound_is_refused_unread_on_both_frameworks(ticket_portal, qps_calls):
    """A 32 MiB POST to the ACS is refused on its Content-Length (413), before the framework
    reads the body into memory."""
    from qlikauth.bridges import MAX_REQUEST_BYTES

    emu, app = ticket_portal
    huge = 32 * 1024 * 1024
    # the declared length decides, before anything is read (were the body read, the short one
    # sent would be refused as a missing SAMLResponse, not as too large)
    r = app.test_client().post(
        "/qlik/saml/acs",
        data=b"SAMLResponse=",
        content_type="application/x-www-form-urlencoded",
        environ_overrides={"CONTENT_LENGTH": str(huge)},
    )
    assert r.status_code == 413 and "too large" in r.get_data(as_text=True).lower()
    # a longer body than the bound is refused too
    r = app.test_client().post(
        "/qlik/saml/acs", data={"SAMLResponse": "A" * (MAX_REQUEST_BYTES + 10)}
    )
    assert r.status_code == 413
    assert qps_calls == []
