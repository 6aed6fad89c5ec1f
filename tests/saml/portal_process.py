"""A SAML portal process for the multi-process tests: Flask + flask_qlikauth, settings from a JSON
file.

``SAML_PORTAL_CONFIG`` names the JSON (``secret_key``, ``qlik``: QLIKAUTH_* keys incl. SAML and
CLAIMS); ``PORT`` the port on 127.0.0.1. Several processes with the same file are several
instances of one portal behind a load balancer: their one-time state is shared through the
``STATE_STORE`` in the SAML settings (Redis).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "integrations"))

from flask import Flask, session  # noqa: E402
from flask_qlikauth import QlikAuth  # noqa: E402

from qlikauth.web.saml import saml_user  # noqa: E402

config = json.loads(Path(os.environ["SAML_PORTAL_CONFIG"]).read_text())
app = Flask(__name__)
app.config.update(SECRET_KEY=config["secret_key"], **config["qlik"])
qlikauth = QlikAuth()


@qlikauth.user_loader
def user():  # type: ignore[no-untyped-def]
    return saml_user(session, qlikauth.runtime)


qlikauth.init_app(app)  # after the user loader: init_app refuses to run without one


@app.get("/whoami")
def whoami() -> str:
    u = qlikauth.current_user()
    return f"{os.getpid()} {u.qualified_name if u else 'nobody'}"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ["PORT"]), threaded=True, use_reloader=False)
