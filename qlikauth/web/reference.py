"""The settings reference (docs/settings.md), generated from the settings tables themselves.

Every key the code reads comes from its own table (:data:`qlikauth.web.config.SETTING_KEYS`,
``SamlSettings._KEYS``, the OIDC relying party's fields and web keys, ``ClaimsMapping._KEYS``),
with the default the code uses; this module only adds one line of meaning per key.
:func:`check_reference` refuses a key without a description and a description without a key,
and a test compares docs/settings.md with :func:`settings_reference`, so the page cannot drift
from the code. Regenerate it with ``python -m qlikauth.web.reference > docs/settings.md``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

__all__ = ["settings_reference", "check_reference", "tables"]

PORTAL = {
    "QPS_NODES": "**Required.** QPS API base URL(s), `https://host:4243`: a list or a "
    "comma-separated string. Creation calls go to the first healthy one.",
    "VIRTUAL_PROXY": 'The virtual proxy prefix (`""`: the default virtual proxy).',
    "CERTS": "**Required.** The directory with `client.pem`, `client_key.pem`, `root.pem` from "
    "the QMC export, or a `.pfx`/`.p12` file.",
    "CERT_PASSPHRASE": "The password chosen at export, if the key (or PFX) has one.",
    "HUB_URL": "**Required.** Where users land, e.g. `https://qlik.example.com/portal/hub/`; "
    "its origin is always an allowed target.",
    "NODE_HUB_URLS": "The hub of each QPS node (`{node: hub}`, or a list in `QPS_NODES` "
    "order): a ticket is redeemed at the node that issued it.",
    "ALLOWED_TARGETS": "Further origins `target` and `TargetUri` may point at.",
    "MODE": '`"ticket"` or `"session"`: what `/qlik/login` does.',
    "COOKIE_NAME": "The virtual proxy's *session cookie header name* (unset: "
    "`X-Qlik-Session-<prefix>`, `X-Qlik-Session` for the default proxy).",
    "COOKIE_DOMAIN": "Domain of the proxy session cookie (unset: host-only); must cover Qlik's "
    "host.",
    "COOKIE_SECURE": "The session cookie's `Secure` attribute.",
    "COOKIE_SAMESITE": '`"Lax"`, `"Strict"`, `"None"` (needs `COOKIE_SECURE`), or unset.',
    "TIMEOUT": "Seconds QPS has to answer (read timeout), > 0 and <= 120.",
    "CONNECT_TIMEOUT": "Seconds to connect to a node (unset: `TIMEOUT`).",
    "UNHEALTHY_FOR": "Seconds a node that failed (down, hung, 5xx) is asked last.",
    "USER_DIRECTORY": "The Qlik user directory of portal users (the default user mapper's).",
    "LOGIN_URL": "The portal's login page (Django: default `settings.LOGIN_URL`, or a URL "
    "pattern name).",
    "USER_MAPPER": "Django: dotted path or callable `f(django_user) -> QlikUser | None`.",
    "SESSION_RECHECK": "Seconds after which a page view confirms the remembered proxy session "
    "with QPS (`0`: every view; unset: never).",
    "HEADER_NAME": "Header authentication: the virtual proxy's header name (`X-Portal-User`).",
    "HEADER_USER_DIRECTORY": "Header authentication: the directory of a *static* header virtual "
    "proxy (unset: dynamic).",
    "HEADER_PATTERN": "Header authentication: the dynamic pattern, `$ud` and `$id` once each.",
    "HEADER_RESPONSE_HEADER": "The response header `/qlik/header-auth` carries the value in "
    "(nginx reads it).",
    "OIDC": "OpenID Connect sign-in: the mapping below (or its JSON text).",
    "STATE_STORE": 'Where one-time sign-in state lives, shared by every process: `"memory"`, '
    '`"redis://host:6379/0"`, `"django-cache:ALIAS"` or a `StateStore`.',
    "STORE_KEYS": 'Keys sealing bearer values in a shared store (`"kid:base64url"`, ...).',
    "SAML": "SAML sign-in: the mapping below.",
    "CLAIMS": "IdP claims to a Qlik user: the mapping below.",
}

SAML = {
    "BASE_URL": "E.g. `https://portal.example.com/qlik/saml/`: stands for `SP_ENTITY_ID`, "
    "`ACS_URL` and `SLO_URL`.",
    "SP_ENTITY_ID": 'The SP\'s entity id (default `BASE_URL + "metadata"`).',
    "ACS_URL": 'The Assertion Consumer Service, HTTP-POST (default `BASE_URL + "acs"`).',
    "SLO_URL": 'Single logout (default `BASE_URL + "slo"`).',
    "IDP_METADATA": "**Required.** The IdP's metadata XML, or a path to it (never fetched at "
    "run time).",
    "IDP_ENTITY_ID": "Which IdP, when the metadata lists several.",
    "SP_CERT": "The SP's certificate (PEM file), with `SP_KEY`.",
    "SP_KEY": "The SP's private key (PEM file): signs requests, decrypts assertions.",
    "SIGN_REQUESTS": "Sign AuthnRequests (needs `SP_KEY`/`SP_CERT`).",
    "WANT_RESPONSE_SIGNED": "The Response must be signed.",
    "WANT_ASSERTIONS_SIGNED": "The assertion must be signed (at least one of the two is on).",
    "ALLOW_UNSOLICITED": "Accept IdP-initiated sign-in (login CSRF: see docs/saml.md).",
    "ALLOW_SHA1": "Accept SHA-1 signatures and digests.",
    "CLOCK_SKEW": "Seconds of clock difference tolerated (at most 300).",
    "REQUEST_TTL": "Seconds an AuthnRequest may stay unanswered.",
    "LOGOUT_MAX_AGE": "How old an IdP LogoutRequest may be, seconds.",
    "NAME_ID_FORMAT": "The NameID format to ask for (unset: the IdP's choice).",
    "BROWSER_COOKIE": "The cookie binding a sign-in to the browser that started it.",
    "BROWSER_COOKIE_SECURE": "Keep it on: the ACS is reached by a cross-site POST.",
    "ALLOW_HTTP": "Allow `http://` URLs (local tests only).",
    "UNSOLICITED_RELAY_STATES": "With `ALLOW_UNSOLICITED`: the exact `RelayState` values an "
    "IdP-initiated sign-in may land on.",
    "CERT_EXPIRY_WARNING_DAYS": "Warn this many days before an IdP signing certificate expires.",
    "IDP_NEXT_CERT": "The IdP's next signing certificate (PEM or a path), during a rollover.",
}

OIDC = {
    "ISSUER": "**Required.** The provider's issuer, compared exactly with the discovery "
    "document and every token.",
    "CLIENT_ID": "**Required.** The client (application) id.",
    "REDIRECT_URI": "**Required.** The callback URL registered at the provider "
    "(`https://portal/oidc/callback`).",
    "CLIENT_SECRET": "For `client_secret_basic` / `client_secret_post`.",
    "TOKEN_ENDPOINT_AUTH_METHOD": "`client_secret_basic`, `client_secret_post` or "
    "`private_key_jwt`.",
    "CLIENT_PRIVATE_KEY": "For `private_key_jwt`: PEM text or a file path.",
    "CLIENT_KEY_ID": "For `private_key_jwt`: the key's `kid`.",
    "SCOPES": "The scopes asked for.",
    "RESPONSE_MODE": "`query` or `form_post`.",
    "ALGORITHMS": "id_token algorithms accepted (RS/PS/ES 256/384/512).",
    "LEEWAY": "Seconds of clock skew on `exp`, `iat`, `nbf` (at most 300).",
    "CA_BUNDLE": "A PEM bundle for a provider with a private CA (unset: the system's).",
    "TIMEOUT": "Seconds for each call to the provider.",
    "DISCOVERY_URL": "The discovery document's URL (default: issuer + "
    "`/.well-known/openid-configuration`).",
    "TENANTS": "Entra multi-tenant: the tenant ids allowed.",
    "METADATA_TTL": "Seconds the discovery document is cached.",
    "JWKS_TTL": "Seconds the provider's keys are cached.",
    "JWKS_REFETCH_INTERVAL": "Least seconds between two key refetches for an unknown `kid`.",
    "USERINFO": "Also call the userinfo endpoint and merge its claims.",
    "POST_LOGOUT_REDIRECT_URI": "Where the provider sends the browser after logout "
    "(`https://portal/oidc/logged-out`).",
    "PROMPT": "Sent with every sign-in: `login`, `consent`, `select_account`.",
    "MAX_AGE": "Seconds: the provider's sign-in must be at most this old.",
    "ALLOW_UNVERIFIED_EMAIL": "Let an unverified `email` be the Qlik user id.",
    "STATE_TTL": "Seconds a started sign-in stays valid.",
    "MAX_TOKEN_BYTES": "Tokens larger than this are refused before parsing.",
    "LOGOUT_TOKEN_MAX_AGE": "Seconds a back-channel logout token stays acceptable.",
    "COOKIE_NAME": "The browser-binding cookie.",
    "COOKIE_SECURE": "The binding cookie's `Secure` attribute (local tests only: off).",
    "SESSION_MAX_AGE": "Absolute cap of an SSO session, seconds (0: none).",
    "SESSION_IDLE_TIMEOUT": "Idle cap of an SSO session, seconds (0: none).",
    "CLAIMS": "The claims mapping for this provider (default: the top-level `CLAIMS`, else "
    "user id = `email`, directory `OIDC`).",
    "FRONTCHANNEL_LOGOUT": "Serve `GET /oidc/frontchannel-logout` (Front-Channel Logout 1.0).",
    "LABEL": "With several identity providers: the text of this provider's link on the "
    "`/qlik/sso` chooser page.",
}

CLAIMS = {
    "USER_ID": "The claim holding the Qlik user id (`$subject`: the NameID / `sub`).",
    "USER_ID_TRANSFORMS": "Named transforms, left to right: `strip`, `lower`, `upper`, "
    "`casefold`, `before_at`, `after_backslash`.",
    "USER_DIRECTORY": "The user directory as a constant ...",
    "USER_DIRECTORY_CLAIM": "... or the claim holding it (exactly one of the two).",
    "USER_DIRECTORY_TRANSFORMS": "As `USER_ID_TRANSFORMS`.",
    "ATTRIBUTES": "Qlik attribute name -> claim name(s) (default: `group` from the usual "
    "group claims).",
    "GROUP_NAMES": "Entra group object id -> group name.",
    "UNKNOWN_GROUPS": "A group id not in `GROUP_NAMES`: `drop`, `keep` or `refuse`.",
    "CONSTANTS": "Attributes every user gets.",
    "PASS_THROUGH": "Claims copied unchanged, under their own name.",
    "REQUIRED": "Claims whose absence refuses sign-in.",
    "GROUPS_OVERAGE": "Entra's groups overage: `refuse`, or a resolver (callable or dotted path).",
    "CLOUD_SUB": "The claim for Qlik Cloud's `sub` (default: the user id).",
    "CLOUD_NAME_CLAIMS": "Claims tried for Qlik Cloud's `name`.",
    "CLOUD_EMAIL_CLAIMS": "Claims tried for Qlik Cloud's `email`.",
    "CLOUD_EMAIL_VERIFIED": "A constant, or the claim whose `true` means verified.",
    "IDP": "The IdP's name in error messages.",
    "ALLOW_COMPATIBILITY_CHARACTERS": "Let `lower` fold compatibility characters instead of "
    "refusing them.",
    "ALLOW_MIXED_SCRIPTS": "Let `lower` accept a value mixing scripts.",
    "GROUP_ATTRIBUTE": "The attribute the group table and Qlik Cloud's `groups` use.",
}


def tables() -> dict[str, tuple[list[str], dict[str, Any], dict[str, str]]]:
    """Each settings table: (keys as the code reads them, their defaults, the descriptions)."""
    from ..bridges.oidc import OidcSettings
    from ..bridges.saml import SamlSettings
    from ..mapping import ClaimsMapping
    from . import config

    saml_fields = {
        f.name.upper(): f.default
        for f in dataclasses.fields(SamlSettings)
        if f.default is not dataclasses.MISSING
    }
    oidc_fields = dataclasses.fields(OidcSettings)
    oidc_keys = [f.name.upper() for f in oidc_fields]
    oidc_defaults = {
        f.name.upper(): f.default for f in oidc_fields if f.default is not dataclasses.MISSING
    }
    web = {
        "SESSION_MAX_AGE": 8 * 3600.0,
        "SESSION_IDLE_TIMEOUT": 1800.0,
        "CLAIMS": None,
        "FRONTCHANNEL_LOGOUT": False,
    }
    try:
        from .oidc import WEB_KEYS  # the OIDC web settings' own table

        web = dict(WEB_KEYS)
    except ImportError:  # pragma: no cover - the oidc web module imports without extras
        pass
    return {
        "portal": (list(config.SETTING_KEYS), dict(config._KEYS), PORTAL),
        "SAML": (list(SamlSettings._KEYS), saml_fields, SAML),
        "OIDC": (oidc_keys + list(web), {**oidc_defaults, **web}, OIDC),
        "CLAIMS": ([*ClaimsMapping._KEYS, "GROUP_ATTRIBUTE"], {"GROUP_ATTRIBUTE": "group"}, CLAIMS),
    }


def check_reference() -> None:
    """Raise AssertionError naming every key without a description, and every description
    without a key."""
    problems = []
    for name, (keys, _, described) in tables().items():
        missing = [k for k in keys if k not in described]
        extra = [k for k in described if k not in keys]
        if missing:
            problems.append(f"{name}: no description for {', '.join(missing)}")
        if extra:
            problems.append(f"{name}: described but not a setting: {', '.join(extra)}")
    if problems:
        raise AssertionError("; ".join(problems))


def _shown(value: Any) -> str:
    if value is None or value is dataclasses.MISSING:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, tuple | list):
        return (
            "`[" + ", ".join(f'"{v}"' if isinstance(v, str) else str(v) for v in value) + "]`"
            if value
            else "`[]`"
        )
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if isinstance(value, Mapping):
        return "`{}`" if not value else "`{...}`"
    return f"`{value}`"


_INTRO = """# Settings reference

