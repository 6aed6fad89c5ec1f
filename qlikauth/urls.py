"""Deciding where a browser may be sent: redirect targets, ``TargetUri`` and ``proxyRestUri``.

Every URL that reaches us from a browser (``next``, ``target``, ``proxyRestUri``) or
from QPS (``TargetUri``) is checked against the configuration before it is used. The
rules follow OWASP's open-redirect guidance and Django's ``url_has_allowed_host_and_scheme``:
relative paths must start with one ``/``; absolute URLs must match an allowed origin
exactly (scheme, host, port); backslashes, control characters, user-info and
``//host`` forms are refused because browsers read them differently from parsers.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from .exceptions import ConfigurationError, RedirectError

__all__ = ["Origin", "RedirectPolicy", "origin_of", "normalise_base_url"]

_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class Origin:
    """scheme://host:port, compared exactly (host lower-cased, default port filled in)."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        default = _DEFAULT_PORTS.get(self.scheme)
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def _bad_chars(url: str) -> bool:
    return "\\" in url or any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in url) or any(
        c.isspace() for c in url
    )


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as exc:
        raise RedirectError(f"URL {url[:80]!r} cannot be parsed: {exc}.") from None
    return parts


def origin_of(url: str) -> Origin:
    """The :class:`Origin` of an absolute http(s) URL; raises :class:`RedirectError`."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise RedirectError(f"{url[:80]!r} is not an absolute http(s) URL.")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise RedirectError(f"{url[:80]!r} carries user information ('user@host'); refused.")
    return Origin(scheme, parts.hostname.lower().rstrip("."), parts.port or _DEFAULT_PORTS[scheme])


def normalise_base_url(url: str, what: str = "URL") -> str:
    """``https://Host:443/path/`` -> ``https://host/path`` for configuration values.

    Raises :class:`ConfigurationError` for anything that is not an absolute http(s) URL
    without query, fragment or user-info.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError(f"{what} is empty: give an absolute URL such as https://qlik.example.com.")
    url = url.strip()
    try:
        origin = origin_of(url)
    except RedirectError as exc:
        raise ConfigurationError(f"{what} {url!r} is not usable: {exc}") from None
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ConfigurationError(f"{what} {url!r} must not have a query string or fragment.")
    path = parts.path.rstrip("/")
    return f"{origin}{path}"


class RedirectPolicy:
    """Which URLs a browser may be redirected to.

    ``allowed`` are origins (``https://hub.example.com``, ``https://qs:8443``) or URLs
    whose origin is taken. ``default`` is where relative targets are resolved and
    where disallowed ``TargetUri`` values are replaced.
    """

    def __init__(self, allowed: Iterable[str], default: str) -> None:
        self.default = default
        origins = {origin_of(default)}
        for item in allowed:
            try:
                origins.add(origin_of(item))
            except RedirectError as exc:
                raise ConfigurationError(f"allowed target {item!r} is not usable: {exc}") from None
        self.origins = frozenset(origins)

    def is_allowed(self, url: str) -> bool:
        """True when ``url`` may be followed (see :meth:`check`)."""
        try:
            self.check(url)
        except RedirectError:
            return False
        return True

    def check(self, url: str) -> str:
        """Return the absolute URL to redirect to, or raise :class:`RedirectError`."""
        if not isinstance(url, str) or not url:
            raise RedirectError("empty redirect target.")
        if len(url) > 4096:
            raise RedirectError("redirect target longer than 4096 characters; refused.")
        if _bad_chars(url):
            raise RedirectError(
                "redirect target contains a backslash, whitespace or control character; refused."
            )
        parts = _split(url)
        if not parts.scheme and not parts.netloc:
            if not url.startswith("/") or url.startswith("//"):
                raise RedirectError(
                    f"redirect target {url[:80]!r} is neither an absolute allowed URL nor a "
                    "path starting with a single '/'."
                )
            base = urlsplit(self.default)
            return urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
        origin = origin_of(url)
        if origin not in self.origins:
            allowed = ", ".join(sorted(str(o) for o in self.origins))
            raise RedirectError(
                f"redirect target host {origin} is not allowed (allowed: {allowed}). Add it to "
                "the allowed targets setting if it is really yours."
            )
        return url

    def check_or_default(self, url: str | None) -> str:
        """The checked URL, or :attr:`default` when it is missing or not allowed."""
        if not url:
            return self.default
        try:
            return self.check(url)
        except RedirectError:
            return self.default
