"""A small Flask portal that signs its users into Qlik Sense with tickets (flask_qlikauth).

Run it with one command; with no QLIKAUTH_* settings in the environment it starts the
qlikauth emulator (a local QPS node and hub over real TLS) and points itself at it::

    .venv/bin/python examples/flask_portal/app.py            # http://localhost:5000/

To point it at a real site, set the environment (see examples/README.md)::

    QLIKAUTH_QPS_NODES=https://qlik.example.com:4243 QLIKAUTH_CERTS=/etc/qlik/certs \
    QLIKAUTH_HUB_URL=https://qlik.example.com/portal/hub/ QLIKAUTH_VIRTUAL_PROXY=portal \
    QLIKAUTH_USER_DIRECTORY=PORTAL PORTAL_SECRET_KEY=... python examples/flask_portal/app.py
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, abort, redirect, render_template, request, session, url_for
from flask_session import Session
from werkzeug.security import generate_password_hash

try:
    from flask_portal.password_login import PasswordLogin, TooManyAttempts
except ImportError:  # run as a script, or loaded from its file: import from this directory
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from password_login import PasswordLogin, TooManyAttempts  # type: ignore[no-redef]

try:
    from flask_qlikauth import QlikAuth
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "integrations"))
    from flask_qlikauth import QlikAuth

from qlikauth.identity import QlikUser
from qlikauth.web.config import settings_from_environ

#: Demo users: password "demo" for all; different groups show Section Access attributes.
DEMO_USERS: dict[str, dict[str, Any]] = {
    "alice": {"name": "Alice Andersen", "groups": ["Sales", "Finance"]},
    "bob": {"name": "Bob Berg", "groups": ["Marketing"]},
    "carol": {"name": "Carol Christensen", "groups": ["Admins", "Sales"]},
}
DEMO_PASSWORD = "demo"
_HASHES = {name: generate_password_hash(DEMO_PASSWORD) for name in DEMO_USERS}

qlikauth = QlikAuth()


@qlikauth.user_loader
def load_qlik_user() -> QlikUser | None:
    """Who is signed in to the portal, as Qlik should see them."""
    name = session.get("user")
    if name not in DEMO_USERS:
        return None
    return qlikauth.runtime.user_for(name, DEMO_USERS[name]["groups"])


def _csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


def _check_csrf() -> None:
    sent = request.form.get("csrf", "")
    if not sent or not secrets.compare_digest(sent, session.get("csrf", "")):
        abort(400, "The form expired; go back and try again.")


def server_side_sessions(app: Flask) -> None:
    """Keep the portal session on the server; the browser's cookie holds only a random id.

    Flask's default session is a signed cookie that sign-out cannot revoke: a copy stays valid
    for PERMANENT_SESSION_LIFETIME (31 days by default). With Flask-Session, sign-out deletes
    the session on the server, so a copied cookie is worthless from then on.

    * ``PORTAL_SESSION_REDIS=redis://...``: sessions in Redis, shared by every process and host;
    * else ``PORTAL_SESSION_DIR`` (or a new private temporary directory): files, shared by the
      processes of one host. The directory must be private to the portal's account (the
      files are unpickled), which mkdtemp's 0700 directory is.
    * ``PORTAL_HTTPS=1``: the portal is served over https (directly or behind a TLS proxy), so its
      cookie is ``Secure``. Leave it unset only for plain http on localhost.
    """
    redis_url = os.environ.get("PORTAL_SESSION_REDIS")
    if redis_url:
        import redis

        app.config.update(SESSION_TYPE="redis", SESSION_REDIS=redis.Redis.from_url(redis_url))
    else:
        from cachelib.file import FileSystemCache

        directory = os.environ.get("PORTAL_SESSION_DIR")
        if not directory:
            directory = tempfile.mkdtemp(prefix="qlikauth-portal-sessions-")
            atexit.register(shutil.rmtree, directory, True)
        app.config.update(
            SESSION_TYPE="cachelib",
            SESSION_CACHELIB=FileSystemCache(directory, threshold=100_000, mode=0o600),
        )
    app.config.update(
        # A browser-session cookie; the server forgets the session 8 hours after its last change.
        # Not refreshed on every request: an answer that sets no cookie can be cached by nginx's
        # identity cache (examples/header_proxy), and a session cannot be kept alive forever.
        SESSION_PERMANENT=False,
        SESSION_REFRESH_EACH_REQUEST=False,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=8),
        SESSION_COOKIE_SECURE=os.environ.get("PORTAL_HTTPS", "0") == "1",
    )
    Session(app)


def settings_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The QLIKAUTH_* variables qlikauth knows (others, like QLIKAUTH_REQUIRE_ALL, are not ours)."""
    return {f"QLIKAUTH_{k}": v for k, v in settings_from_environ(environ).items()}


