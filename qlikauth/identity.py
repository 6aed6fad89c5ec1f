"""Who signs in: a Qlik user (directory, id) with Qlik's multi-valued session attributes.

Qlik's rules (QPS "Add ticket"/"Add session"): ``UserDirectory`` and ``UserId`` are
trimmed at both ends, must not be whitespace-only and must not contain a backslash
(the backslash separates them in ``DIRECTORY\\user``). We also refuse control
characters, which have no place in an identity and would break the headers Qlik
writes them into, and ``;`` and ``=``: Qlik composes identity headers such as
``X-Qlik-User: UserDirectory=ACME; UserId=jdoe`` from them, so a user id like
``alice; UserDirectory=INTERNAL; UserId=sa_repository`` could pass for another user.

Attributes are an *ordered list* of ``(name, value)`` pairs: names repeat (one
``group`` entry per group feeds Section Access), values may be empty. QPS takes them
as a list of single-key objects: ``[{"group": "Sales"}, {"group": "Finance"}]``.
Qlik writes them into ``X-Qlik-Security`` as ``name=value;`` pairs, so a value with
``;`` (or a name with ``=``/``;``) could forge a second attribute: those are refused.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import IdentityError

__all__ = ["QlikUser", "Attribute", "security_header_value"]

#: The longest directory, id, attribute name or value we accept. Qlik documents no
#: limit; QPS rejects headers over 16 KiB, and nothing legitimate comes close to this.
MAX_FIELD_LENGTH = 1024

Attribute = tuple[str, str]

#: Any character for which str.isspace() is True (re's \s for str patterns is the same test).
_WHITESPACE = re.compile(r"\s")


def _has_control(text: str) -> bool:
    # str.isprintable() is False for every Cc, Cf, Zl and Zp character (and for a few more
    # categories, such as spaces other than " ", which are allowed): only then is it worth
    # asking unicodedata character by character. Identities are built on every page view.
    if text.isprintable():
        return False
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def _clean_name_part(value: Any, field_name: str) -> str:
    if not isinstance(value, str):
        raise IdentityError(
            f"{field_name} must be a string, got {type(value).__name__}.", field=field_name
        )
    trimmed = value.strip()
    if not trimmed:
        raise IdentityError(
            f"{field_name} is empty or only whitespace: give the user's "
            f"{'directory' if field_name == 'user_directory' else 'id'} as Qlik knows it.",
            field=field_name,
        )
    if "\\" in trimmed:
        raise IdentityError(
            f"{field_name} {trimmed!r} contains a backslash, which Qlik uses to separate "
            "directory and id: pass them separately, or use QlikUser.parse('DIRECTORY\\\\user').",
            field=field_name,
        )
    if ";" in trimmed or "=" in trimmed:
        shown = " and ".join(repr(ch) for ch in ";=" if ch in trimmed)
        raise IdentityError(
            f"{field_name} contains {shown}; Qlik writes identities as "
            "'UserDirectory=...; UserId=...' into headers such as X-Qlik-User, so such a "
            f"{'directory' if field_name == 'user_directory' else 'user id'} could pass for "
            "another user. Map it to a name without ';' and '=' first.",
            field=field_name,
        )
    if _has_control(trimmed):
        raise IdentityError(
            f"{field_name} contains a control or invisible formatting character: "
            "remove it (identities travel in HTTP headers).",
            field=field_name,
        )
    if len(trimmed) > MAX_FIELD_LENGTH:
        raise IdentityError(
            f"{field_name} is {len(trimmed)} characters long; the limit is {MAX_FIELD_LENGTH}.",
            field=field_name,
        )
    return trimmed


def _clean_attribute(index: int, name: Any, value: Any) -> Attribute:
    where = f"attributes[{index}]"
    if not isinstance(name, str) or not isinstance(value, str):
        raise IdentityError(
            f"{where} must be a (name, value) pair of strings, got "
            f"({type(name).__name__}, {type(value).__name__}); use '' for an empty value.",
            field=where,
        )
    name = name.strip()
    if not name:
        raise IdentityError(f"{where}.name is empty: every attribute needs a name.", field=f"{where}.name")
    if ";" in name or "=" in name or "," in name or _has_control(name) or _WHITESPACE.search(name):
        raise IdentityError(
            f"{where}.name {name!r} contains whitespace, ';', '=', ',' or a control character; "
            "Qlik writes attributes as 'name=value;' into X-Qlik-Security, so such a name "
            "could forge another attribute. Use letters, digits, '-', '_' or '.'.",
            field=f"{where}.name",
        )
    if ";" in value or _has_control(value):
        raise IdentityError(
            f"{where} ({name}) has a value with ';' or a control character; Qlik writes "
            "attributes as 'name=value;' into X-Qlik-Security, so such a value could forge "
            "another attribute. Map the value to a safe name first.",
            field=f"{where}.value",
        )
    if len(name) > MAX_FIELD_LENGTH or len(value) > MAX_FIELD_LENGTH:
        raise IdentityError(
            f"{where} ({name}) is longer than {MAX_FIELD_LENGTH} characters.", field=where
        )
    return (name, value)


def _normalise_attributes(
    attributes: Iterable[Attribute] | Mapping[str, Any] | None,
) -> tuple[Attribute, ...]:
    if attributes is None:
        return ()
    if type(attributes) in (list, tuple) and all(type(item) is tuple and len(item) == 2 for item in attributes):
        # The common shape, (name, value) pairs: no per-item Mapping (ABC) checks.
        return tuple(_clean_attribute(i, n, v) for i, (n, v) in enumerate(attributes))
    if isinstance(attributes, Mapping):
        pairs: list[tuple[Any, Any]] = []
        for name, value in attributes.items():
            if isinstance(value, (list, tuple)):
                pairs.extend((name, v) for v in value)
            else:
                pairs.append((name, value))
    elif isinstance(attributes, (str, bytes)):
        raise IdentityError(
            "attributes must be a list of (name, value) pairs, not a string.", field="attributes"
        )
    else:
        pairs = []
        for item in attributes:
            if isinstance(item, Mapping):
                if len(item) != 1:
                    raise IdentityError(
                        "each attribute object must have exactly one key, as QPS sends them "
                        f"(got {len(item)} keys).",
                        field="attributes",
                    )
                pairs.extend(item.items())
            else:
                try:
                    name, value = item
                except (TypeError, ValueError):
                    raise IdentityError(
                        f"attribute {item!r} is not a (name, value) pair.", field="attributes"
                    ) from None
                pairs.append((name, value))
    return tuple(_clean_attribute(i, n, v) for i, (n, v) in enumerate(pairs))


#: Checked values: a name (str) -> its trimmed form; a tuple of (name, value) pairs -> the
#: checked pairs (a tuple never equals a str, so the two kinds never meet).
_CHECKED: dict[Any, Any] = {}
_CHECKED_KEPT = 8192


def _remember(raw: Any, checked: Any) -> Any:
    if len(_CHECKED) >= _CHECKED_KEPT:
        _CHECKED.clear()  # bounded: a very large user base only checks again
    _CHECKED[raw] = checked
    return checked


def _plain_pairs(items: tuple[Any, ...]) -> bool:
    """Are these (name, value) pairs of exact str (the only attributes remembered as checked)?"""
    return all(type(i) is tuple and len(i) == 2 and type(i[0]) is str and type(i[1]) is str for i in items)


_set = object.__setattr__  # QlikUser is frozen


@dataclass(frozen=True, slots=True)
class QlikUser:
    """A Qlik user: user directory, user id and ordered, multi-valued attributes.

    >>> u = QlikUser("ACME", "jdoe", attributes=[("group", "Sales"), ("group", "Finance")])
    >>> u.qps_attributes()
    [{'group': 'Sales'}, {'group': 'Finance'}]

    Values are trimmed and checked on construction; an invalid one raises
    :class:`~qlikauth.IdentityError` naming the field. Attributes may also be given as
    a mapping whose values are strings or lists of strings.
    """

    user_directory: str
    user_id: str
    attributes: tuple[Attribute, ...] = field(default=())

    def __init__(
        self,
        user_directory: str,
        user_id: str,
        attributes: Iterable[Attribute] | Mapping[str, Any] | None = None,
    ) -> None:
        # Portals build the same users on every page view: values already checked are looked
        # up (exact str keys, so only what passed the checks before passes again).
        checked = _CHECKED
        directory = checked.get(user_directory) if type(user_directory) is str else None
        if directory is None:
            directory = _remember(user_directory, _clean_name_part(user_directory, "user_directory"))
        uid = checked.get(user_id) if type(user_id) is str else None
        if uid is None:
            uid = _remember(user_id, _clean_name_part(user_id, "user_id"))
        attrs: tuple[Attribute, ...] | None = None
        if type(attributes) is list or type(attributes) is tuple:
            key: tuple[Any, ...] | None = tuple(attributes)
            try:
                attrs = checked.get(key)  # only pairs of exact str that passed are ever stored
            except TypeError:  # unhashable items (lists, QPS-style dicts): checked every time
                key = None
            if attrs is None:
                attrs = _normalise_attributes(attributes)
                if key is not None and _plain_pairs(key):
                    _remember(key, attrs)
        else:
            attrs = _normalise_attributes(attributes)
        _set(self, "user_directory", directory)
        _set(self, "user_id", uid)
        _set(self, "attributes", attrs)

    # -- constructors -------------------------------------------------------------
    @classmethod
    def parse(
        cls, qualified: str, attributes: Iterable[Attribute] | Mapping[str, Any] | None = None
    ) -> QlikUser:
        """Build a user from Qlik's ``DIRECTORY\\userid`` form."""
        if not isinstance(qualified, str) or "\\" not in qualified:
            raise IdentityError(
                f"{qualified!r} is not of the form DIRECTORY\\userid (one backslash between "
                "user directory and user id).",
                field="user",
            )
        directory, _, user_id = qualified.partition("\\")
        return cls(directory, user_id, attributes)

    @classmethod
    def from_qps(cls, data: Mapping[str, Any]) -> QlikUser:
        """Build a user from a QPS body or answer (PascalCase or camelCase keys)."""
        def pick(*names: str) -> Any:
            for n in names:
                if n in data:
                    return data[n]
            return None

        directory = pick("UserDirectory", "userDirectory")
        user_id = pick("UserId", "userId")
        attrs = pick("Attributes", "attributes") or []
        if not isinstance(attrs, list):
            raise IdentityError("Attributes must be a list of single-key objects.", field="attributes")
        return cls(directory, user_id, attrs)

    # -- views --------------------------------------------------------------------
    @property
    def qualified_name(self) -> str:
        """``DIRECTORY\\userid``, as the QMC and the hub show it."""
        return f"{self.user_directory}\\{self.user_id}"

    def get_all(self, name: str) -> list[str]:
        """Every value of attribute ``name`` (case-insensitive), in order."""
        key = name.casefold()
        return [v for n, v in self.attributes if n.casefold() == key]

    @property
    def groups(self) -> list[str]:
        """The values of the ``group`` attribute (Section Access groups)."""
        return self.get_all("group")

    def qps_attributes(self) -> list[dict[str, str]]:
        """Attributes as QPS takes them: a list of single-key objects."""
        return [{n: v} for n, v in self.attributes]

    def to_qps(self) -> dict[str, Any]:
        """The user part of a QPS ticket or session body (PascalCase)."""
        return {
            "UserDirectory": self.user_directory,
            "UserId": self.user_id,
            "Attributes": self.qps_attributes(),
        }

    def same_user(self, other: QlikUser) -> bool:
        """True when ``other`` is the same Qlik user (Qlik compares case-insensitively)."""
        return self.key == other.key

    @property
    def key(self) -> tuple[str, str]:
        """A case-folded (directory, id) pair, for dictionaries of users."""
        return (self.user_directory.casefold(), self.user_id.casefold())

    def with_attributes(self, attributes: Iterable[Attribute] | Mapping[str, Any] | None) -> QlikUser:
        """A copy with other attributes."""
        return QlikUser(self.user_directory, self.user_id, attributes)

    def __repr__(self) -> str:
        return f"QlikUser({self.user_directory!r}, {self.user_id!r}, attributes={list(self.attributes)!r})"


def security_header_value(attributes: Iterable[Attribute]) -> str:
    """Render attributes as Qlik writes them into ``X-Qlik-Security``.

    >>> security_header_value([("group", "Sales"), ("empty", "")])
    'SecureRequest=true; Context=AppAccess; group=Sales; empty='
    """
    parts = ["SecureRequest=true", "Context=AppAccess"]
    parts.extend(f"{n}={v}" for n, v in attributes)
    return "; ".join(parts)
