"""The /qlik/diagnostics page: in Chromium against the emulator (directly, and through a gateway
that refuses websocket upgrades: the failure is named), and its report endpoint on Flask (what
is logged, what is refused). Django's endpoints: test_diagnostics_django.py (a live Playwright
loop and Django's async-safety checks do not share a module)."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from gateway import Gateway

from qlikauth import QlikUser, QpsClient
from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.web import diagnostics


def _site(certs_dir: Path, portal_tls: tuple[Path, Path], port: int, hub_via: Any = None):
    from flask import Flask
    from flask_qlikauth import QlikAuth
    from flask_qlikauth.diagnostics import diagnostics_blueprint
    from werkzeug.serving import make_server

    origin = f"https://localhost:{port}"
    vp = VirtualProxy(
        "portal",
        method="ticket",
        host_allow_list=("localhost",),
        additional_response_headers=(
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "qlik-csrf-token"),
        ),
    )
    emu = Emulator(certs_dir=certs_dir, virtual_proxies=[vp]).start()
    hub = emu.hub_url_for("portal")
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="test",
        QLIKAUTH_QPS_NODES=emu.qps_url,
        QLIKAUTH_CERTS=str(certs_dir),
        QLIKAUTH_VIRTUAL_PROXY="portal",
        QLIKAUTH_HUB_URL=hub if hub_via is None else hub_via(emu),
    )
    QlikAuth(app, user_loader=lambda: None)
    app.register_blueprint(diagnostics_blueprint())
    server = make_server(
        "127.0.0.1", port, app, threaded=True, ssl_context=(str(portal_tls[0]), str(portal_tls[1]))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return emu, server, origin


def _run_page(chromium: Any, emu: Any, origin: str) -> dict[str, tuple[str, str]]:
    with QpsClient(emu.qps_url, emu.certs_dir, virtual_proxy="portal") as qps:
        ticket = qps.request_ticket(QlikUser("ACME", "ann"))
    context = chromium.new_context()
    try:
        page = context.new_page()
        # Open Qlik once (as the portal would send the browser): the hub sets its session cookie.
        page.goto(f"{emu.hub_url_for('portal')}?qlikTicket={ticket.ticket}")
        page.goto(f"{origin}/qlik/diagnostics?hold=2")
        page.wait_for_selector("#done:not([hidden])", timeout=30_000)
        return {
            t: (
                page.get_attribute(f"#result-{t}", "data-status") or "",
                page.inner_text(f"#result-{t} .detail"),
            )
            for t in diagnostics.TESTS
        }
    finally:
        context.close()


@pytest.mark.browser
def test_every_test_passes_from_a_browser_with_a_qlik_session(
    chromium, certs_dir, portal_tls, free_port, caplog
):
    caplog.set_level(logging.INFO, logger="qlikauth.diagnostics")
    emu, server, origin = _site(certs_dir, portal_tls, free_port)
    try:
        results = _run_page(chromium, emu, origin)
    finally:
        server.shutdown()
        emu.stop()
    assert {t: s for t, (s, _) in results.items()} == {t: "ok" for t in diagnostics.TESTS}, results
    logged = [r.getMessage() for r in caplog.records if r.name == "qlikauth.diagnostics"]
    assert any("websocket=ok" in m and "Chrome" in m for m in logged), logged


@pytest.mark.browser
def test_a_gateway_refusing_websockets_is_named(chromium, certs_dir, portal_tls, free_port, caplog):
    caplog.set_level(logging.INFO, logger="qlikauth.diagnostics")
    gateways: list[Gateway] = []

    def through_gateway(emu: Any) -> str:
        gw = Gateway(emu.hub_port, certs_dir, client_ca=False, refuse_upgrades=True).__enter__()
        gateways.append(gw)
        return f"{gw.url}/portal/hub/"

    emu, server, origin = _site(certs_dir, portal_tls, free_port, hub_via=through_gateway)
    try:
        results = _run_page(chromium, emu, origin)
    finally:
        server.shutdown()
        for gw in gateways:
            gw.__exit__()
        emu.stop()
    assert results["hub"][0] == "ok" and results["csrf-token"][0] == "ok", results
    assert results["websocket"][0] == "fail", results
    assert "does not pass websockets" in results["websocket"][1]
    assert results["transfer"][0] == "ok"
    logged = [r.getMessage() for r in caplog.records if r.name == "qlikauth.diagnostics"]
    assert any("websocket=fail" in m and r"does not pass websockets" in m for m in logged), logged


def test_report_endpoint_on_flask_logs_and_refuses(certs_dir, caplog):
    from flask import Flask
    from flask_qlikauth import QlikAuth
    from flask_qlikauth.diagnostics import diagnostics_blueprint

    app = Flask(__name__)
    app.config.update(
        SECRET_KEY="t",
        QLIKAUTH_QPS_NODES="https://localhost:4243",
        QLIKAUTH_CERTS=str(certs_dir),
        QLIKAUTH_HUB_URL="https://localhost/portal/hub/",
    )
    QlikAuth(app, user_loader=lambda: None)
    app.register_blueprint(diagnostics_blueprint())
    client = app.test_client()
    page = client.get("/qlik/diagnostics?hold=5")
    assert page.status_code == 200 and b'"hold": 5.0' in page.data
    assert b'"proxy": "https://localhost/portal/"' in page.data
    body = json.dumps({"results": [{"test": "websocket", "status": "fail", "detail": "code 1006"}]})
    caplog.set_level(logging.INFO, logger="qlikauth.diagnostics")
    ok = client.post(
        "/qlik/diagnostics/report",
        data=body,
        content_type="application/json",
        headers={"Origin": "http://localhost", "User-Agent": "Phone/1.0"},
    )
    assert ok.status_code == 204
    assert any(
        "'Phone/1.0'" in r.getMessage() and "websocket=fail" in r.getMessage()
        for r in caplog.records
    )
    assert (
        client.post(
            "/qlik/diagnostics/report",
            data=body,
            content_type="application/json",
            headers={"Origin": "https://evil.example"},
        ).status_code
        == 403
    )
    assert (
        client.post(
            "/qlik/diagnostics/report", data="x" * 20000, headers={"Origin": "http://localhost"}
        ).status_code
        == 400
    )
    assert (
        client.post(
            "/qlik/diagnostics/report",
            data=json.dumps({"results": [{"test": "rm"}]}),
            headers={"Origin": "http://localhost"},
        ).status_code
        == 400
    )
    assert len(client.get("/qlik/diagnostics/payload").data) == diagnostics.PAYLOAD_BYTES


def test_page_escapes_its_configuration():
    text = diagnostics.diagnostics_page(
        "https://q.example/p/hub/</script><script>alert(1)", "/r", "/p"
    )
    assert "</script><script>alert(1)" not in text
    with pytest.raises(Exception, match="https"):
        diagnostics.diagnostics_page("http://q.example/hub/", "/r", "/p")
