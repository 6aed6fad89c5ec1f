"""The emulated hub over real TLS: ticket redemption, cookies, module redirect, Personal API, header
auth, websocket."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import websocket  # websocket-client
from emu_helpers import browser_session, call, ticket

from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.exceptions import ConfigurationError

MODULE = "https://portal.example/qlik/module"


@pytest.fixture
def emu(certs):
    vps = [
        VirtualProxy("portal", method="ticket", module_uri=MODULE),
        VirtualProxy("plain", method="session"),
        VirtualProxy("hdr", method="header-dynamic", header_name="X-Portal-User"),
        VirtualProxy(
            "hdrs", method="header-static", header_name="X-Portal-Id", header_user_directory="CORP"
        ),
        VirtualProxy(
            "pipe", method="header-dynamic", header_name="X-Who", header_pattern="$id@$ud"
        ),
    ]
    with Emulator(certs_dir=certs, virtual_proxies=vps) as e:
        yield e


def _cookie_attrs(set_cookie: str) -> dict[str, str]:
    first, *rest = [p.strip() for p in set_cookie.split(";")]
    out = {"__pair__": first}
    for p in rest:
        k, _, v = p.partition("=")
        out[k.lower()] = v
    return out


def test_ticket_answers_the_resource_and_sets_a_browser_session_cookie(emu, api, browser):
    t = ticket(api, emu)
    assert len(t) == 16 and t.isalnum()  # as Qlik makes them
    r = browser.get(
        f"{emu.hub_url}/portal/hub/stream?x=1&QLIKTICKET={t}&y=%20", allow_redirects=False
    )
    # Qlik answers the resource itself with the cookie; the ticket stays in the URL.
    assert r.status_code == 200 and "Location" not in r.headers
    assert '<dd id="path">/hub/stream</dd>' in r.text
    attrs = _cookie_attrs(r.headers["Set-Cookie"])
    name, _, value = attrs["__pair__"].partition("=")
    assert name == "X-Qlik-Session-portal" and str(uuid.UUID(value)) == value  # a GUID
    assert attrs["path"] == "/" and "httponly" in attrs and "secure" in attrs
    assert attrs["samesite"] == "None"
    assert "expires" not in attrs and "max-age" not in attrs  # a browser-session cookie
    assert [s.session_id for s in emu.state.sessions("portal")] == [value]


def test_module_redirect_keeps_the_host_header(emu, api, certs):
    """nginx in front forwards its own Host: the target the module gets points back through it."""
    emu.add_virtual_proxy(
        VirtualProxy("behind", module_uri=MODULE, host_allow_list=("qlik.example.com",))
    )
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    conn = http.client.HTTPSConnection("localhost", emu.hub_port, context=ctx, timeout=5)
    try:
        conn.request("GET", "/behind/hub/", headers={"Host": "qlik.example.com"})
        r = conn.getresponse()
        r.read()
        assert r.status == 302
        target_id = parse_qs(urlsplit(r.getheader("Location")).query)["targetId"][0]
        assert emu.state.target("behind", target_id) == "https://qlik.example.com/behind/hub/"
        conn.request("GET", "/portal/hub/", headers={"Host": "bad host\\x"})
        r = conn.getresponse()
        assert r.status == 400
        r.read()
    finally:
        conn.close()


def test_hub_page_shows_user_attributes_and_security_header(emu, api, browser):
    t = ticket(api, emu)
    page = browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={t}")
    assert page.status_code == 200 and page.history == []
    assert "Signed in as ACME\\jdoe" in page.text
    assert '<dd id="user">ACME\\jdoe</dd>' in page.text
    assert '<ul id="attributes"><li>group=Sales</li><li>group=Finance</li></ul>' in page.text
    assert (
        'id="security">SecureRequest=true; Context=AppAccess; group=Sales; group=Finance<'
        in page.text
    )
    data = browser.get(emu.hub_url_for("portal"), headers={"Accept": "application/json"}).json()
    assert data["userDirectory"] == "ACME" and data["userId"] == "jdoe"
    assert data["attributes"] == [{"group": "Sales"}, {"group": "Finance"}]
    assert data["security"] == "SecureRequest=true; Context=AppAccess; group=Sales; group=Finance"


def test_module_redirect_and_target_uri_round_trip(emu, api, browser):
    wanted = f"{emu.hub_url}/portal/sense/app/abc?sheet=1"
    r = browser.get(wanted, allow_redirects=False)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == MODULE
    q = {k: v[0] for k, v in parse_qs(loc.query).items()}
    assert q["proxyRestUri"] == emu.rest_uri_for("portal") == f"{emu.qps_url}/qps/portal/"
    # As Qlik writes it: proxyRestUri first, lower-case escapes, targetId a GUID.
    assert (
        loc.query.startswith("proxyRestUri=https%3a%2f%2flocalhost%3a")
        and "&targetId=" in loc.query
    )
    assert str(uuid.UUID(q["targetId"])) == q["targetId"]
    answer = call(
        api,
        emu,
        "POST",
        "ticket",
        json={"userDirectory": "ACME", "userId": "jdoe", "targetId": q["targetId"]},
    ).json()
    assert answer["TargetUri"] == wanted
    back = browser.get(
        f"{answer['TargetUri']}&qlikTicket={answer['Ticket']}", allow_redirects=False
    )
    assert back.status_code == 200 and "X-Qlik-Session-portal=" in back.headers["Set-Cookie"]
    # the same ticket again: no session, so back to the authentication module (not an error page)
    browser.cookies.clear()
    spent = browser.get(
        f"{answer['TargetUri']}&qlikTicket={answer['Ticket']}", allow_redirects=False
    )
    assert spent.status_code == 302 and spent.headers["Location"].startswith(
        MODULE + "?proxyRestUri="
    )
    spent_target = parse_qs(urlsplit(spent.headers["Location"]).query)["targetId"][0]
    assert (
        emu.state.target("portal", spent_target) == wanted
    )  # the spent ticket is not in the target
    back = browser.get(
        f"{answer['TargetUri']}&qlikTicket={ticket(api, emu)}", allow_redirects=False
    )
    assert browser.get(f"{emu.hub_url}/portal/qps/user").json()["userId"] == "jdoe"
    # An unknown targetId gives no TargetUri rather than someone else's.
    assert (
        call(
            api,
            emu,
            "POST",
            "ticket",
            json={"UserDirectory": "A", "UserId": "b", "TargetId": "nope"},
        ).json()["TargetUri"]
        is None
    )


def test_first_request_must_be_a_get_and_no_module_means_the_internal_module(emu, browser):
    r = browser.post(f"{emu.hub_url}/portal/hub/", data=b"x")
    assert (
        r.status_code == 403
        and 'The initial authentication request must be a "GET" request' in r.text
    )
    # no module URI: Qlik's internal module; a User-Agent without "Windows" gets the form login
    r = browser.get(emu.hub_url_for("plain"), allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"].startswith(
        f"{emu.hub_url}/plain/internal_forms_authentication/?targetId="
    )


def test_session_cookie_from_the_api_signs_the_browser_in(emu, api, browser):
    sid = "0f6c1f8e-5d8a-4a63-9f3b-5a2c7d7b9e10"
    assert (
        call(
            api,
            emu,
            "POST",
            "session",
            prefix="plain",
            json={"UserDirectory": "ACME", "UserId": "cookie", "SessionId": sid},
        ).status_code
        == 201
    )
    browser.headers["Cookie"] = f"X-Qlik-Session-plain={sid}"
    r = browser.get(emu.hub_url_for("plain"), headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["userId"] == "cookie"
    # the cookie of one virtual proxy means nothing on another
    browser.headers["Cookie"] = f"X-Qlik-Session-portal={sid}"
    assert browser.get(emu.hub_url_for("portal"), allow_redirects=False).status_code == 302


def test_personal_api(emu, api, browser):
    assert browser.get(f"{emu.hub_url}/portal/qps/user").json() == {"session": "inactive"}
    browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={ticket(api, emu, 'pat')}")
    me = browser.get(f"{emu.hub_url}/portal/qps/user").json()
    assert me == {
        "userDirectory": "ACME",
        "userId": "pat",
        "userName": "pat",
        "logoutUri": f"{emu.hub_url}/portal/qps/user",
    }
    r = browser.delete(f"{emu.hub_url}/portal/qps/user")
    assert r.status_code == 200
    assert _cookie_attrs(r.headers["Set-Cookie"])["max-age"] == "0"
    assert emu.state.sessions("portal") == []
    assert browser.get(f"{emu.hub_url}/portal/qps/user").json() == {"session": "inactive"}


def test_header_dynamic_records_every_request(emu, browser):
    base = emu.hub_url_for("hdr")

    def to_login(**kw):
        # no user in the header: Qlik sends the browser to the virtual proxy's login
        r = browser.get(base, allow_redirects=False, **kw)
        return (
            r.status_code == 302
            and "/hdr/internal_forms_authentication/?targetId=" in r.headers["Location"]
        )

    assert to_login()
    r = browser.get(base, headers={"X-Portal-User": "ACME\\jdoe", "Accept": "application/json"})
    assert (
        r.status_code == 200
        and r.json()["userDirectory"] == "ACME"
        and r.json()["userId"] == "jdoe"
    )
    assert r.cookies.get("X-Qlik-Session-hdr")  # a proxy session, like Qlik
    assert to_login(headers={"X-Portal-User": "no-separator"})
    assert to_login(headers={"X-Portal-User": "ACME\\jdoé".encode()})
    # the cookie alone is not enough: the header must be on every request
    assert to_login()
    log = emu.state.header_log_for("hdr")
    assert [(e.method, e.identity) for e in log] == [
        ("GET", None),
        ("GET", "ACME\\jdoe"),
        ("GET", None),
        ("GET", None),
        ("GET", None),
    ]
    assert log[0].values == () and log[1].values == ("ACME\\jdoe",)
    assert log[1].path == "/hdr/hub/" and log[1].user is not None and log[1].user.user_id == "jdoe"


def test_header_static_and_custom_pattern(emu, browser):
    r = browser.get(f"{emu.hub_url}/hdrs/qps/user", headers={"X-Portal-Id": "alice"})
    assert r.json()["userDirectory"] == "CORP" and r.json()["userId"] == "alice"
    r = browser.get(f"{emu.hub_url}/pipe/qps/user", headers={"X-Who": "bob@EXAMPLE"})
    assert r.json()["userDirectory"] == "EXAMPLE" and r.json()["userId"] == "bob"
    assert emu.state.header_log_for("hdrs")[0].identity == "CORP\\alice"


def test_header_pattern_as_the_qmc_field_holds_it(certs, browser):
    r"""The QMC's example pattern $ud\\$id matches ACME\jdoe, and qlikauth's header for it too."""
    from qlikauth import HeaderAuthenticator, QlikUser

    qmc = "$ud\\\\$id"  # the six characters $ud\\$id, as the QMC field holds them
    with Emulator(
        certs_dir=certs,
        virtual_proxies=[
            VirtualProxy(
                "qmc", method="header-dynamic", header_name="X-Portal-User", header_pattern=qmc
            )
        ],
    ) as e:
        value = HeaderAuthenticator("X-Portal-User", pattern=qmc).value(QlikUser("ACME", "jdoe"))
        assert value == "ACME\\jdoe"
        r = browser.get(f"{e.hub_url}/qmc/qps/user", headers={"X-Portal-User": value})
        assert r.json()["userDirectory"] == "ACME" and r.json()["userId"] == "jdoe"
        # the pattern read literally would have wanted two backslashes: that is not ACME\jdoe
        r = browser.get(f"{e.hub_url}/qmc/qps/user", headers={"X-Portal-User": "ACME\\\\jdoe"})
        assert r.json().get("userDirectory") != "ACME" or r.json().get("userId") != "jdoe"


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"prefix": "Portal"}, "lowercase"),
        ({"prefix": "h", "method": "header-dynamic", "header_name": "X-Qlik-User"}, "reserved"),
        ({"prefix": "h", "method": "header-dynamic"}, "header_name"),
        ({"prefix": "h", "method": "header-static", "header_name": "X-A"}, "header_user_directory"),
        (
            {
                "prefix": "h",
                "method": "header-dynamic",
                "header_name": "X-A",
                "header_pattern": "$ud",
            },
            "$id",
        ),
        (
            {
                "prefix": "",
                "method": "header-static",
                "header_name": "X-A",
                "header_user_directory": "D",
            },
            "default",
        ),
        ({"prefix": "p", "method": "saml"}, "method"),
    ],
)
def test_virtual_proxy_validation(kwargs, fragment):
    with pytest.raises(ConfigurationError, match=None) as info:
        VirtualProxy(**kwargs)
    assert fragment in str(info.value)


def test_cookie_names():
    assert VirtualProxy("").session_cookie_name == "X-Qlik-Session"
    assert VirtualProxy("portal").session_cookie_name == "X-Qlik-Session-portal"


def _ws(emu, certs, path, **kw):
    return websocket.create_connection(
        f"wss://localhost:{emu.hub_port}{path}",
        timeout=5,
        sslopt={"ca_certs": str(certs / "root.pem"), "cert_reqs": ssl.CERT_REQUIRED},
        **kw,
    )


def test_websocket_handshake_greeting_echo_and_ping(emu, api, certs):
    with browser_session(certs) as b:
        b.get(f"{emu.hub_url_for('portal')}?qlikTicket={ticket(api, emu)}")
        sid = b.cookies["X-Qlik-Session-portal"]
        csrf = b.get(f"{emu.hub_url}/portal/qps/csrftoken").headers["qlik-csrf-token"]
    ws = _ws(
        emu,
        certs,
        f"/portal/app/my-app-id?qlik-csrf-token={csrf}",
        cookie=f"X-Qlik-Session-portal={sid}",
    )
    try:
        hello = json.loads(ws.recv())
        assert hello == {
            "user": "ACME\\jdoe",
            "attributes": [{"group": "Sales"}, {"group": "Finance"}],
            "app": "my-app-id",
        }
        ws.send("héllo " * 20000)  # > 64 KiB: the 64-bit length form
        assert ws.recv() == "héllo " * 20000
        ws.ping(b"p1")
        op, pong = ws.recv_data_frame(True)
        assert op == websocket.ABNF.OPCODE_PONG and pong.data == b"p1"
        ws.send_binary(b"\x00\x01")
        assert ws.recv() == b"\x00\x01"
    finally:
        ws.close()
    # ending the proxy session tears the engine connection down
    ws = _ws(
        emu, certs, f"/portal/app/x?qlik-csrf-token={csrf}", cookie=f"X-Qlik-Session-portal={sid}"
    )
    try:
        ws.recv()
        call(api, emu, "DELETE", f"session/{sid}")
        with pytest.raises(
            (websocket.WebSocketConnectionClosedException, ConnectionError, OSError)
        ):
            for _ in range(3):
                ws.recv()
                if not ws.connected:
                    raise websocket.WebSocketConnectionClosedException()
    finally:
        ws.close()


def test_websocket_needs_a_session_or_the_header(emu, certs):
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(emu, certs, "/portal/app/x")
    assert info.value.status_code == 401
    with pytest.raises(websocket.WebSocketBadStatusException):
        _ws(emu, certs, "/hdr/app/x")
    # the header alone makes a session but no CSRF token is known for it: refused (QSEoW Nov 2024+)
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(emu, certs, "/hdr/app/x", header=["X-Portal-User: ACME\\hdruser"])
    assert info.value.status_code == 403
    with browser_session(certs) as b:
        r = b.get(f"{emu.hub_url}/hdr/qps/csrftoken", headers={"X-Portal-User": "ACME\\hdruser"})
        csrf, sid = r.headers["qlik-csrf-token"], b.cookies["X-Qlik-Session-hdr"]
    ws = _ws(
        emu,
        certs,
        f"/hdr/app/x?qlik-csrf-token={csrf}",
        header=["X-Portal-User: ACME\\hdruser", f"Cookie: X-Qlik-Session-hdr={sid}"],
    )
    try:
        assert json.loads(ws.recv())["user"] == "ACME\\hdruser"
    finally:
        ws.close()


def test_websocket_with_ticket_in_the_url(emu, api, certs):
    ws = _ws(emu, certs, f"/portal/app/abc?QlikTicket={ticket(api, emu)}")
    try:
        assert json.loads(ws.recv())["app"] == "abc"
    finally:
        ws.close()


def test_header_proxy_without_its_header_sends_the_browser_to_its_login(certs, browser):
    """As on Qlik (no user in the header is no authentication): the module, else the internal
    login, Windows for a User-Agent with the Windows authentication pattern."""
    module = "https://portal.example.com/qlik/login"
    with Emulator(
        certs_dir=certs,
        virtual_proxies=[
            VirtualProxy(
                "h1", method="header-static", header_name="X-Id", header_user_directory="ACME"
            ),
            VirtualProxy(
                "h2",
                method="header-dynamic",
                header_name="X-Id",
                module_uri=module,
                session_cookie_name="X-Qlik-Session-h2",
            ),
        ],
    ) as e:
        win = browser.get(
            f"{e.hub_url}/h1/hub/",
            allow_redirects=False,
            headers={"User-Agent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"},
        )
        assert win.status_code == 302
        assert "/h1/internal_windows_authentication/?targetId=" in win.headers["Location"]
        challenge = browser.get(win.headers["Location"], allow_redirects=False)
        assert challenge.status_code == 401 and "Negotiate" in challenge.headers.get(
            "WWW-Authenticate", ""
        )
        mod = browser.get(f"{e.hub_url}/h2/hub/", allow_redirects=False)
        assert mod.status_code == 302 and mod.headers["Location"].startswith(
            module + "?proxyRestUri="
        )
        # with the header: signed in, no redirect
        ok = browser.get(
            f"{e.hub_url}/h1/hub/", headers={"X-Id": "jdoe", "Accept": "application/json"}
        )
        assert ok.status_code == 200 and ok.json()["userId"] == "jdoe"
