"""How a setting's value is read as a boolean, the same for every settings reader.

``QLIKAUTH`` (:mod:`qlikauth.web.config`) and ``QLIKAUTH_SAML``
(:class:`qlikauth.bridges.saml.SamlSettings`) both take a real bool, 0/1, or the strings
below (any case, spaces around ignored; the empty string is false, as an unset environment
variable reads). Anything else is refused by the caller, in its own words, never guessed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["parse_bool", "TRUE_WORDS", "FALSE_WORDS"]

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})


def parse_bool(value: Any) -> bool | None:
    """``value`` as a bool, or None when it is not one (the caller raises its own error)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        return None
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return None
