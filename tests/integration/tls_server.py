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

    def __init__(
        self,
        cert_dir: Path,
        handler: Callable[[http.server.BaseHTTPRequestHandler], None],
        cert: Path | None = None,
        key: Path | None = None,
        tls: bool = True,
    ) -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(
            str(cert or cert_dir / "server.pem"), str(key or cert_dir / "server_key.pem")
        )
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
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


def answer(
    req: http.server.BaseHTTPRequestHandler,
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> None:
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


def issue_server_cert(
    cert_dir: Path,
    out_dir: Path,
    *,
    name: str = "localhost",
    start_days: float = -1,
    valid_days: float = 30,
    san: bool = True,
    server_auth: bool = True,
) -> tuple[Path, Path]:
    """A server certificate from ``cert_dir``'s CA with odd properties, for TLS diagnosis tests.

    ``start_days`` > 0 makes it not valid yet; ``start_days + valid_days`` < 0 expired;
    ``san=False`` names the host only in the Common Name; ``server_auth=False`` gives it a
    clientAuth-only extended key usage. Returns (cert path, key path).
    """
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    root = x509.load_pem_x509_certificate((cert_dir / "root.pem").read_bytes())
    root_key = serialization.load_pem_private_key((cert_dir / "root_key.pem").read_bytes(), None)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=start_days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [
                    ExtendedKeyUsageOID.SERVER_AUTH
                    if server_auth
                    else ExtendedKeyUsageOID.CLIENT_AUTH
                ]
            ),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
        )
    cert = builder.sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    out_dir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = out_dir / "odd_server.pem", out_dir / "odd_server_key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path
