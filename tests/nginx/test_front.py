"""nginx from the generated config in front of a recording TLS upstream.

The portal here is a minimal Flask app using ``HeaderAuthenticator`` the way the integrations do
(200 + ``X-Qlik-Header-Value`` for a signed-in user, 401 otherwise), so these tests pin down
nginx's behaviour on its own; ``test_e2e.py`` runs the real ``flask_qlikauth`` endpoint and the
emulator. Every spoofing test asserts the exact identity list the upstream received.
"""

from __future__ import annotations

import secrets

import pytest
import requests
import websocket
from _support import free_port_number as free_port
from flask import Flask, Response, request, session

from qlikauth import HeaderAuthenticator, QlikUser

from .conftest import HEADER, front_block, start_wsgi
from .helpers import raw_request, status_of

pytestmark = pytest.mark.nginx


def _portal_app() -> Flask:
    app = Flask("mini_portal")
    app.secret_key = "test-only"
    auth = HeaderAuthenticator(HEADER, user_directory="PORTAL")
    app.config["calls"] = []

    @app.get("/login")
    def login():
        user = request.args.get("user")
        if not user:
            return "login page", 200
        session["user"] = user
        # Each sign-in is a session of its own, as in any real portal: without this, two sign-ins
        # of the same user within one second give byte-identical signed cookies (Flask's cookie
        # carries a timestamp in seconds), and a cache keyed on the Cookie header would rightly
        # treat them as one.
        session["sid"] = secrets.token_hex(8)
        return "ok"

    @app.get("/qlik/header-auth")
    def header_auth():
        app.config["calls"].append(dict(request.headers))
        if "user" not in session:
            return Response(status=401)
        value = auth.value(QlikUser("PORTAL", session["user"]))
        return Response(
            status=200, headers={"X-Qlik-Header-Value": value, "Cache-Control": "no-store"}
        )

    return app


@pytest.fixture(scope="module")
def portal():
    app = _portal_app()
    srv, port = start_wsgi(app)
    yield app, port
    srv.shutdown()


@pytest.fixture(scope="module")
def front(certs, recorder, portal, start_nginx):
    _app, pport = portal
    port = free_port()
    block = front_block(certs, pport, [f"https://localhost:{recorder.port}"], port)
    return start_nginx(block, port)


@pytest.fixture
def alice(portal):
    """A signed-in portal session (the portal's cookie, as the browser would hold it)."""
    _app, pport = portal
    s = requests.Session()
    r = s.get(f"http://localhost:{pport}/login", params={"user": "alice"}, timeout=5)
    assert r.status_code == 200
    cookie = s.cookies.get("session")
    assert cookie
    return f"session={cookie}"


def _url(front, path="/hdr/hub/"):
    return f"https://localhost:{front.port}{path}"


def _last(recorder, mark):
    hits = [r for r in recorder.requests if mark in r["path"]]
    return hits


