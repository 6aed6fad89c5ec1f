"""One typed configuration for the web integrations, built from Django's or Flask's settings.

Django reads ``settings.QLIKAUTH = {...}``, Flask reads its ``QLIKAUTH_*`` keys through
``app.config.get_namespace("QLIKAUTH_")``; both hand the mapping to
:meth:`QlikAuthConfig.from_mapping`, which checks every value and names the key and
the fix when one is wrong. :func:`build_runtime` then makes the :class:`QpsClient` and
the authenticators lazily: certificates are read on the first QPS call, never at import.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .authenticators.base import Cookie, check_cookie_name
from .authenticators.header import HeaderAuthenticator
from .authenticators.session import SessionAuthenticator, default_cookie_name
from .authenticators.ticket import TicketAuthenticator
from .exceptions import ConfigurationError, RedirectError
from .identity import QlikUser
from .qps import QpsClient
from .redirects import RedirectPolicy, normalise_base_url

__all__ = ["QlikAuthConfig", "QlikAuthRuntime", "build_runtime", "describe_error", "settings_from_environ", "MODES", "SETTING_KEYS"]

MODES = ("ticket", "session")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: Every key we understand, with its default (None: optional / required as noted).
_KEYS: dict[str, Any] = {
    "QPS_NODES": None,            # required: "https://qs1:4243,https://qs2:4243" or a list
    "VIRTUAL_PROXY": "",
    "CERTS": None,                # required: directory with client.pem/client_key.pem/root.pem, or a .pfx
    "CERT_PASSPHRASE": None,
    "HUB_URL": None,              # required: where users land, e.g. https://qlik.example.com/portal/hub/
    "ALLOWED_TARGETS": (),
    "MODE": "ticket",
    "COOKIE_NAME": None,
    "COOKIE_DOMAIN": None,
    "COOKIE_SECURE": True,
    "COOKIE_SAMESITE": "None",
    "TIMEOUT": 5.0,
    "USER_DIRECTORY": None,
    "LOGIN_URL": "/login",
    "USER_MAPPER": None,
    "SESSION_RECHECK": 0,
    "HEADER_NAME": None,
    "HEADER_USER_DIRECTORY": None,
    "HEADER_PATTERN": "$ud\\$id",
    "HEADER_RESPONSE_HEADER": "X-Qlik-Header-Value",
}


#: The settings keys qlikauth understands (``QLIKAUTH = {KEY: ...}`` / ``QLIKAUTH_KEY``).
SETTING_KEYS: tuple[str, ...] = tuple(_KEYS)


def settings_from_environ(environ: Mapping[str, str] | None = None, prefix: str = "QLIKAUTH_") -> dict[str, str]:
    """The ``QLIKAUTH_*`` variables of ``environ`` (default: ``os.environ``) as a settings mapping.

    ``QLIKAUTH_QPS_NODES=https://a:4243,https://b:4243`` gives ``{"QPS_NODES": "https://a:4243,..."}``;
    :meth:`QlikAuthConfig.from_mapping` then checks the values. Unknown names are ignored.
    """
    import os

    env = os.environ if environ is None else environ
    return {k: env[prefix + k] for k in SETTING_KEYS if prefix + k in env}


def _problem(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"QLIKAUTH {key}: {message}", key=key)


def _as_list(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, Iterable):
        items = [v.strip() if isinstance(v, str) else v for v in value]
    else:
        raise _problem(key, f"expected a list or a comma-separated string, got {type(value).__name__}.")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise _problem(key, f"every entry must be a string, got {type(item).__name__}.")
        if item:
            out.append(item)
    return tuple(out)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _problem(key, f"expected true or false, got {value!r}.")


def _as_text(key: str, value: Any, *, empty_is_none: bool = True) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _problem(key, f"expected a string, got {type(value).__name__}.")
    value = value.strip()
    return value or None if empty_is_none else value


@dataclass(frozen=True)
class QlikAuthConfig:
    """The checked settings of a portal's qlikauth integration (see the module docstring)."""

    qps_nodes: tuple[str, ...]
    certs: str
    hub_url: str
    virtual_proxy: str = ""
    cert_passphrase: str | bytes | None = field(default=None, repr=False)
    allowed_targets: tuple[str, ...] = ()
    mode: str = "ticket"
    cookie_name: str | None = None
    cookie_domain: str | None = None
    cookie_secure: bool = True
    cookie_samesite: str | None = "None"
    timeout: float = 5.0
    user_directory: str | None = None
    login_url: str = "/login"
    user_mapper: Any = None
    session_recheck: float = 0.0
    header_name: str | None = None
    header_user_directory: str | None = None
    header_pattern: str = "$ud\\$id"
    header_response_header: str = "X-Qlik-Header-Value"

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
                "'HUB_URL': ...} (Django) or QLIKAUTH_QPS_NODES, QLIKAUTH_CERTS, QLIKAUTH_HUB_URL (Flask)."
            )
        if not isinstance(mapping, Mapping):
            raise ConfigurationError(f"QLIKAUTH must be a mapping (dict), not {type(mapping).__name__}.")
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
            raise _problem("QPS_NODES", "missing: give the QPS API URL(s), e.g. https://qlik.example.com:4243.")
        try:
            nodes = tuple(QpsClient._normalise_node(n) for n in nodes)
            virtual_proxy = QpsClient._check_prefix(_as_text("VIRTUAL_PROXY", get("VIRTUAL_PROXY")) or "")
        except ConfigurationError as exc:
            raise _problem("QPS_NODES" if "node" in str(exc).lower() else "VIRTUAL_PROXY", str(exc)) from None

        certs = _as_text("CERTS", None if get("CERTS") is None else str(get("CERTS")))
        if not certs:
            raise _problem("CERTS", "missing: give the directory holding client.pem, client_key.pem "
                                    "and root.pem as exported by the QMC (or the client.pfx file).")
        passphrase = get("CERT_PASSPHRASE")
        if passphrase is not None and not isinstance(passphrase, (str, bytes)):
            raise _problem("CERT_PASSPHRASE", "expected a string.")
        passphrase = passphrase or None

        hub_url = _as_text("HUB_URL", get("HUB_URL"))
        if not hub_url:
            raise _problem("HUB_URL", "missing: give where users land, e.g. "
                                      "https://qlik.example.com/portal/hub/.")
        try:
            normalise_base_url(hub_url, "HUB_URL")
        except ConfigurationError as exc:
            raise _problem("HUB_URL", str(exc)) from None
        allowed = _as_list("ALLOWED_TARGETS", get("ALLOWED_TARGETS"))
        try:
            RedirectPolicy(allowed, default=hub_url)
        except (ConfigurationError, RedirectError) as exc:
            raise _problem("ALLOWED_TARGETS", f"{exc} Give origins such as https://qlik.example.com.") from None

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
        samesite = None if samesite is None or (isinstance(samesite, str) and samesite.strip().lower() in ("", "unset")) else samesite
        try:
            probe = Cookie(cookie_name or default_cookie_name(virtual_proxy), "x", cookie_domain,
                           secure=cookie_secure, samesite=samesite)
        except ConfigurationError as exc:
            raise _problem("COOKIE_SAMESITE", str(exc)) from None
        except Exception as exc:  # HeaderError from a bad domain
            raise _problem("COOKIE_DOMAIN", str(exc)) from None

        try:
            timeout = float(get("TIMEOUT"))
        except (TypeError, ValueError):
            raise _problem("TIMEOUT", f"expected a number of seconds, got {get('TIMEOUT')!r}.") from None
        if not 0 < timeout <= 120:
            raise _problem("TIMEOUT", "must be between 0 and 120 seconds (QPS calls must not hang a request).")
        try:
            recheck = float(get("SESSION_RECHECK") or 0)
        except (TypeError, ValueError):
            raise _problem("SESSION_RECHECK", "expected a number of seconds (0: never re-check).") from None
        if recheck < 0:
            raise _problem("SESSION_RECHECK", "must be 0 (never) or a positive number of seconds.")

        user_directory = _as_text("USER_DIRECTORY", get("USER_DIRECTORY"))
        if user_directory is not None:
            try:
                QlikUser(user_directory, "probe")
            except Exception as exc:
                raise _problem("USER_DIRECTORY", str(exc)) from None
        login_url = _as_text("LOGIN_URL", get("LOGIN_URL")) or "/login"
        if not login_url.startswith("/") or login_url.startswith("//") or "\\" in login_url:
            raise _problem("LOGIN_URL", f"{login_url!r} must be a path on the portal starting with one '/'.")
        mapper = get("USER_MAPPER")
        if mapper is not None and not (isinstance(mapper, str) or callable(mapper)):
            raise _problem("USER_MAPPER", "expected a dotted path 'package.module.function' or a callable.")

        header_name = _as_text("HEADER_NAME", get("HEADER_NAME"))
        header_ud = _as_text("HEADER_USER_DIRECTORY", get("HEADER_USER_DIRECTORY"))
        header_pattern = _as_text("HEADER_PATTERN", get("HEADER_PATTERN"), empty_is_none=False) or "$ud\\$id"
        if header_name is not None:
            try:
                HeaderAuthenticator(header_name, header_ud, header_pattern)
            except Exception as exc:
                raise _problem("HEADER_NAME", str(exc)) from None
        response_header = _as_text("HEADER_RESPONSE_HEADER", get("HEADER_RESPONSE_HEADER")) or "X-Qlik-Header-Value"
        try:
            from .authenticators.header import _NAME
            if not _NAME.match(response_header):
                raise ValueError
        except ValueError:
            raise _problem("HEADER_RESPONSE_HEADER", f"{response_header!r} must be letters, digits and '-'.") from None

        del probe
        return cls(
            qps_nodes=nodes, certs=certs, hub_url=hub_url, virtual_proxy=virtual_proxy,
            cert_passphrase=passphrase, allowed_targets=allowed, mode=mode,
            cookie_name=cookie_name, cookie_domain=cookie_domain, cookie_secure=cookie_secure,
            cookie_samesite=samesite, timeout=timeout, user_directory=user_directory,
            login_url=login_url, user_mapper=mapper, session_recheck=recheck,
            header_name=header_name, header_user_directory=header_ud,
            header_pattern=header_pattern, header_response_header=response_header,
        )

    @property
    def effective_cookie_name(self) -> str:
        """The proxy session cookie name (the virtual proxy's default when not set)."""
        return self.cookie_name or default_cookie_name(self.virtual_proxy)


