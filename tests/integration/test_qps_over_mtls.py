"""The QPS client over real mutual TLS against the emulator: tickets, sessions, nodes, failures."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from _support import free_port_number
from tls_server import answer, issue_server_cert

from qlikauth import (
    QlikUser,
    QpsClient,
    QpsConnectionError,
    QpsForbidden,
    QpsHTTPError,
    QpsNotFound,
    QpsTimeout,
    QpsTLSError,
    QpsTooManySessions,
    SessionAuthenticator,
    TicketAuthenticator,
)
from qlikauth.certgen import generate_certificates
from qlikauth.emulator import Emulator, VirtualProxy

USER = QlikUser("ACME", "jdoe", [("group", "Sales"), ("group", "Finance"), ("email", "")])


@pytest.fixture(scope="module")
def cert_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    generate_certificates(d, ["localhost", "127.0.0.1"])
    return d


@pytest.fixture(scope="module")
def node1(cert_dir):
    with Emulator(
        certs_dir=cert_dir, virtual_proxies=[VirtualProxy("portal", method="ticket")]
    ) as emu:
        yield emu


@pytest.fixture(scope="module")
def node2(cert_dir):
    with Emulator(
        certs_dir=cert_dir, virtual_proxies=[VirtualProxy("portal", method="ticket")]
    ) as emu:
        yield emu


def _browser(cert_dir) -> requests.Session:
    """A browser stand-in that verifies the hub against root.pem.

    trust_env is off because requests lets $REQUESTS_CA_BUNDLE override Session.verify.
    """
    s = requests.Session()
    s.verify = str(cert_dir / "root.pem")
    s.trust_env = False
    return s


@pytest.fixture
def hub(cert_dir):
    s = _browser(cert_dir)
    yield s
    s.close()


def _redeem(hub, url):
    """Follow a ticket redirect like a browser; return the hub's JSON view of who is signed in."""
    r = hub.get(url, allow_redirects=True, headers={"Accept": "application/json"})
    assert r.status_code == 200, r.text[:300]
    return r.json()


def test_ticket_redeemed_at_the_hub_with_attributes(node1, cert_dir, hub):
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal") as qps:
        auth = TicketAuthenticator(qps, hub_url=node1.hub_url_for("portal"))
        redirect = auth.login(USER)
    assert "qlikTicket=" in redirect.location
    seen = _redeem(hub, redirect.location)
    assert seen["userDirectory"] == "ACME" and seen["userId"] == "jdoe"
    assert seen["attributes"] == [{"group": "Sales"}, {"group": "Finance"}, {"email": ""}]
    # single use: the same ticket URL signs nobody in a second time
    fresh = _browser(cert_dir)
    again = fresh.get(redirect.location, allow_redirects=False)
    # no module URI on this proxy: Qlik's internal module (the form login for this User-Agent)
    assert (
        again.status_code == 302
        and "/portal/internal_forms_authentication/" in again.headers["Location"]
    )
    assert not any(c.name.startswith("X-Qlik-Session") for c in fresh.cookies)


def test_hundred_tickets_use_one_connection(node1, cert_dir):
    before = node1.state.connections_accepted
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal") as qps:
        tickets = {qps.request_ticket(USER).ticket for _ in range(100)}
    assert len(tickets) == 100
    assert node1.state.connections_accepted - before == 1


def test_failover_when_first_node_is_down(node2, cert_dir, hub):
    dead = f"https://localhost:{free_port_number()}"
    with QpsClient([dead, node2.qps_url], cert_dir, virtual_proxy="portal", timeout=2) as qps:
        t = qps.request_ticket(USER)
        assert t.node == node2.qps_url
        auth = TicketAuthenticator(qps, hub_url=node2.hub_url_for("portal"))
        seen = _redeem(hub, auth.login(USER).location)
        assert seen["userId"] == "jdoe"
        alive = qps.alive()
    assert alive == {dead: False, node2.qps_url: True}


def test_ticket_only_redeems_on_its_node(node1, node2, cert_dir):
    with QpsClient([node1.qps_url, node2.qps_url], cert_dir, virtual_proxy="portal") as qps:
        t = qps.request_ticket(USER)
    assert t.node == node1.qps_url
    s = _browser(cert_dir)
    r = s.get(f"{node2.hub_url_for('portal')}?qlikTicket={t.ticket}", allow_redirects=False)
    assert r.status_code == 302 and "internal_forms_authentication" in r.headers["Location"]


