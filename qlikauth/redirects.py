"""Deciding where a browser may be sent: redirect targets, ``TargetUri`` and ``proxyRestUri``.

Every URL that reaches us from a browser (``next``, ``target``, ``proxyRestUri``) or
from QPS (``TargetUri``) is checked against the configuration before it is used. The
rules follow OWASP's open-redirect guidance and Django's ``url_has_allowed_host_and_scheme``:
relative paths must start with one ``/``; absolute URLs must match an allowed origin
exactly (scheme, host, port); backslashes, control characters, user-info and
``//host`` forms are refused because browsers read them differently from parsers.
Relative targets may be held under a path prefix (the hub's virtual proxy), and every
target loses its ticket-like query parameters (:func:`strip_tickets`), so a link cannot
smuggle an attacker's ticket in front of the one qlikauth adds.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, unquote_plus, urlsplit, urlunsplit

from .exceptions import ConfigurationError, RedirectError

__all__ = [
    "Origin",
    "RedirectPolicy",
    "origin_of",
    "normalise_base_url",
    "strip_tickets",
    "is_ticket_param",
]

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
    # Cs: a lone surrogate cannot be encoded into a Location header (the answer would fail).
    return (
        "\\" in url
        or any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") for c in url)
        or any(c.isspace() for c in url)
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
        raise ConfigurationError(
            f"{what} is empty: give an absolute URL such as https://qlik.example.com."
        )
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


def _fully_decoded(text: str, decode: Callable[[str], str]) -> str:
    # Percent-decode until nothing changes (a double-encoded text may be decoded twice on its
    # way: by a proxy, then by Qlik or the browser), then fold Unicode look-alikes (NFKC).
    for _ in range(4):
        decoded = decode(text)
        if decoded == text:
            break
        text = decoded
    return unicodedata.normalize("NFKC", text)


def _decoded_name(name: str) -> str:
    # Decoded as a query parameter name (``+`` is a space), case folded, letters and digits only.
    name = _fully_decoded(name, unquote_plus).casefold()
    return "".join(c for c in name if c.isalnum())


def is_ticket_param(name: str) -> bool:
    """True for a query parameter name that Qlik could read as a ticket.

    ``qlikTicket`` in any case, percent-encoded (``qlik%54icket``), or dressed up
    (``x-qlik-ticket``, ``qlik_ticket``): compared after percent-decoding, case folding
    and dropping everything but letters and digits, so removing one too many is the
    failure mode, never letting one through.
    """
    return "qlikticket" in _decoded_name(name)


def strip_tickets(url: str) -> str:
    """``url`` without any ticket-like query parameter (see :func:`is_ticket_param`).

    A redirect target such as ``/hub/?qlikTicket=<attacker's>`` would otherwise reach
    Qlik as ``?qlikTicket=<attacker's>&qlikTicket=<ours>``: Qlik redeems the first, and
    the user works in Qlik as the attacker (login CSRF). The rest of the query is kept
    byte for byte.
    """
    parts = urlsplit(url)
    if not parts.query:
        return url
    kept = [p for p in parts.query.split("&") if p and not is_ticket_param(p.split("=", 1)[0])]
    query = "&".join(kept)
    if query == parts.query:
        return url
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix.rstrip("/") or path.startswith(prefix)


def _has_dot_segment(path: str) -> bool:
    # "/portal/../other" (or its encoded forms, "%2e%2e", "..%2f") would leave the prefix
    # once the browser or the proxy resolves it: decode fully, then look at each segment.
    path = _fully_decoded(path, unquote).replace("\\", "/")
    return any(seg and set(seg) <= {"."} for seg in path.split("/"))


class RedirectPolicy:
    """Which URLs a browser may be redirected to.

    ``allowed`` are origins (``https://hub.example.com``, ``https://qs:8443``) or URLs
    whose origin is taken. ``default`` is where relative targets are resolved and
    where disallowed ``TargetUri`` values are replaced. ``relative_prefix`` (``"/portal/"``)
    keeps relative targets under one path, the hub's virtual proxy: ``/other/hub`` on the
    same host would reach another virtual proxy, perhaps with another authentication.
    Every checked URL loses its ticket-like query parameters (:func:`strip_tickets`).
    """

    def __init__(self, allowed: Iterable[str], default: str, *, relative_prefix: str = "/") -> None:
        self.default = default
        if not relative_prefix.startswith("/"):
            raise ConfigurationError(f"relative_prefix {relative_prefix!r} must start with '/'.")
        self.relative_prefix = (
            relative_prefix if relative_prefix.endswith("/") else relative_prefix + "/"
        )
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
            if _has_dot_segment(parts.path) or not _under(parts.path, self.relative_prefix):
                raise RedirectError(
                    f"redirect target path {parts.path[:80]!r} is not under "
                    f"{self.relative_prefix!r}, "
                    "the hub's virtual proxy; refused."
                )
            base = urlsplit(self.default)
            return strip_tickets(
                urlunsplit((base.scheme, base.netloc, parts.path, parts.query, parts.fragment))
            )
        origin = origin_of(url)
        if origin not in self.origins:
            allowed = ", ".join(sorted(str(o) for o in self.origins))
            raise RedirectError(
                f"redirect target host {origin} is not allowed (allowed: {allowed}). Add it to "
                "the allowed targets setting if it is really yours."
            )
        return strip_tickets(url)

    def check_or_default(self, url: str | None) -> str:
        """The checked URL, or :attr:`default` when it is missing or not allowed."""
        if not url:
            return self.default
        try:
            return self.check(url)
        except RedirectError:
            return self.default