class QlikAuthRuntime:
    """The QPS client and authenticators for one configuration, made on first use.

    Thread-safe; one per Flask app / Django settings value. Nothing here reads files
    or opens connections until a QPS call is actually needed.
    """

    def __init__(self, config: QlikAuthConfig) -> None:
        self.config = config
        self._lock = threading.RLock()  # authenticators make the client inside their own _once
        self._qps: QpsClient | None = None
        self._ticket: TicketAuthenticator | None = None
        self._session: SessionAuthenticator | None = None
        self._header: HeaderAuthenticator | None = None
        self.hub_policy = RedirectPolicy(config.allowed_targets, default=config.hub_url)

    def _once(self, name: str, make: Callable[[], Any]) -> Any:
        value = getattr(self, name)
        if value is None:
            with self._lock:
                value = getattr(self, name)
                if value is None:
                    value = make()
                    setattr(self, name, value)
        return value

    @property
    def qps(self) -> QpsClient:
        """The pooled mutual-TLS client (loads the certificates on first access)."""
        c = self.config
        return self._once("_qps", lambda: QpsClient(
            list(c.qps_nodes), c.certs, c.virtual_proxy, c.timeout, passphrase=c.cert_passphrase))

    @property
    def ticket(self) -> TicketAuthenticator:
        """The ticket authenticator (hub URL and allowed targets from the config)."""
        return self._once("_ticket", lambda: TicketAuthenticator(
            self.qps, self.config.hub_url, self.config.allowed_targets))

    @property
    def session(self) -> SessionAuthenticator:
        """The session authenticator (cookie settings from the config)."""
        c = self.config
        return self._once("_session", lambda: SessionAuthenticator(
            self.qps, c.effective_cookie_name, c.cookie_domain, c.cookie_secure, c.cookie_samesite))

    @property
    def header(self) -> HeaderAuthenticator:
        """The header authenticator; :class:`ConfigurationError` when HEADER_NAME is not set."""
        c = self.config
        header_name = c.header_name
        if header_name is None:
            raise _problem("HEADER_NAME", "not set: give the header virtual proxy's header name "
                                          "(QMC: Header authentication header name), e.g. X-Portal-User.")
        return self._once("_header", lambda: HeaderAuthenticator(
            header_name, c.header_user_directory, c.header_pattern))

    def recheck_after(self, explicit: bool) -> float | None:
        """``recheck_after`` for :meth:`SessionAuthenticator.resume` under SESSION_RECHECK.

        An explicit "open Qlik" (``/qlik/login``) always confirms the remembered session
        (``0``); otherwise it is confirmed every SESSION_RECHECK seconds, or never (``None``)
        when that is 0, so page views make no QPS call.
        """
        return 0.0 if explicit else (self.config.session_recheck or None)

    def clear_cookie(self) -> Cookie:
        """The cookie that clears the proxy session cookie (no QPS call, no certificates read)."""
        c = self.config
        return Cookie(c.effective_cookie_name, "", c.cookie_domain, "/", c.cookie_secure,
                      True, c.cookie_samesite, max_age=0)

    def user_for(self, user_id: str, groups: Iterable[str] = (), *, attributes: Iterable[tuple[str, str]] = ()) -> QlikUser:
        """A :class:`QlikUser` in the configured USER_DIRECTORY with one ``group`` attribute per group."""
        if not self.config.user_directory:
            raise _problem("USER_DIRECTORY", "not set: give the user directory portal users belong to "
                                              "in Qlik (e.g. 'PORTAL'), or configure a user mapper.")
        attrs = [("group", g) for g in groups] + list(attributes)
        return QlikUser(self.config.user_directory, user_id, attrs)

    @staticmethod
    def local_redirect(url: str | None, default: str = "/") -> str:
        """``url`` when it is a safe path on this portal (``/...``, never ``//host``), else ``default``.

        Uses :class:`RedirectPolicy` with no allowed hosts, so only relative paths pass;
        the answer is the path, query and fragment (never an absolute URL).
        """
        if not url:
            return default
        policy = RedirectPolicy((), default="https://portal.invalid")
        try:
            checked = policy.check(url)
        except RedirectError:
            return default
        parts = urlsplit(checked)
        if parts.netloc != "portal.invalid":
            return default
        return urlunsplit(("", "", parts.path or "/", parts.query, parts.fragment))

    def close(self) -> None:
        """Close the QPS client's pooled connections, if it was made."""
        if self._qps is not None:
            self._qps.close()


