"""The serving helper (uvicorn over a given SSLContext, in a thread) and the emulator extra."""

from __future__ import annotations

import socket
import ssl

import pytest

from qlikauth.emulator.serving import BackgroundServer


async def _hello(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"hello {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _server_context(certs, *, require_client: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server_key.pem")
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(certs / "root.pem"))
    return ctx


def _get(port, certs, path="/x", *, client_cert=True) -> bytes:
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    if client_cert:
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


def test_serves_an_asgi_app_over_the_given_context_and_stops_cleanly(certs):
    connects = []
    srv = BackgroundServer(_hello, _server_context(certs, require_client=True), name="t",
                           on_connect=lambda: connects.append(1))
    with srv:
        out = _get(srv.port, certs, "/a/b")
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello /a/b")
        assert connects == [1]
        # mutual TLS as the context says: no client certificate, an alert (not a bare close)
        with pytest.raises(ssl.SSLError, match="certificate required|CERTIFICATE_REQUIRED"):
            _get(srv.port, certs, client_cert=False)
        assert connects == [1]
    assert not srv.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    srv.stop()  # idempotent


def test_refuse_connections_and_listen_again_on_the_same_port(certs):
    with BackgroundServer(_hello, _server_context(certs, require_client=False), name="t") as srv:
        port = srv.port
        srv.refuse_connections()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        srv.refuse_connections(False)
        assert _get(port, certs, client_cert=False).startswith(b"HTTP/1.1 200")
