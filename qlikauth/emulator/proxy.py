"""Virtual proxy settings for the emulator, checked as the QMC checks them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..authenticators.header import DEFAULT_PATTERN, parse_header_pattern
from ..exceptions import ConfigurationError, IdentityError
from ..identity import QlikUser

__all__ = ["VirtualProxy", "METHODS", "RESERVED_HEADERS"]

METHODS = ("ticket", "session", "header-static", "header-dynamic", "jwt")

#: Header names Qlik refuses as the header authentication header (it injects or reads them itself).
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "X-Qlik-Security",
        "X-Qlik-User",
        "X-Qlik-ProxySession",
        "X-Qlik-ProxyId",
        "X-Qlik-Trace",
        "X-Qlik-App",
        "X-Qlik-Capabilities",
    )
)

_PREFIX = re.compile(r"[a-z0-9][a-z0-9_.~-]*\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")


_ALLOWED_HOST = re.compile(r"(?:[a-z0-9._~-]+|\[[0-9a-f:.]+\])\Z")


@dataclass(frozen=True)
class VirtualProxy:
    """One virtual proxy of the emulated node: its prefix, authentication method and cookie.

    ``method`` is ``"ticket"``, ``"session"`` (both: a session cookie, no login of
    their own; ``module_uri`` is where browsers without a session are sent),
    ``"header-static"`` (header value = user id, directory = ``header_user_directory``)
    or ``"header-dynamic"`` (value parsed with ``header_pattern``, ``$ud`` and ``$id``
    around a literal separator). Prefixes are lowercase, as in the QMC.

    ``host_allow_list`` (QMC *Host allow list*): the host names browsers may use for this
    virtual proxy (``Host`` of requests, ``Origin`` of websockets); empty means the node's own
    names. ``additional_response_headers`` (QMC *Additional response headers*) go on every
    answer, e.g. ``Access-Control-Expose-Headers: qlik-csrf-token`` for mashups.
    ``websocket_csrf`` (on since November 2024): engine websockets need the token from
    ``GET /{prefix}/qps/csrftoken``.

    ``session_timeout`` (QMC *Session inactivity timeout (minutes)*, 30 by default): seconds of
    inactivity after which this virtual proxy's sessions end; None takes the node's
    ``Emulator(session_timeout=...)``. Engine websocket traffic counts as activity.

    ``windows_authentication_pattern`` (QMC *Windows authentication pattern*, ``"Windows"`` by
    default): a ticket or session virtual proxy without ``module_uri`` uses Qlik's internal
    module, which sends browsers whose ``User-Agent`` contains the pattern to Windows
    authentication (``/{prefix}/internal_windows_authentication/``, a Negotiate/NTLM challenge)
    and all others to the form login (``/{prefix}/internal_forms_authentication/``).

    ``"jwt"`` (QMC authentication method *JWT*): ``Authorization: Bearer <jwt>`` verified with
    ``jwt_certificate`` (the QMC's *JWT certificate*: PEM certificate or public key; RS256,
    RS384, RS512), the user from the claims ``jwt_user_id_attribute`` and
    ``jwt_user_directory_attribute``, attributes by ``jwt_attribute_map`` ((JWT claim, Qlik
    attribute) pairs, ``groups`` -> ``group`` by default). A verified token makes a session
    and sets the cookie; later requests and the engine websocket use the cookie.
    """

    prefix: str
    method: str = "ticket"
    session_cookie_name: str | None = None
    header_name: str | None = None
    header_user_directory: str | None = None
    header_pattern: str = DEFAULT_PATTERN
    module_uri: str | None = None
    samesite: str | None = "None"
    secure: bool = True
    host_allow_list: tuple[str, ...] = ()
    additional_response_headers: tuple[tuple[str, str], ...] = ()
    websocket_csrf: bool = True
    jwt_certificate: str | None = None
    jwt_user_id_attribute: str = "userId"
    jwt_user_directory_attribute: str = "userDirectory"
    jwt_attribute_map: tuple[tuple[str, str], ...] = (("groups", "group"),)
    session_timeout: float | None = None
    windows_authentication_pattern: str = "Windows"
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        prefix = self.prefix.strip("/") if isinstance(self.prefix, str) else self.prefix
        if not isinstance(prefix, str) or (prefix and not _PREFIX.match(prefix)):
            raise ConfigurationError(
                f"virtual proxy prefix {self.prefix!r} is not valid: use lowercase letters, "
                "digits, "
                "'-', '_', '.' or '~' (Qlik prefixes are lowercase and have no '/')."
            )
        object.__setattr__(self, "prefix", prefix)
        if self.method not in METHODS:
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: method {self.method!r} is not one of "
                f"{', '.join(METHODS)}."
            )
        if self.session_cookie_name is None:
            name = "X-Qlik-Session" if not prefix else f"X-Qlik-Session-{prefix}"
            object.__setattr__(self, "session_cookie_name", name)
        elif not _COOKIE_NAME.match(self.session_cookie_name):
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: session cookie name {self.session_cookie_name!r} is "
                "not a valid cookie name."
            )
        if self.samesite not in (None, "None", "Lax", "Strict"):
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: samesite must be 'None', 'Lax', 'Strict' or None "
                "(attribute not set)."
            )
        if self.samesite == "None" and not self.secure:
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: SameSite=None needs secure=True (browsers drop such "
                "cookies)."
            )
        if self.module_uri is not None and not re.match(r"https?://[^\s/?#]+", self.module_uri):
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: module_uri {self.module_uri!r} must be an absolute "
                "http(s) URL."
            )
        if self.session_timeout is not None:
            timeout = self.session_timeout
            if (
                isinstance(timeout, bool)
                or not isinstance(timeout, (int, float))
                or not timeout > 0
            ):
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: session_timeout must be a positive number of "
                    "seconds "
                    f"(the QMC's 'Session inactivity timeout', 30 minutes = 1800), not {timeout!r}."
                )
            object.__setattr__(self, "session_timeout", float(timeout))
        if (
            not isinstance(self.windows_authentication_pattern, str)
            or not self.windows_authentication_pattern
        ):
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: windows_authentication_pattern must be a non-empty "
                "string "
                "(QMC default 'Windows'; a word no User-Agent contains, such as 'Form', means form "
                "login)."
            )
        hosts = tuple(h.strip().lower() for h in self.host_allow_list)
        if any(not h or not _ALLOWED_HOST.match(h) for h in hosts):
            raise ConfigurationError(
                f"virtual proxy {prefix!r}: host_allow_list takes host names or addresses without "
                "scheme, "
                f"port or path, not {self.host_allow_list!r}."
            )
        object.__setattr__(self, "host_allow_list", hosts)
        extra = tuple((str(n), str(v)) for n, v in self.additional_response_headers)
        for n, v in extra:
            if (
                not _HEADER_NAME.match(n)
                or any(c in v for c in "\r\n")
                or n.lower() in ("set-cookie", "content-length")
            ):
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: additional response header {n!r} is not a valid "
                    "header "
                    "(a token name, no CR/LF in the value, not Set-Cookie or Content-Length)."
                )
        object.__setattr__(self, "additional_response_headers", extra)
        if self.method == "jwt":
            if not self.jwt_certificate:
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: a JWT virtual proxy needs jwt_certificate "
                    "(the PEM certificate whose key signs the tokens)."
                )
            from ..jwtkeys import public_key_from_pem

            public_key_from_pem(
                self.jwt_certificate
            )  # refuse a bad certificate now, not per request
            if not self.jwt_user_id_attribute or not self.jwt_user_directory_attribute:
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: the JWT attributes for user id and "
                    "user directory are required."
                )
        if self.is_header:
            if not prefix:
                raise ConfigurationError(
                    "header authentication is not available on the default virtual proxy: give a "
                    "prefix."
                )
            if not self.header_name or not _HEADER_NAME.match(self.header_name):
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: header authentication needs header_name (a valid "
                    "header name)."
                )
            if self.header_name.lower() in RESERVED_HEADERS:
                raise ConfigurationError(
                    f"virtual proxy {prefix!r}: {self.header_name} is reserved by Qlik; choose "
                    "another "
                    "header name (e.g. X-Portal-User)."
                )
            if self.method == "header-static":
                if not self.header_user_directory or not self.header_user_directory.strip():
                    raise ConfigurationError(
                        f"virtual proxy {prefix!r}: header-static needs header_user_directory."
                    )
            else:
                object.__setattr__(self, "_pattern", _compile_pattern(self.header_pattern, prefix))

    @property
    def is_header(self) -> bool:
        """True for header authentication (static or dynamic)."""
        return self.method.startswith("header-")

    @property
    def uses_internal_module(self) -> bool:
        """True when browsers without a session go to Qlik's internal (Windows/form) login.

        Ticket, session and header virtual proxies without an *Authentication module redirect
        URI* (a header proxy reached without its header falls back to it, as on Qlik).
        """
        return self.module_uri is None and self.method in (
            "ticket",
            "session",
            "header-static",
            "header-dynamic",
        )

    def windows_login_for(self, user_agent: str | None) -> bool:
        """Whether Qlik's internal module offers Windows authentication to this ``User-Agent``."""
        return bool(user_agent) and self.windows_authentication_pattern in (user_agent or "")

    @property
    def path_prefix(self) -> str:
        """``/prefix`` or ``""`` for the default virtual proxy."""
        return f"/{self.prefix}" if self.prefix else ""

    def user_from_header(self, value: str) -> QlikUser:
        """The user a header value names; IdentityError when it does not name one."""
        if not value.isascii():
            raise IdentityError(f"{self.header_name} must be US-ASCII.", field="header")
        if self.method == "header-static":
            return QlikUser(self.header_user_directory or "", value)
        assert self._pattern is not None
        m = self._pattern.match(value)
        if m is None:
            raise IdentityError(
                f"{self.header_name} does not match the pattern {self.header_pattern!r}.",
                field="header",
            )
        return QlikUser(m.group("ud"), m.group("id"))


def _compile_pattern(pattern: str, prefix: str) -> re.Pattern[str]:
    # Read as the QMC field is (a backslash escapes the next character): the same reading as
    # qlikauth's HeaderAuthenticator, so what one writes the other parses.
    try:
        pieces = parse_header_pattern(pattern)
    except ConfigurationError as exc:
        raise ConfigurationError(f"virtual proxy {prefix!r}: {exc}") from None
    out: list[str] = []
    seen: set[str] = set()
    for kind, text in pieces:
        if kind == "text":
            out.append(re.escape(text))
        else:
            # the first placeholder takes the shortest match, the second the rest
            out.append(f"(?P<{kind}>.+?)" if not seen else f"(?P<{kind}>.+)")
            seen.add(kind)
    return re.compile("".join(out) + r"\Z", re.DOTALL)
