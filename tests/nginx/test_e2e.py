"""End to end: examples/header_proxy (flask_qlikauth portal, generated nginx, the emulator).

The portal's real ``/qlik/header-auth`` decides who; nginx injects it; the emulator's header
virtual proxy records what identity every request carried (``emu.state.header_log``). Every
spoofing attempt asserts exactly what the emulator saw: nothing, or the identity the portal
granted.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
import websocket
from _support import free_port_number as free_port
from _support import load_example, sleep_past_identity_cache

from qlikauth.nginx import DEFAULT_IDENTITY_CACHE

from .helpers import raw_request, status_of

pytestmark = pytest.mark.nginx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "header_proxy"


def _load_example():
    return load_example(EXAMPLE, "run.py", "header_proxy_run")


@pytest.fixture(scope="module")
def stack():
    mod = _load_example()
    s = mod.HeaderProxyStack(portal_port=free_port(), nginx_port=free_port())
    with s:
        yield s


@pytest.fixture(autouse=True)
def _fresh_emulator(stack):
    # Raw requests carry no Qlik session cookie, so each one starts a proxy session, as on
    # Qlik; start every test with none so the per-user session limit is not what is tested.
    stack.emulator.state.clear()


def _sign_in(stack, user: str, next_url: str | None = None) -> requests.Session:
    """Sign in through the portal's real login form, as a browser would."""
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override s.verify
    s.verify = str(stack.root_pem)
    page = s.get(
        f"{stack.portal_url}/login", params={"next": next_url} if next_url else None, timeout=5
    )
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    nxt = re.search(r'name="next" value="([^"]*)"', page.text).group(1)
    r = s.post(
        f"{stack.portal_url}/login",
        data={"csrf": csrf, "next": nxt, "username": user, "password": "demo"},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302, r.text[:200]
    return s


def _mark(stack) -> int:
    return len(stack.emulator.state.header_log_for("hdr"))


def _since(stack, mark: int):
    """What the emulator's header virtual proxy recorded since ``_mark`` (the tests run in
    order)."""
    return stack.emulator.state.header_log_for("hdr")[mark:]


def _cookie_header(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies if c.name == "portal_session")


def test_browser_flow_login_redirect_and_back_to_the_hub(stack):
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override s.verify
    s.verify = str(stack.root_pem)
    m = _mark(stack)
    r = s.get(stack.hub_url, allow_redirects=False, timeout=5)
    assert r.status_code == 302
    assert r.headers["Location"] == f"{stack.portal_url}/login?next={stack.hub_url}"
    assert _since(stack, m) == []
    signed = _sign_in(stack, "alice", f"{stack.hub_url}")
    m = _mark(stack)
    r = signed.get(stack.hub_url, timeout=5)
    assert r.status_code == 200 and "PORTAL\\alice" in r.text
    (rec,) = _since(stack, m)
    assert rec.identity == "PORTAL\\alice" and rec.values == ("alice",)


def test_hub_requests_carry_exactly_the_signed_in_user(stack):
    for user in ("alice", "bob"):
        s = _sign_in(stack, user)
        for _ in range(2):
            m = _mark(stack)
            r = s.get(stack.hub_url, timeout=5)
            assert r.status_code == 200
            (rec,) = _since(stack, m)
            assert rec.values == (user,) and rec.identity == f"PORTAL\\{user}"


def test_websocket_to_the_app_carries_the_user(stack):
    s = _sign_in(stack, "carol")
    # QSEoW since November 2024: the websocket carries the session's CSRF token
    # (the token belongs to the proxy session, so the websocket carries that session's cookie too)
    csrf = s.get(stack.hub_url.replace("/hub/", "/qps/csrftoken"), timeout=5).headers[
        "qlik-csrf-token"
    ]
    proxy_cookie = "; ".join(
        f"{c.name}={c.value}" for c in s.cookies if c.name.startswith("X-Qlik-Session")
    )
    ws_url = stack.hub_url.replace("https://", "wss://").replace(
        "/hub/", f"/app/abc-123?qlik-csrf-token={csrf}"
    )
    m = _mark(stack)
    ws = websocket.create_connection(
        ws_url,
        header=[f"Cookie: {_cookie_header(s)}; {proxy_cookie}"],
        sslopt={"ca_certs": str(stack.root_pem)},
        timeout=5,
    )
    try:
        assert ws.connected
        ws.send('{"jsonrpc":"2.0","id":1,"method":"GetAuthenticatedUser","handle":-1,"params":[]}')
        answer = ws.recv()
        assert answer
    finally:
        ws.close()
    recs = _since(stack, m)
    assert recs and all(r.values == ("carol",) and r.identity == "PORTAL\\carol" for r in recs)


def test_websocket_without_portal_session_is_refused(stack):
    m = _mark(stack)
    upgrade = [
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("X-Portal-User", "alice"),
    ]
    resp = _raw(stack, "/hdr/app/abc-123", [("Connection", "Upgrade")] + upgrade, None)
    assert status_of(resp) == 302
    assert b"/login?next=" in resp
    assert _since(stack, m) == []


SPOOFS = {
    "same-name": [("X-Portal-User", "carol")],
    "lower-case": [("x-portal-user", "carol")],
    "upper-case": [("X-PORTAL-USER", "carol")],
    "underscores": [("X_Portal_User", "carol")],
    "two-copies": [("X-Portal-User", "carol"), ("X-Portal-User", "bob")],
    "crlf-value": [("X-Portal-User", "carol\r\nX-Portal-User: bob")],
    "connection-named": [("Connection", "keep-alive, X-Portal-User"), ("X-Portal-User", "carol")],
}


def _raw(stack, path: str, extra, cookie: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: localhost:{stack.nginx_port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    lines += [f"{k}: {v}" for k, v in extra]
    return raw_request(stack.nginx_port, stack.root_pem, ("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofing_signed_in_user_gets_only_the_granted_identity(stack, name):
    s = _sign_in(stack, "alice")
    m = _mark(stack)
    resp = _raw(stack, "/hdr/hub/", SPOOFS[name], _cookie_header(s))
    recs = _since(stack, m)
    if status_of(resp) == 400:  # nginx refused the request outright
        assert recs == []
    else:
        assert status_of(resp) == 200, resp[:200]
        assert [(r.values, r.identity) for r in recs] == [(("alice",), "PORTAL\\alice")]


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofing_anonymous_reaches_nothing(stack, name):
    m = _mark(stack)
    resp = _raw(stack, "/hdr/hub/", SPOOFS[name], None)
    assert status_of(resp) in (302, 400)
    assert _since(stack, m) == []


def test_identity_endpoint_from_outside(stack):
    s = _sign_in(stack, "alice")
    for path in ("/qlik/header-auth", "/_qlikauth/identity/hdr", "/hdr/../qlik/header-auth"):
        r = s.get(f"https://localhost:{stack.nginx_port}{path}", allow_redirects=False, timeout=5)
        assert r.status_code in (400, 404), path
        assert "X-Qlik-Header-Value" not in r.headers
    # The portal itself listens on loopback only (not on the machine's other addresses).
    assert stack._portal_server.server_address[0] == "127.0.0.1"


def test_signing_out_at_the_portal_stops_the_identity_at_once(stack):
    s = _sign_in(stack, "bob")
    m = _mark(stack)
    assert s.get(stack.hub_url, timeout=5).status_code == 200
    assert [rec.values for rec in _since(stack, m)] == [("bob",)]
    home = s.get(f"{stack.portal_url}/", timeout=5)
    csrf = re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)
    s.post(f"{stack.portal_url}/logout", data={"csrf": csrf}, allow_redirects=False, timeout=5)
    m = _mark(stack)
    r = s.get(stack.hub_url, allow_redirects=False, timeout=5)
    assert r.status_code == 302
    assert _since(stack, m) == []


def test_a_copied_signed_out_cookie_keeps_its_identity_at_most_the_cache_lifetime(stack):
    # The example runs the identity cache as generated (5 s). Its portal keeps sessions on the
    # server, so a copy of the cookie header taken before sign-out is refused by the portal; the
    # cache can only have answered for it until its entry expired.
    s = _sign_in(stack, "carol")
    copied = {"Cookie": _cookie_header(s)}
    assert s.get(stack.hub_url, timeout=5).status_code == 200  # cached from here
    cached_at = time.monotonic()
    home = s.get(f"{stack.portal_url}/", timeout=5)
    csrf = re.search(r'name="csrf" value="([^"]+)"', home.text).group(1)
    s.post(f"{stack.portal_url}/logout", data={"csrf": csrf}, allow_redirects=False, timeout=5)
    assert (
        s.get(stack.hub_url, allow_redirects=False, timeout=5).status_code == 302
    )  # the browser: at once
    sleep_past_identity_cache(cached_at, DEFAULT_IDENTITY_CACHE)
    m = _mark(stack)
    r = requests.get(
        stack.hub_url, headers=copied, verify=str(stack.root_pem), allow_redirects=False, timeout=5
    )
    assert r.status_code == 302, "a copied cookie outlived the identity cache's lifetime"
    assert _since(stack, m) == []


@pytest.mark.parametrize(
    "path",
    [
        "/resources/qmc/fonts/../../../qrs/ReloadTask",
        "/hdr/resources/qmc/fonts/%2e%2e/%2E%2E/%2e%2e/qrs/ReloadTask",
        "/hdr/hub/..%2f..%2fqrs/about",
    ],
)
def test_traversal_probe_gets_400(stack, path):
    s = _sign_in(stack, "alice")
    m = _mark(stack)
    resp = _raw(stack, path, [], _cookie_header(s))
    assert status_of(resp) == 400
    assert _since(stack, m) == []


def test_tunnelling_shape_gets_400(stack):
    s = _sign_in(stack, "alice")
    m = _mark(stack)
    smuggled = b"0\r\n\r\nGET /hdr/hub/?mark=smuggled HTTP/1.1\r\nX-Portal-User: carol\r\n\r\n"
    head = (
        "\r\n".join(
            [
                "POST /hdr/hub/?mark=tunnel HTTP/1.1",
                f"Host: localhost:{stack.nginx_port}",
                f"Cookie: {_cookie_header(s)}",
                f"Content-Length: {len(smuggled)}",
                "Transfer-Encoding: chunked",
            ]
        )
        + "\r\n\r\n"
    ).encode()
    resp = raw_request(stack.nginx_port, stack.root_pem, head + smuggled)
    assert status_of(resp) == 400
    assert _since(stack, m) == []


def test_logout_uri_names_only_the_configured_host(stack):
    # Qlik builds logoutUri from the Host it receives: a request for another host never gets there.
    s = _sign_in(stack, "alice")
    cookie = _cookie_header(s)
    m = _mark(stack)
    for host in ("evil.example", f"evil.example:{stack.nginx_port}", "localhost:1"):
        lines = [
            "GET /hdr/qps/user HTTP/1.1",
            f"Host: {host}",
            "Connection: close",
            f"Cookie: {cookie}",
        ]
        resp = raw_request(
            stack.nginx_port, stack.root_pem, ("\r\n".join(lines) + "\r\n\r\n").encode()
        )
        assert status_of(resp) == 421, resp[:200]
        assert b"evil.example" not in resp
    assert _since(stack, m) == []
    r = s.get(f"https://localhost:{stack.nginx_port}/hdr/qps/user", timeout=5)
    assert r.status_code == 200
    assert r.json()["logoutUri"] == f"https://localhost:{stack.nginx_port}/hdr/qps/user"
