"""A tiny mutual-TLS HTTP server for transport tests that need answers the emulator never gives.

``tls_server(cert_dir, handler, cert=..., key=...)`` serves on 127.0.0.1 with the given
server certificate (``cert_dir``'s ``server.pem`` by default), requires a client
certificate issued by ``cert_dir``'s ``root.pem``, and calls ``handler(request)`` for every
request (a :class:`http.server.BaseHTTPRequestHandler`); ``.connections`` counts the TCP
connections it accepted, ``.url`` is ``https://localhost:PORT``. Stopped at teardown.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class TlsServer:
    """One mutual-TLS HTTP server in a thread (see the module docstring)."""

    def __init__(self, cert_dir: Path, handler: Callable[[http.server.BaseHTTPRequestHandler], None],
                 cert: Path | None = None, key: Path | None = None, tls: bool = True) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert or cert_dir / "server.pem"), str(key or cert_dir / "server_key.pem"))
        ctx.load_verify_locations(str(cert_dir / "root.pem"))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.connections = 0
        self.requests = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                outer.requests += 1
                handler(self)

            do_GET = do_POST = do_DELETE = _any  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self) -> tuple[socket.socket, Any]:
                sock, addr = self.socket.accept()
                outer.connections += 1
                if not tls:
                    return sock, addr
                return ctx.wrap_socket(sock, server_side=True), addr

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # refused handshakes are what some tests are about

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        self.url = f"https://localhost:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def answer(req: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
           headers: dict[str, str] | None = None) -> None:
    """Send a complete answer with Content-Length (the request body is read first)."""
    length = int(req.headers.get("Content-Length") or 0)
    if length:
        req.rfile.read(length)
    req.send_response(status)
    for k, v in (headers or {}).items():
        req.send_header(k, v)
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)
