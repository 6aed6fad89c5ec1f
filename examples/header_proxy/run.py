"""Header authentication behind nginx, started with one command.

::

    .venv/bin/python examples/header_proxy/run.py

starts three things on loopback:

* the qlikauth emulator with a header virtual proxy ``hdr`` (static user directory ``PORTAL``,
  header ``X-Portal-User``) that records the identity every request carried;
* nginx with the configuration ``qlikauth nginx-config`` generates (https://localhost:8443,
  a certificate issued from the emulator's root CA; trust ``root.pem`` or click through);
* the portal (http://localhost:5000, ``examples/header_proxy/header_portal.py``) whose
  ``/qlik/header-auth`` tells nginx who the browser is.

Sign in at http://localhost:5000/ (alice / demo), then open https://localhost:8443/hdr/hub/.
Ports: ``PORTAL_PORT`` (5000) and ``NGINX_PORT`` (8443); ``NGINX`` names the nginx binary.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from header_portal import create_app  # noqa: E402

from qlikauth.certgen import issue_server_certificate  # noqa: E402
from qlikauth.emulator import Emulator, VirtualProxy  # noqa: E402
from qlikauth.nginx import generate_nginx_conf, generate_server_block  # noqa: E402

PREFIX = "hdr"
HEADER = "X-Portal-User"


def find_nginx() -> str:
    found = (
        os.environ.get("NGINX")
        or shutil.which("nginx")
        or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    )
    if not found:
        raise SystemExit(
            "nginx is not installed (apt-get install nginx-light, or set NGINX=/path/to/nginx)."
        )
    return found


def _wait(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 15.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} is not listening on 127.0.0.1:{port}")


@dataclass
class HeaderProxyStack:
    """The emulator, the portal and nginx; :meth:`start` then :meth:`stop` (or ``with``)."""

    portal_port: int = 5000
    nginx_port: int = 8443
    nginx: str = field(default_factory=find_nginx)
    emulator: Emulator | None = None
    runtime_dir: Path | None = None
    nginx_proc: subprocess.Popen | None = None
    _portal_server: object | None = None

    @property
    def public_origin(self) -> str:
        return f"https://localhost:{self.nginx_port}"

    @property
    def hub_url(self) -> str:
        return f"{self.public_origin}/{PREFIX}/hub/"

    @property
    def portal_url(self) -> str:
        return f"http://localhost:{self.portal_port}"

    @property
    def root_pem(self) -> Path:
        assert self.emulator is not None
        return Path(self.emulator.certs_dir) / "root.pem"

    def start(self) -> HeaderProxyStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from werkzeug.serving import make_server

        self.emulator = Emulator(
            host="localhost",
            bind="127.0.0.1",
            virtual_proxies=[
                VirtualProxy(
                    PREFIX,
                    method="header-static",
                    header_name=HEADER,
                    header_user_directory="PORTAL",
                ),
            ],
        )
        self.emulator.__enter__()
        certs = Path(self.emulator.certs_dir)

        # Not under a 0700 directory: when run as root, nginx's workers run as nobody.
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="qlikauth-header-proxy-"))
        os.chmod(self.runtime_dir, 0o755)
        cert, key = self.runtime_dir / "nginx.pem", self.runtime_dir / "nginx_key.pem"
        issue_server_certificate(certs, ["localhost", "127.0.0.1"], cert, key)
        block = generate_server_block(
            server_name="localhost",
            listen_host="127.0.0.1",
            listen_port=self.nginx_port,
            tls_cert=str(cert),
            tls_key=str(key),
            portal_url=f"http://127.0.0.1:{self.portal_port}",
            login_url=f"{self.portal_url}/login",
            header_name=HEADER,
            qps_nodes=[self.emulator.hub_url],
            root_pem=str(certs / "root.pem"),
            prefix=PREFIX,
            # the identity cache as generated (5 s), its files in this run's directory
            identity_cache_dir=str(self.runtime_dir / "identity_cache"),
        )
        conf = self.runtime_dir / "nginx.conf"
        conf.write_text(generate_nginx_conf(block, str(self.runtime_dir)))

        app = create_app(
            {
                "QLIKAUTH_QPS_NODES": self.emulator.qps_url,
                "QLIKAUTH_CERTS": str(certs),
                "QLIKAUTH_VIRTUAL_PROXY": PREFIX,
                "QLIKAUTH_HUB_URL": self.hub_url,
            }
        )
        # Loopback only: nginx reaches the portal; the identity endpoint is never public.
        self._portal_server = make_server("127.0.0.1", self.portal_port, app, threaded=True)
        threading.Thread(target=self._portal_server.serve_forever, daemon=True).start()  # type: ignore[attr-defined]

        self.nginx_proc = subprocess.Popen(
            [self.nginx, "-p", str(self.runtime_dir), "-c", "nginx.conf", "-g", "daemon off;"],
            stdin=subprocess.DEVNULL,
        )
        try:
            _wait(self.nginx_port, self.nginx_proc, "nginx")
        except RuntimeError:
            log = self.runtime_dir / "error.log"
            raise RuntimeError(
                f"nginx did not start: {log.read_text() if log.exists() else ''}"
            ) from None

    def stop(self) -> None:
        if self.nginx_proc is not None and self.nginx_proc.poll() is None:
            self.nginx_proc.terminate()
            try:
                self.nginx_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.nginx_proc.kill()
                self.nginx_proc.wait(5)
        if self._portal_server is not None:
            self._portal_server.shutdown()  # type: ignore[attr-defined]
            self._portal_server = None
        if self.emulator is not None:
            self.emulator.__exit__(None, None, None)
            self.emulator = None
        if self.runtime_dir is not None:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
            self.runtime_dir = None

    def __enter__(self) -> HeaderProxyStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    stack = HeaderProxyStack(
        portal_port=int(os.environ.get("PORTAL_PORT", "5000")),
        nginx_port=int(os.environ.get("NGINX_PORT", "8443")),
    )
    with stack:
        print(f"Portal:  {stack.portal_url}/   (alice, bob, carol; password 'demo')")
        print(f"Qlik:    {stack.hub_url}   (through nginx; CA: {stack.root_pem})")
        print(f"nginx:   {stack.runtime_dir}/nginx.conf", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                if stack.nginx_proc is not None and stack.nginx_proc.poll() is not None:
                    print("nginx exited", file=sys.stderr)
                    break
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
