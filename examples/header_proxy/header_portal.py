"""The portal of the header-authentication example: it decides who, nginx injects it.

A plain Flask portal with its own login (CSRF token, session cleared at sign-in) and
``flask_qlikauth``, whose ``/qlik/header-auth`` endpoint answers nginx's ``auth_request``:
200 with ``X-Qlik-Header-Value: <user id>`` for a signed-in user, 401 otherwise. The portal
never reads an identity from a request header, and listens on loopback only: browsers reach
Qlik through nginx, and nginx reaches this portal.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from flask import Flask, abort, redirect, render_template, request, session, url_for
from flask_session import Session
from werkzeug.security import generate_password_hash

try:
    from flask_qlikauth import QlikAuth
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "integrations"))
    from flask_qlikauth import QlikAuth

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from flask_portal.password_login import PasswordLogin, TooManyAttempts  # noqa: E402

from qlikauth.exceptions import RedirectError
from qlikauth.identity import QlikUser

USER_DIRECTORY = "PORTAL"
DEMO_USERS = {"alice": "Alice Andersen", "bob": "Bob Berg", "carol": "Carol Christensen"}
DEMO_PASSWORD = "demo"  # noqa: S105 - demo users only
_HASHES = {name: generate_password_hash(DEMO_PASSWORD) for name in DEMO_USERS}

qlikauth = QlikAuth()


@qlikauth.user_loader
def load_qlik_user() -> QlikUser | None:
    """Who is signed in to the portal, as the header virtual proxy should see them."""
    name = session.get("user")
    return QlikUser(USER_DIRECTORY, name) if name in DEMO_USERS else None


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


def create_app(settings: Mapping[str, Any]) -> Flask:
    """The portal; ``settings`` are QLIKAUTH_* keys (HUB_URL is the hub *through nginx*)."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_NAME="portal_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        QLIKAUTH_HEADER_NAME="X-Portal-User",
        QLIKAUTH_HEADER_USER_DIRECTORY=USER_DIRECTORY,
        QLIKAUTH_LOGIN_URL="/login",
    )
    app.config.update(settings)
    server_side_sessions(app)
    qlikauth.init_app(app)
    app.jinja_env.globals["csrf_token"] = _csrf_token

    def safe_next(value: str | None) -> str:
        # Back to the hub through nginx (an allowed absolute URL) or a path on this portal.
        if value and not value.startswith("/"):
            try:
                return qlikauth.runtime.hub_policy.check(value)
            except RedirectError:
                return url_for("home")
        return qlikauth.runtime.local_redirect(value, url_for("home"))

    @app.get("/")
    def home() -> str:
        return render_template(
            "home.html", user=load_qlik_user(), hub_url=app.config["QLIKAUTH_HUB_URL"]
        )

    # Throttled, and the same hashing work for unknown names as for wrong passwords.
    passwords = PasswordLogin(_HASHES)

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        next_url = safe_next(request.values.get("next"))
        error = None
        if request.method == "POST":
            _check_csrf()
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
                session.clear()  # against session fixation: nothing survives, and a new id
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
        response = redirect(url_for("login"))
        try:
            # End the user's Qlik sessions on every node: the header virtual proxy's session
            # (and the websockets riding on it) would otherwise live on until Qlik times it out.
            qlikauth.end_sessions(response)
        finally:
            # Deleted on the server: nginx asks on every request, the next one is anonymous,
            # and a copy of the old cookie is worthless.
            session.clear()
        return response

    return app
