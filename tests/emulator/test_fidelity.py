"""Emulator fidelity (issue 11 §1, second round), over real TLS: the inactivity timeout per virtual
proxy, the JSON-RPC notices as Qlik's help writes them, the internal authentication module of a
ticket virtual proxy without a module URI (Windows or form login by User-Agent), and the Personal
API's ``loginUri``."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import websocket  # websocket-client
from emu_helpers import call, ticket

from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.emulator.cli import parse_virtual_proxy
from qlikauth.emulator.state import EmulatorState
from qlikauth.exceptions import ConfigurationError

MODULE = "https://portal.example.com/qlik/module"
WINDOWS_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
)
LINUX_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z\Z")


def _session(emu, api, prefix, user="jdoe") -> str:
    sid = str(uuid.uuid4())
    r = call(
        api,
        emu,
        "POST",
        "session",
        prefix,
        json={"UserDirectory": "ACME", "UserId": user, "SessionId": sid},
    )
    assert r.status_code == 201, r.text
    return sid


def _ws(emu, certs, prefix, sid):
    token = emu.state.session(sid).csrf_token
    ws = websocket.create_connection(
        f"wss://localhost:{emu.hub_port}/{prefix}/app/abc?qlik-csrf-token={token}",
        header=[f"Cookie: X-Qlik-Session-{prefix}={sid}"],
        timeout=5,
        sslopt={"ca_certs": str(certs / "root.pem")},
    )
    assert json.loads(ws.recv())["user"] == "ACME\\jdoe"
    return ws


def _notice(ws) -> dict:
    notice = json.loads(ws.recv())
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        for _ in range(3):
            ws.recv()
    return notice


# -- inactivity timeout per virtual proxy -------------------------------------------------------
def test_each_virtual_proxy_has_its_own_inactivity_timeout(certs, api):
    now = [1000.0]
    emu = Emulator(
        certs_dir=certs,
        session_timeout=600,
        virtual_proxies=[
            VirtualProxy("short", module_uri=MODULE, session_timeout=60),
            VirtualProxy("long", module_uri=MODULE, session_timeout=3600),
            VirtualProxy("node", module_uri=MODULE),  # no setting of its own: the node's 600 s
        ],
    )
    emu.state = EmulatorState(session_timeout=600, clock=lambda: now[0])
    with emu:
        short, long_, node = (_session(emu, api, p) for p in ("short", "long", "node"))
        now[0] += 61
        assert emu.state.session(short) is None
        assert emu.state.session(long_) is not None and emu.state.session(node) is not None
        assert call(api, emu, "GET", f"session/{short}", "short").status_code == 404
        now[0] += 600  # 661 s without activity: over the node's 600 s, under the long proxy's hour
        assert emu.state.session(node) is None
        assert call(api, emu, "GET", f"session/{long_}", "long").status_code == 200
        assert [s.prefix for s in emu.state.sessions()] == ["long"]


def test_engine_traffic_keeps_a_short_virtual_proxy_session_and_the_notice_is_qliks(certs, api):
    now = [1000.0]
    emu = Emulator(
        certs_dir=certs,
        virtual_proxies=[VirtualProxy("short", module_uri=MODULE, session_timeout=30)],
    )
    emu.state = EmulatorState(
        clock=lambda: now[0]
    )  # node default 1800 s: only the proxy's 30 s applies
    with emu:
        sid = _session(emu, api, "short")
        ws = _ws(emu, certs, "short", sid)
        try:
            for _ in range(3):  # 75 s in all, but never 30 s without engine traffic
                now[0] += 25
                ws.send("ping")
                assert ws.recv() == "ping"
            assert emu.state.session(sid) is not None
            now[0] += 31
            notice = _notice(ws)
        finally:
            ws.close()
    assert notice["jsonrpc"] == "2.0" and notice["method"] == "OnSessionTimedOut"
    params = notice["params"]
    assert (
        params["severity"] == "fatal" and params["message"] == "Session timed out due to inactivity"
    )
    assert _TIMESTAMP.match(params["timestamp"]), params["timestamp"]


def test_logout_notice_carries_qliks_params(certs, api):
    with Emulator(
        certs_dir=certs, virtual_proxies=[VirtualProxy("portal", module_uri=MODULE)]
    ) as emu:
        sid = _session(emu, api, "portal")
        ws = _ws(emu, certs, "portal", sid)
        try:
            assert call(api, emu, "DELETE", f"session/{sid}").status_code == 200
            notice = _notice(ws)
        finally:
            ws.close()
    assert notice["method"] == "OnSessionLoggedOut"
    assert (
        notice["params"]["message"] == "User logged out manually"
        and notice["params"]["severity"] == "fatal"
    )


def test_session_timeout_is_validated_and_the_cli_takes_it():
    with pytest.raises(ConfigurationError, match="session_timeout"):
        VirtualProxy("p", session_timeout=0)
    with pytest.raises(ConfigurationError, match="session_timeout"):
        VirtualProxy("p", session_timeout=True)
    with pytest.raises(ConfigurationError, match="windows_authentication_pattern"):
        VirtualProxy("p", windows_authentication_pattern="")
    vp = parse_virtual_proxy("prefix=portal,timeout=90,windows_pattern=Form")
    assert vp.session_timeout == 90.0 and vp.windows_authentication_pattern == "Form"
    with pytest.raises(ConfigurationError, match="timeout must be seconds"):
        parse_virtual_proxy("prefix=portal,timeout=soon")


# -- the internal module of a ticket virtual proxy without a module URI --------------------------
@pytest.fixture
def emu(certs):
    with Emulator(
        certs_dir=certs,
        virtual_proxies=[
            VirtualProxy("portal"),  # ticket, no module URI
            VirtualProxy(
                "form", windows_authentication_pattern="Form"
            ),  # form login for every browser
            VirtualProxy("ext", module_uri=MODULE),
            VirtualProxy("hdr", method="header-dynamic", header_name="X-Portal-User"),
        ],
    ) as e:
        yield e


def _target(emu, location: str, prefix: str) -> str | None:
    return emu.state.target(prefix, parse_qs(urlsplit(location).query)["targetId"][0])


@pytest.mark.parametrize("prefix", ["", "portal"])
def test_no_module_sends_a_windows_browser_to_windows_authentication(emu, browser, prefix):
    path = f"/{prefix}/sense/app/abc" if prefix else "/sense/app/abc"
    r = browser.get(
        f"{emu.hub_url}{path}?x=1", headers={"User-Agent": WINDOWS_UA}, allow_redirects=False
    )
    assert r.status_code == 302, r.text
    base = f"{emu.hub_url}/{prefix}" if prefix else emu.hub_url
    assert r.headers["Location"].startswith(f"{base}/internal_windows_authentication/?targetId=")
    assert _target(emu, r.headers["Location"], prefix) == f"{emu.hub_url}{path}?x=1"
    challenge = browser.get(
        r.headers["Location"], headers={"User-Agent": WINDOWS_UA}, allow_redirects=False
    )
    assert challenge.status_code == 401
    offered = challenge.raw.headers.getlist("WWW-Authenticate")
    assert offered == ["Negotiate", "NTLM"]
    # the emulator performs no NTLM: an attempt is challenged again, no session appears
    again = browser.get(
        r.headers["Location"],
        headers={"User-Agent": WINDOWS_UA, "Authorization": "NTLM TlRMTVNTUAABAAAA"},
        allow_redirects=False,
    )
    assert again.status_code == 401 and not emu.state.sessions()


def test_no_module_sends_other_browsers_to_the_form_login(emu, browser):
    r = browser.get(
        emu.hub_url_for("portal"), headers={"User-Agent": LINUX_UA}, allow_redirects=False
    )
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(f"{emu.hub_url}/portal/internal_forms_authentication/?targetId=")
    page = browser.get(location, headers={"User-Agent": LINUX_UA})
    assert (
        page.status_code == 200
        and 'name="username"' in page.text
        and 'type="password" name="pwd"' in page.text
    )
    refused = browser.post(
        location, data={"username": "ACME\\jdoe", "pwd": "secret"}, allow_redirects=False
    )
    assert refused.status_code == 401 and "Invalid user name or password" in refused.text
    assert not emu.state.sessions()
    # a pattern no User-Agent contains ("Form") gives every browser, Windows or not, the form
    r = browser.get(
        emu.hub_url_for("form"), headers={"User-Agent": WINDOWS_UA}, allow_redirects=False
    )
    assert "/form/internal_forms_authentication/?targetId=" in r.headers["Location"]


def test_a_ticket_still_signs_in_and_other_kinds_keep_their_answers(emu, api, browser):
    t = ticket(api, emu)
    r = browser.get(
        f"{emu.hub_url_for('portal')}?qlikTicket={t}",
        headers={"Accept": "application/json"},
        allow_redirects=False,
    )
    assert r.status_code == 200 and r.json()["userId"] == "jdoe"
    assert (
        browser.get(emu.hub_url_for("ext"), allow_redirects=False)
        .headers["Location"]
        .startswith(MODULE + "?")
    )
    assert (
        browser.get(emu.hub_url_for("hdr"), headers={"User-Agent": WINDOWS_UA}).status_code == 401
    )
    # the internal module's paths belong to proxies that use it only
    assert (
        browser.get(
            f"{emu.hub_url}/ext/internal_windows_authentication/?targetId=x", allow_redirects=False
        )
        .headers["Location"]
        .startswith(MODULE + "?")
    )


# -- the Personal API's loginUri ----------------------------------------------------------------
def test_personal_api_gives_a_login_uri_for_a_valid_target_uri(emu, browser):
    target = f"{emu.hub_url}/ext/sense/app/abc"
    r = browser.get(f"{emu.hub_url}/ext/qps/user?targetUri={quote(target, safe='')}")
    assert r.status_code == 200
    answer = r.json()
    assert answer["session"] == "inactive" and answer["loginUri"].startswith(
        MODULE + "?proxyRestUri="
    )
    assert _target(emu, answer["loginUri"], "ext") == target
    # the internal module's login, by User-Agent
    r = browser.get(
        f"{emu.hub_url}/portal/qps/user?targetUri={quote(target, safe='')}",
        headers={"User-Agent": WINDOWS_UA},
    )
    assert "/portal/internal_windows_authentication/?targetId=" in r.json()["loginUri"]


def test_personal_api_without_a_valid_target_uri_has_no_login_uri(emu, api, browser):
    assert browser.get(f"{emu.hub_url}/ext/qps/user").json() == {"session": "inactive"}
    for bad in (
        "https://evil.example/hub/",
        "javascript:alert(1)",
        "/relative/hub/",
        "https://localhost:x/",
    ):
        assert browser.get(f"{emu.hub_url}/ext/qps/user", params={"targetUri": bad}).json() == {
            "session": "inactive"
        }
    # signed in: the user and logoutUri, no loginUri
    t = ticket(api, emu, prefix="ext")
    browser.get(f"{emu.hub_url_for('ext')}?qlikTicket={t}")
    me = browser.get(
        f"{emu.hub_url}/ext/qps/user", params={"targetUri": f"{emu.hub_url}/ext/hub/"}
    ).json()
    assert (
        me["userId"] == "jdoe"
        and "loginUri" not in me
        and me["logoutUri"].endswith("/ext/qps/user")
    )
