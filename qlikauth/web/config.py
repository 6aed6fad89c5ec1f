"""One typed configuration for the web integrations, built from Django's or Flask's settings.

Django reads ``settings.QLIKAUTH = {...}``, Flask reads its ``QLIKAUTH_*`` keys through
``app.config.get_namespace("QLIKAUTH_")``; both hand the mapping to
:meth:`QlikAuthConfig.from_mapping`, which checks every value and names the key and
the fix when one is wrong. :func:`qlikauth.web.runtime.build_runtime` then makes the
:class:`QpsClient` and the authenticators lazily: certificates are read on the first QPS
call, never at import.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._parse import parse_bool
from ..authenticators.base import Cookie, check_cookie_name
from ..authenticators.header import HEADER_NAME_RE, HeaderAuthenticator
from ..authenticators.session import default_cookie_name
from ..exceptions import ConfigurationError, RedirectError
from ..identity import QlikUser
from ..qps import check_virtual_proxy_prefix, normalise_node
from ..redirects import RedirectPolicy, normalise_base_url

__all__ = ["QlikAuthConfig", "settings_from_environ", "setting_problem", "MODES", "SETTING_KEYS"]

MODES = ("ticket", "session")

#: Every key we understand, with its default (None: optional / required as noted).
_KEYS: dict[str, Any] = {
    "QPS_NODES": None,  # required: "https://qs1:4243,https://qs2:4243" or a list
    "VIRTUAL_PROXY": "",
    "CERTS": None,  # required: directory with client.pem/client_key.pem/root.pem, or a .pfx
    "CERT_PASSPHRASE": None,
    "HUB_URL": None,  # required: where users land, e.g. https://qlik.example.com/portal/hub/
    "NODE_HUB_URLS": None,  # the hub of each QPS node: a list in QPS_NODES order or {node: hub}
    "ALLOWED_TARGETS": (),
    "MODE": "ticket",
    "COOKIE_NAME": None,
    "COOKIE_DOMAIN": None,
    "COOKIE_SECURE": True,
    "COOKIE_SAMESITE": "Lax",
    "TIMEOUT": 5.0,  # seconds QPS has to answer (read timeout)
    "CONNECT_TIMEOUT": None,  # seconds to connect to a node; default TIMEOUT
    "UNHEALTHY_FOR": 30.0,  # seconds a node that failed (down, hung, 5xx) goes last
    "USER_DIRECTORY": None,
    "LOGIN_URL": "/login",
    "USER_MAPPER": None,
    "SESSION_RECHECK": None,  # seconds; 0: every page view; None/"never": never (as recheck_after)
    "HEADER_NAME": None,
    "HEADER_USER_DIRECTORY": None,
    "HEADER_PATTERN": "$ud\\$id",
    "HEADER_RESPONSE_HEADER": "X-Qlik-Header-Value",
    "OIDC": None,  # OpenID Connect sign-in: a mapping (or JSON text), see docs/oidc.md
    # "memory" (None), "redis://host:6379/0", "django-cache:ALIAS", or a StateStore
    "STATE_STORE": None,
    "STORE_KEYS": None,  # keys sealing bearer values in a shared store ("kid:base64url", ...)
    "SAML": None,  # SAML service provider settings (docs/saml.md), a mapping
    "CLAIMS": None,  # IdP claims -> Qlik user (docs/mapping.md), a mapping
}


#: The settings keys qlikauth understands (``QLIKAUTH = {KEY: ...}`` / ``QLIKAUTH_KEY``).
SETTING_KEYS: tuple[str, ...] = tuple(_KEYS)


def settings_from_environ(
    environ: Mapping[str, str] | None = None, prefix: str = "QLIKAUTH_"
) -> dict[str, str]:
    """The ``QLIKAUTH_*`` variables of ``environ`` (default: ``os.environ``) as a settings mapping.

    ``QLIKAUTH_QPS_NODES=https://a:4243,https://b:4243`` gives ``{"QPS_NODES":
    "https://a:4243,..."}``;
    :meth:`QlikAuthConfig.from_mapping` then checks the values. Unknown names are ignored.
    """
    import os

    env = os.environ if environ is None else environ
    return {k: env[prefix + k] for k in SETTING_KEYS if prefix + k in env}


def setting_problem(key: str, message: str) -> ConfigurationError:
    """The :class:`ConfigurationError` for setting ``key`` (``"QLIKAUTH KEY: message"``, ``.key``
    set)."""
    return ConfigurationError(f"QLIKAUTH {key}: {message}", key=key)


_problem = setting_problem


def _as_list(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, Iterable):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    else:
        raise _problem(
            key, f"expected a list or a comma-separated string, got {type(value).__name__}."
        )
    out = []
    for item in items:
        if not isinstance(item, str):
            raise _problem(key, f"every entry must be a string, got {type(item).__name__}.")
        if item:
            out.append(item)
    return tuple(out)


def _as_bool(key: str, value: Any) -> bool:
    parsed = parse_bool(value)
    if parsed is not None:
        return parsed
    raise _problem(key, f"expected true or false, got {value!r}.")


def _as_text(key: str, value: Any, *, empty_is_none: bool = True) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _problem(key, f"expected a string, got {type(value).__name__}.")
    value = value.strip()
    return value or None if empty_is_none else value


def _node_hub_urls(value: Any, nodes: tuple[str, ...]) -> dict[str, str]:
    """NODE_HUB_URLS: ``{node: hub}``, or a list (comma-separated string) in QPS_NODES order."""
    if value is None or value == "" or value == ():
        return {}
    if isinstance(value, Mapping):
        pairs = []
        for node, hub in value.items():
            try:
                pairs.append((normalise_node(str(node)), hub))
            except ConfigurationError as exc:
                raise _problem("NODE_HUB_URLS", str(exc)) from None
        unknown = [n for n, _ in pairs if n not in nodes]
        if unknown:
            raise _problem(
                "NODE_HUB_URLS",
                f"{', '.join(unknown)} is not one of QPS_NODES ({', '.join(nodes)}).",
            )
    else:
        hubs = _as_list("NODE_HUB_URLS", value)
        if len(hubs) != len(nodes):
            raise _problem(
                "NODE_HUB_URLS",
                f"{len(hubs)} hub URL(s) for {len(nodes)} QPS node(s): give one "
                "per node, in QPS_NODES order (or a {node: hub} mapping).",
            )
        pairs = list(zip(nodes, hubs, strict=True))
    out: dict[str, str] = {}
    for node, hub in pairs:
        if not isinstance(hub, str):
            raise _problem("NODE_HUB_URLS", f"the hub URL of {node} must be a string.")
        try:
            normalise_base_url(hub, f"hub URL of {node}")
        except ConfigurationError as exc:
            raise _problem("NODE_HUB_URLS", str(exc)) from None
        out[node] = hub.strip()
    return out


def _state_store(value: Any) -> Any:
    """STATE_STORE: checked by its form here; the store itself is made (and reached) on
    first use."""
    from ..store import StateStore, known_store_schemes

    if value is None or isinstance(value, StateStore):
        return value
    text = _as_text("STATE_STORE", value)
    if not text:
        return None
    scheme = text.split(":", 1)[0].lower()
    if scheme not in known_store_schemes():
        shown = text.rsplit("@", 1)[-1]
        raise _problem(
            "STATE_STORE",
            f"{shown[:80]!r} is not a store qlikauth knows: use 'memory', "
            "'redis://host:6379/0' (rediss:// for TLS) or 'django-cache:ALIAS'.",
        )
    return text


def _as_settings_mapping(key: str, value: Any) -> Mapping[str, Any] | None:
    """A nested settings mapping (``QLIKAUTH["SAML"] = {...}``), or JSON text of one
    (environment)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        import json

        try:
            value = json.loads(value)
        except ValueError:
            raise _problem(
                key, 'expected a mapping (or its JSON text), e.g. {"BASE_URL": ...}.'
            ) from None
    if not isinstance(value, Mapping):
        raise _problem(key, f"expected a mapping of settings, got {type(value).__name__}.")
    return dict(value)


