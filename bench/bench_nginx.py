"""Header authentication behind the generated nginx: what ``auth_request`` costs per hub request.

One nginx (``qlikauth.nginx``'s generated server blocks) serves the same hub on several ports:

* ``as generated``: the generated block with its defaults (only the cache directory given):
  nginx asks the portal's ``/qlik/header-auth`` (the header example's Flask portal on gunicorn)
  who the browser is and reuses a 200 answer for 5 s for the very same ``Cookie`` header
  (docs/nginx.md, "The identity cache");
* ``no identity cache``: the same block generated with ``identity_cache=0``: every request asks
  the portal;
* ``without auth_request``: the same block with the two ``auth_request`` lines replaced by a
  fixed identity, i.e. the same maps, checks, TLS and upstream, minus the subrequest.

The "hub" upstream is a TLS server block in the same nginx answering with the identity header
it received (the cheapest upstream there is, like a hub's static file), so the ratio shows the
auth cost at its largest. Client: keep-alive ``http.client`` connections, one per thread, each
request checked (status 200, body = the signed-in user). Interleaved rounds, median of ratios.
"""

from __future__ import annotations

import http.client
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
from _procs import free_port  # noqa: E402

HEADER = "X-Portal-User"
COOKIE = "portal_session"


def _wait(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} is not listening on 127.0.0.1:{port}")


def _nginx() -> str | None:
    return (
        os.environ.get("QLIKAUTH_NGINX")
        or shutil.which("nginx")
        or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    )


def _without_auth_request(block: str, ident: str) -> str:
    """The generated block minus the subrequest: a fixed identity instead of the portal's answer."""
    out, n = re.subn(
        r"\n\s*auth_request /_qlikauth/identity/\S+;\n\s*auth_request_set "
        r"(\$qlikauth_identity_\w+) \S+;",
        r'\n        set \1 "alice";',
        block,
    )
    assert n == 1, "the generated block changed shape: update bench_nginx._without_auth_request"
    return out.replace(f"qlikauth_{ident}_cache", f"qlikauth_{ident}_unused")


