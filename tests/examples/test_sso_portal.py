"""examples/sso_portal boots with one command (emulator, SAML IdP, portal) and signs a user in and
out."""

from __future__ import annotations

import html
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import requests

PY = sys.executable


def _fields(page: str, names: tuple[str, ...]) -> dict[str, str]:
    return {
        k: html.unescape(v)
        for k, v in re.findall(r"name='([A-Za-z]+)' value='([^']*)'", page)
        if k in names
    }


def idp_sign_in(s: requests.Session, login_url: str, user: str) -> requests.Response:
    """At the IdP's login page: fill in the form, then post the signed response to the ACS (as the
    page's script would)."""
    page = s.get(login_url, timeout=30)
    assert page.status_code == 200 and "Local SAML IdP" in page.text
    idp = login_url.split("/sso?", 1)[0]
    r = s.post(
        idp + "/sso/login",
        data={
            **_fields(page.text, ("SAMLRequest", "RelayState")),
            "username": user,
            "password": "demo",
        },
        timeout=30,
    )
    assert r.status_code == 200, r.text[:300]
    acs = html.unescape(re.search(r"action='([^']+)'", r.text).group(1))  # type: ignore[union-attr]
    return s.post(
        acs, data=_fields(r.text, ("SAMLResponse", "RelayState")), allow_redirects=False, timeout=30
    )


def test_sso_portal_one_command_sign_in_and_single_logout(
    server_process: Any, free_port: int
) -> None:
    proc = server_process(
        [PY, "examples/sso_portal/run.py"],
        free_port,
        {"PORTAL_PORT": str(free_port)},
        timeout=90,
        scheme="https",
    )
    log = Path(proc.log_path).read_text()
    certs = Path(re.search(r"certificates in ([^)]+)\)", log).group(1))  # type: ignore[union-attr]
    idp_keys = Path(re.search(r"keys in ([^)]+)\)", log).group(1))  # type: ignore[union-attr]
    tls = Path(re.search(r"TLS certificate: (\S+)", log).group(1)).parent  # type: ignore[union-attr]
    base = f"https://localhost:{free_port}"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(
        certs / "root.pem"
    )  # portal, IdP and hub certificates all come from the emulator's CA
    home = s.get(base + "/", timeout=30).text
    assert "Nobody is signed in" in home
    start = html.unescape(re.search(r'id="sign-in" href="([^"]+)"', home).group(1))  # type: ignore[union-attr]
    r = s.get(base + start, allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "/sso?SAMLRequest=" in r.headers["Location"]
    r = idp_sign_in(s, r.headers["Location"], "alice")
    assert r.status_code == 302 and "qlikTicket=" in r.headers["Location"], r.text[:300]
    who = s.get(r.headers["Location"], headers={"Accept": "application/json"}, timeout=30).json()
    assert (who["userDirectory"], who["userId"]) == ("SSO", "alice@example.com")
    assert [a["group"] for a in who["attributes"]] == ["Sales", "Finance"]
    home = s.get(base + "/", timeout=30).text
    assert "SSO\\alice@example.com" in home and "Sales, Finance" in home
    # single logout: the portal ends the Qlik session, then the IdP's, then comes back
    hub = r.headers["Location"].split("?", 1)[0]
    r = s.post(base + "/qlik/saml/logout", data={"next": "/"}, headers={"Origin": base}, timeout=30)
    assert r.status_code == 200 and r.url == base + "/" and "Nobody is signed in" in r.text
    r = s.get(hub, headers={"Accept": "application/json"}, allow_redirects=False, timeout=30)
    assert r.status_code == 302  # the hub sends an anonymous browser to the authentication module
    # stopped as a service manager would: emulator, IdP and TLS keys are removed
    assert certs.is_dir() and idp_keys.is_dir() and tls.is_dir()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert [d for d in (certs, idp_keys, tls) if d.exists()] == []
