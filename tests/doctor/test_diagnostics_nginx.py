"""The /qlik/diagnostics page in Chromium through the generated nginx front of header
authentication (`qlikauth nginx-config`): the hub, the CSRF token, the engine websocket and the
websocket kept open past an idle spell all pass through nginx, which decides who the browser is
by asking the portal (auth_request) and sets the identity header itself."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from _support import free_port_number
from nginx.helpers import NGINX, Nginx

from qlikauth import QlikUser
from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.nginx import generate_server_block
from qlikauth.web import diagnostics

pytestmark = [pytest.mark.nginx, pytest.mark.browser]

PREFIX = "hdr"
HEADER = "X-Portal-User"


def _portal(certs_dir: Path, portal_tls: tuple[Path, Path], port: int, hub: str) -> Any:
    from flask import Flask, redirect, request, session
    from flask_qlikauth import QlikAuth
    from flask_qlikauth.diagnostics import diagnostics_blueprint
    from werkzeug.serving import make_server

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        SESSION_COOKIE_SECURE=True,
        QLIKAUTH_QPS_NODES="https://localhost:4243",
        QLIKAUTH_CERTS=str(certs_dir),
        QLIKAUTH_VIRTUAL_PROXY=PREFIX,
        QLIKAUTH_HUB_URL=hub,
        QLIKAUTH_HEADER_NAME=HEADER,
        QLIKAUTH_HEADER_USER_DIRECTORY="PORTAL",
    )

    def user() -> QlikUser | None:
        name = session.get("user")
        return QlikUser("PORTAL", name) if name else None

    QlikAuth(app, user_loader=user)
    app.register_blueprint(diagnostics_blueprint())

    @app.get("/test-login")
    def login() -> Any:
        # The portal's own sign-in, reduced to what nginx's auth_request needs: a portal session.
        session["user"] = request.args["user"]
        return redirect("/qlik/diagnostics?hold=3")

    server = make_server(
        "127.0.0.1", port, app, threaded=True, ssl_context=(str(portal_tls[0]), str(portal_tls[1]))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_every_test_passes_through_the_generated_nginx(chromium, certs_dir, portal_tls, caplog):
    if NGINX is None:
        pytest.skip("nginx is not installed")
    caplog.set_level(logging.INFO, logger="qlikauth.diagnostics")
    portal_port, nginx_port = free_port_number(), free_port_number()
    origin = f"https://localhost:{portal_port}"
    vp = VirtualProxy(
        PREFIX,
        method="header-static",
        header_name=HEADER,
        header_user_directory="PORTAL",
        host_allow_list=("localhost",),
        additional_response_headers=(
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "qlik-csrf-token"),
        ),
    )
    emu = Emulator(certs_dir=certs_dir, virtual_proxies=[vp]).start()
    hub = f"https://localhost:{nginx_port}/{PREFIX}/hub/"
    server = _portal(certs_dir, portal_tls, portal_port, hub)
    # The front presents the portal's certificate (Chromium trusts it by pin); nginx verifies
    # the portal and the emulated node against the emulator's root.pem.
    block = generate_server_block(
        server_name="localhost",
        listen_host="127.0.0.1",
        listen_port=nginx_port,
        tls_cert=str(portal_tls[0]),
        tls_key=str(portal_tls[1]),
        portal_url=f"https://localhost:{portal_port}",
        portal_ca=str(certs_dir / "root.pem"),
        login_url=f"{origin}/test-login",
        header_name=HEADER,
        qps_nodes=[emu.hub_url],
        root_pem=str(certs_dir / "root.pem"),
        prefix=PREFIX,
    )
    front = Nginx(block, nginx_port)
    context = None
    try:
        front.start()
        context = chromium.new_context()
        page = context.new_page()
        page.goto(f"{origin}/test-login?user=ann")
        page.wait_for_selector("#done:not([hidden])", timeout=30_000)
        results = {
            t: (
                page.get_attribute(f"#result-{t}", "data-status") or "",
                page.inner_text(f"#result-{t} .detail"),
            )
            for t in diagnostics.TESTS
        }
        identities = {r.identity for r in emu.state.header_log_for(PREFIX)}
    finally:
        if context is not None:
            context.close()
        front.stop()
        server.shutdown()
        emu.stop()
    assert {t: s for t, (s, _) in results.items()} == {t: "ok" for t in diagnostics.TESTS}, (
        results,
        front.error_log(),
    )
    # Every request Qlik saw came through the front, with the identity the portal granted.
    assert identities == {"PORTAL\\ann"}, identities
    assert "still open after 3" in results["websocket-hold"][1]
    logged = [r.getMessage() for r in caplog.records if r.name == "qlikauth.diagnostics"]
    assert any("websocket=ok" in m and "websocket-hold=ok" in m for m in logged), logged