class Stack:
    """nginx (4 server blocks), the portal on gunicorn, certificates; ``close()`` stops all."""

    def __init__(self) -> None:
        from qlikauth.certgen import generate_certificates, issue_server_certificate
        from qlikauth.nginx import generate_nginx_conf, generate_server_block

        nginx = _nginx()
        if nginx is None:
            raise RuntimeError("nginx is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="qlikauth-bench-nginx-"))
        os.chmod(self.dir, 0o755)  # nginx workers (nobody, when run as root) reach their temp dirs
        certs = self.dir / "certs"
        generate_certificates(certs, ["localhost", "127.0.0.1"])
        issue_server_certificate(
            certs, ["localhost", "127.0.0.1"], certs / "nginx.pem", certs / "nginx_key.pem"
        )
        for p in certs.iterdir():
            os.chmod(p, 0o644)
        os.chmod(certs, 0o755)
        self.root_pem = certs / "root.pem"
        self.procs: list[subprocess.Popen] = []

        self.portal_port, self.hub_port = free_port(), free_port()
        self.ports = {"with": free_port(), "cache": free_port(), "without": free_port()}
        common = dict(
            server_name="localhost",
            listen_host="127.0.0.1",
            tls_cert=str(certs / "nginx.pem"),
            tls_key=str(certs / "nginx_key.pem"),
            portal_url=f"http://127.0.0.1:{self.portal_port}",
            login_url=f"http://localhost:{self.portal_port}/login",
            header_name=HEADER,
            qps_nodes=[f"https://localhost:{self.hub_port}"],
            root_pem=str(self.root_pem),
        )
        blocks = [
            generate_server_block(
                prefix="hdr", listen_port=self.ports["with"], identity_cache=0, **common
            ),
            generate_server_block(
                prefix="hdrc",
                listen_port=self.ports["cache"],
                identity_cache_dir=str(self.dir / "identity_cache"),
                **common,
            ),
            _without_auth_request(
                generate_server_block(
                    prefix="bare", listen_port=self.ports["without"], identity_cache=0, **common
                ),
                "bare",
            ),
            # The "hub": answers with the identity header it received.
            "server {\n"
            f"    listen 127.0.0.1:{self.hub_port} ssl;\n    server_name localhost;\n"
            f"    ssl_certificate {certs / 'nginx.pem'};\n    ssl_certificate_key "
            f"{certs / 'nginx_key.pem'};\n"
            "    access_log off;\n    keepalive_requests 100000;\n"
            "    location / {\n        default_type text/plain;\n        return 200 "
            '"$http_x_portal_user";\n    }\n}\n',
        ]
        conf = generate_nginx_conf(blocks, str(self.dir), worker_processes=2)
        conf = conf.replace(f"    access_log {self.dir}/access.log;", "    access_log off;")
        (self.dir / "nginx.conf").write_text(conf)

        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "QLIKAUTH_QPS_NODES": "https://localhost:4243",
            "QLIKAUTH_CERTS": str(certs),
            "QLIKAUTH_HUB_URL": f"https://localhost:{self.ports['with']}/hdr/hub/",
            "QLIKAUTH_VIRTUAL_PROXY": "hdr",
            "PORTAL_SECRET_KEY": secrets.token_hex(32),
            # The example keeps sessions on the server: one private directory for both workers.
            "PORTAL_SESSION_DIR": str(self.dir / "portal-sessions"),
        }
        (self.dir / "portal-sessions").mkdir(mode=0o700)
        self.log = open(self.dir / "gunicorn.log", "wb")  # noqa: SIM115 - closed in close()
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "-w",
                    "2",
                    "-k",
                    "gthread",
                    "--threads",
                    "4",
                    "-b",
                    f"127.0.0.1:{self.portal_port}",
                    "--keep-alive",
                    "30",
                    # One line per identity question: the URI it was asked about (which contender).
                    "--access-logfile",
                    str(self.dir / "portal-access.log"),
                    "--access-logformat",
                    "%({x-original-uri}i)s",
                    "header_app:app",
                ],
                cwd=HERE,
                env=env,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        _wait(self.portal_port, self.procs[-1], "gunicorn")
        self.procs.append(
            subprocess.Popen(
                [nginx, "-p", str(self.dir), "-c", "nginx.conf", "-g", "daemon off;"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        )
        for port in (*self.ports.values(), self.hub_port):
            try:
                _wait(port, self.procs[-1], "nginx")
            except RuntimeError:
                err = (
                    (self.dir / "error.log").read_text()
                    if (self.dir / "error.log").exists()
                    else ""
                )
                raise RuntimeError(f"nginx did not start: {err[-2000:]}") from None
        self.cookie = self._sign_in("alice")

    def _sign_in(self, user: str) -> str:
        import requests

        s = requests.Session()
        s.trust_env = False
        base = f"http://127.0.0.1:{self.portal_port}"
        page = s.get(f"{base}/login", timeout=10)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        r = s.post(
            f"{base}/login",
            data={"csrf": csrf, "username": user, "password": "demo"},
            allow_redirects=False,
            timeout=10,
        )
        if r.status_code != 302:
            raise RuntimeError(f"bench sign-in failed: {r.status_code}")
        return f"{COOKIE}={s.cookies[COOKIE]}"

    def portal_questions(self, prefix: str) -> int:
        """How many identity questions the portal answered for requests under ``/<prefix>/``."""
        path = self.dir / "portal-access.log"
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text().splitlines() if line.startswith(f"/{prefix}/"))

    def client(self, which: str) -> Callable[[], None]:
        """One keep-alive connection to the ``which`` port; each call GETs a hub file and
        checks it."""
        ctx = ssl.create_default_context(cafile=str(self.root_pem))
        port = self.ports[which]
        prefix = {"with": "hdr", "cache": "hdrc", "without": "bare"}[which]
        path = f"/{prefix}/resources/assets/client.js"
        headers = {"Host": f"localhost:{port}", "Cookie": self.cookie}
        conn = [http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)]

        def call() -> None:
            for attempt in (0, 1):
                try:
                    conn[0].request("GET", path, headers=headers)
                    r = conn[0].getresponse()
                    body = r.read()
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    # nginx closes a kept-alive connection after keepalive_requests: reopen once
                    conn[0].close()
                    conn[0] = http.client.HTTPSConnection(
                        "localhost", port, context=ctx, timeout=10
                    )
                    if attempt:
                        raise
            if r.status != 200 or body != b"alice":
                raise RuntimeError(f"{which}: {r.status} {body[:80]!r}")

        return call

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    continue
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, 9)
                    p.wait(5)
            if p.stderr is not None:
                p.stderr.close()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_header_auth(args: Any) -> dict[str, Any]:
    """with auth_request / without, and identity cache / without, interleaved in one run."""
    from run import Contender, interleave, log, ratio, summary

    if _nginx() is None:
        return {"status": "not measured", "reason": "nginx is not installed"}
    from qlikauth.nginx import DEFAULT_IDENTITY_CACHE

    stack = Stack()
    try:
        cs = [
            Contender("no identity cache", lambda: stack.client("with")),
            Contender("as generated", lambda: stack.client("cache")),
            Contender("without auth_request", lambda: stack.client("without")),
        ]
        log(
            f"header auth: {args.rounds} rounds x {len(cs)} contenders x {args.slice:g}s, "
            f"{args.threads} threads"
        )
        interleave(cs, args.rounds, args.slice, args.threads)
        with_, cached, without = cs
        time.sleep(0.5)  # gunicorn writes its access log line after answering
        return {
            "portal_calls_with": stack.portal_questions("hdr"),
            "portal_calls_cached": stack.portal_questions("hdrc"),
            "status": "measured",
            "threads": args.threads,
            "identity_cache_s": DEFAULT_IDENTITY_CACHE,
            "ratio_generated_vs_without": round(ratio(cached, without), 3),
            "ratio_uncached_vs_without": round(ratio(with_, without), 3),
            "contenders": {c.name: summary(c) for c in cs},
            "upstream": "nginx TLS server block answering the identity it received",
            "portal": "examples/header_proxy portal on gunicorn -w 2 -k gthread --threads 4",
        }
    finally:
        stack.close()
