"""Header authentication: the header a trusted reverse proxy injects for a header virtual proxy.

A header virtual proxy believes whatever header reaches it, so it is only safe behind
a proxy that sets the header itself and drops any copy the client sent (see
``qlikauth nginx-config``). Static user directory: the header carries the user id.
Dynamic: it carries both, laid out by a pattern with ``$ud`` and ``$id``, read as the QMC's
*Header authentication dynamic user directory* field is: a backslash escapes the next
character, so the QMC's ``$ud\\\\$id`` (what the field holds) gives ``ACME\\jdoe``. Qlik reads
US-ASCII only.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ..exceptions import ConfigurationError, HeaderError, IdentityError
from ..identity import QlikUser
from .base import Headers

__all__ = [
    "HeaderAuthenticator",
    "IdentityAnswer",
    "RESERVED_HEADERS",
    "HEADER_NAME_RE",
    "check_header_name",
    "parse_header_pattern",
]

log = logging.getLogger("qlikauth.header")


@dataclass(frozen=True)
class IdentityAnswer:
    """What a portal's identity endpoint (nginx ``auth_request``) answers: plain data.

    200 with the identity in ``headers`` for a signed-in user, 401 for nobody, 403 for a
    user whose identity cannot be written into a header. Never cached.
    """

    status: int
    headers: tuple[tuple[str, str], ...]


#: Headers QPS sets or reads itself; a header virtual proxy may not use them.
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
#: What a header name qlikauth sends or answers may look like (no "_": nginx drops it, WSGI folds
#: it).
HEADER_NAME_RE = re.compile(r"[A-Za-z0-9-]+\Z")


def check_header_name(name: str) -> str:
    """Validate a header virtual proxy's header name."""
    if not isinstance(name, str) or not HEADER_NAME_RE.match(name):
        raise ConfigurationError(
            f"header name {name!r} must be letters, digits and '-' only (no underscores: nginx "
            "drops such headers, and WSGI folds '_' and '-' together so they can be spoofed)."
        )
    if name.lower() in RESERVED_HEADERS:
        raise ConfigurationError(
            f"header name {name!r} is reserved by Qlik; choose another, e.g. X-Portal-User."
        )
    return name


#: The QMC's own example of a dynamic header pattern (help.qlik.com, *Virtual proxies*).
DEFAULT_PATTERN = "$ud\\\\$id"


def parse_header_pattern(pattern: str) -> tuple[tuple[str, str], ...]:
    """Read a dynamic header pattern as the QMC field holds it: ``(kind, text)`` pieces.

    ``kind`` is ``"ud"``, ``"id"`` or ``"text"`` (literal text, escapes resolved). A backslash
    escapes the character after it, so ``$ud\\\\$id`` (the QMC's example, matching
    ``USERDIRECTORY\\userid``) separates the two by one backslash; a single backslash right before
    ``$ud``/``$id`` or at the end stands for itself (``$ud\\$id`` reads the same, as earlier
    qlikauth releases wrote it). ``$ud`` and ``$id`` must each appear once.
    """
    if not isinstance(pattern, str):
        raise ConfigurationError(
            "the dynamic header pattern must be a string such as '$ud\\\\$id'."
        )
    pieces: list[tuple[str, str]] = []
    text: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith(("$ud", "$id"), i):
            if text:
                pieces.append(("text", "".join(text)))
                text = []
            pieces.append((pattern[i + 1 : i + 3], ""))
            i += 3
        elif pattern[i] == "\\" and i + 1 < len(pattern) and pattern[i + 1] != "$":
            text.append(pattern[i + 1])
            i += 2
        else:
            text.append(pattern[i])
            i += 1
    if text:
        pieces.append(("text", "".join(text)))
    kinds = [k for k, _ in pieces]
    if kinds.count("ud") != 1 or kinds.count("id") != 1:
        raise ConfigurationError(
            f"dynamic header pattern {pattern[:40]!r} must contain $ud and $id once each, as the "
            "QMC field does, e.g. '$ud\\\\$id' (matches ACME\\jdoe) or '$id@$ud'."
        )
    return tuple(pieces)


