"""Each example portal boots as a real server process against the emulator and signs a user in."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable


def _csrf(html: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]+)"', html)
    assert m, f"no {name} field in the form"
    return m.group(1)


def https_session(emu: Any) -> requests.Session:
    """A requests session that trusts only the emulator's root (which also issued the portal's
    certificate)."""
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override s.verify
    s.verify = str(Path(emu.certs_dir) / "root.pem")
    return s


def test_flask_portal_signs_in_with_a_ticket(flask_portal: tuple[Any, str]) -> None:
    emu, base = flask_portal
    s = requests.Session()
    form = s.get(f"{base}/login").text
    r = s.post(
        f"{base}/login",
        data={
            "csrf": _csrf(form, "csrf"),
            "next": _csrf(form, "next"),
            "username": "alice",
            "password": "demo",
        },
        allow_redirects=False,
    )
    assert r.status_code == 302 and r.headers["Location"] == "/qlik/login"
    r = s.get(f"{base}/qlik/login", allow_redirects=False)
    location = r.headers["Location"]
    assert location.startswith(emu.hub_url_for("portal")) and "qlikTicket=" in location
    # wrong password: no session
    s2 = requests.Session()
    form = s2.get(f"{base}/login").text
    r = s2.post(
        f"{base}/login",
        data={"csrf": _csrf(form, "csrf"), "username": "alice", "password": "x"},
        allow_redirects=False,
    )
    assert r.status_code == 401
    assert (
        urlsplit(s2.get(f"{base}/qlik/login", allow_redirects=False).headers["Location"]).path
        == "/login"
    )


def test_django_portal_sets_the_proxy_session_cookie(django_portal: tuple[Any, str]) -> None:
    emu, base = django_portal
    s = https_session(emu)
    form = s.get(f"{base}/accounts/login/").text
    r = s.post(
        f"{base}/accounts/login/",
        data={
            "csrfmiddlewaretoken": _csrf(form, "csrfmiddlewaretoken"),
            "username": "bob",
            "password": "demo",
        },
        headers={"Referer": f"{base}/accounts/login/"},
        allow_redirects=False,
    )
    assert r.status_code == 302
    cookies = [
        c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("X-Qlik-Session-mashup=")
    ]
    assert len(cookies) == 1
    attrs = {a.strip().split("=")[0].lower() for a in cookies[0].split(";")}
    # Portal and hub are the same site (https, localhost): Lax reaches the framed hub, and no
    # other site's page can make the browser send it.
    assert {"secure", "httponly", "samesite"} <= attrs and "samesite=lax" in cookies[0].lower()
    # host-only (no Domain): set by https://localhost:PORTAL, sent to https://localhost:HUB too
    assert "domain" not in attrs
    # the portal's own cookies are Secure too over https
    portal_cookies = [
        c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("portal_sessionid=")
    ]
    assert portal_cookies and "secure" in portal_cookies[0].lower()
    # A browser-session cookie: no Expires or Max-Age, so closing the browser signs the user out.
    portal_attrs = {a.strip().split("=")[0].lower() for a in portal_cookies[0].split(";")}
    assert not portal_attrs & {"expires", "max-age"}, portal_cookies[0]
    assert [s_.user.user_id for s_ in emu.state.sessions("mashup")] == ["bob"]
    before = emu.state.qps_requests
    page = s.get(f"{base}/mashup/").text
    assert emu.hub_url_for("mashup") in page and "Marketing" in page
    assert emu.state.qps_requests == before  # page views after sign-in: no QPS call
    form_token = _csrf(page, "csrfmiddlewaretoken")
    r = s.post(
        f"{base}/accounts/logout/",
        data={"csrfmiddlewaretoken": form_token},
        headers={"Referer": f"{base}/mashup/"},
        allow_redirects=False,
    )
    assert r.status_code == 302
    assert emu.state.sessions("mashup") == []


@pytest.mark.parametrize(
    ("script", "scheme"),
    [("examples/flask_portal/app.py", "http"), ("examples/django_portal/run.py", "https")],
)
def test_portal_runs_with_one_command_against_its_own_emulator(
    script: str, scheme: str, server_process: Any, free_port: int, tmp_path: Path
) -> None:
    env = {"PORTAL_PORT": str(free_port), "PORTAL_DB": str(tmp_path / "db.sqlite3")}
    proc = server_process([PY, script], free_port, env, timeout=60, scheme=scheme)
    log = Path(proc.log_path).read_text()
    assert f"{scheme}://localhost:{free_port}/" in log and "Emulator:" in log
    s = requests.Session()
    s.trust_env = False
    if scheme == "https":
        # The Django portal's certificate comes from its own emulator's CA: verify against it.
        certs = re.search(r"certificates in ([^)]+)\)", log).group(1)
        s.verify = str(Path(certs) / "root.pem")
    r = s.get(f"{scheme}://localhost:{free_port}/", timeout=10)
    assert r.status_code == 200 and "https://localhost:" in r.text
    # Stopped as a service manager would (SIGTERM), the portal stops its emulator, which
    # deletes the keys it generated; the Django portal's own TLS key goes too.
    key_dirs = [Path(re.search(r"certificates in ([^)]+)\)", log).group(1))]
    tls = re.search(r"TLS certificate: (\S+)", log)
    if tls:
        key_dirs.append(Path(tls.group(1)).parent)
    assert all(d.is_dir() for d in key_dirs)
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    assert [d for d in key_dirs if d.exists()] == []


def _flask_sign_in(emu: Any, base: str, user: str) -> requests.Session:
    s = https_session(emu)
    form = s.get(f"{base}/login").text
    r = s.post(
        f"{base}/login",
        data={
            "csrf": _csrf(form, "csrf"),
            "next": _csrf(form, "next"),
            "username": user,
            "password": "demo",
        },
        allow_redirects=False,
    )
    assert r.status_code == 302
    return s


def test_flask_portal_qlik_logout_needs_a_same_site_post(flask_portal: tuple[Any, str]) -> None:
    emu, base = flask_portal
    s = _flask_sign_in(emu, base, "alice")
    ticket_url = s.get(f"{base}/qlik/login", allow_redirects=False).headers["Location"]
    assert s.get(ticket_url, timeout=10).status_code == 200  # redeemed: a proxy session on the hub
    assert [x.user.user_id for x in emu.state.sessions("portal")] == ["alice"]
    # another site links to the logout URL: a page with a button, nothing ends
    r = s.get(
        f"{base}/qlik/logout", headers={"Referer": "https://evil.example/"}, allow_redirects=False
    )
    assert r.status_code == 200 and 'method="post"' in r.text
    # another site's form posts to it: refused
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/x"},
        {},
    ):
        r = s.post(
            f"{base}/qlik/logout", data={"next": "/"}, headers=headers, allow_redirects=False
        )
        assert r.status_code == 403, headers
    assert [x.user.user_id for x in emu.state.sessions("portal")] == ["alice"]
    # the portal's own button (what the browser sends from the home page): signed out of Qlik
    home = s.get(f"{base}/").text
    assert 'id="qlik-logout"' in home and 'action="/qlik/logout"' in home
    r = s.post(
        f"{base}/qlik/logout", data={"next": "/"}, headers={"Origin": base}, allow_redirects=False
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert emu.state.sessions("portal") == []


def test_django_portal_qlik_logout_needs_a_same_site_post_with_csrf(
    django_portal: tuple[Any, str],
) -> None:
    emu, base = django_portal
    s = https_session(emu)
    form = s.get(f"{base}/accounts/login/").text
    s.post(
        f"{base}/accounts/login/",
        data={
            "csrfmiddlewaretoken": _csrf(form, "csrfmiddlewaretoken"),
            "username": "alice",
            "password": "demo",
        },
        headers={"Origin": base},
        allow_redirects=False,
    )
    assert [x.user.user_id for x in emu.state.sessions("mashup")] == ["alice"]
    r = s.get(
        f"{base}/qlik/logout", headers={"Referer": "https://evil.example/"}, allow_redirects=False
    )
    assert r.status_code == 200 and 'method="post"' in r.text
    token = _csrf(r.text, "csrfmiddlewaretoken")
    for data, headers in (
        ({"next": "/"}, {"Origin": "https://evil.example"}),
        ({"next": "/", "csrfmiddlewaretoken": token}, {"Origin": "https://evil.example"}),
        ({"next": "/"}, {"Origin": base}),
    ):
        r = s.post(f"{base}/qlik/logout", data=data, headers=headers, allow_redirects=False)
        assert r.status_code == 403, (data, headers)
    assert [x.user.user_id for x in emu.state.sessions("mashup")] == ["alice"]
    home = s.get(f"{base}/").text  # any page of the portal carries the CSRF token
    r = s.post(
        f"{base}/qlik/logout",
        data={"next": "/", "csrfmiddlewaretoken": _csrf(home, "csrfmiddlewaretoken")},
        headers={"Origin": base},
        allow_redirects=False,
    )
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert emu.state.sessions("mashup") == []
