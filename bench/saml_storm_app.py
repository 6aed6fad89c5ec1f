"""The SSO example portal (SAML) as gunicorn serves it for the SAML sign-in storm.

``gunicorn saml_storm_app:app`` (run from ``bench/``). ``BENCH_SAML_CONFIG`` names a JSON file
with the Qlik settings (``QLIKAUTH_*``), the SAML and CLAIMS settings (the IdP's metadata
inline, ``STATE_STORE`` a Redis URL so every worker shares the one-time state) and the
portal's secret key: the same settings in every worker, as a real deployment has. With
``"protocol_name": "oidc"`` and ``QLIKAUTH_OIDC`` instead, it is the portal of
``--protocol oidc`` (``bench/load_faults.py`` runs one of each).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORTAL = ROOT / "examples" / "sso_portal"
for _p in (str(ROOT), str(ROOT / "integrations"), str(PORTAL)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import protocols  # noqa: E402  (examples/sso_portal/protocols)
from _procs import load_module  # noqa: E402 - bench/ is gunicorn's working directory

from qlikauth.web.saml import saml_user  # noqa: E402

portal = load_module(PORTAL / "run.py", "sso_portal_run")

_config = json.loads(Path(os.environ["BENCH_SAML_CONFIG"]).read_text())
os.environ.setdefault("PORTAL_SECRET_KEY", _config["secret_key"])
if _config.get("protocol_name") == "oidc":
    from flask_qlikauth.oidc import QlikOidc

    # as protocols/oidc.py: QlikOidc's hook has checked the SSO session before the loader runs
    _setup = protocols.Setup(
        name="oidc",
        label="OpenID Connect",
        settings=_config["protocol"],
        login_path="/oidc/login",
        logout_path="/oidc/logout",
        user_from_session=lambda _s, _r: QlikOidc.current_user(),
        extra={"init_app": QlikOidc},
    )
else:
    _setup = protocols.Setup(
        name="saml",
        label="SAML",
        settings=_config["protocol"],
        login_path="/qlik/saml/login",
        logout_path="/qlik/saml/logout",
        user_from_session=saml_user,
    )
app = portal.create_app(_setup, _config["qlik"])
if _config.get("http_portal"):
    # bench/load_faults.py serves it over plain http: the portal session cookie must come back
    # to it as it would over https.
    app.config.update(SESSION_COOKIE_SECURE=False)