def _check_value(value: str, what: str) -> str:
    if not value.isascii() or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise HeaderError(
            f"{what} {value!r} cannot be sent in a header: Qlik reads US-ASCII only and CR, LF "
            "and other control characters would split the header. Map the user to an ASCII id."
        )
    return value


class HeaderAuthenticator:
    """Build the identity header for a header virtual proxy.

    :param header_name: the virtual proxy's header name (QMC: *Header authentication
        header name*).
    :param user_directory: set for a *static* user directory virtual proxy; the users
        signed in must belong to it.
    :param pattern: for a *dynamic* one, how directory and id are laid out: the value of the
        QMC field *Header authentication dynamic user directory* as it holds it, with ``$ud``
        and ``$id`` (default ``$ud\\\\$id``, giving ``ACME\\jdoe``; see
        :func:`parse_header_pattern`).
    """

    def __init__(
        self, header_name: str, user_directory: str | None = None, pattern: str = DEFAULT_PATTERN
    ) -> None:
        self.header_name = check_header_name(header_name)
        self.user_directory = user_directory.strip() if user_directory else None
        self._pieces: tuple[tuple[str, str], ...] = ()
        if self.user_directory is None:
            self._pieces = parse_header_pattern(pattern)
            _check_value(pattern, "pattern")
        self.pattern = pattern

    @property
    def dynamic(self) -> bool:
        """True for a dynamic user directory virtual proxy."""
        return self.user_directory is None

    def value(self, user: QlikUser) -> str:
        """The header value for ``user``."""
        if self.user_directory is not None:
            if user.user_directory.casefold() != self.user_directory.casefold():
                raise IdentityError(
                    f"user {user.qualified_name!r} is not in {self.user_directory!r}, the static "
                    "user directory of this header virtual proxy.",
                    field="user_directory",
                )
            return _check_value(user.user_id, "user id")
        _check_value(user.user_directory, "user directory")
        _check_value(user.user_id, "user id")
        # The text between $ud and $id separates them; a directory containing it could
        # be parsed into another user.
        kinds = [k for k, _ in self._pieces]
        first, second = kinds.index("ud"), kinds.index("id")
        lo, hi = min(first, second), max(first, second)
        sep = "".join(t for _, t in self._pieces[lo + 1 : hi])
        if sep and (sep in user.user_directory or (first > second and sep in user.user_id)):
            raise HeaderError(
                f"user {user.qualified_name!r} contains the pattern's separator {sep!r}; Qlik "
                "would split the header in the wrong place."
            )
        fill = {"ud": user.user_directory, "id": user.user_id}
        return "".join(fill.get(k, t) for k, t in self._pieces)

    def headers(self, user: QlikUser) -> Headers:
        """The header(s) to inject for ``user``."""
        return Headers(((self.header_name, self.value(user)),))

    def login(self, user: QlikUser) -> Headers:
        """Same as :meth:`headers` (the :class:`Authenticator` interface)."""
        return self.headers(user)

    def identity_answer(
        self, user: QlikUser | None, response_header: str = "X-Qlik-Header-Value"
    ) -> IdentityAnswer:
        """The answer of a portal's identity endpoint for nginx ``auth_request``.

        ``user`` must come from the portal's own login session, never from a request
        header. The value travels in ``response_header`` (nginx reads it with
        ``auth_request_set``); no QPS call is made.
        """
        no_store = (("Cache-Control", "no-store"),)
        if user is None:
            return IdentityAnswer(401, no_store)
        try:
            value = self.value(user)
        except (HeaderError, IdentityError) as exc:
            log.warning("header-auth: %s cannot be sent in a header: %s", user.qualified_name, exc)
            return IdentityAnswer(403, no_store)
        return IdentityAnswer(200, ((response_header, value), *no_store))
