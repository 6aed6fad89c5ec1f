"""A log filter that takes secrets out of the URLs web servers write to their access logs.

qlikauth never logs a ticket, token, code or SAML message itself, but the servers in front of a
portal write every request line, query string included: the OIDC callback's ``code`` and
``state``, a Redirect-binding ``SAMLRequest`` / ``SAMLResponse`` / ``RelayState``, a hub URL's
``qlikTicket``. :class:`RedactQuery` replaces those values with ``[redacted]`` in a record's
message and arguments before any handler formats it::

    from qlikauth.logging import RedactQuery
    RedactQuery.install("gunicorn.access", "werkzeug", "django.server", "uvicorn.access")

docs/security.md says where to put it for gunicorn, Werkzeug, Django's runserver and uvicorn.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RedactQuery", "SECRET_PARAMETERS", "redact_query"]

#: Query parameters whose values are secrets somewhere in a sign-in (compared without case).
SECRET_PARAMETERS: tuple[str, ...] = (
    "code",
    "state",
    "id_token",
    "id_token_hint",
    "access_token",
    "refresh_token",
    "logout_token",
    "token",
    "session_state",
    "client_secret",
    "code_verifier",
    "SAMLRequest",
    "SAMLResponse",
    "RelayState",
    "Signature",
    "qlikTicket",
    "ticket",
    "jwt",
    "password",
    "pwd",
)
REDACTED = "[redacted]"


def _pattern(names: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(set(names), key=len, reverse=True))
    # A parameter starts after ?, & or ; (also percent-encoded, as a query inside a query such
    # as a login URL's target); its value runs to the next separator, quote or blank.
    return re.compile(
        rf"((?:[?&;]|%3[Ff]|%26)(?:{alternatives})(?:=|%3[Dd]))"
        r"[^&;\s\"'#<>]*",
        re.IGNORECASE,
    )


_DEFAULT = _pattern(SECRET_PARAMETERS)


def redact_query(text: str, pattern: re.Pattern[str] = _DEFAULT) -> str:
    """``text`` with the value of every secret query parameter replaced by ``[redacted]``."""
    return pattern.sub(rf"\g<1>{REDACTED}", text)


class RedactQuery(logging.Filter):
    """Redact secret query parameters in every record that passes (never drops a record).

    Works on the message and on its arguments, whether a tuple (Werkzeug, Django's runserver,
    uvicorn) or a mapping (gunicorn's access log atoms), so the handler's own format and any
    structured formatter see the redacted values.

    :param extra: more parameter names to redact, besides :data:`SECRET_PARAMETERS`.
    """

    def __init__(self, name: str = "", *, extra: Iterable[str] = ()) -> None:
        super().__init__(name)
        extra = tuple(extra)
        self._pattern = _pattern(SECRET_PARAMETERS + extra) if extra else _DEFAULT

    def _clean(self, value: Any) -> Any:
        return redact_query(value, self._pattern) if isinstance(value, str) else value

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        args = record.args
        if isinstance(args, Mapping):
            record.args = {k: self._clean(v) for k, v in args.items()}
        elif isinstance(args, tuple):
            record.args = tuple(self._clean(a) for a in args)
        return True

    @classmethod
    def install(cls, *logger_names: str, extra: Iterable[str] = ()) -> RedactQuery:
        """Add one filter to each named logger (the records they log themselves); returns it."""
        flt = cls(extra=extra)
        for name in logger_names:
            logging.getLogger(name).addFilter(flt)
        return flt
