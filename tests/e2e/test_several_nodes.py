"""Several nodes, end to end: a ticket is redeemed at the node that issued it (issue 9 §3).

Two emulated nodes, the Flask example portal with ``HUB_URL`` on node 1 and ``NODE_HUB_URLS``
for both; node 1 is stopped, the ticket comes from node 2 and real Chromium redeems it at
node 2's hub. Before NODE_HUB_URLS the integrations sent every ticket to ``HUB_URL``, so the
browser went to node 1, which is down (and could not redeem node 2's ticket anyway).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import sign_in

from qlikauth import QlikUser

pytestmark = pytest.mark.browser


@pytest.fixture
def cluster(certs_dir: Path, free_port: int) -> Any:
    from qlikauth.emulator import EmulatorCluster, VirtualProxy

    vp = VirtualProxy(
        prefix="portal", method="ticket", module_uri=f"http://localhost:{free_port}/qlik/module"
    )
    with EmulatorCluster(nodes=2, certs_dir=certs_dir, virtual_proxies=[vp]) as nodes:
        yield nodes


def test_ticket_redeemed_on_node_2_with_node_1_stopped(
    chromium: Any, cluster: Any, server_process: Any, free_port: int
) -> None:
    node1, node2 = cluster[0], cluster[1]
    hub1, hub2 = node1.hub_url_for("portal"), node2.hub_url_for("portal")
    env = {
        "PORTAL_PORT": str(free_port),
        "QLIKAUTH_QPS_NODES": ",".join(cluster.qps_urls),
        "QLIKAUTH_CERTS": str(cluster.certs_dir),
        "QLIKAUTH_VIRTUAL_PROXY": "portal",
        "QLIKAUTH_HUB_URL": hub1,
        "QLIKAUTH_NODE_HUB_URLS": f"{hub1},{hub2}",
    }
    server_process(
        [sys.executable, "examples/flask_portal/app.py"], free_port, env, ready_path="/login"
    )
    base = f"http://localhost:{free_port}"
    context = chromium.new_context()
    try:
        page = context.new_page()
        # both nodes up: the ticket comes from node 1 and is redeemed at node 1's hub
        sign_in(page, f"{base}/login", "alice")
        assert page.url.startswith(hub1) and page.text_content("#user") == "PORTAL\\alice"
        assert node1.state.sessions("portal", QlikUser("PORTAL", "alice"))
    finally:
        context.close()
    node1.stop()
    context = chromium.new_context()
    try:
        page = context.new_page()
        tickets: list[str] = []
        page.on(
            "request", lambda req: tickets.append(req.url) if "qlikTicket=" in req.url else None
        )
        sign_in(page, f"{base}/login", "bob")
        # node 1 is down: node 2 issued the ticket, and the browser redeemed it there
        assert tickets and all(t.startswith(hub2) for t in tickets), tickets
        assert page.url.startswith(hub2) and page.text_content("#user") == "PORTAL\\bob"
        assert [s.user.user_id for s in node2.state.sessions("portal")] == ["bob"]
        assert node2.state.tickets_issued == 1 and node2.state.tickets_redeemed == 1
        # a hub visit on node 2 without a session: node 2's module flow, the ticket from
        # node 2 again
        other = chromium.new_context()
        try:
            visit = other.new_page()
            visit.goto(hub2 + "stream/x")
            assert visit.url.startswith(f"{base}/login")
            sign_in(visit, visit.url, "carol")
            assert (
                visit.url.startswith(hub2 + "stream/x")
                and visit.text_content("#user") == "PORTAL\\carol"
            )
        finally:
            other.close()
    finally:
        context.close()
