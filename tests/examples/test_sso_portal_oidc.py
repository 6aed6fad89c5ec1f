"""examples/sso_portal --protocol oidc boots with one command (emulator, qlikauth's local OpenID
provider, portal; no node), signs a user in at the provider's login page onto the hub, and signs
out everywhere: the provider's session ends too (the next sign-in shows its login page again)."""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import requests

PY = sys.executable


def test_sso_portal_oidc_one_command(server_process: Any, free_port: int) -> None:
    proc = server_process(
        [PY, "examples/sso_portal/run.py", "--protocol", "oidc"],
        free_port,
        {"PORTAL_PORT": str(free_port)},
        timeout=90,
        scheme="https",
    )
    log = Path(proc.log_path).read_text()
    certs = Path(re.search(r"certificates in ([^)]+)\)", log).group(1))  # type: ignore[union-attr]
    issuer = re.search(r"OpenID provider (https://\S+)", log).group(1)  # type: ignore[union-attr]
    base = f"https://localhost:{free_port}"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(certs / "root.pem")
    home = s.get(f"{base}/", timeout=30)
    assert home.status_code == 200 and "/oidc/login" in home.text
    hub = re.search(r'id="sign-in" href="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
    r = s.get(urljoin(base, html.unescape(hub)), allow_redirects=False, timeout=30)
    assert r.status_code == 302 and r.headers["Location"].startswith(issuer + "/auth?")
    r = s.get(r.headers["Location"], timeout=30)  # the provider's login page (after its redirect)
    assert 'id="login"' in r.text, r.text[:300]
    action = urljoin(r.url, html.unescape(re.search(r'action="([^"]+)"', r.text).group(1)))  # type: ignore[union-attr]
    r = s.post(action, data={"username": "alice", "password": "demo"}, timeout=30)
    # provider -> portal callback -> hub with a ticket -> hub page
    assert r.status_code == 200 and '<dd id="user">SSO\\alice@example.com</dd>' in r.text, r.text[
        :500
    ]
    assert "group=Finance" in r.text
    page = s.get(f"{base}/", timeout=30)
    assert 'id="portal-user">SSO\\alice@example.com' in page.text
    out = s.post(
        f"{base}/oidc/logout",
        data={"next": "/"},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 302 and out.headers["Location"].startswith(issuer + "/session/end?")
    assert "portal-user" not in s.get(f"{base}/", timeout=30).text
    # the provider ends its session and sends the browser back through /oidc/logged-out
    end = s.get(out.headers["Location"], allow_redirects=False, timeout=30)
    assert end.status_code == 302 and end.headers["Location"].startswith(f"{base}/oidc/logged-out")
    assert s.get(end.headers["Location"], timeout=30).url == f"{base}/"
    r = s.get(urljoin(base, html.unescape(hub)), timeout=30)
    assert 'id="login"' in r.text  # no provider session left: the password is asked again


def test_sso_portal_with_two_identity_providers_and_the_chooser(
    server_process: Any, free_port: int
) -> None:
    proc = server_process(
        [PY, "examples/sso_portal/run.py", "--protocol", "both"],
        free_port,
        {"PORTAL_PORT": str(free_port)},
        timeout=90,
        scheme="https",
    )
    log = Path(proc.log_path).read_text()
    certs = Path(re.search(r"certificates in ([^)]+)\)", log).group(1))  # type: ignore[union-attr]
    saml_idp = re.search(r"SAML IdP (https://\S+)", log).group(1)  # type: ignore[union-attr]
    issuer = re.search(r"OpenID provider (https://\S+)", log).group(1)  # type: ignore[union-attr]
    base = f"https://localhost:{free_port}"
    s = requests.Session()
    s.trust_env = False
    s.verify = str(certs / "root.pem")
    home = s.get(f"{base}/", timeout=30)
    hub = re.search(r'id="sign-in" href="([^"]+)"', home.text).group(1)  # type: ignore[union-attr]
    chooser = s.get(urljoin(base, html.unescape(hub)), timeout=30)
    assert chooser.status_code == 200 and "Office staff (SAML)" in chooser.text
    links = {
        m.group(1): html.unescape(m.group(2))
        for m in re.finditer(r'id="qlikauth-idp-([a-z-]+)" href="([^"]+)"', chooser.text)
    }
    assert set(links) == {"saml-office", "oidc-clinic"}
    office = s.get(urljoin(base, links["saml-office"]), allow_redirects=False, timeout=30)
    assert office.status_code == 302 and office.headers["Location"].startswith(saml_idp + "/sso?")
    r = s.get(urljoin(base, links["oidc-clinic"]), timeout=30)
    assert r.url.startswith(issuer + "/auth?") and 'id="login"' in r.text
    action = urljoin(r.url, html.unescape(re.search(r'action="([^"]+)"', r.text).group(1)))  # type: ignore[union-attr]
    r = s.post(action, data={"username": "alice", "password": "demo"}, timeout=30)
    # the clinic mapping: preferred_username in CLINIC (the office IdP would give OFFICE\e-mail)
    assert r.status_code == 200 and '<dd id="user">CLINIC\\alice</dd>' in r.text, r.text[:500]
    out = s.post(
        f"{base}/sign-out",
        data={"next": "/"},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 307 and out.headers["Location"].endswith("/oidc/logout")
    out = s.post(
        urljoin(base, out.headers["Location"]),
        data={"next": "/"},
        headers={"Origin": base},
        allow_redirects=False,
        timeout=30,
    )
    assert out.status_code == 302 and out.headers["Location"].startswith(issuer + "/session/end?")
    assert "portal-user" not in s.get(f"{base}/", timeout=30).text
