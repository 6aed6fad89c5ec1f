"""The single sign-on protocols the SSO example portal can run with, one module each.

Each module has ``NAME``, ``LABEL`` and ``start(portal_base_url, tls, certs_dir) -> Setup``
(``certs_dir``: the emulator's CA, which issued ``tls``): it starts a
local identity provider for that protocol and returns the ``QLIKAUTH_*`` settings, the paths
of its login and logout endpoints and how to read the signed-in user from the portal's session.
``saml`` (a local pysaml2 IdP), ``oidc`` (qlikauth's local OpenID provider) and ``both`` (the
two in one portal, chosen on ``/qlik/sso``)
are here. ``extra["init_app"]``, when a protocol gives it, is called with the Flask app after
``QlikAuth(app)`` (OIDC registers its routes and its per-request SSO-session check there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Setup:
    """What a protocol gives the portal."""

    name: str
    label: str
    settings: dict[str, Any]  # QLIKAUTH_* keys for the Flask app
    login_path: str  # GET ?next=... starts the sign-in
    logout_path: str  # POST ends the portal, Qlik and IdP sessions
    user_from_session: Callable[[Any, Any], Any]  # (session, runtime) -> QlikUser | None
    idp_info: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    stop: Callable[[], None] = lambda: None


def load(name: str) -> Any:
    """The protocol module called ``name``."""
    import importlib

    try:
        return importlib.import_module(f"protocols.{name}")
    except ModuleNotFoundError:
        raise SystemExit(
            f"unknown protocol {name!r}: this portal knows saml, oidc and both"
        ) from None
