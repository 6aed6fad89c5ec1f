"""Helpers for the nginx tests: a real nginx on loopback, a recording TLS upstream, raw requests."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from _support import stop_process, wait_port

from qlikauth.nginx import generate_nginx_conf, generate_server_block

NGINX = (
    os.environ.get("QLIKAUTH_NGINX")
    or shutil.which("nginx")
    or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
)


def second_loopback_name() -> str | None:
    """Another DNS name for this machine's loopback (nginx verifies upstreams by DNS name only)."""
    for name in (socket.gethostname(), "localhost.localdomain", "ip6-localhost"):
        try:
            addrs = {a[4][0] for a in socket.getaddrinfo(name, None, socket.AF_INET)}
        except OSError:
            continue
        if name != "localhost" and addrs and all(a.startswith("127.") for a in addrs):
            return name
    return None


class Nginx:
    """nginx started from a generated config in its own directory; ``stop()`` in teardown."""

    def __init__(self, server_block: str, port: int) -> None:
        # Not under pytest's 0700 tmp dir: when the tests run as root, nginx's workers run as
        # nobody and need to reach their temp directories.
        self.dir = Path(tempfile.mkdtemp(prefix="qlikauth-nginx-"))
        os.chmod(self.dir, 0o755)
        self.port = port
        self.conf = self.dir / "nginx.conf"
        self.conf.write_text(generate_nginx_conf(server_block, str(self.dir)))
        self.proc: subprocess.Popen | None = None

    def test_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [NGINX, "-t", "-p", str(self.dir), "-c", "nginx.conf"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", "nginx.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_port(self.port, self.proc)
        except Exception:
            self.stop()
            raise RuntimeError(f"nginx did not start: {self.error_log()}") from None
        return self

    def error_log(self) -> str:
        p = self.dir / "error.log"
        return p.read_text() if p.exists() else ""

    def stop(self) -> None:
        stop_process(self.proc)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def server_block(**kw) -> str:
    return generate_server_block(**kw)


# -- a tiny TLS upstream that records what reaches it --------------------------------------
class Recorder:
    """A TLS HTTP/1.1 server on 127.0.0.1 that records every request's header list."""

    def __init__(self, cert: Path, key: Path, header_name: str) -> None:
        self.requests: list[dict] = []
        self.header_name = header_name
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # noqa: D401
                pass

            def _record(self) -> dict:
                values = [
                    v for k, v in self.headers.items() if k.lower() == recorder.header_name.lower()
                ]
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                entry = {
                    "method": self.command,
                    "body": body,
                    "path": self.path,
                    "headers": list(self.headers.items()),
                    "identity": values,
                }
                recorder.requests.append(entry)
                return entry

            def do_GET(self):
                entry = self._record()
                if self.headers.get("Upgrade", "").lower() == "websocket":
                    accept = base64.b64encode(
                        hashlib.sha1(
                            (
                                self.headers["Sec-WebSocket-Key"]
                                + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
                            ).encode()
                        ).digest()
                    ).decode()
                    self.send_response(101)
                    self.send_header("Upgrade", "websocket")
                    self.send_header("Connection", "Upgrade")
                    self.send_header("Sec-WebSocket-Accept", accept)
                    self.end_headers()
                    payload = ("|".join(entry["identity"]) or "-").encode()
                    self.wfile.write(bytes([0x81, len(payload)]) + payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                body = ("|".join(entry["identity"]) or "-").encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def raw_request(port: int, cafile: Path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes over verified TLS to nginx and return everything it answers until it closes."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost") as tls,
    ):
        tls.sendall(data)
        chunks = []
        try:
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                if b"\r\n\r\n" in b"".join(chunks) and len(chunks) > 0:
                    # One response is enough: nginx answers errors with Connection: close.
                    head, _, rest = b"".join(chunks).partition(b"\r\n\r\n")
                    length = [
                        ln
                        for ln in head.split(b"\r\n")
                        if ln.lower().startswith(b"content-length:")
                    ]
                    if length and len(rest) >= int(length[0].split(b":")[1]):
                        break
        except (TimeoutError, ssl.SSLError, ConnectionResetError):
            pass
    return b"".join(chunks)


def status_of(response: bytes) -> int:
    line = response.split(b"\r\n", 1)[0]
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 and parts[0].startswith(b"HTTP/") else 0
