"""What integrators copy from the examples holds: server-side sessions sign-out revokes, Secure
cookies over https,
and the header portal's sign-out ends the Qlik sessions (an open websocket with them).
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, "no csrf field in the page"
    return m.group(1)


def _sign_in(base: str, user: str) -> requests.Session:
    s = requests.Session()
    s.trust_env = False
    form = s.get(f"{base}/login", timeout=10).text
    r = s.post(
        f"{base}/login",
        data={"csrf": _csrf(form), "next": "/", "username": user, "password": "demo"},
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302, r.text[:300]
    return s


def _sign_out(s: requests.Session, base: str) -> None:
    home = s.get(f"{base}/", timeout=10).text
    r = s.post(f"{base}/logout", data={"csrf": _csrf(home)}, allow_redirects=False, timeout=10)
    assert r.status_code == 302


def test_flask_portal_sign_out_revokes_a_copied_session_cookie(
    flask_portal: tuple[Any, str],
) -> None:
    emu, base = flask_portal
    before_login = requests.Session()
    before_login.trust_env = False
    before_login.get(f"{base}/login", timeout=10)
    pre = before_login.cookies.get("portal_session")
    s = _sign_in(base, "alice")
    copied = s.cookies.get("portal_session")
    assert copied and copied != pre, "sign-in must give a new session id (fixation)"
    # The cookie is a random id, not the session's content (Flask's default cookie is "eyJ..."
    # JSON).
    assert "alice" not in copied and not copied.startswith(("eyJ", ".eJ"))
    r = requests.get(
        f"{base}/qlik/login", cookies={"portal_session": copied}, allow_redirects=False, timeout=10
    )
    assert (
        r.status_code == 302 and "qlikTicket=" in r.headers["Location"]
    )  # the copy works while alice is in
    _sign_out(s, base)
    r = requests.get(
        f"{base}/qlik/login", cookies={"portal_session": copied}, allow_redirects=False, timeout=10
    )
    assert r.status_code == 302 and r.headers["Location"].startswith("/login"), r.headers.get(
        "Location"
    )
    # and the pre-login id was not kept alive either
    assert pre is None or requests.get(
        f"{base}/qlik/login", cookies={"portal_session": pre}, allow_redirects=False, timeout=10
    ).headers["Location"].startswith("/login")


def test_flask_portal_cookie_is_secure_when_served_over_https(
    emulator_factory: Any, server_process: Any, free_port: int
) -> None:
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="portal", method="ticket")])
    env = {
        "PORTAL_PORT": str(free_port),
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("portal"),
        "QLIKAUTH_VIRTUAL_PROXY": "portal",
        "PORTAL_HTTPS": "1",
    }
    server_process(
        [sys.executable, "examples/flask_portal/app.py"], free_port, env, ready_path="/login"
    )
    r = requests.get(f"http://localhost:{free_port}/login", timeout=10)
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("portal_session=")
    flags = [f.strip().lower() for f in cookie.split(";")]
    assert "secure" in flags and "httponly" in flags and "samesite=lax" in flags


def test_django_portal_cookies_are_secure_over_https(django_portal: tuple[Any, str]) -> None:
    emu, base = django_portal
    s = requests.Session()
    s.trust_env = False
    s.verify = str(Path(emu.certs_dir) / "root.pem")
    r = s.get(f"{base}/accounts/login/", timeout=10)
    cookies = r.raw.headers.getlist("Set-Cookie")
    csrf = next(c for c in cookies if c.startswith("portal_csrftoken="))
    assert "secure" in [f.strip().lower() for f in csrf.split(";")]


# -- the header-authentication example behind nginx ---------------------------------------------
def _load_header_example() -> Any:
    from _support import load_example

    return load_example(ROOT / "examples" / "header_proxy", "run.py", "header_proxy_run_sessions")


@pytest.fixture
def header_stack() -> Any:
    from _support import free_port_number as free_port

    mod = _load_header_example()
    with mod.HeaderProxyStack(portal_port=free_port(), nginx_port=free_port()) as stack:
        yield stack


@pytest.mark.nginx
def test_header_portal_sign_out_ends_qlik_sessions_and_the_open_websocket(
    header_stack: Any,
) -> None:
    import websocket

    from qlikauth import QlikUser

    stack = header_stack
    s = _sign_in(stack.portal_url, "bob")
    s.verify = str(stack.root_pem)
    copied = s.cookies.get("portal_session")
    assert s.get(stack.hub_url, timeout=10).status_code == 200  # cached from here
    cached_at = time.monotonic()
    # QSEoW since November 2024: the websocket carries its proxy session's CSRF token (and cookie)
    csrf = s.get(stack.hub_url.replace("/hub/", "/qps/csrftoken"), timeout=10).headers[
        "qlik-csrf-token"
    ]
    proxy_cookie = "; ".join(
        f"{c.name}={c.value}" for c in s.cookies if c.name.startswith("X-Qlik-Session")
    )
    ws_url = stack.hub_url.replace("https://", "wss://").replace(
        "/hub/", f"/app/abc-123?qlik-csrf-token={csrf}"
    )
    ws = websocket.create_connection(
        ws_url,
        header=[f"Cookie: portal_session={copied}; {proxy_cookie}"],
        sslopt={"ca_certs": str(stack.root_pem)},
        timeout=10,
    )
    try:
        ws.send('{"jsonrpc":"2.0","id":1,"method":"GetAuthenticatedUser","handle":-1,"params":[]}')
        assert ws.recv()
        bob = QlikUser("PORTAL", "bob")
        assert stack.emulator.state.sessions(user=bob) != []
        _sign_out(s, stack.portal_url)
        assert stack.emulator.state.sessions(user=bob) == [], (
            "sign-out left bob's Qlik session alive"
        )
        # The websocket that rode on it stops being usable.
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                ws.send(
                    '{"jsonrpc":"2.0","id":2,"method":"GetAuthenticatedUser",'
                    '"handle":-1,"params":[]}'
                )
                answer = ws.recv()
                closed = answer in ("", b"", None)
            except (websocket.WebSocketException, OSError):
                closed = True
        assert closed, "the websocket still answers after sign-out"
    finally:
        ws.close()
    # A copy of the signed-out cookie gets nobody through nginx once nginx's identity cache
    # entry for that Cookie header has expired (5 s as generated, counted in nginx's whole
    # seconds: docs/nginx.md); the browser itself, whose cookie sign-out replaced, is asked again
    # at once (tests/nginx/test_e2e.py).
    from _support import sleep_past_identity_cache

    from qlikauth.nginx import DEFAULT_IDENTITY_CACHE

    sleep_past_identity_cache(cached_at, DEFAULT_IDENTITY_CACHE)
    m = len(stack.emulator.state.header_log_for("hdr"))
    r = requests.get(
        stack.hub_url,
        cookies={"portal_session": copied},
        verify=str(stack.root_pem),
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and stack.emulator.state.header_log_for("hdr")[m:] == []