<!-- Generated by `python -m qlikauth.web.reference` from the settings tables in the code;
a test fails when this page and the code differ. Edit the descriptions in
qlikauth/web/reference.py, then regenerate. -->

Every setting qlikauth reads, with the default the code uses. Django reads
`settings.QLIKAUTH = {"KEY": ...}`; Flask reads `app.config["QLIKAUTH_KEY"]`; the `qlikauth`
command (`qlikauth doctor`) reads the environment variables `QLIKAUTH_KEY`. Keys are
case-insensitive; an unknown key is refused with the closest known one. `SAML`, `OIDC` and
`CLAIMS` are mappings of their own (Django `QLIKAUTH["SAML"] = {...}`, Flask
`QLIKAUTH_SAML = {...}`, JSON text in the environment).

`—` means unset (optional, or required where the description says so).
"""

_HEADINGS = {
    "portal": ("## The portal (`QLIKAUTH`)", ""),
    "SAML": ("## `SAML`", "SAML single sign-on; see [SAML](saml.md)."),
    "OIDC": (
        "## `OIDC`",
        "OpenID Connect sign-in; see [OpenID Connect](oidc.md). The relying "
        "party's settings are the fields of `OidcSettings` in upper case.",
    ),
    "CLAIMS": (
        "## `CLAIMS`",
        "How an IdP's claims become a Qlik user; see [Claims to a Qlik user](mapping.md).",
    ),
}


def settings_reference() -> str:
    """docs/settings.md, generated."""
    check_reference()
    out = [_INTRO]
    for name, (keys, defaults, described) in tables().items():
        heading, note = _HEADINGS[name]
        out.append(heading + "\n")
        if note:
            out.append(note + "\n")
        out.append("| Key | Default | What it does |\n|---|---|---|")
        for key in keys:
            text = described[key].replace("|", "\\|")
            out.append(f"| `{key}` | {_shown(defaults.get(key))} | {text} |")
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


if __name__ == "__main__":  # pragma: no cover
    print(settings_reference(), end="")
