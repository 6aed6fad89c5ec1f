"""Qlik's cross-site request forgery key (xrfkey): a fresh random one for every API call."""

from __future__ import annotations

import re
import secrets

__all__ = ["new_xrfkey", "is_valid_xrfkey", "XRFKEY_LENGTH"]

XRFKEY_LENGTH = 16
_NOT_ALNUM = str.maketrans("", "", "-_")
_VALID = re.compile(r"[0-9A-Za-z]{16}\Z")


def new_xrfkey() -> str:
    """Sixteen random characters from ``0-9a-zA-Z``, from :mod:`secrets`.

    A fixed key copied from samples (``abcdefghijklmnop``) defeats the point of the
    check; qlikauth never reuses one.
    """
    # URL-safe base64 of random bytes with '-' and '_' dropped: every kept character is
    # uniform over the other 62, and one token_urlsafe call is ~8x cheaper than 16 choice()s.
    while True:
        key = secrets.token_urlsafe(18).translate(_NOT_ALNUM)
        if len(key) >= XRFKEY_LENGTH:
            return key[:XRFKEY_LENGTH]


def is_valid_xrfkey(value: str | None) -> bool:
    """True when ``value`` has the form QPS requires."""
    return bool(value) and _VALID.match(value) is not None  # type: ignore[arg-type]
