"""A hybrid portal: one sign-in, and the same person is one user in client-managed Qlik Sense and in
Qlik Cloud.

A hybrid site as Qlik partners describe it (Ometis, "Setting up a Qlik Sense Hybrid Environment"):
the client-managed
site knows the user as ``HYBRID\\ann@example.com`` (user id = e-mail, directory = the Qlik
Cloud realm), the tenant by the subject ``ann@example.com`` in realm ``HYBRID``. One claims
mapping (:class:`qlikauth.mapping.ClaimsMapping`) yields both from the portal's sign-in:

* the **hub**: "Open Qlik Sense" is ``/qlik/login`` (ticket mode: the hub opens signed in);
* **Qlik Cloud**: at sign-in the user is made to exist in the tenant with its groups (the
  *ensure-user* step: a backend JWT login), and ``/embed`` is a qlik-embed page whose
  ``data-get-access-token`` function asks the portal's ``POST /qlik/cloud/access-token``
  for an OAuth impersonation token (same-origin only) and calls the tenant with it;
* **one sign-out** ends the portal session, the user's proxy sessions on every QSEoW node
  and the Qlik Cloud access token (revoked at the tenant, forgotten by the portal).

One command, no Qlik server needed: it starts the QPS emulator (a ticket virtual proxy
``hybrid``) and an emulated Qlik Cloud tenant (a JWT identity provider, an OAuth client with
machine-to-machine impersonation whose allowed origin is this portal), both over TLS from one
local CA, and serves the portal over https::

    .venv/bin/python examples/hybrid_portal/app.py          # https://localhost:5444/

Environment: ``PORTAL_PORT`` (5444), ``PORTAL_TLS_CERT``/``PORTAL_TLS_KEY`` (else a certificate
for localhost from the emulator's CA), ``PORTAL_SECRET_KEY``, ``EMULATOR_CERTS`` (a QMC-style
certificate directory; else one is generated), ``PORTAL_SESSION_REDIS``/``PORTAL_SESSION_DIR``
(where sessions live). For a real site and tenant (``QLIKAUTH_*`` and ``QLIKCLOUD_*``) see the
"Hybrid" paragraph of examples/README.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (HERE.parent, HERE.parent.parent / "integrations"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from flask import Flask, abort, redirect, render_template, request, session, url_for  # noqa: E402
from flask_portal.app import server_side_sessions  # noqa: E402  - the Flask portal's server-side sessions
from flask_portal.password_login import PasswordLogin, TooManyAttempts  # noqa: E402
from flask_qlikauth import QlikAuth  # noqa: E402
from flask_qlikauth.cloud import cloud_blueprint  # noqa: E402
from werkzeug.security import generate_password_hash  # noqa: E402

from qlikauth.cloud import (  # noqa: E402
    AccessTokenCache,
    CloudAccess,
    CloudJwtIssuer,
    OAuthClient,
    QlikCloud,
    UserProvisioner,
)
from qlikauth.exceptions import QlikAuthError  # noqa: E402
from qlikauth.identity import QlikUser  # noqa: E402
from qlikauth.jwtkeys import SigningKey  # noqa: E402
from qlikauth.mapping import AttributeRule, ClaimsMapping, CloudIdentity  # noqa: E402
from qlikauth.web.cloud import CloudPortal  # noqa: E402

log = logging.getLogger("hybrid_portal")

#: The client-managed user directory and the Qlik Cloud realm: one name on both sides (one
#: person, one user).
REALM = "HYBRID"

#: The portal's users as an identity provider would describe them (claims); password "demo".
DEMO_USERS: dict[str, dict[str, list[str]]] = {
    "ann": {"email": ["ann@example.com"], "name": ["Ann Andersen"], "groups": ["Sales", "Finance"]},
    "ben": {"email": ["ben@example.com"], "name": ["Ben Berg"], "groups": ["Marketing"]},
}
DEMO_PASSWORD = "demo"
_HASHES = {name: generate_password_hash(DEMO_PASSWORD) for name in DEMO_USERS}

#: One person, one user: user id = e-mail, directory = the realm, groups -> the ``group``
#: attribute (QSEoW) and the JWT's ``groups`` (Qlik Cloud); the e-mail is verified by the portal.
MAPPING = ClaimsMapping(
    user_id="email",
    user_id_transforms=["strip", "lower"],
    user_directory=REALM,
    attributes=[AttributeRule("group", "groups")],
    required=["email"],
    cloud_email_verified=True,
    idp="the portal's user store",
)


@dataclass(frozen=True)
class CloudSettings:
    """Where the Qlik Cloud tenant is and how the portal authenticates to it."""

    tenant_url: str
    verify: str | bool
    client_id: str
    client_secret: str
    jwt_key: SigningKey
    jwt_issuer: str


def signed_in_claims() -> Mapping[str, Any] | None:
    """The signed-in user's claims (from the server-side session), or None."""
    claims = session.get("claims")
    return claims if isinstance(claims, dict) else None


