"""SAML for the SSO example portal: the local pysaml2 IdP (Entra-shaped claims) and the portal's SP
settings."""

from __future__ import annotations

from typing import Any

from protocols import Setup

NAME = "saml"
LABEL = "Sign in with SAML (local IdP)"

EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"


def start(portal_base: str, tls: tuple[str, str] | None, certs_dir: str | None = None) -> Setup:
    """Start the IdP (over https when ``tls`` is given) and trust the portal's SP."""
    from qlikauth.bridges.saml import SamlServiceProvider, SamlSettings
    from qlikauth.emulator.saml_idp import DEMO_GROUPS, SamlIdp
    from qlikauth.web.saml import saml_user

    idp = SamlIdp(host="localhost", bind="127.0.0.1", tls=tls).start()
    saml = {
        "BASE_URL": f"{portal_base}/qlik/saml/",
        "IDP_METADATA": idp.metadata(),
        "ALLOW_HTTP": tls is None,
        "BROWSER_COOKIE_SECURE": tls is not None,
    }
    # The IdP must know the SP (entity id, ACS, SLO): its metadata, as an admin would upload it.
    idp.add_sp_metadata(SamlServiceProvider(SamlSettings.from_settings(saml)).metadata())
    claims = {
        "USER_ID": EMAIL,
        "USER_ID_TRANSFORMS": [
            "strip",
            "lower",
        ],  # e-mail as user id: one person, one user on-premises and in Qlik Cloud
        "USER_DIRECTORY": "SSO",  # = the Qlik Cloud realm
        "ATTRIBUTES": {
            "group": ["groups", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"]
        },
        "GROUP_NAMES": {guid: name for name, guid in DEMO_GROUPS.items()},
        "UNKNOWN_GROUPS": "refuse",
        "REQUIRED": [EMAIL],
        "IDP": "the local IdP",
    }
    settings: dict[str, Any] = {"QLIKAUTH_SAML": saml, "QLIKAUTH_CLAIMS": claims}
    return Setup(
        name=NAME,
        label=LABEL,
        settings=settings,
        login_path="/qlik/saml/login",
        logout_path="/qlik/saml/logout",
        user_from_session=saml_user,
        idp_info=(
            f"SAML IdP {idp.base_url} (metadata {idp.base_url}/metadata; keys in "
            f"{idp.cert_file.parent})"
        ),
        extra={
            "idp": idp,
            "idp_logout": f"{idp.base_url}/logout?sp_slo={portal_base}/qlik/saml/slo&user=",
        },
        stop=idp.stop,
    )
