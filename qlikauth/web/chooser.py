"""The identity-provider chooser: one page listing every SAML and OpenID provider the portal trusts.

``GET .../sso[?next=/path]`` answers a small page with one sign-in link per provider
(``LABEL`` in each provider's settings, else its name), each carrying ``next`` (a path on the
portal only). A portal with one provider does not need it: its login URL is the way in. The
integrations mount it (Flask: ``/qlik/sso``; Django: ``qlik/sso`` in ``django_qlikauth.urls``)
and tell it where the SAML and OIDC endpoints are mounted.
"""

from __future__ import annotations

from urllib.parse import urlencode

from .flows import NO_STORE, Answer, PageAnswer, PlainAnswer, WebRequest
from .runtime import QlikAuthRuntime

__all__ = ["choose_idp", "providers"]


def providers(
    runtime: QlikAuthRuntime, *, saml_base: str | None, oidc_base: str | None
) -> list[dict[str, str]]:
    """``[{"name", "label", "protocol", "key", "url"}]``: every configured provider and its
    login URL (``saml_base``: where ``/saml/...`` is mounted, e.g. ``/qlik``; ``oidc_base``:
    the OIDC endpoints' prefix, e.g. ``/oidc``; None: that protocol is not mounted)."""
    from .saml import DEFAULT_IDP

    out = []
    if runtime.config.saml and saml_base is not None:
        from . import saml

        for name in saml.saml_idp_names(runtime):
            parts = saml.saml_parts(runtime, name)
            path = "/saml/login" if name == DEFAULT_IDP else f"/saml/{name}/login"
            out.append(
                {
                    "name": name,
                    "label": parts.label,
                    "protocol": "SAML",
                    "key": f"saml-{name}",
                    "url": saml_base.rstrip("/") + path,
                }
            )
    if runtime.config.oidc and oidc_base is not None:
        from . import oidc

        for name in oidc.oidc_idp_names(runtime):
            o = oidc._oidc(runtime, name)
            path = "/login" if name == DEFAULT_IDP else f"/{name}/login"
            out.append(
                {
                    "name": name,
                    "label": o.label,
                    "protocol": "OpenID Connect",
                    "key": f"oidc-{name}",
                    "url": oidc_base.rstrip("/") + path,
                }
            )
    return out


def choose_idp(
    request: WebRequest,
    runtime: QlikAuthRuntime,
    *,
    saml_base: str | None = None,
    oidc_base: str | None = None,
) -> Answer:
    """``GET .../sso[?next=/path]``: the chooser page (see the module docstring)."""
    if request.method not in ("GET", "HEAD"):
        return PlainAnswer(
            status=405, body="Method not allowed.\n", headers=NO_STORE + (("Allow", "GET"),)
        )
    nxt = runtime.local_redirect(request.args.get("next"), "")
    found = providers(runtime, saml_base=saml_base, oidc_base=oidc_base)
    for p in found:
        if nxt:
            p["url"] += "?" + urlencode({"next": nxt})
    return PageAnswer(
        template="qlikauth/choose.html",
        context={"providers": found},
        headers=NO_STORE
        + (("X-Frame-Options", "DENY"), ("Content-Security-Policy", "frame-ancestors 'none'")),
    )
