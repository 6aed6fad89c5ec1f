"""Fixtures for the nginx tests: certificates, a recording upstream, a portal and a real nginx."""

from __future__ import annotations

import os
import threading

import pytest

from qlikauth.certgen import generate_certificates, issue_server_certificate

from .helpers import NGINX, Nginx, Recorder, server_block

HEADER = "X-Portal-User"
PREFIX = "hdr"


def pytest_collection_modifyitems(config, items):
    if NGINX is None and not os.environ.get("QLIKAUTH_REQUIRE_ALL"):
        skip = pytest.mark.skip(
            reason="nginx is not installed (set QLIKAUTH_REQUIRE_ALL=1 to fail instead)"
        )
        for item in items:
            if "nginx" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    """The emulator-style CA (root.pem) and an nginx certificate issued from it."""
    d = tmp_path_factory.mktemp("nginx-certs")
    generate_certificates(d, ["localhost", "127.0.0.1"])
    issue_server_certificate(d, ["localhost", "127.0.0.1"], d / "nginx.pem", d / "nginx_key.pem")
    return d


@pytest.fixture(scope="session")
def recorder(certs):
    r = Recorder(certs / "server.pem", certs / "server_key.pem", HEADER)
    yield r
    r.close()


def start_wsgi(app):
    """Serve a WSGI app on 127.0.0.1 in a thread; returns (server, port)."""
    from werkzeug.serving import make_server

    srv = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, srv.server_port


def front_block(certs, portal_port: int, qps_nodes: list[str], port: int, **kw) -> str:
    args = dict(
        server_name="localhost",
        listen_host="127.0.0.1",
        listen_port=port,
        tls_cert=str(certs / "nginx.pem"),
        tls_key=str(certs / "nginx_key.pem"),
        portal_url=f"http://127.0.0.1:{portal_port}",
        login_url=f"http://localhost:{portal_port}/login",
        header_name=HEADER,
        qps_nodes=qps_nodes,
        root_pem=str(certs / "root.pem"),
        prefix=PREFIX,
    )
    if "identity_cache_dir" not in kw:
        # These tests look at what the portal is asked on each request: no identity cache unless
        # a test gives it a directory (the default lifetime then, as generated).
        args["identity_cache"] = 0
    args.update(kw)
    return server_block(**args)


def identity_cache_dir() -> str:
    """A fresh directory for nginx's identity cache files (the caller removes it)."""
    import tempfile

    d = tempfile.mkdtemp(prefix="qlikauth-identity-cache-")
    os.chmod(d, 0o777)  # nginx's workers (nobody, when the tests run as root) write here
    return d


@pytest.fixture(scope="session")
def start_nginx():
    started: list[Nginx] = []

    def start(block: str, port: int) -> Nginx:
        n = Nginx(block, port)
        started.append(n)
        return n.start()

    yield start
    for n in started:
        n.stop()
