"""Two identity providers in one portal: office staff over SAML, clinic workstations over OIDC.

The local SAML IdP (as ``saml``) is the IdP named ``office``, qlikauth's local OpenID provider
(as ``oidc``) the provider named ``clinic``; each has its own mapping and user directory
(``OFFICE\\alice@example.com``, ``CLINIC\\alice``: the same person, two Qlik users, because the
mappings say so), its own caps and its own logout. ``/qlik/sso`` is the chooser page.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from protocols import Setup

NAME = "both"
LABEL = "Sign in (choose your identity provider)"

EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"


def start(portal_base: str, tls: tuple[str, str] | None, certs_dir: str | None = None) -> Setup:
    """Start both identity providers and register the portal with each."""
    from flask import Flask, redirect, session
    from flask_qlikauth.oidc import QlikOidc

    from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings
    from qlikauth.emulator.oidc_op import OidcProvider
    from qlikauth.emulator.saml_idp import SamlIdp
    from qlikauth.web.saml import SAML_SESSION_KEY, saml_user

    if certs_dir is None or tls is None:
        raise SystemExit("--protocol both needs the emulator's certificate directory and TLS")
    idp = SamlIdp(host="localhost", bind="127.0.0.1", tls=tls).start()
    office = {
        "BASE_URL": f"{portal_base}/qlik/saml/office/",
        "IDP_METADATA": idp.metadata(),
        "LABEL": "Office staff (SAML)",
        "CLAIMS": {
            "USER_ID": EMAIL,
            "USER_ID_TRANSFORMS": ["strip", "lower"],
            "USER_DIRECTORY": "OFFICE",
            "REQUIRED": [EMAIL],
        },
    }
    idp.add_sp_metadata(
        SamlServiceProvider(
            SamlSettings.from_settings(
                {k: v for k, v in office.items() if k not in ("LABEL", "CLAIMS")}
            )
        ).metadata()
    )
    ca_bundle = str(Path(certs_dir) / "root.pem")
    secret = secrets.token_urlsafe(32)
    clinic_base = f"{portal_base}/oidc/clinic"
    op = OidcProvider(
        tls=tls,
        ca_bundle=ca_bundle,
        clients=[
            {
                "client_id": "sso-portal",
                "client_secret": secret,
                "redirect_uris": [f"{clinic_base}/callback"],
                "post_logout_redirect_uris": [f"{clinic_base}/logged-out"],
                "backchannel_logout_uri": f"{clinic_base}/backchannel-logout",
            }
        ],
    ).start()
    clinic = {
        "ISSUER": op.issuer,
        "CLIENT_ID": "sso-portal",
        "CLIENT_SECRET": secret,
        "REDIRECT_URI": f"{clinic_base}/callback",
        "POST_LOGOUT_REDIRECT_URI": f"{clinic_base}/logged-out",
        "CA_BUNDLE": ca_bundle,
        "SCOPES": "openid email profile groups",
        "LABEL": "Clinic workstation (OpenID Connect)",
        "SESSION_IDLE_TIMEOUT": 300,  # a nurse walks away: 5 minutes
        "CLAIMS": {
            "USER_ID": "preferred_username",
            "USER_DIRECTORY": "CLINIC",
            "ATTRIBUTES": {"group": "groups"},
        },
    }

    def user_from_session(s: Any, runtime: Any) -> Any:
        return saml_user(s, runtime) or QlikOidc.current_user()

    def init_app(app: Flask) -> None:
        QlikOidc(app)

        @app.post("/sign-out")
        def sign_out() -> Any:
            # 307 keeps the POST (and its form) for the IdP this browser signed in with
            return redirect(
                "/qlik/saml/logout" if SAML_SESSION_KEY in session else "/oidc/logout", code=307
            )

    def stop() -> None:
        idp.stop()
        op.stop()

    return Setup(
        name=NAME,
        label=LABEL,
        settings={"QLIKAUTH_SAML": {"office": office}, "QLIKAUTH_OIDC": {"clinic": clinic}},
        login_path="/qlik/sso",
        logout_path="/sign-out",
        user_from_session=user_from_session,
        idp_info=(
            f"SAML IdP {idp.base_url} and OpenID provider {op.issuer} "
            "(users alice, bob, carol; password demo)"
        ),
        extra={"idp": idp, "provider": op, "init_app": init_app},
        stop=stop,
    )
