"""System checks: a bad QLIKAUTH setting or an unusable certificate is reported at startup."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from qlikauth.exceptions import QlikAuthError
from qlikauth.web.config import QlikAuthConfig

_MIDDLEWARE = "django_qlikauth.middleware.QlikSessionMiddleware"
_AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
_SSO_MIDDLEWARE = "django_qlikauth.middleware.SsoLoginMiddleware"


@register("qlikauth")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Any]:
    """qlikauth.E001-E008, W001-W004."""
    raw = getattr(settings, "QLIKAUTH", None)
    if raw is None:
        return [
            Error(
                "QLIKAUTH is not set.",
                hint="Add QLIKAUTH = {'QPS_NODES': 'https://qlik.example.com:4243', "
                "'CERTS': '/path/to/certs', 'HUB_URL': 'https://qlik.example.com/hub/', ...}.",
                id="qlikauth.E001",
            )
        ]
    from .conf import config_from_settings

    try:
        config: QlikAuthConfig = config_from_settings()
    except QlikAuthError as exc:
        return [
            Error(
                str(exc), hint="Fix the QLIKAUTH setting named in the message.", id="qlikauth.E002"
            )
        ]
    problems: list[Any] = [*_check_login_url(config), *_check_user_mapping(config)]
    certs = Path(config.certs)
    if certs.is_dir():
        missing = [
            n for n in ("root.pem", "client.pem", "client_key.pem") if not (certs / n).is_file()
        ]
        if missing:
            problems.append(
                Error(
                    f"QLIKAUTH CERTS: {', '.join(str(certs / n) for n in missing)} not found.",
                    hint=(
                        "Export the certificates from the QMC (PEM format, with the secret key) "
                        "into that directory."
                    ),
                    id="qlikauth.E003",
                )
            )
    elif not certs.is_file():
        problems.append(
            Error(
                f"QLIKAUTH CERTS: {certs} does not exist.",
                hint="Point CERTS at the directory of the QMC export or at client.pfx.",
                id="qlikauth.E003",
            )
        )
    if not any(p.id in ("qlikauth.E003",) for p in problems):
        from qlikauth.certs import load_certificates

        try:
            load_certificates(config.certs, config.cert_passphrase)
        except QlikAuthError as exc:
            problems.append(
                Error(
                    f"QLIKAUTH CERTS: {exc}",
                    hint="Check CERT_PASSPHRASE and that the files come from one QMC export.",
                    id="qlikauth.E004",
                )
            )
    middleware = list(getattr(settings, "MIDDLEWARE", []) or [])
    if config.mode == "session" and _MIDDLEWARE not in middleware:
        problems.append(
            Warning(
                "QLIKAUTH MODE is 'session' but QlikSessionMiddleware is not in MIDDLEWARE.",
                hint=f"Add {_MIDDLEWARE!r} after {_AUTH_MIDDLEWARE!r}.",
                id="qlikauth.W001",
            )
        )
    if (
        _MIDDLEWARE in middleware
        and _AUTH_MIDDLEWARE in middleware
        and middleware.index(_MIDDLEWARE) < middleware.index(_AUTH_MIDDLEWARE)
    ):
        problems.append(
            Warning(
                "QlikSessionMiddleware comes before AuthenticationMiddleware.",
                hint="Move it after AuthenticationMiddleware so it sees the signed-in user.",
                id="qlikauth.W002",
            )
        )
    problems.extend(_check_sso_login(middleware))
    problems.extend(_check_sso_settings())
    return problems


def _check_sso_settings() -> list[Any]:
    """qlikauth.E008 (SAML or OIDC settings the portal cannot use, a missing extra), W004 (what
    they warn about: an IdP signing certificate that expires soon, login CSRF exposure)."""
    from qlikauth.web.startup import check_sso

    from .conf import get_runtime

    try:
        checked = check_sso(get_runtime())
    except QlikAuthError as exc:
        return [
            Error(
                str(exc), hint="Fix the QLIKAUTH setting named in the message.", id="qlikauth.E008"
            )
        ]
    out: list[Any] = [
        Error(
            str(e),
            hint="Fix the QLIKAUTH SAML or OIDC setting named in the "
            "message (docs/saml.md, docs/oidc.md).",
            id="qlikauth.E008",
        )
        for e in checked.errors
    ]
    out += [
        Warning(
            w, hint="See docs/saml.md (the IdP's certificate) and docs/oidc.md.", id="qlikauth.W004"
        )
        for w in checked.warnings
    ]
    return out


def _check_sso_login(middleware: list[str]) -> list[Any]:
    """qlikauth.W003: SsoBackend signs users into Django, but nothing ends that sign-in with the SSO
    one."""
    from django.apps import apps

    if not apps.is_installed("django.contrib.auth"):
        return []
    from .backends import sso_backend_configured

    if not sso_backend_configured():
        return []
    if (
        _SSO_MIDDLEWARE in middleware
        and _AUTH_MIDDLEWARE in middleware
        and middleware.index(_SSO_MIDDLEWARE) > middleware.index(_AUTH_MIDDLEWARE)
    ):
        return []
    return [
        Warning(
            "SsoBackend is in AUTHENTICATION_BACKENDS but SsoLoginMiddleware is not in MIDDLEWARE "
            "after "
            "AuthenticationMiddleware: after a single logout or back-channel logout the browser "
            "stays "
            "signed in to Django (without Qlik access).",
            hint=(
                f"Add {_SSO_MIDDLEWARE!r} after {_AUTH_MIDDLEWARE!r} (and after "
                "OidcSessionMiddleware)."
            ),
            id="qlikauth.W003",
        )
    ]


def _check_login_url(config: QlikAuthConfig) -> list[Any]:
    """qlikauth.E005: LOGIN_URL must reach a view of this project (else /qlik/login 404s)."""
    from urllib.parse import urlsplit

    from django.urls import Resolver404, resolve

    try:
        resolve(urlsplit(config.login_url).path)
    except Resolver404:
        return [
            Error(
                f"LOGIN_URL {config.login_url!r} (where /qlik/login sends anonymous users) matches "
                "no URL pattern of this project.",
                hint=(
                    "Set LOGIN_URL (or QLIKAUTH['LOGIN_URL']) to your login view's path or URL "
                    "name, e.g. include('django.contrib.auth.urls') and LOGIN_URL = 'login'."
                ),
                id="qlikauth.E005",
            )
        ]
    return []


def _check_user_mapping(config: QlikAuthConfig) -> list[Any]:
    """qlikauth.E006 (no USER_DIRECTORY for the default mapper), E007 (USER_MAPPER does not
    import)."""
    mapper = config.user_mapper
    if mapper is None:
        if not config.user_directory:
            return [
                Error(
                    "QLIKAUTH USER_DIRECTORY is not set, and the default user mapper needs it.",
                    hint=(
                        "Set QLIKAUTH['USER_DIRECTORY'] to the Qlik user directory of portal "
                        "users (e.g. 'PORTAL'), or set USER_MAPPER to your own function."
                    ),
                    id="qlikauth.E006",
                )
            ]
        return []
    if isinstance(mapper, str):
        from django.utils.module_loading import import_string

        try:
            found = import_string(mapper)
        except ImportError as exc:
            return [
                Error(
                    f"QLIKAUTH USER_MAPPER {mapper!r} cannot be imported: {exc}",
                    hint="Give the dotted path of a function f(user) -> QlikUser | None.",
                    id="qlikauth.E007",
                )
            ]
        if not callable(found):
            return [
                Error(
                    f"QLIKAUTH USER_MAPPER {mapper!r} is not callable.",
                    hint="Give the dotted path of a function f(user) -> QlikUser | None.",
                    id="qlikauth.E007",
                )
            ]
    return []
