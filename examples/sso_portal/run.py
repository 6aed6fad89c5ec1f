"""A Flask portal whose users sign in at an identity provider (single sign-on) and land in Qlik
Sense.

One command starts everything: the qlikauth emulator (a QPS node and hub over real TLS, a
ticket virtual proxy ``sso``), a local identity provider, and the portal over https::

    .venv/bin/python examples/sso_portal/run.py                  # https://localhost:5443/
    .venv/bin/python examples/sso_portal/run.py --protocol saml  # the default
    .venv/bin/python examples/sso_portal/run.py --protocol oidc  # OpenID Connect (local provider)
    .venv/bin/python examples/sso_portal/run.py --protocol both  # both IdPs, a chooser page

``--protocol`` picks the protocol module in ``protocols/`` (``saml``: pysaml2's IdP behind a
login page, Entra-ID-shaped claims: e-mail, display name, group object ids mapped to names).
The portal holds no passwords: ``/qlik/saml/login`` sends the browser to the IdP, the IdP posts
the signed response to ``/qlik/saml/acs``, qlikauth verifies it, maps the claims to the Qlik
user (``QLIKAUTH_CLAIMS``) and sends the browser to the hub with a ticket. "Sign out everywhere"
ends the Qlik sessions and the IdP session (SP-initiated single logout); the IdP's own logout
link (printed at start) ends them the other way round (IdP-initiated).

Environment: ``PORTAL_PORT`` (5443), ``PORTAL_TLS_CERT``/``PORTAL_TLS_KEY`` (else a certificate
for localhost is issued from the emulator's CA; the IdP uses the same one), ``PORTAL_SECRET_KEY``,
``EMULATOR_CERTS`` (a QMC-style certificate directory for the emulator; else one is generated).
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (HERE, HERE.parent, HERE.parent.parent / "integrations"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import protocols  # noqa: E402
from flask import Flask, render_template, session  # noqa: E402
from flask_portal.app import server_side_sessions  # noqa: E402
from flask_qlikauth import QlikAuth  # noqa: E402


def create_app(setup: protocols.Setup, qlik: dict[str, Any]) -> Flask:
    """The portal: ``qlik`` are the QLIKAUTH_* Qlik settings, ``setup`` the protocol's."""
    app = Flask(__name__, template_folder=str(HERE / "templates"))
    app.config.update(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_NAME="sso_portal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    # Portal sessions on the server (the Flask portal's setup): a sign-out, a single logout or a
    # back-channel logout deletes or revokes them, so a copy of the cookie taken before is
    # worthless. This portal is always served over https.
    server_side_sessions(app)
    app.config.update(SESSION_COOKIE_SECURE=True)
    app.config.update(qlik)
    app.config.update(setup.settings)
    qlikauth = QlikAuth()

    @qlikauth.user_loader
    def portal_user() -> Any:
        # Who is signed in: whatever the SSO sign-in put into the portal's session (and not
        # ended since by single logout, which any portal instance may have received).
        return setup.user_from_session(session, qlikauth.runtime)

    qlikauth.init_app(app)  # after the user loader: init_app refuses to run without one
    if "init_app" in setup.extra:  # e.g. OIDC's routes and its SSO-session check
        setup.extra["init_app"](app)

    @app.get("/")
    def home() -> str:
        return render_template(
            "home.html",
            user=qlikauth.current_user(),
            protocol=setup,
            hub_url=app.config["QLIKAUTH_HUB_URL"],
        )

    return app


def _tls(certs_dir: Path) -> tuple[str, str]:
    cert, key = os.environ.get("PORTAL_TLS_CERT"), os.environ.get("PORTAL_TLS_KEY")
    if cert and key:
        return cert, key
    if cert or key:
        raise SystemExit("Set both PORTAL_TLS_CERT and PORTAL_TLS_KEY (PEM files), or neither.")
    from qlikauth.certgen import temporary_server_certificate

    return temporary_server_certificate(certs_dir, prefix="sso-portal-tls-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--protocol", default=os.environ.get("PORTAL_PROTOCOL", "saml"))
    args = ap.parse_args(argv)
    port = int(os.environ.get("PORTAL_PORT", "5443"))
    base = f"https://localhost:{port}"

    from qlikauth.emulator import Emulator, VirtualProxy

    emu = Emulator(
        certs_dir=os.environ.get("EMULATOR_CERTS") or None,
        host="localhost",
        bind="127.0.0.1",
        virtual_proxies=[VirtualProxy("sso", method="ticket", module_uri=f"{base}/qlik/module")],
    )
    emu.start()
    atexit.register(emu.stop)
    signal.signal(
        signal.SIGTERM, lambda *_: sys.exit(0)
    )  # atexit runs: emulator, IdP, keys removed
    tls = _tls(Path(emu.certs_dir))
    setup = protocols.load(args.protocol).start(base, tls, str(emu.certs_dir))
    atexit.register(setup.stop)
    qlik = {
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_VIRTUAL_PROXY": "sso",
        "QLIKAUTH_HUB_URL": emu.hub_url_for("sso"),
        "QLIKAUTH_ALLOWED_TARGETS": [emu.hub_url],
        "QLIKAUTH_MODE": "ticket",
        # an anonymous hub visit (the module redirect) goes to the IdP, and back to Qlik after
        "QLIKAUTH_LOGIN_URL": setup.login_path,
    }
    app = create_app(setup, qlik)
    print(
        f"Emulator: QPS {emu.qps_url}, hub {emu.hub_url_for('sso')} (certificates in "
        f"{emu.certs_dir})",
        flush=True,
    )
    print(f"TLS certificate: {tls[0]}", flush=True)
    print(setup.idp_info, flush=True)
    if "idp_logout" in setup.extra:
        print(f"IdP-initiated logout: {setup.extra['idp_logout']}alice", flush=True)
    print(
        f"Portal: {base}/  (trust {Path(emu.certs_dir) / 'root.pem'} in your browser)", flush=True
    )
    try:
        app.run(host="127.0.0.1", port=port, ssl_context=tls, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
