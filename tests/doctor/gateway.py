"""A TLS-terminating gateway in front of an emulated QPS or hub port, as sites put load balancers
there.

It accepts TLS with the site's server certificate (requiring a client certificate from
``root.pem`` when ``client_ca`` is set), forwards each request over a new TLS connection to the
upstream port (presenting the QMC client certificate), and lets a test change what passes: the
request headers (``request_hook``), the answer's headers (``response_hook``), or refuse websocket
upgrades (``refuse_upgrades``), which is what some gateways and per-app VPNs do.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from qlikauth.certs import load_certificates


class Gateway:
    def __init__(
        self,
        upstream_port: int,
        certs_dir: Path,
        *,
        client_ca: bool = True,
        request_hook: Callable[[dict[str, str]], None] | None = None,
        response_hook: Callable[[list[tuple[str, str]]], list[tuple[str, str]]] | None = None,
        refuse_upgrades: bool = False,
    ) -> None:
        self.upstream_port = upstream_port
        upstream_ctx = load_certificates(certs_dir).client_ssl_context()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if refuse_upgrades and self.headers.get("Upgrade", "").lower() == "websocket":
                    self.send_response(400)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                if request_hook is not None:
                    request_hook(headers)
                conn = http.client.HTTPSConnection(
                    "localhost", gateway.upstream_port, context=upstream_ctx, timeout=10
                )
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out = [
                        (k, v)
                        for k, v in resp.getheaders()
                        if k.lower() not in ("connection", "transfer-encoding", "content-length")
                    ]
                finally:
                    conn.close()
                if response_hook is not None:
                    out = response_hook(out)
                self.send_response_only(resp.status)
                for k, v in out:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = _forward  # noqa: N815

        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(certs_dir / "server.pem", certs_dir / "server_key.pem")
        if client_ca:
            server_ctx.verify_mode = ssl.CERT_REQUIRED
            server_ctx.load_verify_locations(cafile=str(certs_dir / "root.pem"))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = server_ctx.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://localhost:{self.server.server_address[1]}"

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
