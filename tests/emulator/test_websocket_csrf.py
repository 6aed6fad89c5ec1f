"""Websocket CSRF (QSEoW since November 2024), the host allow list, additional response headers,
the websocket session lifecycle, and qlikauth's client side (qlikauth.engine), over real TLS."""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
import websocket  # websocket-client
from emu_helpers import call, ticket

from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.emulator.state import EmulatorState
from qlikauth.engine import engine_websocket_url, fetch_csrf_token
from qlikauth.exceptions import ConfigurationError, QlikEndpointError

CSWSH = "Cross-Site Websocket Hijacking attack prevention check failed"
MODULE = "https://portal.example.com/qlik/module"
MASHUP = "https://mashup.example.com"


@pytest.fixture
def emu(certs):
    with Emulator(
        certs_dir=certs,
        virtual_proxies=[
            VirtualProxy("portal", module_uri=MODULE),
            VirtualProxy(
                "mashup",
                host_allow_list=("localhost", "mashup.example.com"),
                additional_response_headers=(
                    ("Access-Control-Allow-Origin", MASHUP),
                    ("Access-Control-Allow-Credentials", "true"),
                    ("Access-Control-Expose-Headers", "qlik-csrf-token"),
                ),
            ),
        ],
    ) as e:
        yield e


def _session(emu, api, prefix="portal") -> str:
    sid = str(uuid.uuid4())
    assert (
        call(
            api,
            emu,
            "POST",
            "session",
            prefix,
            json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": sid},
        ).status_code
        == 201
    )
    return sid


def _ws(emu, certs, path, cookie=None, origin=None):
    headers = [f"Cookie: {cookie}"] if cookie else []
    kw = {"origin": origin} if origin else {}
    return websocket.create_connection(
        f"wss://localhost:{emu.hub_port}{path}",
        header=headers,
        timeout=5,
        sslopt={"ca_certs": str(certs / "root.pem")},
        **kw,
    )


def test_csrftoken_endpoint_answers_204_with_the_token(emu, api, browser):
    sid = _session(emu, api)
    r = browser.get(
        f"{emu.hub_url}/portal/qps/csrftoken",
        headers={"Cookie": f"X-Qlik-Session-portal={sid}"},
        allow_redirects=False,
    )
    assert r.status_code == 204 and r.content == b""
    assert r.headers["qlik-csrf-token"] == emu.state.session(sid).csrf_token
    # without a session: no token, off to the authentication module like any other request
    r = browser.get(f"{emu.hub_url}/portal/qps/csrftoken", allow_redirects=False)
    assert r.status_code == 302 and "qlik-csrf-token" not in r.headers


def test_engine_websocket_needs_the_token(emu, api, certs):
    sid = _session(emu, api)
    cookie = f"X-Qlik-Session-portal={sid}"
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(emu, certs, "/portal/app/abc", cookie)
    assert info.value.status_code == 403 and CSWSH.encode() in info.value.resp_body
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(emu, certs, "/portal/app/abc?qlik-csrf-token=guessed", cookie)
    assert info.value.status_code == 403
    token = emu.state.session(sid).csrf_token
    ws = _ws(emu, certs, f"/portal/app/abc?qlik-csrf-token={token}", cookie)
    try:
        assert '"user": "ACME\\\\jdoe"' in ws.recv()
    finally:
        ws.close()


def test_engine_websocket_from_a_disallowed_origin_is_refused(emu, api, certs):
    sid = _session(emu, api)
    token = emu.state.session(sid).csrf_token
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        _ws(
            emu,
            certs,
            f"/portal/app/abc?qlik-csrf-token={token}",
            f"X-Qlik-Session-portal={sid}",
            origin="https://evil.example",
        )
    assert info.value.status_code == 403 and CSWSH.encode() in info.value.resp_body
    # the mashup's origin is on its virtual proxy's allow list
    msid = _session(emu, api, "mashup")
    mtoken = emu.state.session(msid).csrf_token
    ws = _ws(
        emu,
        certs,
        f"/mashup/app/abc?qlik-csrf-token={mtoken}",
        f"X-Qlik-Session-mashup={msid}",
        origin=MASHUP,
    )
    ws.close()


def test_engine_websocket_needs_an_https_origin(emu, api, certs):
    # Qlik since November 2024: an allowed Origin is required and "the scheme (https) matters"
    sid = _session(emu, api)
    token = emu.state.session(sid).csrf_token
    path = f"/portal/app/abc?qlik-csrf-token={token}"
    cookie = f"X-Qlik-Session-portal={sid}"
    with pytest.raises(websocket.WebSocketBadStatusException) as info:
        websocket.create_connection(
            f"wss://localhost:{emu.hub_port}{path}",
            header=[f"Cookie: {cookie}"],
            timeout=5,
            suppress_origin=True,
            sslopt={"ca_certs": str(certs / "root.pem")},
        )
    assert info.value.status_code == 403 and CSWSH.encode() in info.value.resp_body
    for wrong in (f"http://localhost:{emu.hub_port}", "localhost", "null"):
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            _ws(emu, certs, path, cookie, origin=wrong)
        assert info.value.status_code == 403, wrong
    ws = _ws(emu, certs, path, cookie, origin=f"https://localhost:{emu.hub_port}")
    try:
        assert "jdoe" in ws.recv()
    finally:
        ws.close()


