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

Every text is Unicode scalar values only: a lone surrogate (which no encoder writes) or a
noncharacter (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF) is refused with :class:`IdentityError`, as
are control characters. Error messages quote at most a short prefix of a refused value.

:func:`fold_identity` is the one normalisation of an identity (NFKC, then case-folding), used
by the claims mapping's ``lower``/``casefold`` transforms: it refuses a value whose meaning
changes under it (U+212A KELVIN SIGN would fold to an ASCII ``k``, so ``\u212aate`` would
become ``kate``) or that mixes scripts (Latin with Cyrillic look-alikes), unless allowed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .exceptions import IdentityError

__all__ = ["QlikUser", "Attribute", "security_header_value", "fold_identity", "shown", "check_text"]

#: The longest directory, id, attribute name or value we accept. Qlik documents no
#: limit; QPS rejects headers over 16 KiB, and nothing legitimate comes close to this.
MAX_FIELD_LENGTH = 1024

Attribute = tuple[str, str]

#: Any character for which str.isspace() is True (re's \s for str patterns is the same test).
_WHITESPACE = re.compile(r"\s")


#: How much of a refused value a message quotes.
SHOWN_PREFIX = 24


def shown(value: Any, limit: int = SHOWN_PREFIX) -> str:
    """A short quotation of an untrusted value for messages and logs: its first ``limit``
    characters, non-ASCII ones escaped (a look-alike letter shows as ``\\u212a``)."""
    text = value if isinstance(value, str) else str(type(value).__name__)
    head = text[:limit]
    return ascii(head) + (f"... ({len(text)} characters)" if len(text) > limit else "")


def _is_noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _bad_character(text: str) -> str | None:
    """What kind of forbidden character ``text`` holds (None: none)."""
    # str.isprintable() is False for every Cc, Cf, Cs, Cn, Zl and Zp character (and for a few
    # more categories, such as spaces other than " ", which are allowed): only then is it
    # worth asking unicodedata character by character. Identities are built on every page view.
    if text.isprintable():
        return None
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cs":
            return "a lone surrogate (not a Unicode character: the text was decoded wrongly)"
        if category in ("Cc", "Cf", "Zl", "Zp"):
            return "a control or invisible formatting character"
        if category == "Cn" and _is_noncharacter(ord(ch)):
            return "a Unicode noncharacter"
    return None