def _raw_get(front, certs, path: str, extra: list[tuple[str, str]], cookie: str | None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: localhost:{front.port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    lines += [f"{k}: {v}" for k, v in extra]
    return raw_request(front.port, certs / "root.pem", ("\r\n".join(lines) + "\r\n\r\n").encode())


# -- the signed-in path ----------------------------------------------------------------------
def test_signed_in_hub_request_carries_exactly_the_user(front, recorder, certs, alice):
    r = requests.get(
        _url(front, "/hdr/hub/?mark=hub1"),
        headers={"Cookie": alice},
        verify=str(certs / "root.pem"),
        timeout=5,
    )
    assert r.status_code == 200
    (hit,) = _last(recorder, "mark=hub1")
    assert hit["identity"] == ["alice"]
    host = [v for k, v in hit["headers"] if k.lower() == "host"]
    assert host == [f"localhost:{front.port}"], "the client's Host must reach Qlik"
    assert hit["path"] == "/hdr/hub/?mark=hub1", "the raw URI is forwarded"


def test_the_portal_cookie_never_reaches_qlik_only_the_qlik_session_cookie(
    front, recorder, certs, alice, portal
):
    app, _ = portal
    cookies = f"theme=dark; {alice}; X-Qlik-Session-hdr=qs-1; X-Qlik-Session-hdr=qs-2; other=1"
    r = requests.get(
        _url(front, "/hdr/hub/?mark=ck1"),
        headers={"Cookie": cookies},
        verify=str(certs / "root.pem"),
        timeout=5,
    )
    assert r.status_code == 200
    (hit,) = _last(recorder, "mark=ck1")
    assert hit["identity"] == ["alice"]
    assert [v for k, v in hit["headers"] if k.lower() == "cookie"] == ["X-Qlik-Session-hdr=qs-1"]
    # The portal itself was asked with every cookie the browser sent (it needs its own).
    assert app.config["calls"][-1]["Cookie"] == cookies
    # No Qlik cookie yet (the first request): no Cookie header reaches Qlik at all.
    r = requests.get(
        _url(front, "/hdr/hub/?mark=ck2"),
        headers={"Cookie": alice},
        verify=str(certs / "root.pem"),
        timeout=5,
    )
    assert r.status_code == 200
    (hit,) = _last(recorder, "mark=ck2")
    assert hit["identity"] == ["alice"] and not [
        k for k, _ in hit["headers"] if k.lower() == "cookie"
    ]
    # A look-alike name is not the Qlik cookie.
    r = requests.get(
        _url(front, "/hdr/hub/?mark=ck3"),
        headers={"Cookie": f"{alice}; XX-Qlik-Session-hdr=a; X-Qlik-Session-hdrx=b"},
        verify=str(certs / "root.pem"),
        timeout=5,
    )
    (hit,) = _last(recorder, "mark=ck3")
    assert not [k for k, _ in hit["headers"] if k.lower() == "cookie"]


def test_websocket_upgrade_passes_with_the_user(front, recorder, certs, alice):
    ws = websocket.create_connection(
        f"wss://localhost:{front.port}/hdr/app/abc-123?mark=ws1",
        header=[f"Cookie: {alice}"],
        sslopt={"ca_certs": str(certs / "root.pem")},
        timeout=5,
    )
    try:
        assert ws.recv() == "alice"
    finally:
        ws.close()
    (hit,) = _last(recorder, "mark=ws1")
    assert hit["identity"] == ["alice"]
    assert hit["path"].startswith("/hdr/app/abc-123")


def test_not_signed_in_is_sent_to_login_and_nothing_reaches_qlik(front, recorder, certs, portal):
    _app, pport = portal
    before = len(recorder.requests)
    r = requests.get(
        _url(front, "/hdr/sense/app/abc"),
        verify=str(certs / "root.pem"),
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302
    assert r.headers["Location"] == (
        f"http://localhost:{pport}/login?next=https://localhost:{front.port}/hdr/sense/app/abc"
    )
    assert len(recorder.requests) == before


def test_login_next_falls_back_to_the_hub_for_unusual_urls(front, certs, portal):
    _app, pport = portal
    r = requests.get(
        _url(front, "/hdr/hub/?a=1&next=https://evil.example"),
        verify=str(certs / "root.pem"),
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302
    assert (
        r.headers["Location"]
        == f"http://localhost:{pport}/login?next=https://localhost:{front.port}/hdr/hub/"
    )


# -- spoofing --------------------------------------------------------------------------------
SPOOFS = {
    "same-name": [(HEADER, "ADMIN")],
    "lower-case": [(HEADER.lower(), "ADMIN")],
    "upper-case": [(HEADER.upper(), "ADMIN")],
    "underscores": [(HEADER.replace("-", "_"), "ADMIN")],
    "dots": [(HEADER.replace("-", "."), "ADMIN")],
    "tildes": [(HEADER.replace("-", "~"), "ADMIN")],
    "two-copies": [(HEADER, "ADMIN"), (HEADER, "root")],
    "mixed-copies": [(HEADER.lower(), "ADMIN"), (HEADER.replace("-", "_"), "root")],
    "connection-named": [("Connection", f"keep-alive, {HEADER}"), (HEADER, "ADMIN")],
    "x-qlik-user": [
        ("X-Qlik-User", "UserDirectory=PORTAL; UserId=ADMIN"),
        ("x_qlik_user", "ADMIN"),
    ],
}


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofed_identity_headers_never_reach_qlik_signed_in(front, recorder, certs, alice, name):
    mark = f"spoof-in-{name}"
    resp = _raw_get(front, certs, f"/hdr/hub/?mark={mark}", SPOOFS[name], alice)
    assert status_of(resp) == 200, resp[:200]
    (hit,) = _last(recorder, f"mark={mark}")
    assert hit["identity"] == ["alice"], hit["headers"]
    names = [
        k.lower().replace("_", "-").replace(".", "-").replace("~", "-") for k, _ in hit["headers"]
    ]
    assert "x-qlik-user" not in names
    assert all(v != "ADMIN" and v != "root" for _k, v in hit["headers"])


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofed_identity_headers_never_reach_qlik_anonymous(front, recorder, certs, name):
    mark = f"spoof-anon-{name}"
    resp = _raw_get(front, certs, f"/hdr/hub/?mark={mark}", SPOOFS[name], None)
    assert status_of(resp) == 302
    assert _last(recorder, f"mark={mark}") == []


def test_spoofed_header_is_not_shown_to_the_portal(front, portal, certs, alice):
    app, _ = portal
    app.config["calls"].clear()
    _raw_get(front, certs, "/hdr/hub/?mark=portal-view", [(HEADER, "ADMIN")], alice)
    assert app.config["calls"], "the portal was asked"
    assert all(HEADER.lower() not in {k.lower() for k in call} for call in app.config["calls"])
    assert all(
        call.get("X-Original-Uri") == "/hdr/hub/?mark=portal-view" for call in app.config["calls"]
    )


def test_header_value_with_crlf_is_refused_by_nginx_before_anything(front, recorder, certs, alice):
    # A raw CR or LF inside a header value ends the line for nginx: either the request is
    # refused or the remainder becomes another (ignored or overwritten) header; never a value.
    for i, value in enumerate(["ADMIN\r\nX-Portal-User: ADMIN", "ADMIN\rX-Portal-User: x", "A\nB"]):
        mark = f"crlf-{i}"
        resp = _raw_get(front, certs, f"/hdr/hub/?mark={mark}", [(HEADER, value)], alice)
        hits = _last(recorder, f"mark={mark}")
        if status_of(resp) == 200:
            assert [h["identity"] for h in hits] == [["alice"]]
        else:
            assert status_of(resp) == 400 and hits == []


def test_identity_endpoint_is_not_reachable_from_outside(front, portal, certs, alice):
    app, _ = portal
    app.config["calls"].clear()
    for path in (
        "/qlik/header-auth",
        "/qlik//header-auth",
        "/_qlikauth/identity/hdr",
        "/_qlikauth/identity/hdr?x=1",
        "/%71lik/header-auth",
    ):
        r = requests.get(
            _url(front, path),
            headers={"Cookie": alice},
            verify=str(certs / "root.pem"),
            allow_redirects=False,
            timeout=5,
        )
        assert r.status_code in (400, 403, 404), path
        assert "X-Qlik-Header-Value" not in r.headers
    assert app.config["calls"] == []


# -- tunnelling and traversal ------------------------------------------------------------------
TRAVERSALS = [
    "/resources/qmc/fonts/../../../qrs/ReloadTask",
    "/hdr/resources/qmc/fonts/../../../qrs/ReloadTask",
    "/hdr/hub/%2e%2e/%2e%2e/qrs/about",
    "/hdr/hub/%2E%2E/qrs/about",
    "/hdr/hub/..%2fqrs/about",
    "/hdr/hub/..%2Fqrs",
    "/hdr/hub/.%2e/qrs",
    "/hdr/hub/%252e%252e/qrs",
    "/hdr/hub/..\\qrs",
    "/hdr/hub/..;/qrs",
    "/hdr/hub/..",
    "/hdr/hub/..?x=1",
    # issue 10: shapes that passed the old filter unchanged
    "/hdr/hub/x/..#y",
    "/hdr/hub/..#",
    "/hdr/hub/..%3b/qrs",
    "/hdr/hub/..%3B/qrs",
    "/hdr/hub/..%20/qrs",
    "/hdr/hub/..%09/qrs",
    "/hdr/hub/..%00/qrs",
    "/hdr/hub/%c0%ae%c0%ae/qrs",
    "/hdr/hub/%C0%AE%C0%AE/qrs",
    "/hdr/hub/%e0%80%ae%e0%80%ae/qrs",
    "/hdr/hub/%25252e%25252e/qrs",
    "/hdr/hub/%2525252e%2525252e/qrs",
    "/hdr/hub/%u002e%u002e/qrs",
    "/hdr/hub/.../qrs",
    "/hdr/hub/x%2f..%2fqrs",
    "/hdr/hub/..%c0%afqrs",
    "/hdr/hub/x\\..\\qrs",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_refused_with_400(front, recorder, certs, alice, path):
    before = len(recorder.requests)
    resp = _raw_get(front, certs, path, [], alice)
    assert status_of(resp) == 400, resp[:200]
    assert len(recorder.requests) == before


def test_dots_inside_names_are_not_traversal(front, recorder, certs, alice):
    resp = _raw_get(front, certs, "/hdr/hub/file..name/x...y?mark=dots", [], alice)
    assert status_of(resp) == 200
    assert [h["identity"] for h in _last(recorder, "mark=dots")] == [["alice"]]


def _framed(front, cookie, headers: list[str], body: bytes) -> bytes:
    return (
        "\r\n".join(
            [
                "POST /hdr/qrs/about?mark=framing HTTP/1.1",
                f"Host: localhost:{front.port}",
                f"Cookie: {cookie}",
                *headers,
            ]
        )
        + "\r\n\r\n"
    ).encode() + body


SMUGGLE = {
    "cl-te": (
        ["Content-Length: 44", "Transfer-Encoding: chunked"],
        b"0\r\n\r\nGET /hdr/hub/?mark=smuggled HTTP/1.1\r\n\r\n",
    ),
    "te-cl": (
        ["Transfer-Encoding: chunked", "Content-Length: 4"],
        b"5c\r\nGET /hdr/hub/?mark=smuggled HTTP/1.1\r\n\r\n0\r\n\r\n",
    ),
    "te-identity": (["Transfer-Encoding: identity", "Content-Length: 3"], b"abc"),
    "te-obfuscated": (["Transfer-Encoding: xchunked", "Content-Length: 3"], b"abc"),
    "te-list": (["Transfer-Encoding: chunked, identity"], b"0\r\n\r\n"),
    "two-cl": (["Content-Length: 3", "Content-Length: 40"], b"abc"),
    "two-te": (["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"], b"0\r\n\r\n"),
    "te-space": (["Transfer-Encoding : chunked", "Content-Length: 3"], b"abc"),
}


@pytest.mark.parametrize("name", sorted(SMUGGLE))
def test_tunnelling_shapes_are_refused(front, recorder, certs, alice, name):
    before = len(recorder.requests)
    headers, body = SMUGGLE[name]
    resp = raw_request(front.port, certs / "root.pem", _framed(front, alice, headers, body))
    assert 400 <= status_of(resp) < 500 or status_of(resp) == 501, resp[:200]
    assert len(recorder.requests) == before
    assert _last(recorder, "mark=smuggled") == []


def test_plain_bodies_still_pass(front, recorder, certs, alice):
    for headers, body in (
        (["Content-Length: 3"], b"abc"),
        (["Transfer-Encoding: chunked"], b"3\r\nabc\r\n0\r\n\r\n"),
    ):
        before = len(recorder.requests)
        resp = raw_request(
            front.port,
            certs / "root.pem",
            _framed(front, alice, [*headers, "Connection: close"], body),
        )
        assert status_of(resp) == 200, resp[:200]
        assert recorder.requests[before]["identity"] == ["alice"]


def test_h2c_upgrade_is_not_passed_on(front, recorder, certs, alice):
    resp = _raw_get(
        front,
        certs,
        "/hdr/hub/?mark=h2c",
        [("Upgrade", "h2c"), ("HTTP2-Settings", "AAMAAABkAAQAAP__")],
        alice,
    )
    assert status_of(resp) == 200
    (hit,) = _last(recorder, "mark=h2c")
    assert not [v for k, v in hit["headers"] if k.lower() == "upgrade"]
    assert hit["identity"] == ["alice"]


# -- the raw URI must name the virtual proxy itself --------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/hdr%2fhub/",
        "/hdr%2Fhub/qrs/about",
        "/hdr%5chub/",
        "/hdr%252fhub/",
        "/%68dr/hub/",
        "/hdr;x/hub/",
    ],
)
def test_an_encoded_prefix_never_reaches_another_virtual_proxy(front, recorder, certs, alice, path):
    # nginx matches location /hdr/ on the decoded path, but forwards the raw one: Qlik would
    # read "hdr%2fhub" as no prefix at all and route the request to its default virtual proxy.
    before = len(recorder.requests)
    resp = _raw_get(front, certs, path, [], alice)
    assert status_of(resp) in (400, 404), resp[:200]
    assert len(recorder.requests) == before


def test_encoded_characters_that_are_not_dots_or_slashes_still_pass(front, recorder, certs, alice):
    resp = _raw_get(
        front, certs, "/hdr/content/Default/My%20File%281%29.png?mark=enc&q=%2e%2e%2f", [], alice
    )
    assert status_of(resp) == 200, resp[:200]
    (hit,) = _last(recorder, "mark=enc")
    assert hit["path"] == "/hdr/content/Default/My%20File%281%29.png?mark=enc&q=%2e%2e%2f"


# -- only the configured host names --------------------------------------------------------
def _with_host(
    front,
    certs,
    cookie,
    host_lines: list[str],
    target: str = "/hdr/hub/?mark=host",
    version: str = "HTTP/1.1",
) -> bytes:
    lines = [f"GET {target} {version}", *host_lines, "Connection: close", f"Cookie: {cookie}"]
    return raw_request(front.port, certs / "root.pem", ("\r\n".join(lines) + "\r\n\r\n").encode())


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",
        "localhost:1",
        "localhost.evil.example",
        "localhost:{port}@evil.example",
        "localhost:{port}:1",
        "127.0.0.1:{port}",
    ],
)
def test_other_host_names_are_refused_with_421(front, recorder, certs, alice, host):
    before = len(recorder.requests)
    resp = _with_host(front, certs, alice, [f"Host: {host.format(port=front.port)}"])
    assert status_of(resp) in (400, 421), resp[:200]
    assert len(recorder.requests) == before


def test_absolute_form_request_for_another_host_is_refused(front, recorder, certs, alice):
    before = len(recorder.requests)
    resp = _with_host(
        front,
        certs,
        alice,
        [f"Host: localhost:{front.port}"],
        target="https://evil.example/hdr/hub/?mark=abs",
    )
    assert status_of(resp) in (400, 421), resp[:200]
    resp = _with_host(
        front,
        certs,
        alice,
        ["Host: evil.example"],
        target=f"https://localhost:{front.port}/hdr/hub/?mark=abs",
    )
    assert status_of(resp) in (400, 421), resp[:200]
    assert len(recorder.requests) == before


def test_a_request_without_host_is_refused(front, recorder, certs, alice):
    before = len(recorder.requests)
    resp = _with_host(front, certs, alice, [], version="HTTP/1.0")
    assert status_of(resp) in (400, 421), resp[:200]
    assert len(recorder.requests) == before


@pytest.mark.parametrize("host", ["localhost:{port}", "LOCALHOST:{port}"])
def test_the_configured_host_passes_and_is_forwarded(front, recorder, certs, alice, host):
    value = host.format(port=front.port)
    resp = _with_host(
        front, certs, alice, [f"Host: {value}"], target=f"/hdr/hub/?mark=okhost-{host[:3]}"
    )
    assert status_of(resp) == 200, resp[:200]
    (hit,) = _last(recorder, f"mark=okhost-{host[:3]}")
    assert [v for k, v in hit["headers"] if k.lower() == "host"] == [value]