def test_additional_response_headers_let_a_mashup_read_the_token(emu, api, browser):
    sid = _session(emu, api, "mashup")
    r = browser.get(
        f"{emu.hub_url}/mashup/qps/csrftoken", headers={"Cookie": f"X-Qlik-Session-mashup={sid}"}
    )
    assert r.status_code == 204 and r.headers["qlik-csrf-token"]
    assert r.headers["Access-Control-Expose-Headers"] == "qlik-csrf-token"
    assert r.headers["Access-Control-Allow-Origin"] == MASHUP
    assert (
        "Access-Control-Expose-Headers"
        not in browser.get(f"{emu.hub_url}/portal/hub/", allow_redirects=False).headers
    )


def _raw_get(emu, certs, path, host):
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    conn = http.client.HTTPSConnection("localhost", emu.hub_port, context=ctx, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        r = conn.getresponse()
        return r.status, r.getheader("Location"), r.read()
    finally:
        conn.close()


def test_host_allow_list(emu, certs):
    status, location, body = _raw_get(emu, certs, "/portal/hub/", "evil.example")
    assert status == 403 and location is None and b"host allow list" in body
    status, location, _ = _raw_get(emu, certs, "/portal/hub/", f"localhost:{emu.hub_port}")
    assert status == 302
    target_id = parse_qs(urlsplit(location).query)["targetId"][0]
    assert emu.state.target("portal", target_id) == f"https://localhost:{emu.hub_port}/portal/hub/"
    # a virtual proxy's own list replaces the node's names
    status, location, _ = _raw_get(emu, certs, "/mashup/hub/", "mashup.example.com")
    assert status == 302 and location.startswith(
        "https://mashup.example.com/mashup/internal_forms_authentication/"
    )
    assert _raw_get(emu, certs, "/mashup/hub/", "127.0.0.1")[0] == 403


def test_host_allow_list_entries_are_validated():
    with pytest.raises(ConfigurationError, match="host_allow_list"):
        VirtualProxy("p", host_allow_list=("https://x.example/",))
    with pytest.raises(ConfigurationError, match="additional response header"):
        VirtualProxy("p", additional_response_headers=(("Set-Cookie", "a=b"),))


# -- the client side: qlikauth.engine ---------------------------------------------------------
def test_client_fetches_the_token_and_opens_the_engine_websocket(emu, api, certs):
    sid = _session(emu, api)
    root = str(certs / "root.pem")
    proxy = f"{emu.hub_url}/portal/"
    token = fetch_csrf_token(proxy, "X-Qlik-Session-portal", sid, verify=root)
    url = engine_websocket_url(proxy, "my app", token)
    assert url == f"wss://localhost:{emu.hub_port}/portal/app/my%20app?qlik-csrf-token={token}"
    ws = websocket.create_connection(
        url, header=[f"Cookie: X-Qlik-Session-portal={sid}"], timeout=5, sslopt={"ca_certs": root}
    )
    try:
        assert '"app": "my app"' in ws.recv()
    finally:
        ws.close()


def test_client_says_what_is_wrong(emu, api, certs):
    root = str(certs / "root.pem")
    with pytest.raises(QlikEndpointError, match="answered 302: the proxy session is not valid"):
        fetch_csrf_token(
            f"{emu.hub_url}/portal/", "X-Qlik-Session-portal", "no-such-session", verify=root
        )
    with pytest.raises(ConfigurationError, match="verify=False"):
        fetch_csrf_token(f"{emu.hub_url}/portal/", "X-Qlik-Session-portal", "x", verify=False)
    with pytest.raises(ConfigurationError, match="https URL"):
        engine_websocket_url("http://qlik.example.com/portal/", "a")


def test_websocket_with_a_ticket_in_its_url_needs_no_token(emu, api, certs):
    ws = _ws(emu, certs, f"/portal/app/abc?QlikTicket={ticket(api, emu)}")
    ws.close()


# -- websocket session lifecycle ----------------------------------------------------------------
def _open(emu, api, certs):
    sid = _session(emu, api)
    token = emu.state.session(sid).csrf_token
    ws = _ws(emu, certs, f"/portal/app/abc?qlik-csrf-token={token}", f"X-Qlik-Session-portal={sid}")
    assert json.loads(ws.recv())["user"] == "ACME\\jdoe"
    return sid, ws


def _notice_then_close(ws) -> str:
    notice = json.loads(ws.recv())
    assert (
        notice["jsonrpc"] == "2.0"
        and notice["params"]["severity"] == "fatal"
        and notice["params"]["message"]
    )
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError, OSError)):
        for _ in range(3):
            ws.recv()
            if not ws.connected:
                raise websocket.WebSocketConnectionClosedException()
    return notice["method"]


def test_logout_sends_on_session_logged_out_before_closing(emu, api, certs):
    sid, ws = _open(emu, api, certs)
    try:
        call(api, emu, "DELETE", f"session/{sid}")
        assert _notice_then_close(ws) == "OnSessionLoggedOut"
    finally:
        ws.close()


def test_inactivity_sends_on_session_timed_out_and_engine_traffic_is_activity(certs, api):
    now = [1000.0]
    emu = Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal", module_uri=MODULE)])
    emu.state = EmulatorState(session_timeout=60, clock=lambda: now[0])
    with emu:
        sid, ws = _open(emu, api, certs)
        try:
            now[0] += 50
            ws.send("ping")  # engine traffic at 50 s ...
            assert ws.recv() == "ping"
            now[0] += 50  # ... so 100 s after the start the session still lives
            assert emu.state.session(sid) is not None
            now[0] += 61  # 61 s of silence: timed out; the open websocket hears it
            assert _notice_then_close(ws) == "OnSessionTimedOut"
        finally:
            ws.close()