def create_app(qlik: Mapping[str, Any], cloud_settings: CloudSettings) -> Flask:
    """The portal: ``qlik`` are its QLIKAUTH_* settings, ``cloud_settings`` the tenant's."""
    app = Flask(
        __name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static")
    )
    app.config.update(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_NAME="hybrid_portal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        QLIKAUTH_LOGIN_URL="/login",
        QLIKAUTH_MODE="ticket",
    )
    app.config.update(qlik)
    server_side_sessions(app)
    app.config["SESSION_COOKIE_SECURE"] = True  # this portal is always served over https
    qlikauth = QlikAuth()

    @qlikauth.user_loader
    def qlik_user() -> QlikUser | None:
        claims = signed_in_claims()
        return MAPPING.to_user(claims) if claims else None

    qlikauth.init_app(app)
    store = app.extensions[
        "qlikauth"
    ].runtime.store  # QLIKAUTH_STATE_STORE (Redis for several processes)

    cloud = QlikCloud(cloud_settings.tenant_url, verify=cloud_settings.verify)
    issuer = CloudJwtIssuer(cloud_settings.jwt_key, cloud_settings.jwt_issuer)
    # Tokens and ensure-user records live in the runtime's state store, shared by the processes.
    tokens = AccessTokenCache(
        cloud,
        OAuthClient(cloud_settings.client_id, client_secret=cloud_settings.client_secret),
        store,
    )
    provisioner = UserProvisioner(cloud, method="jwt", issuer=issuer, store=store)

    def cloud_identity(_request: Any) -> CloudIdentity | None:
        claims = signed_in_claims()
        return MAPPING.cloud_identity(claims) if claims else None

    portal = CloudPortal(access=CloudAccess(tokens, provisioner), identity=cloud_identity)
    # /qlik/cloud/access-token for qlik-embed; registering it also joins the portal's sign-out.
    app.register_blueprint(cloud_blueprint(portal))

    def csrf_token() -> str:
        if "csrf" not in session:
            session["csrf"] = secrets.token_urlsafe(24)
        return str(session["csrf"])

    def check_csrf() -> None:
        sent = request.form.get("csrf", "")
        if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
            abort(400, "The form expired; go back and try again.")

    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.after_request
    def security_headers(response: Any) -> Any:
        # Scripts only from the portal; the page may talk to itself and to the tenant, nothing else.
        response.headers.setdefault(
            "Content-Security-Policy",
            f"default-src 'self'; connect-src 'self' {cloud.tenant_url}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.get("/")
    def home() -> str:
        claims = signed_in_claims()
        both = MAPPING.map(claims) if claims else None
        return render_template(
            "home.html", both=both, demo_users=DEMO_USERS, demo_password=DEMO_PASSWORD
        )

    # Throttled, and the same hashing work for unknown names as for wrong passwords.
    passwords = PasswordLogin(_HASHES)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        next_url = qlikauth.runtime.local_redirect(request.values.get("next"), "/")
        error = None
        if request.method == "POST":
            check_csrf()
            name = request.form.get("username", "").strip().lower()
            try:
                ok = passwords.verify(
                    name, request.form.get("password", ""), request.remote_addr or ""
                )
            except TooManyAttempts as throttled:
                page = render_template(
                    "login.html",
                    next_url=next_url,
                    demo_users=DEMO_USERS,
                    demo_password=DEMO_PASSWORD,
                    error=f"Too many failed sign-ins; try again in {throttled.retry_after} s.",
                )
                return page, 429, {"Retry-After": str(throttled.retry_after)}
            if ok:
                claims = DEMO_USERS[name]
                # Session fixation: nothing from before the sign-in survives (new
                # id, new CSRF token).
                session.clear()
                session["claims"] = claims
                session["csrf"] = secrets.token_urlsafe(24)
                app.session_interface.regenerate(session)  # type: ignore[attr-defined]
                try:
                    # Ensure-user before the first impersonation: a backend JWT login creates the
                    # user in the tenant with its groups (again when the groups change).
                    provisioner.ensure(MAPPING.cloud_identity(claims))
                except QlikAuthError as exc:
                    log.warning(
                        "the Qlik Cloud user could not be ensured (the embed page retries): %s", exc
                    )
                return redirect(next_url)
            error = "Unknown user or wrong password."
        return render_template(
            "login.html",
            next_url=next_url,
            error=error,
            demo_users=DEMO_USERS,
            demo_password=DEMO_PASSWORD,
        ), (401 if error else 200)

    @app.get("/embed")
    def embed() -> Any:
        if signed_in_claims() is None:
            return redirect(url_for("login", next="/embed"))
        return render_template(
            "embed.html", tenant_url=cloud.tenant_url, client_id=cloud_settings.client_id
        )

    @app.post("/logout")
    def logout() -> Any:
        check_csrf()
        response = redirect(url_for("home"))
        try:
            # One sign-out: the proxy sessions on every QSEoW node and the Qlik Cloud token.
            qlikauth.end_sessions(response)
        except QlikAuthError as exc:
            log.error("ending the Qlik sessions failed (they end when they time out): %s", exc)
        finally:
            session.clear()
        return response

    return app


def _tls(certs_dir: Path | None) -> tuple[str, str]:
    """PORTAL_TLS_CERT/KEY, else (with the emulators, ``certs_dir``) one for localhost from their
    CA."""
    cert, key = os.environ.get("PORTAL_TLS_CERT"), os.environ.get("PORTAL_TLS_KEY")
    if cert and key:
        return cert, key
    if cert or key or certs_dir is None:
        raise SystemExit(
            "Set both PORTAL_TLS_CERT and PORTAL_TLS_KEY (the portal's certificate and key, PEM): "
            "a portal in front of a real site and tenant serves https with its own certificate."
        )
    from qlikauth.certgen import temporary_server_certificate

    return temporary_server_certificate(certs_dir, prefix="hybrid-portal-tls-")


def start_emulators(base: str) -> tuple[dict[str, Any], CloudSettings, Path]:
    """The QPS emulator and the emulated tenant (one CA); the portal's settings for both."""
    from qlikauth.emulator import Emulator, VirtualProxy
    from qlikauth.emulator.cloud import CloudTenant, JwtIdentityProvider, OAuthClientConfig

    emu = Emulator(
        certs_dir=os.environ.get("EMULATOR_CERTS") or None,
        host="localhost",
        bind="127.0.0.1",
        virtual_proxies=[VirtualProxy("hybrid", method="ticket", module_uri=f"{base}/qlik/module")],
    )
    emu.start()
    atexit.register(emu.stop)
    certs = Path(emu.certs_dir)
    kid = "hybrid-portal-1"
    jwt_key = SigningKey.generate("RS256", kid=kid)
    client_secret = secrets.token_urlsafe(32)
    tenant = CloudTenant(
        certs,
        jwt_idps=[JwtIdentityProvider(base, {kid: jwt_key.public_key})],
        oauth_clients=[
            OAuthClientConfig(
                "hybrid-embed",
                client_secret=client_secret,
                scopes=("user_default",),
                allowed_origins=(base,),
            )
        ],
    )
    tenant.start()
    atexit.register(tenant.stop)
    signal.signal(
        signal.SIGTERM, lambda *_: sys.exit(0)
    )  # atexit runs: emulators stopped, keys removed
    print(
        f"Emulator: QPS {emu.qps_url}, hub {emu.hub_url_for('hybrid')} (certificates in {certs})",
        flush=True,
    )
    print(f"Qlik Cloud tenant: {tenant.url}", flush=True)
    qlik = {
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(certs),
        "QLIKAUTH_VIRTUAL_PROXY": "hybrid",
        "QLIKAUTH_HUB_URL": emu.hub_url_for("hybrid"),
        "QLIKAUTH_ALLOWED_TARGETS": [emu.hub_url],
    }
    return (
        qlik,
        CloudSettings(
            tenant.url, str(tenant.root_pem), "hybrid-embed", client_secret, jwt_key, base
        ),
        certs,
    )


def settings_from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], CloudSettings] | None:
    """A real site and tenant from the environment (QLIKAUTH_QPS_NODES and QLIKCLOUD_TENANT_URL
    set), else None."""
    from qlikauth.web.config import settings_from_environ

    qlik = {f"QLIKAUTH_{k}": v for k, v in settings_from_environ(environ).items()}
    if "QLIKAUTH_QPS_NODES" not in qlik or not environ.get("QLIKCLOUD_TENANT_URL"):
        return None
    needed = (
        "QLIKCLOUD_CLIENT_ID",
        "QLIKCLOUD_CLIENT_SECRET",
        "QLIKCLOUD_JWT_KEY",
        "QLIKCLOUD_JWT_KID",
        "QLIKCLOUD_JWT_ISSUER",
    )
    missing = [name for name in needed if not environ.get(name)]
    if missing:
        raise SystemExit(
            "QLIKAUTH_QPS_NODES and QLIKCLOUD_TENANT_URL name a real site and tenant; they also "
            "need "
            f"{', '.join(missing)} (see the Hybrid paragraph of examples/README.md)."
        )
    key = SigningKey.from_file(
        environ["QLIKCLOUD_JWT_KEY"],
        environ.get("QLIKCLOUD_JWT_ALG", "RS256"),
        kid=environ["QLIKCLOUD_JWT_KID"],
    )
    return qlik, CloudSettings(
        environ["QLIKCLOUD_TENANT_URL"],
        environ.get("QLIKCLOUD_CA") or True,
        environ["QLIKCLOUD_CLIENT_ID"],
        environ["QLIKCLOUD_CLIENT_SECRET"],
        key,
        environ["QLIKCLOUD_JWT_ISSUER"],
    )


def main() -> int:
    """Serve the portal over https (with the emulators unless a real site and tenant are
    configured)."""
    logging.basicConfig(level=logging.INFO)
    port = int(os.environ.get("PORTAL_PORT", "5444"))
    base = f"https://localhost:{port}"
    real = settings_from_env(os.environ)
    if real is None:
        qlik, cloud_settings, certs = start_emulators(base)
        tls = _tls(certs)
        print(
            f"Trust {certs / 'root.pem'} in your browser (portal, hub and tenant certificates).",
            flush=True,
        )
    else:
        qlik, cloud_settings = real
        tls = _tls(None)
    app = create_app(qlik, cloud_settings)
    print(
        f"Portal: {base}/  (users {', '.join(DEMO_USERS)}, password '{DEMO_PASSWORD}')", flush=True
    )
    try:
        app.run(host="127.0.0.1", port=port, ssl_context=tls, threaded=True, use_reloader=False)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
