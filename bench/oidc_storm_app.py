"""A portal whose users sign in only with OpenID Connect, as gunicorn serves it for the OIDC storm.

``gunicorn oidc_storm_app:app`` (run from ``bench/``): ``QLIKAUTH_*`` and ``QLIKAUTH_OIDC`` (JSON)
from the environment, plain http on loopback (the relying party allows http only there), so
the cookies are not ``Secure`` and the binding cookie is not ``__Host-``. ``/whoami`` says who
the portal thinks is signed in.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for _p in (str(ROOT), str(ROOT / "integrations")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from flask import Flask, jsonify  # noqa: E402
from flask_qlikauth import QlikAuth  # noqa: E402
from flask_qlikauth.oidc import QlikOidc  # noqa: E402

from qlikauth.web.config import settings_from_environ  # noqa: E402

app = Flask(__name__)
app.secret_key = os.environ["PORTAL_SECRET_KEY"]
app.config.update(SESSION_COOKIE_SECURE=False, SESSION_COOKIE_SAMESITE="Lax")
for _key, _value in settings_from_environ().items():
    app.config[f"QLIKAUTH_{_key}"] = _value
QlikAuth(app, user_loader=QlikOidc.current_user)
QlikOidc(app)


@app.get("/whoami")
def whoami():  # type: ignore[no-untyped-def]
    user = QlikOidc.current_user()
    return jsonify(user=None if user is None else user.qualified_name)