def test_sessions_across_two_nodes(node1, node2, cert_dir):
    user = QlikUser("ACME", "sessions-user", [("group", "X")])
    with (
        QpsClient([node1.qps_url, node2.qps_url], cert_dir, virtual_proxy="portal") as q1,
        QpsClient([node2.qps_url, node1.qps_url], cert_dir, virtual_proxy="portal") as q2,
    ):
        a = q1.add_session(user)
        b = q2.add_session(user)
        assert a.node == node1.qps_url and b.node == node2.qps_url
        assert q1.get_session(b.session_id).node == node2.qps_url  # found on the other node
        listed = q1.user_sessions(user)
        assert {s.session_id for s in listed} == {a.session_id, b.session_id}
        assert q1.delete_session(a.session_id) is True
        assert q1.delete_session(a.session_id) is False
        assert q1.get_session(a.session_id) is None
        ended = q1.logout_user(user)
        assert [s.session_id for s in ended] == [b.session_id]
        assert q1.user_sessions(user) == []


def test_session_cookie_signs_the_browser_in(node1, cert_dir, hub):
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal") as qps:
        auth = SessionAuthenticator(qps, cookie_domain=None)
        cookie = auth.login(QlikUser("ACME", "cookie-user", [("group", "G")]))
        # (requests' cookie jar will not send a Domain=localhost cookie: send it as a browser would)
        sent = {"Cookie": f"{cookie.name}={cookie.value}", "Accept": "application/json"}
        r = hub.get(node1.hub_url_for("portal"), headers=sent)
        assert r.status_code == 200 and r.json()["userId"] == "cookie-user"
        auth.logout(cookie.value)
        r = hub.get(f"{node1.hub_url}/portal/qps/user", headers={"Cookie": sent["Cookie"]})
        assert r.json() == {"session": "inactive"}


def test_five_sessions_per_user(node1, cert_dir):
    user = QlikUser("ACME", "busy")
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal") as qps:
        for _ in range(5):
            qps.add_session(user)
        with pytest.raises(QpsTooManySessions, match="too many sessions"):
            qps.add_session(user)
        assert len(qps.logout_user(user)) == 5
        qps.add_session(user)
        qps.logout_user(user)


def test_module_flow_round_trip(cert_dir, hub):
    vp = VirtualProxy("portal", method="ticket", module_uri="https://portal.example/qlik/module")
    with (
        Emulator(certs_dir=cert_dir, virtual_proxies=[vp]) as emu,
        QpsClient(emu.qps_url, cert_dir, virtual_proxy="portal") as qps,
    ):
        wanted = f"{emu.hub_url}/portal/sense/app/abc?sheet=1"
        r = hub.get(wanted, allow_redirects=False)
        assert r.status_code == 302
        loc = urlsplit(r.headers["Location"])
        assert f"{loc.scheme}://{loc.netloc}{loc.path}" == "https://portal.example/qlik/module"
        q = {k: v[0] for k, v in parse_qs(loc.query).items()}
        assert q["proxyRestUri"] == emu.rest_uri_for("portal")
        auth = TicketAuthenticator(qps, hub_url=emu.hub_url_for("portal"))
        back = auth.module_login(USER, q["proxyRestUri"], q["targetId"])
        assert back.location.startswith(wanted + "&qlikTicket=")
        r = hub.get(back.location, allow_redirects=False)
        assert r.status_code == 200 and "X-Qlik-Session-portal=" in r.headers["Set-Cookie"]
        me = hub.get(f"{emu.hub_url}/portal/qps/user").json()
        assert me["userId"] == "jdoe"


def test_wrong_prefix_is_not_found(node1, cert_dir):
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="nosuchproxy") as qps:
        with pytest.raises(QpsNotFound, match="virtual proxy prefix"):
            qps.request_ticket(USER)


def test_untrusted_server(node1, tmp_path):
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    with QpsClient(node1.qps_url, other, virtual_proxy="portal") as qps:
        with pytest.raises(QpsTLSError, match="not signed by root.pem"):
            qps.request_ticket(USER)


def test_hostname_mismatch(tmp_path):
    d = tmp_path / "only-localhost"
    generate_certificates(d, ["localhost"])
    with Emulator(certs_dir=d) as emu:
        port = urlsplit(emu.qps_url).port
        with QpsClient(f"https://127.0.0.1:{port}", d) as qps:
            with pytest.raises(QpsTLSError, match="not issued to"):
                qps.request_ticket(USER)


