"""OpenID Connect for the SSO example portal: qlikauth's local OpenID provider (no node needed).

The provider is :class:`qlikauth.emulator.oidc_op.OidcProvider`, served over https with the
portal's certificate: a login page with the demo users alice, bob and carol (password ``demo``),
PKCE required, back-channel logout to the portal. The portal's endpoints are ``/oidc/login``,
``/oidc/callback``, ``/oidc/logout``, ``/oidc/logged-out`` and ``/oidc/backchannel-logout``
(flask_qlikauth.oidc). Any certified provider takes its place with the same settings (Entra ID,
Okta, Keycloak, Imprivata: docs/oidc.md).
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from protocols import Setup

NAME = "oidc"
LABEL = "Sign in with OpenID Connect (local provider)"


def start(portal_base: str, tls: tuple[str, str] | None, certs_dir: str | None = None) -> Setup:
    """Start the provider (over https with the portal's certificate) and register the portal."""
    from flask_qlikauth.oidc import QlikOidc

    from qlikauth.emulator.oidc_op import OidcProvider

    if certs_dir is None or tls is None:
        raise SystemExit("--protocol oidc needs the emulator's certificate directory and TLS")
    ca_bundle = str(
        Path(certs_dir) / "root.pem"
    )  # issued the portal's and the provider's certificate
    secret = secrets.token_urlsafe(32)
    client = {
        "client_id": "sso-portal",
        "client_secret": secret,
        "redirect_uris": [f"{portal_base}/oidc/callback"],
        "post_logout_redirect_uris": [f"{portal_base}/oidc/logged-out"],
        "backchannel_logout_uri": f"{portal_base}/oidc/backchannel-logout",
    }
    op = OidcProvider(tls=tls, clients=[client], ca_bundle=ca_bundle).start()
    oidc: dict[str, Any] = {
        "ISSUER": op.issuer,
        "CLIENT_ID": "sso-portal",
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": f"{portal_base}/oidc/callback",
        "POST_LOGOUT_REDIRECT_URI": f"{portal_base}/oidc/logged-out",
        "CA_BUNDLE": ca_bundle,
        "SCOPES": "openid email profile groups",
        "SESSION_IDLE_TIMEOUT": 900,  # shared clinical workstations: an idle sign-in ends
        "CLAIMS": {
            "USER_ID": "email",
            "USER_ID_TRANSFORMS": ["strip", "lower"],  # the e-mail as user id
            "USER_DIRECTORY": "SSO",
            "ATTRIBUTES": {"group": "groups"},
            "REQUIRED": ["email"],
            "IDP": "the local OpenID provider",
        },
    }
    return Setup(
        name=NAME,
        label=LABEL,
        settings={"QLIKAUTH_OIDC": oidc},
        login_path="/oidc/login",
        logout_path="/oidc/logout",
        # QlikOidc's before_request hook has checked the SSO session (logout, caps) already
        user_from_session=lambda _session, _runtime: QlikOidc.current_user(),
        idp_info=f"OpenID provider {op.issuer} (users alice, bob, carol; password demo)",
        extra={"provider": op, "init_app": QlikOidc},
        stop=op.stop,
    )