def check_text(
    value: Any, field_name: str, *, allow_empty: bool = False, strip: bool = True
) -> str:
    """``value`` as identity text (trimmed): a string of Unicode characters, no control
    character, surrogate or noncharacter, at most :data:`MAX_FIELD_LENGTH` long; else
    :class:`IdentityError` naming ``field_name``. For fields without Qlik's ``;``/``=``/``\\``
    rules (a Qlik Cloud name, e-mail or group)."""
    if not isinstance(value, str):
        raise IdentityError(
            f"{field_name} must be a string, got {type(value).__name__}.", field=field_name
        )
    trimmed = value.strip() if strip else value
    if not trimmed.strip() and not allow_empty:
        raise IdentityError(f"{field_name} is empty or only whitespace.", field=field_name)
    bad = _bad_character(trimmed)
    if bad is not None:
        raise IdentityError(
            f"{field_name} {shown(trimmed)} contains {bad}: remove it.", field=field_name
        )
    if len(trimmed) > MAX_FIELD_LENGTH:
        raise IdentityError(
            f"{field_name} is {len(trimmed)} characters long; the limit is {MAX_FIELD_LENGTH}.",
            field=field_name,
        )
    return trimmed


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
    bad = _bad_character(trimmed)
    if bad is not None:
        raise IdentityError(
            f"{field_name} {shown(trimmed)} contains {bad}: remove it (identities travel in HTTP "
            "headers and JSON).",
            field=field_name,
        )
    if "\\" in trimmed:
        raise IdentityError(
            f"{field_name} {shown(trimmed)} contains a backslash, which Qlik uses to separate "
            "directory and id: pass them separately, or use QlikUser.parse('DIRECTORY\\\\user').",
            field=field_name,
        )
    if ";" in trimmed or "=" in trimmed:
        chars = " and ".join(repr(ch) for ch in ";=" if ch in trimmed)
        raise IdentityError(
            f"{field_name} contains {chars}; Qlik writes identities as "
            "'UserDirectory=...; UserId=...' into headers such as X-Qlik-User, so such a "
            f"{'directory' if field_name == 'user_directory' else 'user id'} could pass for "
            "another user. Map it to a name without ';' and '=' first.",
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
    for text, part in ((name, "name"), (value, "value")):
        bad = _bad_character(text)
        if bad is not None:
            raise IdentityError(
                f"{where}.{part} {shown(text)} contains {bad}: map the value to one without it.",
                field=f"{where}.{part}",
            )
    if not name:
        raise IdentityError(
            f"{where}.name is empty: every attribute needs a name.", field=f"{where}.name"
        )
    if ";" in name or "=" in name or "," in name or _WHITESPACE.search(name):
        raise IdentityError(
            f"{where}.name {shown(name)} contains whitespace, ';', '=', ',' or a control "
            "character; "
            "Qlik writes attributes as 'name=value;' into X-Qlik-Security, so such a name "
            "could forge another attribute. Use letters, digits, '-', '_' or '.'.",
            field=f"{where}.name",
        )
    if ";" in value:
        raise IdentityError(
            f"{where} ({shown(name)}) has a value with ';' or a control character; Qlik writes "
            "attributes as 'name=value;' into X-Qlik-Security, so such a value could forge "
            "another attribute. Map the value to a safe name first.",
            field=f"{where}.value",
        )
    if len(name) > MAX_FIELD_LENGTH or len(value) > MAX_FIELD_LENGTH:
        raise IdentityError(
            f"{where} ({shown(name)}) is longer than {MAX_FIELD_LENGTH} characters.", field=where
        )
    return (name, value)


def _normalise_attributes(
    attributes: Iterable[Attribute] | Mapping[str, Any] | None,
) -> tuple[Attribute, ...]:
    if attributes is None:
        return ()
    if type(attributes) in (list, tuple) and all(
        type(item) is tuple and len(item) == 2 for item in attributes
    ):
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
                        f"attribute {shown(repr(item))} is not a (name, value) pair.",
                        field="attributes",
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
    return all(
        type(i) is tuple and len(i) == 2 and type(i[0]) is str and type(i[1]) is str for i in items
    )


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
            directory = _remember(
                user_directory, _clean_name_part(user_directory, "user_directory")
            )
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
                f"{shown(qualified)} is not of the form DIRECTORY\\userid (one backslash between "
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
            raise IdentityError(
                "Attributes must be a list of single-key objects.", field="attributes"
            )
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

    def with_attributes(
        self, attributes: Iterable[Attribute] | Mapping[str, Any] | None
    ) -> QlikUser:
        """A copy with other attributes."""
        return QlikUser(self.user_directory, self.user_id, attributes)

    def __repr__(self) -> str:
        return (
            f"QlikUser({self.user_directory!r}, {self.user_id!r}, "
            f"attributes={list(self.attributes)!r})"
        )


def security_header_value(attributes: Iterable[Attribute]) -> str:
    """Render attributes as Qlik writes them into ``X-Qlik-Security``.

    >>> security_header_value([("group", "Sales"), ("empty", "")])
    'SecureRequest=true; Context=AppAccess; group=Sales; empty='
    """
    parts = ["SecureRequest=true", "Context=AppAccess"]
    parts.extend(f"{n}={v}" for n, v in attributes)
    return "; ".join(parts)


#: Scripts that mix within one writing system (Japanese, Korean, Chinese): one group.
_HAN_FAMILY = frozenset({"CJK", "HIRAGANA", "KATAKANA", "HANGUL", "BOPOMOFO", "IDEOGRAPHIC"})
#: Name words that are not a script (letters shared by every script).
_NOT_A_SCRIPT = frozenset({"MODIFIER", "COMBINING"})


def _script_of(ch: str) -> str | None:
    """A letter's script, from its Unicode name (None for digits, marks and punctuation)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    word = unicodedata.name(ch, "").split(" ", 1)[0]
    if not word or word in _NOT_A_SCRIPT:
        return None
    return "HAN" if word in _HAN_FAMILY else word


def fold_identity(
    value: str, *, allow_compatibility: bool = False, allow_mixed_scripts: bool = False
) -> str:
    """``value`` normalised once for comparison as an identity: NFKC, then case-folded.

    Refused with :class:`IdentityError` unless allowed: a character whose NFKC form is
    another (U+212A KELVIN SIGN -> ``K``, fullwidth and mathematical letters, ligatures:
    they would make one person's id equal another's), and letters of more than one script
    (``pаypal`` with a Cyrillic ``а``); Han, Hiragana, Katakana and Hangul count as one.
    Lone surrogates and noncharacters are always refused.
    """
    if not isinstance(value, str):
        raise IdentityError(
            f"an identity must be text, got {type(value).__name__}.", field="identity"
        )
    bad = _bad_character(value)
    if bad is not None and "control" not in bad:
        raise IdentityError(
            f"the identity {shown(value)} contains {bad}; refused.", field="identity"
        )
    if value.isascii():
        return value.casefold()
    if not allow_compatibility:
        # NFKC differs from NFC only through compatibility mappings, which are per character.
        changed = next((ch for ch in value if not unicodedata.is_normalized("NFKC", ch)), None)
        if changed is not None:
            what = f"U+{ord(changed):04X} {unicodedata.name(changed, '')}".strip()
            raise IdentityError(
                f"the identity {shown(value)} holds {what}, which Unicode normalisation (NFKC) "
                "turns into another character, so two different ids could become one; refused. "
                "Send the plain characters from the identity provider, or allow compatibility "
                "characters in the claims mapping (ALLOW_COMPATIBILITY_CHARACTERS).",
                field="identity",
            )
    nfkc = unicodedata.normalize("NFKC", value)
    if not allow_mixed_scripts:
        scripts = {sc for sc in map(_script_of, nfkc) if sc is not None}
        if len(scripts) > 1:
            raise IdentityError(
                f"the identity {shown(value)} mixes letters of several scripts "
                f"({', '.join(sorted(scripts))}), the shape of a look-alike of another id; "
                "refused. Allow it in the claims mapping (ALLOW_MIXED_SCRIPTS) if such ids are "
                "real at your identity provider.",
                field="identity",
            )
    return nfkc.casefold()
