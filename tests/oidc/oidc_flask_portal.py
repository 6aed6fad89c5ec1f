"""A minimal Flask portal whose users sign in only through OpenID Connect (for tests/oidc).

Configured from the environment: ``QLIKAUTH_*`` (QPS nodes, certificates, hub, mode) and
``QLIKAUTH_OIDC`` (JSON); ``PORTAL_PORT``, ``PORTAL_TLS_CERT``/``PORTAL_TLS_KEY`` (https),
``QLIKAUTH_STATE_STORE`` (optional, e.g. a Redis URL: a shared store, so two of these portals act
as one site).
``/`` shows who is signed in (``#user``), ``/whoami`` the same as JSON.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "integrations"))

from flask import Flask, jsonify  # noqa: E402
from flask_qlikauth import QlikAuth  # noqa: E402
from flask_qlikauth.oidc import QlikOidc  # noqa: E402
from markupsafe import escape  # noqa: E402

from qlikauth.web.config import settings_from_environ  # noqa: E402

app = Flask(__name__)
app.secret_key = os.environ.get("PORTAL_SECRET_KEY") or secrets.token_hex(32)
app.config.update(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Lax")
for key, value in settings_from_environ().items():
    app.config[f"QLIKAUTH_{key}"] = value
qlik = QlikAuth(app, user_loader=lambda: QlikOidc.current_user())
sso = QlikOidc(app)


@app.get("/")
def home() -> str:
    user = QlikOidc.current_user()
    if user is None:
        return (
            '<p id="anonymous">Nobody is signed in. <a id="signin" href="/oidc/login">Sign '
            "in</a></p>"
        )
    return f'<p>Signed in as <span id="user">{escape(user.qualified_name)}</span></p>'


@app.get("/whoami")
def whoami():  # type: ignore[no-untyped-def]
    user = QlikOidc.current_user()
    return jsonify(
        user=None if user is None else user.qualified_name,
        groups=[] if user is None else user.groups,
    )


if __name__ == "__main__":
    tls = (
        (os.environ["PORTAL_TLS_CERT"], os.environ["PORTAL_TLS_KEY"])
        if os.environ.get("PORTAL_TLS_CERT")
        else None
    )
    app.run(host="127.0.0.1", port=int(os.environ["PORTAL_PORT"]), ssl_context=tls, threaded=True)
