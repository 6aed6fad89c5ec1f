"""What an authenticator returns: plain data (a redirect, a cookie, headers), never a framework
object.

The Django and Flask layers turn these into responses; nothing here knows a framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..exceptions import ConfigurationError, HeaderError
from ..identity import QlikUser

__all__ = ["Redirect", "Cookie", "Headers", "Authenticator", "check_cookie_name"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_SAMESITE = {"none": "None", "lax": "Lax", "strict": "Strict"}


def check_cookie_name(name: str) -> str:
    """A cookie name must be an HTTP token (RFC 6265)."""
    if not isinstance(name, str) or not _TOKEN.match(name):
        raise ConfigurationError(
            f"cookie name {name!r} is not a valid HTTP token; use the virtual proxy's 'Session "
            "cookie header name' from the QMC, e.g. X-Qlik-Session-portal."
        )
    return name


def _samesite(value: str | None, secure: bool) -> str | None:
    if value is None:
        return None
    norm = _SAMESITE.get(str(value).lower())
    if norm is None:
        raise ConfigurationError(
            f"samesite must be 'None', 'Lax', 'Strict' or None, not {value!r}."
        )
    if norm == "None" and not secure:
        raise ConfigurationError(
            "SameSite=None requires Secure: browsers drop such cookies otherwise. Serve the portal "
            "and Qlik over https and set secure=True, or use samesite='Lax'."
        )
    return norm


@dataclass(frozen=True)
class Redirect:
    """Send the browser to :attr:`location` (a 302 in the integrations)."""

    location: str = field(repr=False)
    node: str | None = None

    def __repr__(self) -> str:
        # The location carries a ticket: show only where it goes.
        return f"Redirect(to={self.location.split('?', 1)[0]!r})"


@dataclass(frozen=True)
class Cookie:
    """A cookie to set (or, with ``max_age=0``, to clear).

    Browser-session cookie by default (no ``Max-Age``), so closing the browser on a
    shared workstation does not leave the next person signed in.
    """

    name: str
    value: str = field(repr=False)
    domain: str | None = None
    path: str = "/"
    secure: bool = True
    http_only: bool = True
    samesite: str | None = "None"
    max_age: int | None = None

    def __post_init__(self) -> None:
        check_cookie_name(self.name)
        object.__setattr__(self, "samesite", _samesite(self.samesite, self.secure))
        for what, v in (("value", self.value), ("domain", self.domain or ""), ("path", self.path)):
            if any(c in v for c in ';,\r\n\0 \t"\\'):
                raise HeaderError(f"cookie {what} contains a character not allowed in a cookie.")

    @property
    def deletes(self) -> bool:
        """True when this cookie clears a previous one."""
        return self.max_age == 0

    def header_value(self) -> str:
        """The value of a ``Set-Cookie`` header for this cookie."""
        parts = [f"{self.name}={self.value}", f"Path={self.path}"]
        if self.domain:
            parts.append(f"Domain={self.domain}")
        if self.max_age is not None:
            parts.append(f"Max-Age={self.max_age}")
            if self.max_age == 0:
                parts.append("Expires=Thu, 01 Jan 1970 00:00:00 GMT")
        if self.secure:
            parts.append("Secure")
        if self.http_only:
            parts.append("HttpOnly")
        if self.samesite:
            parts.append(f"SameSite={self.samesite}")
        return "; ".join(parts)

    def cleared(self) -> Cookie:
        """The cookie that deletes this one (same name, domain and path)."""
        return Cookie(
            self.name,
            "",
            self.domain,
            self.path,
            self.secure,
            self.http_only,
            self.samesite,
            max_age=0,
        )

    def __repr__(self) -> str:
        return (
            f"Cookie(name={self.name!r}, domain={self.domain!r}, path={self.path!r}, "
            f"samesite={self.samesite!r}, max_age={self.max_age!r})"
        )


@dataclass(frozen=True)
class Headers:
    """Headers to inject into requests towards Qlik (header authentication)."""

    items: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, str]:
        """The headers as a dict."""
        return dict(self.items)


@runtime_checkable
class Authenticator(Protocol):
    """The one small interface: a Qlik user in, plain data out.

    Ticket, session, header and JWT authenticators all have ``login(user)``; what it
    returns (:class:`Redirect`, :class:`Cookie`, :class:`Headers`) tells the
    integration what to do with the browser.
    """

    def login(self, user: QlikUser) -> Redirect | Cookie | Headers:  # pragma: no cover - protocol
        ...
