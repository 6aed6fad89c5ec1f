"""OpenID Connect for the SSO example portal: a certified OpenID provider (oidc-provider on node).

The provider is the test peer ``tests/peers/oidc-provider`` (``scripts/bootstrap.sh`` installs it
with ``npm ci``): a login page with the demo users alice and bob (password ``demo``), PKCE
required, back-channel logout to the portal. The portal's endpoints are ``/oidc/login``,
``/oidc/callback``, ``/oidc/logout`` and ``/oidc/backchannel-logout`` (flask_qlikauth.oidc).
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path
from typing import Any

from protocols import Setup

NAME = "oidc"
LABEL = "Sign in with OpenID Connect (local provider)"

PEERS = Path(__file__).resolve().parents[3] / "tests" / "peers"


def start(portal_base: str, tls: tuple[str, str] | None, certs_dir: str | None = None) -> Setup:
    """Start the provider (over https with the portal's certificate) and register the portal."""
    if str(PEERS) not in sys.path:
        sys.path.insert(0, str(PEERS))
    from flask_qlikauth.oidc import QlikOidc
    from op_peer import (  # the test peer doubles as the demo provider
        DEFAULT_ACCOUNTS,
        OpenIDProvider,
        node_available,
    )

    why = node_available()
    if why:
        raise SystemExit(f"--protocol oidc needs the OpenID provider peer: {why}")
    if certs_dir is None:
        raise SystemExit("--protocol oidc needs the emulator's certificate directory")
    secret = secrets.token_urlsafe(32)
    client = {"client_id": "sso-portal", "client_secret": secret, "token_endpoint_auth_method": "client_secret_basic",
              "redirect_uris": [f"{portal_base}/oidc/callback"], "post_logout_redirect_uris": [f"{portal_base}/"],
              "backchannel_logout_uri": f"{portal_base}/oidc/backchannel-logout",
              "backchannel_logout_session_required": True,
              "grant_types": ["authorization_code"], "response_types": ["code"]}
    accounts = {name: {**account, "password": "demo"} for name, account in DEFAULT_ACCOUNTS.items()}
    op = OpenIDProvider(certs_dir, clients=[client], accounts=accounts, tls=tls).start()
    oidc: dict[str, Any] = {
        "ISSUER": op.issuer, "CLIENT_ID": "sso-portal", "CLIENT_SECRET": secret,
        "REDIRECT_URI": f"{portal_base}/oidc/callback", "POST_LOGOUT_REDIRECT_URI": f"{portal_base}/",
        "CA_BUNDLE": op.ca_bundle, "SCOPES": "openid email profile groups",
        "SESSION_IDLE_TIMEOUT": 900,                       # shared clinical workstations: an idle sign-in ends
        "CLAIMS": {"USER_ID": "email", "USER_ID_TRANSFORMS": ["strip", "lower"],  # e-mail as user id: one user in both
                   "USER_DIRECTORY": "SSO", "ATTRIBUTES": {"group": "groups"}, "REQUIRED": ["email"],
                   "IDP": "the local OpenID provider"},
    }
    return Setup(name=NAME, label=LABEL, settings={"QLIKAUTH_OIDC": oidc}, login_path="/oidc/login",
                 logout_path="/oidc/logout",
                 # QlikOidc's before_request hook has checked the SSO session (logout, caps) already
                 user_from_session=lambda _session, _runtime: QlikOidc.current_user(),
                 idp_info=f"OpenID provider {op.issuer} (users alice, bob; password demo)",
                 extra={"provider": op, "init_app": QlikOidc},
                 stop=op.stop)
