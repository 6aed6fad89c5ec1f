"""Two portal processes on one Redis: a SAML sign-in started on one finishes on the other; a replay
on either is refused; an IdP-initiated logout received by either ends the proxy sessions made by
both."""

from __future__ import annotations

import base64
import json
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from _support import free_port_number

from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings
from qlikauth.emulator import VirtualProxy
from qlikauth.emulator.saml_idp import DEMO_GROUPS, ENTRA_CLAIMS, SamlIdp

LB = "http://portal.test"  # the portal's public address (the load balancer): the SP's URLs
BASE = LB + "/qlik/saml/"


@pytest.fixture
def two_portals(
    server_process: Any, emulator_factory: Any, redis_url: str, saml_keys: Any, tmp_path: Path
):
    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])
    idp = SamlIdp(key_dir=saml_keys["idp"][0].parent)
    saml = {
        "BASE_URL": BASE,
        "IDP_METADATA": idp.metadata(),
        "ALLOW_HTTP": True,
        "BROWSER_COOKIE_SECURE": False,
    }
    idp.add_sp_metadata(SamlServiceProvider(SamlSettings.from_settings(saml)).metadata())
    claims = {
        "USER_ID": ENTRA_CLAIMS["email"],
        "USER_ID_TRANSFORMS": ["lower"],
        "USER_DIRECTORY": "AZURE",
        "GROUP_NAMES": {g: n for n, g in DEMO_GROUPS.items()},
    }
    cfg = tmp_path / "portal.json"
    cfg.write_text(
        json.dumps(
            {
                "secret_key": secrets.token_hex(16),
                "qlik": {
                    "QLIKAUTH_QPS_NODES": emu.qps_url,
                    "QLIKAUTH_CERTS": str(emu.certs_dir),
                    "QLIKAUTH_HUB_URL": emu.hub_url_for("mashup"),
                    "QLIKAUTH_VIRTUAL_PROXY": "mashup",
                    "QLIKAUTH_MODE": "session",
                    "QLIKAUTH_SAML": saml,
                    "QLIKAUTH_CLAIMS": claims,
                    "QLIKAUTH_STATE_STORE": redis_url,
                    # a shared store keeps proxy session ids sealed: both portals have the keys
                    "QLIKAUTH_STORE_KEYS": "two:"
                    + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("="),
                },
            }
        )
    )
    ports = [free_port_number(), free_port_number()]
    for port in ports:
        server_process(
            [sys.executable, str(Path(__file__).with_name("portal_process.py"))],
            port,
            {"SAML_PORTAL_CONFIG": str(cfg), "PORT": str(port)},
            ready_path="/whoami",
        )
    yield emu, idp, [f"http://127.0.0.1:{p}" for p in ports]
    idp.stop()


def browser() -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    return s


def sign_in(
    s: requests.Session, idp: SamlIdp, start_on: str, acs_on: str, user: str = "alice"
) -> tuple[Any, dict]:
    r = s.get(start_on + "/qlik/saml/login", allow_redirects=False)
    assert r.status_code == 302, r.text[:300]
    info = idp.parse_authn_request(r.headers["Location"])
    assert info.acs_url == BASE + "acs"
    form = idp.post_form(
        idp.response_xml(
            user, in_response_to=info.id, acs_url=info.acs_url, sp_entity_id=info.sp_entity_id
        ),
        info.relay_state,
    )
    return s.post(acs_on + "/qlik/saml/acs", data=form, allow_redirects=False), form


def test_sign_in_across_processes_replay_refused_and_logout_ends_both(two_portals):
    emu, idp, (a, b) = two_portals
    # AuthnRequest from A, ACS on B
    s1 = browser()
    r, form = sign_in(s1, idp, a, b)
    assert r.status_code == 302 and r.headers["Location"].startswith(emu.hub_url_for("mashup")), (
        r.text[:300]
    )
    pid_a, pid_b = s1.get(a + "/whoami").text.split()[0], s1.get(b + "/whoami").text.split()[0]
    assert pid_a != pid_b
    assert s1.get(a + "/whoami").text.endswith(
        "AZURE\\alice@example.com"
    )  # the portal session works on both
    # a replay on either process is refused
    for portal in (a, b):
        again = s1.post(portal + "/qlik/saml/acs", data=form, allow_redirects=False)
        assert again.status_code == 401 and "already used" in again.text
    # alice signs in again from another browser: AuthnRequest from B, ACS on A (a session made by A)
    s2 = browser()
    r, _ = sign_in(s2, idp, b, a)
    assert r.status_code == 302
    assert (
        len([s for s in emu.state.sessions("mashup") if s.user.user_id == "alice@example.com"]) == 2
    )
    # the IdP ends all of alice's sessions; its LogoutRequest reaches A only (POST binding, no
    # cookies)
    some_session = idp.sessions_of("alice")[-1]
    logout = idp.logout_request(some_session, BASE + "slo", binding="post", all_sessions=True)
    r = browser().post(a + "/qlik/saml/slo", data=logout, allow_redirects=False)
    assert r.status_code == 302 and urlsplit(r.headers["Location"]).path == "/slo"
    assert [s for s in emu.state.sessions("mashup") if s.user.user_id == "alice@example.com"] == []
    # both browsers are signed out of the portal, on either process
    for s in (s1, s2):
        for portal in (a, b):
            assert s.get(portal + "/whoami").text.endswith("nobody")
