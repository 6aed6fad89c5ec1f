"""Site-wide behaviour of an EmulatorCluster: the parallel-session limit counts every node."""

from __future__ import annotations

import http.client
import ssl
import uuid

import pytest
from emu_helpers import call, ticket

from qlikauth import QlikUser, QpsClient
from qlikauth.emulator import EmulatorCluster, VirtualProxy
from qlikauth.exceptions import QpsError


def test_five_sessions_per_user_across_the_site(certs, browser, api):
    with EmulatorCluster(2, certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as site:
        user = QlikUser("ACME", "jdoe")
        for i in range(5):
            QpsClient(site.qps_urls[i % 2], certs, virtual_proxy="portal").add_session(user)
        assert len(site[0].state.sessions()) == 3 and len(site[1].state.sessions()) == 2
        # the sixth, on either node, through the API ...
        with pytest.raises(QpsError):
            QpsClient(site.qps_urls[1], certs, virtual_proxy="portal").add_session(user)
        # ... and at the hub, where Qlik shows it
        page = browser.get(f"{site[0].hub_url_for('portal')}?qlikTicket={ticket(api, site[0])}")
        assert page.status_code == 403 and "too many sessions active in parallel" in page.text
        # ending one anywhere frees a place anywhere
        site[0].state.end_session(site[0].state.sessions()[0].session_id)
        sid = str(uuid.uuid4())
        assert (
            call(
                api,
                site[1],
                "POST",
                "session",
                json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": sid},
            ).status_code
            == 201
        )


def test_qps_port_serves_any_host_name(certs):
    # QPS answers whatever name the caller used (a load balancer's, an address): the mutual-TLS
    # client certificate is its check, not the Host header.
    with EmulatorCluster(1, certs_dir=certs) as site:
        ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
        conn = http.client.HTTPSConnection("localhost", site[0].qps_port, context=ctx, timeout=5)
        try:
            for host in (
                "qlik-lb.example.com",
                f"localhost:{site[0].qps_port}",
                f"127.0.0.1:{site[0].qps_port}",
            ):
                conn.request(
                    "GET",
                    "/qps/alive?xrfkey=abcdefghijklmnop",
                    headers={"Host": host, "X-Qlik-Xrfkey": "abcdefghijklmnop"},
                )
                r = conn.getresponse()
                r.read()
                assert r.status == 200, host
        finally:
            conn.close()
