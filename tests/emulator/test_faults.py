"""Faults on demand: each kind does what a failing node does, and QpsClient copes with it.

Real TLS and real sockets throughout; the faults are switched while the emulator runs.
"""

from __future__ import annotations

import socket
import ssl

import pytest
import requests
from emu_helpers import call

from qlikauth import QlikUser, QpsClient
from qlikauth.emulator import Emulator, EmulatorCluster, Fault, VirtualProxy
from qlikauth.exceptions import (
    ConfigurationError,
    QpsConnectionError,
    QpsHTTPError,
    QpsTimeout,
    QpsTLSError,
)

USER = QlikUser("ACME", "jdoe")


@pytest.fixture
def emu(certs):
    with Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as e:
        yield e


@pytest.fixture
def cluster(certs):
    with EmulatorCluster(2, certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as c:
        yield c


def _client(c, **kw) -> QpsClient:
    return QpsClient(
        c.qps_urls, c.certs_dir, virtual_proxy="portal", timeout=kw.pop("timeout", 1.0), **kw
    )


# -- each fault on the wire ---------------------------------------------------------------------
def test_refuse_closes_the_port_and_clearing_listens_again(emu, api):
    emu.inject("refuse")
    assert emu.faults == {"qps": Fault("refuse")}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", emu.qps_port), timeout=2).close()
    emu.clear_faults()
    assert emu.faults == {}
    assert call(api, emu, "GET", "alive", prefix="").json() is True


def test_error_answers_the_status(emu, api):
    with emu.fault("error", status=502):
        assert (
            call(api, emu, "POST", "ticket", json={"UserDirectory": "A", "UserId": "b"}).status_code
            == 502
        )
    assert emu.state.tickets_issued == 0
    assert call(api, emu, "GET", "alive", prefix="").status_code == 200


def test_drop_resets_after_reading_and_hang_never_answers(emu, api):
    with emu.fault("drop"), pytest.raises(requests.exceptions.ConnectionError):
        call(api, emu, "GET", "alive", prefix="")
    with emu.fault("hang"), pytest.raises(requests.exceptions.ReadTimeout):
        api.get(
            f"{emu.qps_url}/qps/alive?xrfkey=abcdefghijklmnop",
            headers={"X-Qlik-Xrfkey": "abcdefghijklmnop"},
            timeout=(5, 0.5),
        )
    assert emu.fault_hits() == 2
    assert emu.state.qps_requests == 0  # neither reached the QPS API
    assert call(api, emu, "GET", "alive", prefix="").json() is True


def test_slow_answers_late_but_answers(emu, api):
    with emu.fault("slow", seconds=0.3):
        assert call(api, emu, "GET", "alive", prefix="").json() is True
    assert emu.fault_hits() == 1


def test_hub_port_faults_are_separate(emu, browser, api):
    with emu.fault("error", port="hub"):
        assert browser.get(emu.hub_url_for("portal"), timeout=5).status_code == 503
        assert call(api, emu, "GET", "alive", prefix="").status_code == 200


def test_a_fault_holds_at_most_max_hang_seconds_as_the_docs_say():
    from pathlib import Path

    from qlikauth.emulator.faults import MAX_HANG

    assert MAX_HANG == 600
    Fault("hang", seconds=MAX_HANG)
    for kind in ("hang", "slow"):
        with pytest.raises(ConfigurationError, match="between 0 and 600"):
            Fault(kind, seconds=MAX_HANG + 1)
    doc = (Path(__file__).parents[2] / "docs" / "emulator.md").read_text(encoding="utf-8")
    assert f"at most {MAX_HANG:g} s" in doc and f"at most {MAX_HANG:g})" in doc


@pytest.mark.parametrize(
    ("kind", "port"), [("hang", "qps"), ("slow", "qps"), ("hang", "hub"), ("slow", "hub")]
)
def test_a_client_giving_up_during_a_fault_logs_no_error(certs, caplog, kind, port):
    import logging
    import time

    caplog.set_level(logging.WARNING)
    with Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as e:
        e.inject(kind, port=port, seconds=None if kind == "hang" else 0.3)
        ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
        with (
            socket.create_connection(
                ("127.0.0.1", e.qps_port if port == "qps" else e.hub_port), timeout=5
            ) as raw,
            ctx.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            tls.sendall(
                b"GET /qps/alive?xrfkey=abcdefghijklmnop HTTP/1.1\r\nHost: localhost\r\n"
                b"X-Qlik-Xrfkey: abcdefghijklmnop\r\n\r\n"
            )
            time.sleep(0.1)  # the request is held ...
        time.sleep(0.5)  # ... the client has gone; a slow answer comes to nobody
        assert e.fault_hits(port) == 1
    # ... and the node stops while a hang still holds the request
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def test_unknown_fault_and_port_are_refused(emu):
    with pytest.raises(ConfigurationError, match="unknown fault"):
        emu.inject("explode")
    with pytest.raises(ConfigurationError, match="port"):
        emu.inject("hang", port="4242")
    with pytest.raises(ConfigurationError, match="5xx"):
        emu.inject("error", status=404)


def _handshake(emu, certs, *, client_cert=True, port=None):
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    if client_cert:
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    with (
        socket.create_connection(("127.0.0.1", port or emu.qps_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            b"GET /qps/alive?xrfkey=abcdefghijklmnop HTTP/1.1\r\nHost: localhost\r\n"
            b"X-Qlik-Xrfkey: abcdefghijklmnop\r\n\r\n"
        )
        return tls.recv(4096)


@pytest.mark.parametrize(
    "kind,error",
    [
        ("wrong-host", "Hostname mismatch|doesn't match"),
        ("expired-cert", "certificate has expired"),
        ("untrusted-cert", "unable to get local issuer certificate|self.signed"),
        ("client-ca", "unknown ca|UNKNOWN_CA"),
    ],
)
def test_tls_faults_fail_the_handshake_as_a_real_server_would(emu, certs, kind, error):
    assert _handshake(emu, certs).startswith(b"HTTP/1.1 200")
    with emu.fault(kind):
        with pytest.raises(ssl.SSLError, match=error):
            _handshake(emu, certs)
    assert _handshake(emu, certs).startswith(b"HTTP/1.1 200")


def test_tls_fault_ends_pooled_connections(emu):
    qps = QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal", timeout=2.0)
    qps.request_ticket(USER)
    with emu.fault("untrusted-cert"), pytest.raises(QpsTLSError):
        qps.request_ticket(USER)
    assert qps.request_ticket(USER).ticket
    qps.close()


# -- QpsClient under each fault -----------------------------------------------------------------
REQUEST_FAULTS = ["refuse", "hang", "error", "drop"]
TLS_FAULTS = ["wrong-host", "expired-cert", "untrusted-cert", "client-ca"]


@pytest.mark.parametrize("kind", REQUEST_FAULTS + TLS_FAULTS)
def test_ticket_request_fails_over_to_the_healthy_node(cluster, kind):
    qps = _client(cluster)
    cluster[0].inject(kind)
    ticket = qps.request_ticket(USER)
    assert ticket.node == cluster.qps_urls[1]
    assert cluster[0].state.tickets_issued == 0 and cluster[1].state.tickets_issued == 1
    qps.close()


@pytest.mark.parametrize("kind", ["refuse", "slow"] + TLS_FAULTS)
def test_one_sign_in_makes_exactly_one_session(cluster, kind):
    qps = _client(cluster, timeout=2.0)
    cluster[0].inject(kind, seconds=0.2)
    session = qps.add_session(USER)
    everywhere = cluster[0].state.sessions() + cluster[1].state.sessions()
    assert [s.session_id for s in everywhere] == [session.session_id]
    qps.close()


@pytest.mark.parametrize("kind", ["hang", "drop"])
def test_a_session_request_that_may_have_landed_is_never_sent_twice(cluster, kind):
    # The node read the POST and then hung / reset: QpsClient cannot know whether it landed,
    # asks, and without an answer gives up rather than risk a second session elsewhere.
    qps = _client(cluster, timeout=0.5)
    cluster[0].inject(kind)
    try:
        session = qps.add_session(USER)
    except (QpsTimeout, QpsConnectionError):
        session = None
    everywhere = cluster[0].state.sessions() + cluster[1].state.sessions()
    assert len(everywhere) <= 1
    if session is not None:
        assert [s.session_id for s in everywhere] == [session.session_id]
    qps.close()


def test_error_on_session_request_is_reported(cluster):
    qps = _client(cluster)
    cluster[0].inject("error", status=503)
    try:
        session = qps.add_session(USER)
    except QpsHTTPError as exc:
        assert exc.status_code == 503
        session = None
    everywhere = cluster[0].state.sessions() + cluster[1].state.sessions()
    assert [s.session_id for s in everywhere] == ([session.session_id] if session else [])
    qps.close()


def test_each_tls_fault_has_its_own_message(emu):
    messages = {}
    for kind in TLS_FAULTS:
        qps = QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal", timeout=2.0)
        with emu.fault(kind), pytest.raises(QpsTLSError) as info:
            qps.request_ticket(USER)
        messages[kind] = str(info.value)
        qps.close()
    assert "not issued to" in messages["wrong-host"]
    assert "expired" in messages["expired-cert"]
    assert "not signed by root.pem" in messages["untrusted-cert"]
    assert "refused our client certificate" in messages["client-ca"]
    assert len(set(messages.values())) == len(TLS_FAULTS)


# -- command line -------------------------------------------------------------------------------
def test_cli_starts_with_a_fault_and_switches_them_from_stdin(certs):
    import subprocess
    import sys

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
            "--fault",
            "qps:error,status=502",
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
        lines = []
        while not lines or "Press Ctrl-C" not in lines[-1]:
            line = proc.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert any("fault on qps: error 502" in x for x in lines)
        url = next(x.split("QPS API:")[1].split()[0] for x in lines if "QPS API:" in x)
        qps = QpsClient(url, certs, virtual_proxy="portal", timeout=2.0)
        with pytest.raises(QpsHTTPError) as info:
            qps.request_ticket(USER)
        assert info.value.status_code == 502

        def say(command: str) -> str:
            proc.stdin.write(command + "\n")
            proc.stdin.flush()
            return proc.stdout.readline().strip()

        assert say("fault hub drop") == "ok fault hub drop"
        assert say("faults") == "ok faults qps error 502, hub drop"
        assert say("fault explode").startswith("error unknown fault")
        assert say("clear qps") == "ok clear qps"
        assert qps.request_ticket(USER).ticket
        qps.close()
    finally:
        proc.terminate()
        proc.wait(10)