def test_client_certificate_rejected(node1, cert_dir, tmp_path):
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    # The right root (so the server is trusted) but a client certificate from another site.
    shutil.copy(cert_dir / "root.pem", other / "root.pem")
    with QpsClient(node1.qps_url, other, virtual_proxy="portal") as qps:
        with pytest.raises(QpsTLSError, match="refused our client certificate"):
            qps.request_ticket(USER)


def test_silent_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        port = listener.getsockname()[1]
        with tempfile.TemporaryDirectory() as tmp:
            generate_certificates(tmp, ["localhost"])
            with QpsClient(f"https://localhost:{port}", tmp, timeout=0.5) as qps:
                with pytest.raises(QpsTimeout) as info:
                    qps.request_ticket(USER)
        assert "timed out" in str(info.value) or "did not answer" in str(info.value)
    finally:
        stop.set()
        t.join()
        listener.close()
        for c in held:
            c.close()


def test_reconnects_after_the_node_restarts(cert_dir):
    """An idle pooled connection the server closed is noticed and replaced, not failed on."""
    first = Emulator(certs_dir=cert_dir, virtual_proxies=[VirtualProxy("portal")]).start()
    port = urlsplit(first.qps_url).port
    with QpsClient(first.qps_url, cert_dir, virtual_proxy="portal") as qps:
        qps.request_ticket(USER)
        first.stop()
        with Emulator(
            certs_dir=cert_dir, qps_port=port, virtual_proxies=[VirtualProxy("portal")]
        ) as second:
            t = qps.request_ticket(USER)
            assert t.node == second.qps_url
            assert second.state.connections_accepted == 1


def test_concurrent_tickets_share_a_bounded_pool(node1, cert_dir):
    before = node1.state.connections_accepted
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal", pool_maxsize=4) as qps:
        results: list[str] = []

        def work():
            for _ in range(25):
                results.append(qps.request_ticket(USER).ticket)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(set(results)) == 100
    assert node1.state.connections_accepted - before <= 4


# -- the one transport: what it does over real sockets ------------------------------------------
#: A TCP connect to a multicast address fails at once with ENETUNREACH on Linux (no packet
#: leaves the machine): an OSError that is neither ConnectionRefusedError nor a timeout.
UNREACHABLE = "https://224.0.0.1:4243"


@pytest.mark.parametrize("first", ["unreachable", "refused"])
def test_add_session_fails_over_from_a_node_it_could_not_connect_to(node2, cert_dir, first):
    """Nothing reached node 1, so the session is made on node 2 (and the error says why)."""
    dead = UNREACHABLE if first == "unreachable" else f"https://localhost:{free_port_number()}"
    user = QlikUser("ACME", f"failover-{first}")
    with QpsClient([dead, node2.qps_url], cert_dir, virtual_proxy="portal", timeout=2) as qps:
        s = qps.add_session(user)
        assert s.node == node2.qps_url
        assert qps.get_session(s.session_id, node=node2.qps_url) is not None
        assert qps.delete_session(s.session_id) is True
    with QpsClient(dead, cert_dir, virtual_proxy="portal", timeout=2) as only_dead:
        with pytest.raises(QpsConnectionError, match="cannot reach") as info:
            only_dead.add_session(user)
    assert type(info.value) is QpsConnectionError and info.value.sent is False
    assert ("network is unreachable" if first == "unreachable" else "connection refused") in str(
        info.value
    )


def test_pool_bound_holds_with_more_threads_than_connections(node1, cert_dir):
    """8 threads share 2 connections: never more are opened, every caller gets its ticket."""
    before = node1.state.connections_accepted
    results: list[str] = []
    failures: list[BaseException] = []
    with QpsClient(
        node1.qps_url, cert_dir, virtual_proxy="portal", pool_maxsize=2, timeout=10
    ) as qps:
        start = threading.Barrier(8)

        def work():
            start.wait()
            try:
                for _ in range(10):
                    results.append(qps.request_ticket(USER).ticket)
            except BaseException as exc:  # reported below
                failures.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == [] and len(set(results)) == 80
    assert node1.state.connections_accepted - before <= 2


