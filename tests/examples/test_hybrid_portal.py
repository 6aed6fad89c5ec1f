"""examples/hybrid_portal boots with one command (QPS emulator, emulated Qlik Cloud tenant, portal
over https).

Without a browser: the session cookie is Secure and HttpOnly, the embed page's scripts are the
portal's own (CSP), the access-token endpoint answers only the portal's own pages, the hub and
the tenant see the same person, and one sign-out ends both. (tests/e2e/test_hybrid_browser.py
drives the same portal in Chromium.)
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path
from typing import Any

import requests


def _csrf(page: str) -> str:
    return html.unescape(re.search(r'name="csrf" value="([^"]+)"', page).group(1))  # type: ignore[union-attr]


def test_hybrid_portal_one_command_one_person_one_sign_out(
    server_process: Any, free_port: int
) -> None:
    proc = server_process(
        [sys.executable, "examples/hybrid_portal/app.py"],
        free_port,
        {"PORTAL_PORT": str(free_port)},
        timeout=90,
        scheme="https",
    )
    log = Path(proc.log_path).read_text()
    certs = Path(re.search(r"certificates in ([^)]+)\)", log).group(1))  # type: ignore[union-attr]
    tenant = re.search(r"Qlik Cloud tenant: (https://\S+)", log).group(1)  # type: ignore[union-attr]
    base = f"https://localhost:{free_port}"
    same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
    s = requests.Session()
    s.trust_env = False
    s.verify = str(certs / "root.pem")  # portal, hub and tenant certificates all come from one CA

    login = s.get(base + "/login", timeout=30)
    r = s.post(
        base + "/login",
        data={"csrf": _csrf(login.text), "next": "/", "username": "ben", "password": "wrong"},
        timeout=30,
    )
    assert r.status_code == 401 and "wrong password" in r.text
    r = s.post(
        base + "/login",
        data={"csrf": _csrf(r.text), "next": "/", "username": "ann", "password": "demo"},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert "hybrid_portal_session=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    home = s.get(base + "/", timeout=30).text
    assert "HYBRID\\ann@example.com" in home and "ann@example.com (realm HYBRID)" in home

    # the hub: a ticket for HYBRID\ann@example.com with her groups
    r = s.get(base + "/qlik/login", allow_redirects=False, timeout=30)
    assert r.status_code == 302 and "qlikTicket=" in r.headers["Location"]
    hub = r.headers["Location"].split("?", 1)[0]
    who = s.get(r.headers["Location"], headers={"Accept": "application/json"}, timeout=30).json()
    assert (who["userDirectory"], who["userId"]) == ("HYBRID", "ann@example.com")
    assert sorted(a["group"] for a in who["attributes"]) == ["Finance", "Sales"]
    again = s.get(hub, headers={"Accept": "application/json"}, allow_redirects=False, timeout=30)
    assert (
        again.status_code == 200 and again.json()["userId"] == "ann@example.com"
    )  # the hub session cookie

    # the embed page: the portal's own scripts, qlik-embed's attributes, the tenant in
    # connect-src only
    embed = s.get(base + "/embed", timeout=30)
    csp = embed.headers["Content-Security-Policy"]
    assert (
        "default-src 'self'" in csp
        and f"connect-src 'self' {tenant}" in csp
        and "script-src" not in csp
    )
    assert (
        'data-auth-type="OAuth2"' in embed.text
        and 'data-get-access-token="getAccessToken"' in embed.text
    )
    assert f'data-host="{tenant}"' in embed.text

    # the token endpoint: only for the portal's own pages
    for headers in (
        {},
        {"Origin": "https://evil.example.com"},
        {**same, "Sec-Fetch-Site": "cross-site"},
    ):
        assert (
            s.post(base + "/qlik/cloud/access-token", headers=headers, timeout=30).status_code
            == 403
        )
    r = s.post(base + "/qlik/cloud/access-token", headers=same, timeout=30)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    token = r.text
    me = requests.get(
        tenant + "/api/v1/users/me",
        headers={"Authorization": f"Bearer {token}", "Origin": base},
        verify=str(certs / "root.pem"),
        timeout=30,
    )
    assert me.status_code == 200 and me.headers["Access-Control-Allow-Origin"] == base
    assert (me.json()["email"], sorted(g["name"] for g in me.json()["assignedGroups"])) == (
        "ann@example.com",
        ["Finance", "Sales"],
    )

    # one sign-out: the form needs its CSRF token; then the hub session and the cloud token are gone
    assert s.post(base + "/logout", data={"csrf": "forged"}, timeout=30).status_code == 400
    r = s.post(base + "/logout", data={"csrf": _csrf(home)}, timeout=30)
    assert r.status_code == 200 and 'id="nobody"' in r.text
    gone = requests.get(
        tenant + "/api/v1/users/me",
        headers={"Authorization": f"Bearer {token}"},
        verify=str(certs / "root.pem"),
        timeout=30,
    )
    assert gone.status_code == 401
    assert s.post(base + "/qlik/cloud/access-token", headers=same, timeout=30).status_code == 401
    after = s.get(hub, headers={"Accept": "application/json"}, allow_redirects=False, timeout=30)
    assert after.status_code == 302 and after.headers["Location"].startswith(base + "/qlik/module?")
    assert token not in Path(proc.log_path).read_text()


def test_a_real_site_without_the_tenant_settings_is_refused_by_name(monkeypatch: Any) -> None:
    """QLIKAUTH_QPS_NODES and QLIKCLOUD_TENANT_URL set, the rest missing: the portal names what to
    set
    (it once stopped on a bare KeyError)."""
    from _support import load_example

    app = load_example(Path("examples/hybrid_portal"), "app.py", "hybrid_portal_app")
    env = {
        "QLIKAUTH_QPS_NODES": "https://qlik1.example.com:4243",
        "QLIKAUTH_CERTS": "/nonexistent",
        "QLIKCLOUD_TENANT_URL": "https://acme.eu.qlikcloud.com",
        "QLIKCLOUD_CLIENT_ID": "c",
    }
    try:
        app.settings_from_env(env)
    except SystemExit as exc:
        message = str(exc)
    else:
        raise AssertionError(
            "settings_from_env accepted a tenant without its client secret and JWT key"
        )
    for name in (
        "QLIKCLOUD_CLIENT_SECRET",
        "QLIKCLOUD_JWT_KEY",
        "QLIKCLOUD_JWT_KID",
        "QLIKCLOUD_JWT_ISSUER",
    ):
        assert name in message
    assert "QLIKCLOUD_CLIENT_ID," not in message
    monkeypatch.delenv("PORTAL_TLS_CERT", raising=False)
    monkeypatch.setenv("PORTAL_TLS_KEY", "/etc/portal/key.pem")
    try:
        app._tls(None)
    except SystemExit as exc:
        assert "PORTAL_TLS_CERT and PORTAL_TLS_KEY" in str(exc)
    else:
        raise AssertionError("_tls accepted a key without its certificate")
