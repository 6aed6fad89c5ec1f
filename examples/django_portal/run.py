"""Run the example Django portal with one command.

With no QLIKAUTH_* settings in the environment, starts the qlikauth emulator with a
session virtual proxy ``mashup`` and points the portal at it; then creates the
database, the demo users and groups, and serves on https://localhost:PORTAL_PORT/::

    .venv/bin/python examples/django_portal/run.py           # https://localhost:8000/

HTTPS, because the mashup page embeds the hub (``https://localhost:HUB``) in an iframe: only
when the portal is https too are portal and hub the same *site* (scheme + registrable domain;
ports do not count), so the browser sends the proxy session cookie inside the iframe.

* ``PORTAL_TLS=1|0``: serve https (default: 1 against the embedded emulator, 0 otherwise);
* ``PORTAL_TLS_CERT`` / ``PORTAL_TLS_KEY``: the portal's certificate and key (PEM). Without
  them a certificate for localhost/127.0.0.1 is issued from the CA in ``QLIKAUTH_CERTS``
  (the emulator's ``root.pem`` + ``root_key.pem``) into a temporary directory, so a browser
  that trusts the emulator's root trusts the portal too.

With TLS the server is Django's own threaded WSGI server (the one ``runserver`` uses) with its
socket wrapped in TLS: stdlib only, fine for a demo. In production run
``gunicorn portal.wsgi --certfile ... --keyfile ...`` or put a TLS-terminating proxy in front.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import ssl
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent / "integrations"))

#: Demo users (password "demo") and their Django groups, sent to Qlik as `group` attributes.
DEMO_USERS = {"alice": ["Sales", "Finance"], "bob": ["Marketing"], "carol": ["Admins", "Sales"]}
DEMO_PASSWORD = "demo"


def start_emulator() -> None:
    """Start the emulator with a session virtual proxy 'mashup'; export its settings."""
    from qlikauth.emulator import Emulator, VirtualProxy

    emu = Emulator(
        host="localhost",
        bind="127.0.0.1",
        virtual_proxies=[VirtualProxy(prefix="mashup", method="session")],
    )
    emu.__enter__()
    # Stop it (and delete its generated keys) however the portal ends: Ctrl-C, kill, or a crash.
    atexit.register(emu.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    os.environ.update(
        {
            "QLIKAUTH_QPS_NODES": emu.qps_url,
            "QLIKAUTH_CERTS": str(emu.certs_dir),
            "QLIKAUTH_HUB_URL": emu.hub_url_for("mashup"),
            "QLIKAUTH_VIRTUAL_PROXY": "mashup",
        }
    )
    print(
        f"Emulator: QPS {emu.qps_url}, hub {emu.hub_url_for('mashup')} (certificates in "
        f"{emu.certs_dir})",
        flush=True,
    )


def setup_database() -> None:
    """Create the tables and the demo users/groups (idempotent)."""
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    for name, groups in DEMO_USERS.items():
        user, created = User.objects.get_or_create(username=name)
        if created or not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save()
        user.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])


def tls_files() -> tuple[str, str]:
    """The portal's certificate and key: PORTAL_TLS_CERT/KEY, or issued from QLIKAUTH_CERTS's CA."""
    cert, key = os.environ.get("PORTAL_TLS_CERT"), os.environ.get("PORTAL_TLS_KEY")
    if cert or key:
        if not (cert and key):
            raise SystemExit("Set both PORTAL_TLS_CERT and PORTAL_TLS_KEY (PEM files), or neither.")
        return cert, key
    ca_dir = Path(os.environ.get("QLIKAUTH_CERTS", ""))
    if not (ca_dir / "root.pem").is_file() or not (ca_dir / "root_key.pem").is_file():
        raise SystemExit(
            "PORTAL_TLS is on but there is no certificate: set PORTAL_TLS_CERT and PORTAL_TLS_KEY "
            "(a QMC export has no CA key to issue one from)."
        )
    from qlikauth.certgen import temporary_server_certificate

    return temporary_server_certificate(ca_dir, prefix="django-portal-tls-")


def serve_https(application: Any, bind: str, port: int, cert: str, key: str) -> None:
    """Serve ``application`` over TLS with Django's threaded development WSGI server."""
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    log = logging.getLogger("django.server")

    class Handler(WSGIRequestHandler):
        def get_environ(self) -> dict[str, Any]:
            environ = super().get_environ()
            environ["HTTPS"] = (
                "on"  # wsgi.url_scheme "https": request.is_secure(), CSRF origin checks
            )
            return environ

    class TLSServer(ThreadedWSGIServer):
        def get_request(self) -> tuple[Any, Any]:
            sock, addr = self.socket.accept()
            # The handshake happens on the first read, in the request's own thread.
            return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

        def handle_error(self, request: Any, client_address: Any) -> None:
            exc = sys.exc_info()[1]
            if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError)):
                log.info("TLS connection from %s failed: %s", client_address[0], exc)
                return
            super().handle_error(request, client_address)

    httpd = TLSServer((bind, port), Handler)
    httpd.set_app(application)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


def main() -> None:
    """Start (emulator,) database and the server."""
    port = int(os.environ.get("PORTAL_PORT", "8000"))
    bind = os.environ.get("PORTAL_BIND", "127.0.0.1")
    embedded = "QLIKAUTH_QPS_NODES" not in os.environ
    if embedded:
        start_emulator()
    tls = os.environ.get("PORTAL_TLS", "1" if embedded else "0") == "1"
    os.environ["PORTAL_TLS"] = "1" if tls else "0"  # settings.py: secure portal cookies
    cert_key = tls_files() if tls else None
    if "PORTAL_DB" not in os.environ:
        db_dir = tempfile.mkdtemp(prefix="django-portal-")
        atexit.register(shutil.rmtree, db_dir, True)
        os.environ["PORTAL_DB"] = str(Path(db_dir) / "db.sqlite3")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django
    from django.core.management import call_command

    django.setup()
    setup_database()
    call_command("check", fail_level="ERROR")
    scheme = "https" if tls else "http"
    print(
        f"Django portal: {scheme}://localhost:{port}/  (demo users: {', '.join(DEMO_USERS)}; "
        f"password '{DEMO_PASSWORD}')",
        flush=True,
    )
    if cert_key is None:
        call_command(
            "runserver", f"{bind}:{port}", use_reloader=False, use_threading=True, skip_checks=True
        )
        return
    print(f"TLS certificate: {cert_key[0]}", flush=True)
    from django.core.wsgi import get_wsgi_application

    serve_https(get_wsgi_application(), bind, port, *cert_key)


if __name__ == "__main__":
    main()