def test_redirects_are_not_followed_on_the_real_transport(cert_dir, tls_server):
    """A 3xx comes back as an error naming it; the Location is never visited."""
    elsewhere = tls_server(cert_dir, lambda req: answer(req, 201, b'{"Ticket": "stolen"}'))
    redirector = tls_server(
        cert_dir,
        lambda req: answer(req, 307, headers={"Location": f"{elsewhere.url}/qps/portal/ticket"}),
    )
    with QpsClient(redirector.url, cert_dir, virtual_proxy="portal") as qps:
        with pytest.raises(QpsHTTPError, match="answered 307 .*not followed") as info:
            qps.request_ticket(USER)
    assert type(info.value) is QpsHTTPError and info.value.status_code == 307
    assert redirector.requests == 1 and elsewhere.connections == 0


@pytest.fixture
def environment_says_otherwise(monkeypatch, tmp_path, tls_server):
    """Every environment variable requests or curl would read, pointing somewhere wrong.

    The proxy is a listener that answers nothing and counts who connects.
    """
    proxy = socket.socket()
    proxy.bind(("127.0.0.1", 0))
    proxy.listen(16)
    proxy.settimeout(0)
    proxy_url = f"http://127.0.0.1:{proxy.getsockname()[1]}"
    for name in (
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.setenv(name, proxy_url)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    other = tmp_path / "other-site"
    generate_certificates(other, ["localhost"])
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        monkeypatch.setenv(name, str(other / "root.pem"))

    def proxy_connections() -> int:
        n = 0
        while True:
            try:
                conn, _ = proxy.accept()
            except (BlockingIOError, OSError):
                return n
            conn.close()
            n += 1

    yield proxy_connections, other
    proxy.close()


def test_no_proxy_and_no_ca_bundle_from_the_environment(
    node1, cert_dir, environment_says_otherwise
):
    """With HTTPS_PROXY and REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE set, calls still go straight to the
    node and root.pem stays the only trust anchor, in both directions."""
    proxy_connections, other = environment_says_otherwise
    with QpsClient(node1.qps_url, cert_dir, virtual_proxy="portal") as qps:
        assert (
            qps.request_ticket(USER).node == node1.qps_url
        )  # not through the proxy, not the other CA
    # The environment's bundle (the other site's root) must not add trust: a client whose
    # root.pem does not sign the node is refused, whatever the environment says.
    shutil.copy(cert_dir / "root.pem", other / "root.pem")  # now the env bundle trusts node1
    wrong = other.parent / "wrong-root"
    generate_certificates(wrong, ["localhost"])
    shutil.copy(cert_dir / "client.pem", wrong / "client.pem")
    shutil.copy(cert_dir / "client_key.pem", wrong / "client_key.pem")
    with QpsClient(node1.qps_url, wrong, virtual_proxy="portal") as qps:
        with pytest.raises(QpsTLSError, match="not signed by root.pem"):
            qps.request_ticket(USER)
    assert proxy_connections() == 0


def test_a_caller_past_the_pool_bound_waits_then_is_told_why(cert_dir, tls_server):
    """pool_maxsize=1 and the one connection busy: the next caller waits up to the connect
    timeout, then gets a QpsTimeout naming pool_maxsize (nothing was sent)."""
    release = threading.Event()

    def slow(req):
        release.wait(10)
        answer(req, 201, b'{"Ticket": "slow"}')

    server = tls_server(cert_dir, slow)
    with QpsClient(
        server.url,
        cert_dir,
        virtual_proxy="portal",
        pool_maxsize=1,
        connect_timeout=0.3,
        timeout=10,
    ) as qps:
        first: list[str] = []
        busy = threading.Thread(target=lambda: first.append(qps.request_ticket(USER).ticket))
        busy.start()
        try:
            for _ in range(200):  # until the first call holds the connection at the server
                if server.requests:
                    break
                threading.Event().wait(0.02)
            with pytest.raises(
                QpsTimeout, match="pooled connections .* stayed busy .* raise pool_maxsize"
            ) as info:
                qps.request_ticket(USER)
            assert info.value.sent is False and server.requests == 1
        finally:
            release.set()
            busy.join()
        assert first == ["slow"]
        assert qps.request_ticket(USER).ticket == "slow"  # the place was given back
    assert server.connections == 1


# -- TLS diagnoses over real handshakes (read from OpenSSL's verify codes) -------------------------
def _ticket_server(cert_dir, tls_server, **odd):
    cert, key = issue_server_cert(
        cert_dir, cert_dir.parent / f"odd-{'-'.join(f'{k}{v}' for k, v in odd.items())}", **odd
    )
    return tls_server(
        cert_dir, lambda req: answer(req, 201, b'{"Ticket": "accepted"}'), cert=cert, key=key
    )


@pytest.mark.parametrize(
    ("odd", "says", "must_not_say"),
    [
        ({"start_days": 2}, r"is not valid yet .* check the clocks", "not signed by root.pem"),
        ({"start_days": -40, "valid_days": 10}, "has expired", "not signed by root.pem"),
        ({"san": False}, r"only in its Common Name \(CN\) is refused", "not signed by root.pem"),
        ({"server_auth": False}, "not meant for TLS servers", "not signed by root.pem"),
    ],
    ids=["not-yet-valid", "expired", "cn-only", "client-cert-as-server-cert"],
)
def test_server_certificate_problems_are_told_apart(cert_dir, tls_server, odd, says, must_not_say):
    """Each server certificate is signed by the right root.pem; what is wrong with it is named."""
    server = _ticket_server(cert_dir, tls_server, **odd)
    with QpsClient(server.url, cert_dir, virtual_proxy="portal") as qps:
        with pytest.raises(QpsTLSError, match=says) as info:
            qps.request_ticket(USER)
    assert must_not_say not in str(info.value)
    assert info.value.sent is False and server.requests == 0
    assert info.value.__cause__ is None  # the diagnosis stands alone (raised from None)


def test_a_proper_certificate_from_the_same_helper_is_accepted(cert_dir, tls_server):
    """The odd-certificate helper makes good ones too: the failures above are the oddities."""
    server = _ticket_server(cert_dir, tls_server)
    with QpsClient(server.url, cert_dir, virtual_proxy="portal") as qps:
        assert qps.request_ticket(USER).ticket == "accepted"


def test_an_answer_cut_short_is_a_broken_read_not_a_connect_failure(cert_dir, tls_server):
    """The node sends headers and part of the body, then closes: the request was handled, so the
    error says the connection broke while reading (sent), and the connection is not reused."""

    def short(req):
        length = int(req.headers.get("Content-Length") or 0)
        req.rfile.read(length)
        req.send_response(201)
        req.send_header("Content-Length", "100")
        req.end_headers()
        req.wfile.write(b'{"Ticket": ')
        req.close_connection = True

    server = tls_server(cert_dir, short)
    with QpsClient(server.url, cert_dir, virtual_proxy="portal") as qps:
        with pytest.raises(QpsConnectionError, match="broke while reading the answer") as info:
            qps.add_session(USER)
    assert type(info.value) is QpsConnectionError and info.value.sent is True
    # the POST, then the lookup add_session makes before anything else (cut short too): no retry
    assert server.requests == 2 and server.connections == 2


def test_the_hub_port_given_as_qps_port_says_so(node1, cert_dir):
    """A POST to the proxy's browser port gets Qlik's 'initial authentication request must be a
    GET request' 403: the error names the port mix-up instead of blaming the certificate."""
    with QpsClient(node1.hub_url.rstrip("/"), cert_dir, virtual_proxy="portal") as qps:
        with pytest.raises(
            QpsForbidden, match="browser \\(hub\\) port, not the QPS API. Use the QPS API port"
        ) as info:
            qps.request_ticket(USER)
    assert type(info.value) is QpsForbidden and info.value.status_code == 403
    assert "client certificate not trusted" not in str(info.value)


@pytest.mark.parametrize("fault, rounds", [("crash", 6), ("refuse", 20)])
def test_a_lookup_on_a_connection_the_node_dropped_is_retried_on_a_new_one(cert_dir, fault, rounds):
    # A node that crashed (or stopped taking connections) drops the kept-alive connection the
    # client pooled; its reset can arrive after the pool checked the connection and before the
    # answer. A lookup is harmless to repeat: it gets a new connection, which is refused, so
    # the caller learns nothing was sent (session mode then counts the remembered session as
    # gone instead of sending the browser back to the dead node). The race is timing: rounds.
    with (
        Emulator(certs_dir=cert_dir, virtual_proxies=[VirtualProxy("portal")]) as emu,
        QpsClient(emu.qps_url, cert_dir, virtual_proxy="portal") as qps,
    ):
        for i in range(rounds):
            sid = SessionAuthenticator(qps).login(QlikUser("ACME", f"dropped{i}")).value
            assert qps.get_session(sid, node=emu.qps_url) is not None  # the connection is pooled
            emu.inject(fault) if fault != "crash" else emu.crash()
            with pytest.raises(QpsConnectionError) as info:
                qps.get_session(sid, node=emu.qps_url)  # at once, as a browser's next request
            assert info.value.sent is False, info.value
            emu.clear_faults("both")