def build_runtime(config: QlikAuthConfig | Mapping[str, Any]) -> QlikAuthRuntime:
    """A :class:`QlikAuthRuntime` for ``config`` (a :class:`QlikAuthConfig` or a settings mapping)."""
    if not isinstance(config, QlikAuthConfig):
        config = QlikAuthConfig.from_mapping(config)
    return QlikAuthRuntime(config)


_HINTS: dict[str, tuple[str, str]] = {
    # class name: (title, what to do)
    "RedirectError": ("This link cannot be followed",
                      "The link points somewhere this portal does not send users. Go back to the "
                      "portal's home page and open Qlik Sense from there."),
    "IdentityError": ("Your account cannot be used in Qlik Sense",
                      "Your user name or one of your groups contains characters Qlik Sense cannot "
                      "take. Ask the portal administrator to fix the account."),
    "HeaderError": ("Your account cannot be used in Qlik Sense",
                    "Your user name cannot be sent to Qlik Sense. Ask the portal administrator."),
    "QpsTimeout": ("Qlik Sense did not answer in time",
                   "Try again in a minute. If it keeps happening, tell the portal administrator."),
    "QpsConnectionError": ("Qlik Sense cannot be reached",
                           "Try again in a minute. If it keeps happening, tell the portal administrator."),
    "QpsTLSError": ("Qlik Sense cannot be reached securely",
                    "The portal and Qlik Sense do not trust each other's certificates. "
                    "The portal administrator must check the certificates (server log has details)."),
    "QpsTooManySessions": ("Too many Qlik Sense sessions",
                           "Close Qlik Sense in your other tabs or devices, or sign out, then try again."),
    "QpsError": ("Qlik Sense refused the sign-in",
                 "Try again; if it keeps happening, tell the portal administrator (server log has details)."),
    "ConfigurationError": ("The portal's Qlik Sense settings are wrong",
                           "The portal administrator must fix the QLIKAUTH settings (server log has details)."),
    "CertificateError": ("The portal's Qlik Sense certificates cannot be used",
                         "The portal administrator must export the certificates again from the QMC "
                         "(server log has details)."),
    "QlikAuthError": ("Signing in to Qlik Sense failed",
                      "Try again; if it keeps happening, tell the portal administrator."),
}

#: Errors whose message is for the administrator (paths, settings), not the browser.
_ADMIN_ONLY = ("ConfigurationError", "CertificateError", "QpsTLSError")


def describe_error(exc: BaseException) -> dict[str, Any]:
    """What a web integration shows for ``exc``: status, code, title, detail and hint.

    The detail is the exception's message (never a secret, by the error tree's
    contract) except for configuration and certificate problems, whose detail stays in
    the server log.
    """
    names = [cls.__name__ for cls in type(exc).__mro__]
    key = next((n for n in names if n in _HINTS), "QlikAuthError")
    title, hint = _HINTS[key]
    status = int(getattr(exc, "status", 500) or 500)
    admin_only = any(n in _ADMIN_ONLY for n in names)
    detail = ("The server log has the details." if admin_only else str(exc))
    return {"status": status, "error": type(exc).__name__, "title": title,
            "detail": detail, "hint": hint}