@dataclass(frozen=True)
class QlikAuthConfig:
    """The checked settings of a portal's qlikauth integration (see the module docstring)."""

    qps_nodes: tuple[str, ...]
    certs: str
    hub_url: str
    virtual_proxy: str = ""
    node_hub_urls: Mapping[str, str] = field(default_factory=dict)
    cert_passphrase: str | bytes | None = field(default=None, repr=False)
    allowed_targets: tuple[str, ...] = ()
    mode: str = "ticket"
    cookie_name: str | None = None
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_samesite: str | None = "Lax"
    timeout: float = 5.0
    connect_timeout: float | None = None
    unhealthy_for: float = 30.0
    user_directory: str | None = None
    login_url: str = "/login"
    user_mapper: Any = None
    #: Seconds after which a page view confirms the remembered proxy session with QPS: ``0``
    #: every view, ``None`` never. The same meaning as
    #: ``SessionAuthenticator.resume(recheck_after=)``.
    session_recheck: float | None = None
    header_name: str | None = None
    header_user_directory: str | None = None
    header_pattern: str = "$ud\\$id"
    header_response_header: str = "X-Qlik-Header-Value"
    oidc: Mapping[str, Any] | None = field(default=None, repr=False)  # checked by qlikauth.web.oidc
    state_store: Any = field(default=None, repr=False)  # the setting string may carry a password
    store_keys: Any = field(default=None, repr=False)  # a StoreKeys, or None ($QLIKAUTH_STORE_KEYS)
    saml: Mapping[str, Any] | None = field(default=None, repr=False)
    claims: Mapping[str, Any] | None = field(default=None, repr=False)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> QlikAuthConfig:
        """Check ``mapping`` (upper-case keys, as in Django's ``QLIKAUTH`` setting).

        Keys are case-insensitive (Flask's ``get_namespace`` lower-cases them). Unknown
        keys are refused with the closest known one, so a typo cannot silently fall back
        to a default.
        """
        if mapping is None:
            raise ConfigurationError(
                "qlikauth is not configured: set QLIKAUTH = {'QPS_NODES': ..., 'CERTS': ..., "
                "'HUB_URL': ...} (Django) or QLIKAUTH_QPS_NODES, QLIKAUTH_CERTS, QLIKAUTH_HUB_URL "
                "(Flask)."
            )
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(
                f"QLIKAUTH must be a mapping (dict), not {type(mapping).__name__}."
            )
        values: dict[str, Any] = {}
        for raw_key, value in mapping.items():
            key = str(raw_key).upper()
            if key not in _KEYS:
                close = difflib.get_close_matches(key, list(_KEYS), n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise _problem(key, f"unknown setting.{hint} Known: {', '.join(_KEYS)}.")
            values[key] = value
        get = lambda k: values.get(k, _KEYS[k])  # noqa: E731

        nodes = _as_list("QPS_NODES", get("QPS_NODES"))
        if not nodes:
            raise _problem(
                "QPS_NODES", "missing: give the QPS API URL(s), e.g. https://qlik.example.com:4243."
            )
        try:
            nodes = tuple(normalise_node(n) for n in nodes)
            virtual_proxy = check_virtual_proxy_prefix(
                _as_text("VIRTUAL_PROXY", get("VIRTUAL_PROXY")) or ""
            )
        except ConfigurationError as exc:
            raise _problem(
                "QPS_NODES" if "node" in str(exc).lower() else "VIRTUAL_PROXY", str(exc)
            ) from None

        certs = _as_text("CERTS", None if get("CERTS") is None else str(get("CERTS")))
        if not certs:
            raise _problem(
                "CERTS",
                "missing: give the directory holding client.pem, client_key.pem "
                "and root.pem as exported by the QMC (or the client.pfx file).",
            )
        passphrase = get("CERT_PASSPHRASE")
        if passphrase is not None and not isinstance(passphrase, (str, bytes)):
            raise _problem("CERT_PASSPHRASE", "expected a string.")
        passphrase = passphrase or None

        hub_url = _as_text("HUB_URL", get("HUB_URL"))
        if not hub_url:
            raise _problem(
                "HUB_URL",
                "missing: give where users land, e.g. https://qlik.example.com/portal/hub/.",
            )
        try:
            normalise_base_url(hub_url, "HUB_URL")
        except ConfigurationError as exc:
            raise _problem("HUB_URL", str(exc)) from None
        node_hubs = _node_hub_urls(get("NODE_HUB_URLS"), nodes)
        allowed = _as_list("ALLOWED_TARGETS", get("ALLOWED_TARGETS"))
        try:
            RedirectPolicy(allowed, default=hub_url)
        except (ConfigurationError, RedirectError) as exc:
            raise _problem(
                "ALLOWED_TARGETS", f"{exc} Give origins such as https://qlik.example.com."
            ) from None

        mode = (_as_text("MODE", get("MODE")) or "ticket").lower()
        if mode not in MODES:
            raise _problem("MODE", f"{mode!r} is not 'ticket' or 'session'.")

        cookie_name = _as_text("COOKIE_NAME", get("COOKIE_NAME"))
        try:
            check_cookie_name(cookie_name or default_cookie_name(virtual_proxy))
        except ConfigurationError as exc:
            raise _problem("COOKIE_NAME", str(exc)) from None
        cookie_domain = _as_text("COOKIE_DOMAIN", get("COOKIE_DOMAIN"))
        cookie_secure = _as_bool("COOKIE_SECURE", get("COOKIE_SECURE"))
        samesite = get("COOKIE_SAMESITE")
        samesite = (
            None
            if samesite is None
            or (isinstance(samesite, str) and samesite.strip().lower() in ("", "unset"))
            else samesite
        )
        try:
            probe = Cookie(
                cookie_name or default_cookie_name(virtual_proxy),
                "x",
                cookie_domain,
                secure=cookie_secure,
                samesite=samesite,
            )
        except ConfigurationError as exc:
            raise _problem("COOKIE_SAMESITE", str(exc)) from None
        except Exception as exc:  # HeaderError from a bad domain
            raise _problem("COOKIE_DOMAIN", str(exc)) from None

        try:
            timeout = float(get("TIMEOUT"))
        except (TypeError, ValueError):
            raise _problem(
                "TIMEOUT", f"expected a number of seconds, got {get('TIMEOUT')!r}."
            ) from None
        if not 0 < timeout <= 120:
            raise _problem(
                "TIMEOUT", "must be between 0 and 120 seconds (QPS calls must not hang a request)."
            )
        connect_timeout = None
        if get("CONNECT_TIMEOUT") not in (None, ""):
            try:
                connect_timeout = float(get("CONNECT_TIMEOUT"))
            except (TypeError, ValueError):
                raise _problem(
                    "CONNECT_TIMEOUT",
                    f"expected a number of seconds, got {str(get('CONNECT_TIMEOUT'))[:40]!r}.",
                ) from None
            if not 0 < connect_timeout <= 120:
                raise _problem("CONNECT_TIMEOUT", "must be between 0 and 120 seconds.")
        try:
            unhealthy_for = float(get("UNHEALTHY_FOR"))
        except (TypeError, ValueError):
            raise _problem(
                "UNHEALTHY_FOR",
                f"expected a number of seconds, got {str(get('UNHEALTHY_FOR'))[:40]!r}.",
            ) from None
        if not 0 <= unhealthy_for <= 3600:
            raise _problem(
                "UNHEALTHY_FOR",
                "must be between 0 and 3600 seconds (how long a node that failed is asked last).",
            )
        raw_recheck = get("SESSION_RECHECK")
        recheck: float | None
        if raw_recheck is None or (
            isinstance(raw_recheck, str) and raw_recheck.strip().lower() in ("", "never", "none")
        ):
            recheck = None
        else:
            try:
                recheck = float(raw_recheck)
            except (TypeError, ValueError):
                raise _problem(
                    "SESSION_RECHECK",
                    f"expected a number of seconds or 'never', got {raw_recheck!r} "
                    "(0: confirm on every page view).",
                ) from None
            if recheck < 0:
                raise _problem(
                    "SESSION_RECHECK",
                    "must be 'never' (unset), 0 (every page view) or a positive number of seconds.",
                )

        user_directory = _as_text("USER_DIRECTORY", get("USER_DIRECTORY"))
        if user_directory is not None:
            try:
                QlikUser(user_directory, "probe")
            except Exception as exc:
                raise _problem("USER_DIRECTORY", str(exc)) from None
        login_url = _as_text("LOGIN_URL", get("LOGIN_URL")) or "/login"
        if not login_url.startswith("/") or login_url.startswith("//") or "\\" in login_url:
            raise _problem(
                "LOGIN_URL", f"{login_url!r} must be a path on the portal starting with one '/'."
            )
        mapper = get("USER_MAPPER")
        if mapper is not None and not (isinstance(mapper, str) or callable(mapper)):
            raise _problem(
                "USER_MAPPER", "expected a dotted path 'package.module.function' or a callable."
            )

        header_name = _as_text("HEADER_NAME", get("HEADER_NAME"))
        header_ud = _as_text("HEADER_USER_DIRECTORY", get("HEADER_USER_DIRECTORY"))
        header_pattern = (
            _as_text("HEADER_PATTERN", get("HEADER_PATTERN"), empty_is_none=False) or "$ud\\$id"
        )
        if header_name is not None:
            try:
                HeaderAuthenticator(header_name, header_ud, header_pattern)
            except Exception as exc:
                raise _problem("HEADER_NAME", str(exc)) from None
        response_header = (
            _as_text("HEADER_RESPONSE_HEADER", get("HEADER_RESPONSE_HEADER"))
            or "X-Qlik-Header-Value"
        )
        if not HEADER_NAME_RE.match(response_header):
            raise _problem(
                "HEADER_RESPONSE_HEADER", f"{response_header!r} must be letters, digits and '-'."
            )

        oidc = get("OIDC")
        if isinstance(oidc, str):  # QLIKAUTH_OIDC from the environment: JSON
            import json

            try:
                oidc = json.loads(oidc) if oidc.strip() else None
            except ValueError:
                raise _problem("OIDC", "expected a mapping, or JSON text of one.") from None
        if oidc is not None and not isinstance(oidc, Mapping):
            raise _problem(
                "OIDC", f"expected a mapping of OpenID Connect settings, got {type(oidc).__name__}."
            )
        state_store = _state_store(get("STATE_STORE"))
        store_keys = None
        if get("STORE_KEYS") not in (None, "", ()):
            from ..store.sealed import StoreKeys

            try:
                store_keys = StoreKeys(get("STORE_KEYS"))
            except ConfigurationError as exc:
                raise _problem("STORE_KEYS", str(exc)) from None

        del probe
        saml = _as_settings_mapping("SAML", get("SAML"))
        claims = _as_settings_mapping("CLAIMS", get("CLAIMS"))
        if claims is not None:
            from ..mapping import ClaimsMapping

            ClaimsMapping.from_settings(
                claims
            )  # a wrong claims setting fails at start-up, not at sign-in
        return cls(
            saml=saml,
            claims=claims,
            qps_nodes=nodes,
            certs=certs,
            hub_url=hub_url,
            virtual_proxy=virtual_proxy,
            node_hub_urls=node_hubs,
            cert_passphrase=passphrase,
            allowed_targets=allowed,
            mode=mode,
            cookie_name=cookie_name,
            cookie_domain=cookie_domain,
            cookie_secure=cookie_secure,
            cookie_samesite=samesite,
            timeout=timeout,
            connect_timeout=connect_timeout,
            unhealthy_for=unhealthy_for,
            user_directory=user_directory,
            login_url=login_url,
            user_mapper=mapper,
            session_recheck=recheck,
            header_name=header_name,
            header_user_directory=header_ud,
            header_pattern=header_pattern,
            header_response_header=response_header,
            oidc=dict(oidc) if oidc is not None else None,
            state_store=state_store,
            store_keys=store_keys,
        )

    @property
    def effective_cookie_name(self) -> str:
        """The proxy session cookie name (the virtual proxy's default when not set)."""
        return self.cookie_name or default_cookie_name(self.virtual_proxy)
