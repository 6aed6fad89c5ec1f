"""Qlik's cross-site request forgery key (xrfkey): a fresh random one for every API call."""

from __future__ import annotations

import re
import secrets
import string

__all__ = ["new_xrfkey", "is_valid_xrfkey", "XRFKEY_LENGTH"]

XRFKEY_LENGTH = 16
_ALPHABET = string.ascii_letters + string.digits
_VALID = re.compile(r"[0-9A-Za-z]{16}\Z")


def new_xrfkey() -> str:
    """Sixteen random characters from ``0-9a-zA-Z``, from :mod:`secrets`.

    A fixed key copied from samples (``abcdefghijklmnop``) defeats the point of the
    check; qlikauth never reuses one.
    """
    return "".join(secrets.choice(_ALPHABET) for _ in range(XRFKEY_LENGTH))


def is_valid_xrfkey(value: str | None) -> bool:
    """True when ``value`` has the form QPS requires."""
    return bool(value) and _VALID.match(value) is not None  # type: ignore[arg-type]
