"""``qlikauth demo``: the emulator plus a framework-free portal that signs demo users in with
tickets.

Every click on a user requests a real ticket from the emulator's QPS over mutual TLS
and redirects the browser to the emulator's hub, which redeems it. The Flask and
Django example portals (``examples/``) show the same with a real login page.
"""

from __future__ import annotations

import argparse
import html
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

from .authenticators import TicketAuthenticator
from .exceptions import QlikAuthError
from .identity import QlikUser
from .qps import QpsClient

__all__ = ["DEMO_USERS", "run_demo", "DemoPortal"]

#: The demo's users: the first carries two ``group`` attributes (Section Access).
DEMO_USERS: dict[str, QlikUser] = {
    "demo": QlikUser("ACME", "demo", [("group", "Sales"), ("group", "Finance")]),
    "alice": QlikUser("ACME", "alice", [("group", "Sales"), ("email", "alice@acme.example")]),
    "bob": QlikUser("ACME", "bob", [("group", "Marketing"), ("department", "")]),
}


class DemoPortal:
    """A tiny portal on ``http://localhost:PORT``; the demo's stand-in for a real one."""

    def __init__(
        self, auth: TicketAuthenticator | None, port: int = 8080, bind: str = "127.0.0.1"
    ) -> None:
        self.auth = auth  # set before serving; None while the emulator is being started
        portal = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt: str, *args: object) -> None:  # quiet: URLs carry tickets
                pass

            def _send(self, status: int, body: str = "", location: str | None = None) -> None:
                data = body.encode()
                head = [
                    f"HTTP/1.1 {status} "
                    f"{'Found' if location else 'OK' if status == 200 else 'Error'}",
                    "Content-Type: text/html; charset=utf-8",
                    f"Content-Length: {len(data)}",
                    "Cache-Control: no-store",
                ]
                if location:
                    head.append(f"Location: {location}")
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                assert portal.auth is not None
                try:
                    if url.path == "/":
                        self._send(200, portal.page(q))
                    elif url.path == "/login":
                        user = DEMO_USERS.get(q.get("user", ""))
                        if user is None:
                            self._send(404, "<p>No such demo user.</p>")
                        elif "proxyRestUri" in q:
                            r = portal.auth.module_login(
                                user, q["proxyRestUri"], q.get("targetId", "")
                            )
                            self._send(302, "", r.location)
                        else:
                            self._send(302, "", portal.auth.login(user).location)
                    elif url.path == "/module":  # the virtual proxy's authentication module
                        self._send(200, portal.page(q))
                    else:
                        self._send(404, "<p>Not found.</p>")
                except QlikAuthError as exc:
                    self._send(exc.status, f"<h1>Sign-in failed</h1><p>{html.escape(str(exc))}</p>")

        self.server = ThreadingHTTPServer((bind, port), Handler)
        self.server.daemon_threads = True
        self.url = f"http://localhost:{self.server.server_address[1]}/"

    def page(self, q: dict[str, str]) -> str:
        """The landing page: what to do, what the hub will show, and the user chooser (keeping
        ``targetId``/``proxyRestUri`` from a module redirect)."""
        extra: dict[str, str] = {k: q[k] for k in ("targetId", "proxyRestUri") if k in q}
        items = "".join(
            f'<li><a id="login-{key}" '
            f'href="/login?{html.escape(urlencode({"user": key, **extra}))}">'
            f"Sign in as {html.escape(u.qualified_name)}</a>: the hub will show the user "
            f"<code>{html.escape(u.qualified_name)}</code> with the attributes "
            f"<code>{html.escape(', '.join(f'{n}={v}' for n, v in u.attributes) or 'none')}</code>"
            "</li>"
            for key, u in DEMO_USERS.items()
        )
        came_from_qlik = (
            '<p id="module">Qlik sent you here: you opened the hub without a session, so its '
            "virtual proxy sent you to this portal (its <em>authentication module</em>). Choose a "
            "user and you go back to the page you asked for, signed in.</p>"
            if extra
            else ""
        )
        return (
            '<!doctype html><html lang="en"><meta charset="utf-8">'
            "<title>qlikauth demo portal</title><h1>qlikauth demo portal</h1>"
            f"{came_from_qlik}"
            '<p id="what">This page stands for your portal: it already knows who the user is. '
            "Click a user: the portal asks the Qlik Proxy Service (here the qlikauth emulator, "
            "over mutual TLS) for a one-time ticket and sends your browser to the Qlik hub with "
            "it. The hub redeems the ticket, sets Qlik's session cookie and shows who Qlik "
            "thinks you are: the user directory and id, and the attributes Section Access "
            "sees (each <code>group</code> is one).</p>"
            f"<ul>{items}</ul>"
            "<p>The hub's certificate is signed by the demo's own root certificate: your browser "
            "will warn about it; accept it for this local demo. Then open the hub again without "
            "the ticket to see that the session cookie holds.</p>"
        )

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`."""
        self.server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def run_demo(args: argparse.Namespace) -> int:
    """Start the emulator and the demo portal; print the URL; run until Ctrl-C."""
    from .certgen import generate_certificates
    from .emulator import Emulator, VirtualProxy

    state = Path(args.state_dir)
    certs = state / "certs"
    if not (certs / "root.pem").exists():
        generate_certificates(certs, ["localhost", "127.0.0.1"])
    try:
        portal = DemoPortal(None, port=args.port)
    except OSError as exc:
        print(
            f"qlikauth: error: cannot listen on port {args.port} ({exc.strerror}); pass --port.",
            file=sys.stderr,
        )
        return 1
    vp = VirtualProxy("portal", method="ticket", module_uri=f"{portal.url}module")
    with Emulator(certs_dir=certs, host="localhost", virtual_proxies=[vp]) as emu:
        qps = QpsClient(emu.qps_url, certs, virtual_proxy="portal")
        portal.auth = TicketAuthenticator(qps, hub_url=emu.hub_url_for("portal"))
        thread = threading.Thread(target=portal.serve_forever, daemon=True)
        thread.start()
        print(
            f"qlikauth demo running\n"
            f"  portal:   {portal.url}\n"
            f"  sign in:  {portal.url}login?user=demo   (ACME\\demo, group=Sales, group=Finance)\n"
            f"  hub:      {emu.hub_url_for('portal')}\n"
            f"  QPS API:  {emu.qps_url} (mutual TLS; certificates in {certs})\n"
            f"The hub's certificate is signed by {certs / 'root.pem'}: trust it in your browser or "
            "accept the warning.\n"
            f"Press Ctrl-C to stop.",
            flush=True,
        )
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        portal.shutdown()
        qps.close()
    return 0
