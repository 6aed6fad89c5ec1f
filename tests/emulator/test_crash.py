"""The crash fault and restart: a dead node loses its tickets and proxy sessions, as Qlik's does.

``refuse`` only stops listening (the process lives, sessions survive); ``crash`` kills the node.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid

import pytest
import websocket  # websocket-client
from emu_helpers import call, ticket

from qlikauth import QlikUser, QpsClient
from qlikauth.emulator import Emulator, EmulatorCluster, Fault, VirtualProxy
from qlikauth.exceptions import ConfigurationError, QpsConnectionError

USER = QlikUser("ACME", "jdoe")


@pytest.fixture
def emu(certs):
    with Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as e:
        yield e


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _signed_in(browser, emu) -> bool:
    r = browser.get(
        emu.hub_url_for("portal"), headers={"Accept": "application/json"}, allow_redirects=False
    )
    return r.status_code == 200 and r.json().get("userId") == "jdoe"


def test_refuse_keeps_the_sessions_crash_loses_them(emu, api, browser):
    browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={ticket(api, emu)}")
    assert _signed_in(browser, emu)
    with emu.fault("refuse", port="both"):
        assert _refused(emu.hub_port)
    assert _signed_in(browser, emu), "refuse must not lose the proxy session"

    spare = ticket(api, emu)
    sid = emu.state.sessions()[0].session_id
    ports = (emu.qps_port, emu.hub_port)
    emu.crash()
    assert emu.crashed and emu.faults == {"qps": Fault("crash"), "hub": Fault("crash")}
    assert _refused(emu.qps_port) and _refused(emu.hub_port)
    assert emu.state.sessions() == [] and emu.state.outstanding_tickets == 0
    emu.restart()
    assert not emu.crashed and (emu.qps_port, emu.hub_port) == ports
    # the browser's cookie names a session the node no longer knows: off to the login
    r = browser.get(emu.hub_url_for("portal"), allow_redirects=False)
    assert r.status_code == 302
    assert call(api, emu, "GET", f"session/{sid}").status_code == 404
    # a ticket issued before the crash redeems no more; a new one does
    spent = browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={spare}", allow_redirects=False)
    assert spent.status_code == 302
    browser.cookies.clear()
    browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={ticket(api, emu)}")
    assert _signed_in(browser, emu)


def test_a_crash_is_one_instant_for_both_ports(emu, api, browser):
    """While the ports are still being closed, neither answers from what the crash lost: the hub
    does not serve the lost session the QPS port no longer knows, and nothing new is made."""
    import requests

    from qlikauth.emulator.state import NodeDown

    browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={ticket(api, emu)}")
    assert _signed_in(browser, emu)
    seen = {}
    qps_server = emu._faults["qps"].server
    closing = qps_server.refuse_connections

    def slow_close(refuse: bool = True) -> None:
        if refuse and not seen:  # the QPS port is about to close, the hub port is still open
            seen["sessions"] = emu.state.sessions()
            try:
                seen["hub"] = _signed_in(browser, emu)
            except requests.ConnectionError:
                seen["hub"] = "reset"
            with pytest.raises(NodeDown):
                emu.state.add_session(USER, "portal", "api")
        closing(refuse)

    qps_server.refuse_connections = slow_close
    try:
        emu.crash()
    finally:
        qps_server.refuse_connections = closing
    assert seen == {"sessions": [], "hub": "reset"}
    emu.restart()
    assert emu.state.add_session(USER, "portal", "api")[0].user == USER


def test_restart_of_a_running_node_also_loses_its_sessions(emu, api):
    assert (
        call(
            api,
            emu,
            "POST",
            "session",
            json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": str(uuid.uuid4())},
        ).status_code
        == 201
    )
    emu.inject("hang", port="hub")
    emu.restart()
    assert emu.state.sessions() == [] and emu.faults == {}
    assert call(api, emu, "GET", "alive", prefix="").json() is True


def test_a_crash_resets_websockets_without_a_session_message(emu, api, certs):
    sid = str(uuid.uuid4())
    assert (
        call(
            api,
            emu,
            "POST",
            "session",
            json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": sid},
        ).status_code
        == 201
    )
    token = emu.state.session(sid).csrf_token
    ws = websocket.create_connection(
        f"wss://localhost:{emu.hub_port}/portal/app/abc?qlik-csrf-token={token}",
        header=[f"Cookie: X-Qlik-Session-portal={sid}"],
        origin=emu.hub_url,
        timeout=5,
        sslopt={"ca_certs": str(certs / "root.pem")},
    )
    try:
        assert "jdoe" in ws.recv()
        emu.crash()
        # no OnSessionClosed/LoggedOut notice: the connection just dies
        with pytest.raises(
            (websocket.WebSocketConnectionClosedException, ConnectionError, OSError)
        ):
            while True:
                msg = ws.recv()
                assert "OnSession" not in msg, msg
                if not msg:
                    raise websocket.WebSocketConnectionClosedException("closed")
    finally:
        ws.close()


def test_other_faults_wait_for_the_restart(emu):
    emu.crash()
    with pytest.raises(ConfigurationError, match="restart"):
        emu.inject("error")
    emu.clear_faults("qps")  # clearing a crash on any port restarts the whole node
    assert emu.faults == {} and not _refused(emu.hub_port)


def test_a_crashed_node_frees_the_users_site_wide_session_count(certs):
    with EmulatorCluster(
        2, certs_dir=certs, max_sessions_per_user=2, virtual_proxies=[VirtualProxy("portal")]
    ) as site:
        qps = QpsClient(site.qps_urls, site.certs_dir, virtual_proxy="portal", timeout=1.0)
        try:
            qps.add_session(USER, str(uuid.uuid4()))
            qps.add_session(USER, str(uuid.uuid4()))
            assert sum(len(n.state.sessions()) for n in site.nodes) == 2
            crashed = next(n for n in site.nodes if n.state.sessions())
            before = sum(len(n.state.sessions()) for n in site.nodes)
            crashed.crash()
            # the sessions that lived on the dead node count no more: new ones fit
            for _ in range(before - sum(len(n.state.sessions()) for n in site.nodes)):
                qps.add_session(USER, str(uuid.uuid4()))
        finally:
            qps.close()


def test_client_sees_a_crashed_single_node_as_a_connection_error(emu):
    qps = QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal", timeout=1.0)
    try:
        emu.crash()
        with pytest.raises(QpsConnectionError):
            qps.request_ticket(USER)
        emu.restart()
        assert qps.request_ticket(USER).ticket
    finally:
        qps.close()


def test_cli_crash_and_restart_from_stdin(certs):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qlikauth.emulator",
            "--certs",
            str(certs),
            "--qps-port",
            "0",
            "--hub-port",
            "0",
            "--virtual-proxy",
            "prefix=portal",
            "--control",
            "stdin",
            "--log-level",
            "WARNING",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines: list[str] = []
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        url = next(x.split("QPS API:")[1].split()[0] for x in lines if "QPS API:" in x)
        port = int(url.rsplit(":", 1)[1])
        qps = QpsClient(url, certs, virtual_proxy="portal", timeout=2.0)

        def say(command: str) -> str:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().strip()

        sid = str(uuid.uuid4())
        qps.add_session(USER, sid)
        assert say("crash") == "ok crash"
        assert _refused(port)
        assert say("faults") == "ok faults qps crash, hub crash"
        assert say("restart") == "ok restart"
        assert qps.get_session(sid) is None
        assert say("fault both crash") == "ok fault both crash"
        assert say("clear") == "ok clear both"
        assert qps.request_ticket(USER).ticket
        qps.close()
    finally:
        proc.terminate()
        proc.wait(10)