def create_app(settings: Mapping[str, Any] | None = None) -> Flask:
    """The portal app; ``settings`` are QLIKAUTH_* keys (default: from the environment)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_NAME="portal_session",
        QLIKAUTH_USER_DIRECTORY="PORTAL",
        QLIKAUTH_LOGIN_URL="/login",
    )
    app.config.update(settings if settings is not None else settings_from_env(os.environ))
    server_side_sessions(app)
    qlikauth.init_app(app)
    app.jinja_env.globals["csrf_token"] = _csrf_token

    @app.get("/")
    def home() -> str:
        user = load_qlik_user()
        return render_template(
            "home.html", user=user, demo_users=DEMO_USERS, hub_url=app.config["QLIKAUTH_HUB_URL"]
        )

    # Throttled, and the same hashing work for unknown names as for wrong passwords.
    passwords = PasswordLogin(_HASHES)
    app.extensions["portal_passwords"] = passwords

    def _too_many(throttled: TooManyAttempts, next_url: str) -> Any:
        page = render_template(
            "login.html",
            next_url=next_url,
            demo_users=DEMO_USERS,
            demo_password=DEMO_PASSWORD,
            error=f"Too many failed sign-ins; try again in {throttled.retry_after} s.",
        )
        return page, 429, {"Retry-After": str(throttled.retry_after)}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        next_url = qlikauth.runtime.local_redirect(
            request.values.get("next"), url_for("qlikauth.login")
        )
        error = None
        if request.method == "POST":
            _check_csrf()
            name = request.form.get("username", "").strip().lower()
            password = request.form.get("password", "")
            try:
                ok = passwords.verify(name, password, request.remote_addr or "")
            except TooManyAttempts as throttled:
                return _too_many(throttled, next_url)
            if ok:
                # Session fixation: nothing from before sign-in survives: a new session id
                # (the old one is deleted on the server), a new CSRF token.
                session.clear()
                session["user"] = name
                session["csrf"] = secrets.token_urlsafe(24)
                app.session_interface.regenerate(session)  # type: ignore[attr-defined]
                return redirect(next_url)
            error = "Unknown user or wrong password."
        return render_template(
            "login.html",
            next_url=next_url,
            error=error,
            demo_users=DEMO_USERS,
            demo_password=DEMO_PASSWORD,
        ), (401 if error else 200)

    @app.post("/logout")
    def logout() -> Any:
        _check_csrf()
        response = redirect(url_for("login", next="/"))
        try:
            qlikauth.end_sessions(response)
        finally:
            session.clear()
        return response

    return app


def _start_emulator(port: int) -> dict[str, str]:
    """Start the emulator with a ticket virtual proxy 'portal' whose module is this portal."""
    from qlikauth.emulator import Emulator, VirtualProxy

    emu = Emulator(
        host="localhost",
        bind="127.0.0.1",
        virtual_proxies=[
            VirtualProxy(
                prefix="portal", method="ticket", module_uri=f"http://localhost:{port}/qlik/module"
            ),
        ],
    )
    emu.__enter__()
    # Stop it (and delete its generated keys) however the portal ends: Ctrl-C, kill, or a crash.
    atexit.register(emu.stop)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(
        f"Emulator: QPS {emu.qps_url}, hub {emu.hub_url_for('portal')} (certificates in "
        f"{emu.certs_dir})",
        flush=True,
    )
    return {
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("portal"),
        "QLIKAUTH_VIRTUAL_PROXY": "portal",
    }


def main() -> None:
    """Serve the portal (starting the emulator unless QLIKAUTH_QPS_NODES is set)."""
    port = int(os.environ.get("PORTAL_PORT", "5000"))
    bind = os.environ.get("PORTAL_BIND", "127.0.0.1")
    settings = settings_from_env(os.environ)
    if "QLIKAUTH_QPS_NODES" not in settings:
        settings.update(_start_emulator(port))
    app = create_app(settings)
    print(
        f"Flask portal: http://localhost:{port}/  (demo users: {', '.join(DEMO_USERS)}; "
        f"password '{DEMO_PASSWORD}')",
        flush=True,
    )
    app.run(host=bind, port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
