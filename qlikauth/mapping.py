"""Identity provider claims -> a Qlik user (and the same person's Qlik Cloud identity).

Protocol-free: a SAML assertion's attributes and an OpenID Connect id_token's claims are
both put as a mapping of claim name -> values, and one declarative :class:`ClaimsMapping`
turns them into a :class:`~qlikauth.QlikUser` for client-managed Qlik Sense and into a
:class:`CloudIdentity` (``sub``, ``name``, ``email``, ``email_verified``, ``groups``) for
Qlik Cloud, so a hybrid site signs one person in as one user in both (user id = email,
user directory = the cloud realm: one person, one user in both).

What it does, in order:

1. the user id from a claim or from the protocol's subject (SAML NameID, OIDC ``sub``),
   through named transforms (``strip``, ``lower``, ``upper``, ``before_at``,
   ``after_backslash``); the user directory as a constant or from a claim;
2. attributes: each :class:`AttributeRule` renames one or more IdP claims to one Qlik
   attribute (``groups`` / Entra's ``.../identity/claims/groups`` -> ``group``), a
   multi-valued claim becoming one repeated attribute per value; constants; claims passed
   through unchanged by name;
3. Entra group GUIDs: a :class:`GroupNames` table GUID -> name with an explicit rule for
   an unknown GUID (``drop``, ``keep`` or ``refuse``); Entra's *groups overage* (over 150
   groups in SAML, 200 in a JWT: the token carries a link instead of the groups) is refused
   with the Entra setting to change, unless an integrator's hook resolves the groups;
4. required claims and values Qlik would refuse are refused with a :class:`ClaimsError`
   naming the claim and what to change at the IdP. Nothing is silently dropped, except
   unknown GUIDs under the ``drop`` rule the integrator chose.

Claim values are untrusted input: they are only ever copied into attribute values, never
into names, and :class:`~qlikauth.QlikUser` refuses the values that could forge a second
attribute in ``X-Qlik-Security``.

Identities are normalised once, by the ``lower`` (or ``casefold``) transform:
:func:`~qlikauth.identity.fold_identity` (NFKC, then case-folding), which refuses a value whose
meaning changes under it (U+212A KELVIN SIGN) or that mixes scripts, unless the mapping allows
it (``ALLOW_COMPATIBILITY_CHARACTERS``, ``ALLOW_MIXED_SCRIPTS``). A claim the identity provider
does not vouch for (an OpenID Connect ``email`` without ``email_verified: true``: the bridge
lists it under :data:`UNVERIFIED`) is never the user id or the user directory.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ._parse import parse_bool
from .exceptions import ClaimsError, ConfigurationError, IdentityError
from .identity import Attribute, QlikUser, check_text, fold_identity, shown

__all__ = [
    "ClaimsMapping",
    "AttributeRule",
    "GroupNames",
    "CloudIdentity",
    "MappedIdentity",
    "OverageInfo",
    "normalise_claims",
    "TRANSFORMS",
    "SUBJECT",
    "UNVERIFIED",
    "ENTRA_GROUPS_CLAIM",
    "ENTRA_GROUPS_LINK_CLAIM",
    "DEFAULT_GROUP_CLAIMS",
]

#: The source name meaning "the protocol's subject" (SAML NameID, OIDC ``sub``).
SUBJECT = "$subject"
#: The claim under which a bridge lists the claims its provider does not vouch for (their
#: names); set by the bridge only (it drops one the provider sent), read by
#: :meth:`ClaimsMapping.map`.
UNVERIFIED = "$unverified"

#: Entra ID's SAML group claim (object ids unless the app is set to send names).
ENTRA_GROUPS_CLAIM = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
#: Entra ID's SAML groups-overage claim: a Graph link sent *instead of* the groups.
ENTRA_GROUPS_LINK_CLAIM = "http://schemas.microsoft.com/claims/groups.link"
#: ADFS's group claim.
ADFS_GROUP_CLAIM = "http://schemas.xmlsoap.org/claims/Group"
#: Where groups come from unless told otherwise: OIDC/Okta ``groups``, Entra, ADFS.
DEFAULT_GROUP_CLAIMS: tuple[str, ...] = ("groups", ENTRA_GROUPS_CLAIM, ADFS_GROUP_CLAIM)
#: The e-mail claims of OIDC, Entra/ADFS SAML (tried in this order for Qlik Cloud's ``email``).
DEFAULT_EMAIL_CLAIMS: tuple[str, ...] = (
    "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "mail",
)
#: Display-name claims (Qlik Cloud's ``name``).
DEFAULT_NAME_CLAIMS: tuple[str, ...] = (
    "name",
    "http://schemas.microsoft.com/identity/claims/displayname",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
    "displayName",
)

UnknownGroupRule = Literal["drop", "keep", "refuse"]
_UNKNOWN_RULES = ("drop", "keep", "refuse")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _before_at(value: str) -> str:
    return value.rsplit("@", 1)[0] if "@" in value else value


def _after_backslash(value: str) -> str:
    return value.rsplit("\\", 1)[1] if "\\" in value else value


#: The named transforms a setting may list (applied left to right).
TRANSFORMS: Mapping[str, Callable[[str], str]] = {
    "strip": str.strip,
    # Both the one identity normalisation: NFKC then case-folding, look-alikes refused.
    "lower": fold_identity,
    "upper": str.upper,
    "casefold": fold_identity,
    "before_at": _before_at,
    "after_backslash": _after_backslash,
}

Transform = str | Callable[[str], str]


def _resolve_transforms(
    where: str, transforms: Iterable[Transform] | str | None
) -> tuple[Callable[[str], str], ...]:
    if transforms is None:
        return ()
    if isinstance(transforms, str):
        transforms = [t.strip() for t in transforms.split(",") if t.strip()]
    out: list[Callable[[str], str]] = []
    for t in transforms:
        if callable(t):
            out.append(t)
        elif isinstance(t, str) and t in TRANSFORMS:
            out.append(TRANSFORMS[t])
        else:
            raise ConfigurationError(
                f"{where}: unknown transform {t!r}; use one of {', '.join(TRANSFORMS)} "
                "(or, in Python, a function str -> str).",
                key=where,
            )
    return tuple(out)


def _apply(transforms: Sequence[Callable[[str], str]], value: str) -> str:
    for t in transforms:
        value = t(value)
    return value


def _with_allowances(
    transforms: tuple[Callable[[str], str], ...], fold: Callable[[str], str]
) -> tuple[Callable[[str], str], ...]:
    return tuple(fold if t is fold_identity else t for t in transforms)


def normalise_claims(raw: Mapping[str, Any]) -> dict[str, list[str]]:
    """Claims as ``name -> list of strings``, from SAML attributes or OIDC JSON claims.

    A string becomes a one-item list, ``True``/``False`` become ``"true"``/``"false"``,
    numbers their decimal text, lists are flattened one level with the same rules, and
    ``None`` is absent. A JSON object is kept only as the list of its keys (that is what
    Entra's ``_claim_names`` overage marker needs); other nested objects are not claims a
    Qlik attribute can hold.
    """

    def one(value: Any) -> list[str]:
        if value is None:
            return []
        if isinstance(value, bool):
            return ["true" if value else "false"]
        if isinstance(value, (int, float)):
            return [str(value)]
        if isinstance(value, str):
            return [value]
        if isinstance(value, bytes):
            return [value.decode("utf-8", "replace")]
        if isinstance(value, Mapping):
            return [str(k) for k in value]
        return [str(value)]

    out: dict[str, list[str]] = {}
    for name, value in raw.items():
        if isinstance(value, (list, tuple)):
            values = [v for item in value for v in one(item)]
        else:
            values = one(value)
        if values:
            out[str(name)] = values
    return out


@dataclass(frozen=True)
class GroupNames:
    """Entra group object ids (GUIDs) -> group names, and what to do with an unknown GUID.

    Values that are not GUIDs (Entra set to send names, Okta, ADFS) pass unchanged. An
    unknown GUID is dropped, kept as the GUID, or refuses sign-in (``unknown``); the
    default ``"refuse"`` makes a missing table entry visible instead of a silently
    smaller Section Access.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    unknown: UnknownGroupRule = "refuse"

    def __post_init__(self) -> None:
        if self.unknown not in _UNKNOWN_RULES:
            raise ConfigurationError(
                f"UNKNOWN_GROUPS {self.unknown!r} must be one of {', '.join(_UNKNOWN_RULES)}.",
                key="UNKNOWN_GROUPS",
            )
        table: dict[str, str] = {}
        for guid, name in dict(self.names).items():
            if not isinstance(guid, str) or not _GUID.match(guid.strip()):
                raise ConfigurationError(
                    f"GROUP_NAMES key {guid!r} is not a group object id (a GUID such as "
                    "'6b8a5d1e-1c7f-4d3a-9a51-0c2d1e7f9b10').",
                    key="GROUP_NAMES",
                )
            if not isinstance(name, str) or not name.strip():
                raise ConfigurationError(
                    f"GROUP_NAMES[{guid!r}] must be a non-empty group name.", key="GROUP_NAMES"
                )
            table[guid.strip().lower()] = name.strip()
        object.__setattr__(self, "names", table)

    def resolve(self, value: str, claim: str) -> str | None:
        """The group name for ``value`` (None: drop it); :class:`ClaimsError` under ``refuse``."""
        if not _GUID.match(value):
            return value
        name = self.names.get(value.lower())
        if name is not None:
            return name
        if self.unknown == "keep":
            return value
        if self.unknown == "drop":
            return None
        raise ClaimsError(
            f"group {value} (claim {claim}) is not in the GROUP_NAMES table and UNKNOWN_GROUPS "
            "is 'refuse': add the group's object id and name to GROUP_NAMES, or set the "
            "application's group claim in Entra ID to send names (Attributes & Claims > "
            "Group claims > Source attribute: sAMAccountName or Cloud-only group display names).",
            code="unknown_group",
            claim=claim,
        )


@dataclass(frozen=True)
class AttributeRule:
    """One Qlik attribute from one or more IdP claims.

    The values of every claim in ``sources`` that is present (in that order, duplicates
    removed) become one ``(target, value)`` attribute each. ``required`` refuses sign-in
    when none of the sources sends a value; ``groups`` (a :class:`GroupNames`) maps
    Entra GUIDs to names.
    """

    target: str
    sources: tuple[str, ...]
    required: bool = False
    transforms: tuple[Callable[[str], str], ...] = ()
    groups: GroupNames | None = None

    def __init__(
        self,
        target: str,
        sources: str | Iterable[str],
        *,
        required: bool = False,
        transforms: Iterable[Transform] | str | None = None,
        groups: GroupNames | None = None,
    ) -> None:
        srcs = (sources,) if isinstance(sources, str) else tuple(sources)
        if not srcs or not all(isinstance(s, str) and s.strip() for s in srcs):
            raise ConfigurationError(
                f"ATTRIBUTES[{target!r}]: give at least one claim name.", key="ATTRIBUTES"
            )
        try:
            QlikUser("probe", "probe", [(target, "")])
        except IdentityError as exc:
            raise ConfigurationError(
                f"ATTRIBUTES: {target!r} cannot be a Qlik attribute name: {exc}", key="ATTRIBUTES"
            ) from None
        object.__setattr__(self, "target", target.strip())
        object.__setattr__(self, "sources", tuple(s.strip() for s in srcs))
        object.__setattr__(self, "required", bool(required))
        object.__setattr__(
            self, "transforms", _resolve_transforms(f"ATTRIBUTES[{target!r}]", transforms)
        )
        object.__setattr__(self, "groups", groups)


@dataclass(frozen=True)
class OverageInfo:
    """Entra's groups overage: the groups were left out of the token, this says where they are.

    ``link`` is the Graph URL (SAML ``groups.link``) or ``None`` for a JWT whose
    ``_claim_names`` names an external source; ``claims`` holds every claim received and
    ``subject`` the protocol subject, so a hook can call Microsoft Graph for the user.
    """

    protocol: str
    link: str | None
    subject: str | None
    claims: Mapping[str, Sequence[str]]


#: A hook that returns the user's group ids or names when Entra sent an overage marker.
OverageResolver = Callable[[OverageInfo], Iterable[str]]


@dataclass(frozen=True)
class CloudIdentity:
    """The same person for Qlik Cloud: the identity claims of a Qlik Cloud JWT.

    ``sub`` is the client-managed user id by default (the e-mail, so one person is one user in
    both) and ``realm``
    the client-managed user directory, so the Qlik Cloud IdP's realm lines the two up.
    :meth:`claims` gives the JWT claims Qlik Cloud reads (``subType`` is ``user``).
    """

    sub: str
    name: str
    email: str
    email_verified: bool
    groups: tuple[str, ...]
    realm: str

    def __post_init__(self) -> None:
        """Check the fields as :class:`~qlikauth.QlikUser` checks its own (IdentityError)."""
        put = object.__setattr__
        put(self, "sub", check_text(self.sub, "sub"))
        put(self, "name", check_text(self.name, "name", allow_empty=True))
        put(self, "email", check_text(self.email, "email", allow_empty=True))
        put(self, "realm", check_text(self.realm, "realm"))
        verified = self.email_verified
        if isinstance(verified, str) and verified.strip().lower() in ("true", "false"):
            verified = verified.strip().lower() == "true"
        if not isinstance(verified, bool):
            raise IdentityError(
                f"email_verified must be true or false, got {shown(str(verified))}.",
                field="email_verified",
            )
        put(self, "email_verified", verified)
        groups = self.groups
        if isinstance(groups, (str, bytes)) or not isinstance(groups, Iterable):
            raise IdentityError("groups must be a list of group names.", field="groups")
        put(
            self,
            "groups",
            tuple(
                check_text(g, f"groups[{i}]", allow_empty=True, strip=False)
                for i, g in enumerate(groups)
            ),
        )

    def claims(self) -> dict[str, Any]:
        """``sub``, ``subType``, ``name``, ``email``, ``email_verified``, ``groups``."""
        return {
            "sub": self.sub,
            "subType": "user",
            "name": self.name,
            "email": self.email,
            "email_verified": self.email_verified,
            "groups": list(self.groups),
        }


@dataclass(frozen=True)
class MappedIdentity:
    """What one sign-in maps to: the Qlik user and the Qlik Cloud identity."""

    user: QlikUser
    cloud: CloudIdentity


def _problem(key: str, message: str) -> ConfigurationError:
    return ConfigurationError(f"QLIKAUTH CLAIMS {key}: {message}", key=key)


def _resolve_callable(key: str, value: Any) -> Callable[..., Any] | None:
    if value is None or callable(value):
        return value
    if isinstance(value, str) and "." in value:
        module, _, attr = value.rpartition(".")
        try:
            found = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise _problem(key, f"cannot import {value!r}: {exc}") from None
        if callable(found):
            return found  # type: ignore[no-any-return]
    raise _problem(
        key, f"expected a callable or a dotted path 'package.module.function', got {value!r}."
    )


@dataclass(frozen=True)
class ClaimsMapping:
    """The declarative claims -> Qlik user mapping (see the module docstring).

    >>> m = ClaimsMapping(user_id="email", user_directory="AZURE",
    ...                   attributes=[AttributeRule("group", "groups")])
    >>> m.to_user({"email": ["Ann@Example.com"], "groups": ["Sales", "Finance"]})
    QlikUser('AZURE', 'Ann@Example.com', attributes=[('group', 'Sales'), ('group', 'Finance')])

    ``idp`` names the identity provider in error messages ("Entra ID", "Okta"...).
    """

    user_id: str = SUBJECT
    user_id_transforms: tuple[Callable[[str], str], ...] = ()
    user_directory: str | None = None
    user_directory_claim: str | None = None
    user_directory_transforms: tuple[Callable[[str], str], ...] = ()
    attributes: tuple[AttributeRule, ...] = ()
    constants: tuple[Attribute, ...] = ()
    pass_through: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    groups_overage: Literal["refuse"] | OverageResolver = "refuse"
    group_attribute: str = "group"
    cloud_sub: str | None = None
    cloud_name_claims: tuple[str, ...] = DEFAULT_NAME_CLAIMS
    cloud_email_claims: tuple[str, ...] = DEFAULT_EMAIL_CLAIMS
    cloud_email_verified: bool | str = False
    idp: str = "the identity provider"
    allow_compatibility_characters: bool = False
    allow_mixed_scripts: bool = False

    def __init__(
        self,
        *,
        user_id: str = SUBJECT,
        user_id_transforms: Iterable[Transform] | str | None = None,
        user_directory: str | None = None,
        user_directory_claim: str | None = None,
        user_directory_transforms: Iterable[Transform] | str | None = None,
        attributes: Iterable[AttributeRule] | None = None,
        constants: Iterable[Attribute] | Mapping[str, Any] | None = None,
        pass_through: Iterable[str] = (),
        required: Iterable[str] = (),
        groups_overage: Literal["refuse"] | OverageResolver = "refuse",
        group_attribute: str = "group",
        cloud_sub: str | None = None,
        cloud_name_claims: Iterable[str] = DEFAULT_NAME_CLAIMS,
        cloud_email_claims: Iterable[str] = DEFAULT_EMAIL_CLAIMS,
        cloud_email_verified: bool | str = False,
        idp: str = "the identity provider",
        allow_compatibility_characters: bool = False,
        allow_mixed_scripts: bool = False,
    ) -> None:
        """Check and freeze a mapping; a bad value raises :class:`ConfigurationError`.

        ``attributes=None`` means one rule: ``group`` from :data:`DEFAULT_GROUP_CLAIMS`
        (GUIDs kept as they are); pass ``[]`` for no attributes at all. ``cloud_sub`` is a
        claim name, or None for the user id; ``cloud_email_verified`` is a constant or the
        name of a claim (``"email_verified"``) whose value ``true`` means verified.
        ``allow_compatibility_characters`` / ``allow_mixed_scripts`` let the ``lower``
        transform accept what :func:`~qlikauth.identity.fold_identity` refuses by default.
        """
        if not isinstance(user_id, str) or not user_id.strip():
            raise _problem(
                "USER_ID",
                "give the claim that holds the user id (or '$subject' for the "
                "SAML NameID / OIDC sub).",
            )
        if (user_directory is None) == (user_directory_claim is None):
            raise _problem(
                "USER_DIRECTORY",
                "give exactly one of USER_DIRECTORY (a constant, e.g. the "
                "Qlik Cloud realm) or USER_DIRECTORY_CLAIM.",
            )
        if user_directory is not None:
            try:
                user_directory = QlikUser(user_directory, "probe").user_directory
            except IdentityError as exc:
                raise _problem("USER_DIRECTORY", str(exc)) from None
        rules = (
            (AttributeRule(group_attribute, DEFAULT_GROUP_CLAIMS),)
            if attributes is None
            else tuple(attributes)
        )
        for rule in rules:
            if not isinstance(rule, AttributeRule):
                raise _problem(
                    "ATTRIBUTES", f"expected AttributeRule objects, got {type(rule).__name__}."
                )
        try:
            const = QlikUser("probe", "probe", constants).attributes
        except IdentityError as exc:
            raise _problem("CONSTANTS", str(exc)) from None
        passes = tuple(pass_through)
        for name in passes:
            try:
                QlikUser("probe", "probe", [(name, "")])
            except IdentityError as exc:
                raise _problem(
                    "PASS_THROUGH",
                    f"claim {name!r} cannot be a Qlik attribute name "
                    f"({exc}); rename it with ATTRIBUTES instead.",
                ) from None
        if not (groups_overage == "refuse" or callable(groups_overage)):
            raise _problem(
                "GROUPS_OVERAGE", "expected 'refuse' or a function OverageInfo -> group ids."
            )
        if not isinstance(cloud_email_verified, (bool, str)):
            raise _problem("CLOUD_EMAIL_VERIFIED", "expected true/false or the name of a claim.")
        allowances = {}
        for key, flag in (
            ("ALLOW_COMPATIBILITY_CHARACTERS", allow_compatibility_characters),
            ("ALLOW_MIXED_SCRIPTS", allow_mixed_scripts),
        ):
            parsed = parse_bool(flag)
            if parsed is None:
                raise _problem(key, f"expected true or false, got {shown(str(flag))}.")
            allowances[key] = parsed
        fold: Callable[[str], str] = functools.partial(
            fold_identity,
            allow_compatibility=allowances["ALLOW_COMPATIBILITY_CHARACTERS"],
            allow_mixed_scripts=allowances["ALLOW_MIXED_SCRIPTS"],
        )
        if not any(allowances.values()):
            fold = fold_identity
        for rule in rules:
            object.__setattr__(rule, "transforms", _with_allowances(rule.transforms, fold))
        set_ = object.__setattr__
        set_(self, "allow_compatibility_characters", allowances["ALLOW_COMPATIBILITY_CHARACTERS"])
        set_(self, "allow_mixed_scripts", allowances["ALLOW_MIXED_SCRIPTS"])
        set_(self, "user_id", user_id.strip())
        set_(
            self,
            "user_id_transforms",
            _with_allowances(_resolve_transforms("USER_ID_TRANSFORMS", user_id_transforms), fold),
        )
        set_(self, "user_directory", user_directory)
        set_(self, "user_directory_claim", user_directory_claim)
        set_(
            self,
            "user_directory_transforms",
            _with_allowances(
                _resolve_transforms("USER_DIRECTORY_TRANSFORMS", user_directory_transforms), fold
            ),
        )
        set_(self, "attributes", rules)
        set_(self, "constants", const)
        set_(self, "pass_through", passes)
        set_(self, "required", tuple(required))
        set_(self, "groups_overage", groups_overage)
        set_(self, "group_attribute", group_attribute)
        set_(self, "cloud_sub", cloud_sub)
        set_(self, "cloud_name_claims", tuple(cloud_name_claims))
        set_(self, "cloud_email_claims", tuple(cloud_email_claims))
        set_(self, "cloud_email_verified", cloud_email_verified)
        set_(self, "idp", idp)

    # -- from settings --------------------------------------------------------------
    _KEYS = (
        "USER_ID",
        "USER_ID_TRANSFORMS",
        "USER_DIRECTORY",
        "USER_DIRECTORY_CLAIM",
        "USER_DIRECTORY_TRANSFORMS",
        "ATTRIBUTES",
        "GROUP_NAMES",
        "UNKNOWN_GROUPS",
        "CONSTANTS",
        "PASS_THROUGH",
        "REQUIRED",
        "GROUPS_OVERAGE",
        "CLOUD_SUB",
        "CLOUD_NAME_CLAIMS",
        "CLOUD_EMAIL_CLAIMS",
        "CLOUD_EMAIL_VERIFIED",
        "IDP",
        "ALLOW_COMPATIBILITY_CHARACTERS",
        "ALLOW_MIXED_SCRIPTS",
    )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> ClaimsMapping:
        """Build from plain settings (Django ``QLIKAUTH["CLAIMS"]``, Flask ``QLIKAUTH_CLAIMS``).

        Keys are case-insensitive; an unknown key is refused. ``ATTRIBUTES`` maps a Qlik
        attribute name to a claim name, a list of claim names, or a dict with ``claims``,
        ``required`` and ``transforms``. ``GROUP_NAMES`` / ``UNKNOWN_GROUPS`` apply to the
        ``group`` attribute (or ``GROUP_ATTRIBUTE``); ``GROUPS_OVERAGE`` is ``"refuse"`` or
        the dotted path of a resolver. See docs/mapping.md for every key and its default.
        """
        import difflib

        raw = dict(settings or {})
        values: dict[str, Any] = {}
        for k, v in raw.items():
            key = str(k).upper()
            if key not in cls._KEYS and key != "GROUP_ATTRIBUTE":
                close = difflib.get_close_matches(key, cls._KEYS, n=1)
                hint = f" Did you mean {close[0]}?" if close else ""
                raise _problem(
                    key, f"unknown setting.{hint} Known: {', '.join(cls._KEYS)}, GROUP_ATTRIBUTE."
                )
            values[key] = v
        group_attr = values.get("GROUP_ATTRIBUTE", "group")

        def names(key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
            v = values.get(key)
            if v is None:
                return tuple(default)
            if isinstance(v, str):
                return tuple(s.strip() for s in v.split(",") if s.strip())
            if isinstance(v, Iterable) and all(isinstance(s, str) for s in v):
                return tuple(v)
            raise _problem(key, "expected a list of claim names (or a comma-separated string).")

        unknown = values.get("UNKNOWN_GROUPS", "refuse")
        group_names = values.get("GROUP_NAMES")
        if group_names is not None and not isinstance(group_names, Mapping):
            raise _problem(
                "GROUP_NAMES", "expected a mapping of group object id (GUID) -> group name."
            )
        lookup = (
            GroupNames(group_names or {}, unknown)
            if (group_names or "UNKNOWN_GROUPS" in values)
            else None
        )

        rules: list[AttributeRule] = []
        attrs = values.get("ATTRIBUTES")
        if attrs is None:
            rules.append(AttributeRule(group_attr, DEFAULT_GROUP_CLAIMS, groups=lookup))
        elif not isinstance(attrs, Mapping):
            raise _problem(
                "ATTRIBUTES", "expected a mapping of Qlik attribute name -> claim name(s)."
            )
        else:
            for target, spec in attrs.items():
                required_attr = False
                transforms: Any = None
                if isinstance(spec, Mapping):
                    unknown_keys = set(map(str.lower, spec)) - {"claims", "required", "transforms"}
                    if unknown_keys:
                        raise _problem(
                            "ATTRIBUTES",
                            f"{target!r}: unknown keys {sorted(unknown_keys)}; "
                            "use claims, required, transforms.",
                        )
                    lowered = {str(k).lower(): v for k, v in spec.items()}
                    sources = lowered.get("claims")
                    required_attr = bool(lowered.get("required", False))
                    transforms = lowered.get("transforms")
                else:
                    sources = spec
                if isinstance(sources, str):
                    sources = [sources]
                if not isinstance(sources, Iterable):
                    raise _problem(
                        "ATTRIBUTES", f"{target!r}: expected a claim name or a list of them."
                    )
                rules.append(
                    AttributeRule(
                        str(target),
                        list(sources),
                        required=required_attr,
                        transforms=transforms,
                        groups=lookup if str(target) == group_attr else None,
                    )
                )
            if lookup is not None and not any(r.target == group_attr for r in rules):
                raise _problem(
                    "GROUP_NAMES",
                    f"no ATTRIBUTES entry for {group_attr!r}: add "
                    f"'{group_attr}': ['groups', ...] so the table applies.",
                )

        constants = values.get("CONSTANTS")
        overage = values.get("GROUPS_OVERAGE", "refuse")
        if overage != "refuse":
            overage = _resolve_callable("GROUPS_OVERAGE", overage)
        verified = values.get("CLOUD_EMAIL_VERIFIED", False)
        if isinstance(verified, str) and verified.strip().lower() in (
            "true",
            "false",
            "1",
            "0",
            "yes",
            "no",
        ):
            verified = verified.strip().lower() in ("true", "1", "yes")
        return cls(
            user_id=values.get("USER_ID", SUBJECT),
            user_id_transforms=values.get("USER_ID_TRANSFORMS"),
            user_directory=values.get("USER_DIRECTORY"),
            user_directory_claim=values.get("USER_DIRECTORY_CLAIM"),
            user_directory_transforms=values.get("USER_DIRECTORY_TRANSFORMS"),
            attributes=rules,
            constants=constants,
            pass_through=names("PASS_THROUGH"),
            required=names("REQUIRED"),
            groups_overage=overage,
            group_attribute=group_attr,
            cloud_sub=values.get("CLOUD_SUB"),
            cloud_name_claims=names("CLOUD_NAME_CLAIMS", DEFAULT_NAME_CLAIMS),
            cloud_email_claims=names("CLOUD_EMAIL_CLAIMS", DEFAULT_EMAIL_CLAIMS),
            cloud_email_verified=verified,
            idp=str(values.get("IDP", "the identity provider")),
            allow_compatibility_characters=values.get("ALLOW_COMPATIBILITY_CHARACTERS", False),
            allow_mixed_scripts=values.get("ALLOW_MIXED_SCRIPTS", False),
        )

    # -- mapping --------------------------------------------------------------------
    def _missing(self, claim: str, what: str) -> ClaimsError:
        subject = claim == SUBJECT
        shown = "the subject (SAML NameID / OIDC sub)" if subject else f"claim {claim!r}"
        return ClaimsError(
            f"{shown} is missing, and it is needed for {what}: configure {self.idp} to send it "
            f"(SAML: Attributes & Claims / attribute statements; OIDC: the claims or scopes of "
            f"the application), or change the qlikauth CLAIMS setting that asks for it.",
            code="missing_claim",
            claim=claim,
        )

    def _single(
        self,
        claims: Mapping[str, Sequence[str]],
        subject: str | None,
        source: str,
        what: str,
        transforms: Sequence[Callable[[str], str]],
    ) -> str:
        if source == SUBJECT:
            values = [subject] if subject else []
        else:
            values = [v for v in claims.get(source, ()) if v.strip()]
        if not values:
            raise self._missing(source, what)
        try:
            distinct = {_apply(transforms, v) for v in values}
        except IdentityError as exc:
            raise self._claim_refused(source, exc) from None
        if len(distinct) > 1:
            raise ClaimsError(
                f"claim {source!r} has {len(distinct)} different values, but {what} takes one: "
                f"send a single-valued claim from {self.idp}.",
                code="ambiguous_claim",
                claim=source,
            )
        return distinct.pop()

    def _claim_refused(self, claim: str, exc: IdentityError) -> ClaimsError:
        shown_claim = (
            "the subject (SAML NameID / OIDC sub)" if claim == SUBJECT else f"claim {claim!r}"
        )
        return ClaimsError(
            f"{shown_claim} has a value qlikauth refuses: {exc} Change the value "
            f"at {self.idp} or the mapping's settings.",
            code="invalid_value",
            claim=claim,
        )

    def _unverified(self, claims: Mapping[str, Any], extra: Iterable[str]) -> frozenset[str]:
        raw = claims.get(UNVERIFIED)
        names = (
            [raw]
            if isinstance(raw, str)
            else list(raw)
            if isinstance(raw, (list, tuple, set, frozenset))
            else []
        )
        return frozenset(str(n) for n in [*names, *extra])

    def _overage(
        self, claims: Mapping[str, Sequence[str]], subject: str | None
    ) -> OverageInfo | None:
        if ENTRA_GROUPS_LINK_CLAIM in claims:
            link = next(iter(claims[ENTRA_GROUPS_LINK_CLAIM]), None)
            return OverageInfo("saml", link, subject, claims)
        if "groups" in claims.get("_claim_names", ()) or any(
            v.lower() == "true" for v in claims.get("hasgroups", ())
        ):
            return OverageInfo("oidc", None, subject, claims)
        return None

    def map(
        self,
        claims: Mapping[str, Any],
        subject: str | None = None,
        *,
        unverified: Iterable[str] = (),
    ) -> MappedIdentity:
        """Map one sign-in: ``claims`` (name -> values) and the protocol subject.

        ``unverified`` (and the :data:`UNVERIFIED` claim a bridge sets) names claims the
        provider does not vouch for: they are refused as the user id or directory
        (``code="unverified_claim"``), and an unverified e-mail is never ``email_verified``.

        Raises :class:`ClaimsError` (``.code``, ``.claim``) when the sign-in must be
        refused: a missing required claim, an ambiguous user id, an unknown group under
        ``refuse``, a groups overage with no resolver, an unverified claim as the user id,
        or a value Qlik would refuse.
        """
        user, c, doubtful = self._user(claims, subject, unverified)
        return MappedIdentity(user=user, cloud=self._cloud(c, user, doubtful))

    def _user(
        self, claims: Mapping[str, Any], subject: str | None, unverified: Iterable[str]
    ) -> tuple[QlikUser, dict[str, list[str]], frozenset[str]]:
        doubtful = self._unverified(claims, unverified)
        c = normalise_claims({k: v for k, v in claims.items() if k != UNVERIFIED})
        for source, what in (
            (self.user_id, "the Qlik user id"),
            (self.user_directory_claim, "the Qlik user directory"),
        ):
            if source is not None and source in doubtful:
                raise ClaimsError(
                    f"claim {source!r} is not verified by {self.idp} (for an e-mail: "
                    "email_verified is not true), so it cannot decide who signs in as "
                    f"{what}: anyone could register that value there. Map a stable claim "
                    "instead (docs/oidc.md names one per provider), or, if this provider "
                    "verifies every value, set allow_unverified_email for it.",
                    code="unverified_claim",
                    claim=source,
                )
        for name in self.required:
            if not any(v.strip() for v in c.get(name, ())) and not (name == SUBJECT and subject):
                raise self._missing(name, "sign-in (it is listed in REQUIRED)")
        user_id = self._single(
            c, subject, self.user_id, "the Qlik user id", self.user_id_transforms
        )
        if self.user_directory_claim is not None:
            directory = self._single(
                c,
                subject,
                self.user_directory_claim,
                "the Qlik user directory",
                self.user_directory_transforms,
            )
        else:
            assert self.user_directory is not None
            directory = self.user_directory

        overage = self._overage(c, subject)
        extra_groups: list[str] | None = None
        if overage is not None:
            if self.groups_overage == "refuse":
                raise ClaimsError(
                    "Entra ID left the user's groups out of the token (groups overage: more than "
                    "150 "
                    "groups in SAML, 200 in a JWT) and sent a Graph link instead. In Entra ID set "
                    "the "
                    "application's group claim to 'Groups assigned to the application' (Enterprise "
                    "applications > the app > Single sign-on > Attributes & Claims > groups), or "
                    "configure GROUPS_OVERAGE with a resolver that reads the groups from Microsoft "
                    "Graph.",
                    code="groups_overage",
                    claim=ENTRA_GROUPS_LINK_CLAIM,
                )
            resolver = self.groups_overage
            assert callable(resolver)
            extra_groups = [str(g) for g in resolver(overage)]

        pairs: list[tuple[Attribute, str]] = []  # (attribute, the claim it came from)
        for rule in self.attributes:
            seen: set[str] = set()
            found = False
            sources: list[tuple[str, list[str]]] = [(s, c.get(s, [])) for s in rule.sources]
            if extra_groups is not None and rule.target == self.group_attribute:
                sources.append(("groups (GROUPS_OVERAGE resolver)", extra_groups))
            for source, values in sources:
                for value in values:
                    found = True
                    try:
                        value = _apply(rule.transforms, value)
                    except IdentityError as exc:
                        raise self._claim_refused(source, exc) from None
                    if rule.groups is not None:
                        resolved = rule.groups.resolve(value, source)
                        if resolved is None:
                            continue
                        value = resolved
                    if value in seen:
                        continue
                    seen.add(value)
                    pairs.append(((rule.target, value), source))
            if rule.required and not found:
                raise self._missing(
                    " or ".join(rule.sources), f"the Qlik attribute {rule.target!r}"
                )
        for name in self.pass_through:
            pairs.extend(((name, v), name) for v in c.get(name, ()))
        pairs.extend((pair, "CONSTANTS") for pair in self.constants)

        try:
            user = QlikUser(directory, user_id, [p for p, _ in pairs])
        except IdentityError as exc:
            raise self._refused_value(
                exc, pairs, directory_source=self.user_directory_claim
            ) from None

        return user, c, doubtful

    def _refused_value(
        self,
        exc: IdentityError,
        pairs: Sequence[tuple[Attribute, str]],
        directory_source: str | None,
    ) -> ClaimsError:
        where = exc.field or ""
        if where == "user_id":
            claim = self.user_id
        elif where == "user_directory":
            claim = directory_source or "USER_DIRECTORY"
        else:
            m = re.match(r"attributes\[(\d+)\]", where)
            claim = pairs[int(m.group(1))][1] if m and int(m.group(1)) < len(pairs) else where
        shown = "the subject (SAML NameID / OIDC sub)" if claim == SUBJECT else f"claim {claim!r}"
        return ClaimsError(
            f"{shown} has a value Qlik Sense cannot take: {exc} Change the value at {self.idp} "
            "or map it with a transform.",
            code="invalid_value",
            claim=claim,
        )

    def _cloud(
        self, c: Mapping[str, Sequence[str]], user: QlikUser, doubtful: frozenset[str] = frozenset()
    ) -> CloudIdentity:
        def first(names: Sequence[str]) -> str | None:
            for n in names:
                for v in c.get(n, ()):
                    if v.strip():
                        return v.strip()
            return None

        sub = user.user_id if self.cloud_sub is None else first([self.cloud_sub])
        if sub is None:
            raise self._missing(str(self.cloud_sub), "the Qlik Cloud subject (CLOUD_SUB)")
        email = first(self.cloud_email_claims) or (user.user_id if "@" in user.user_id else "")
        name = first(self.cloud_name_claims) or email or user.user_id
        if isinstance(self.cloud_email_verified, bool):
            verified = self.cloud_email_verified
        else:
            # Only the word true: "false", "0", "no" or anything else is not a verification.
            verified = (first([self.cloud_email_verified]) or "").strip().lower() == "true"
        source = next(
            (n for n in self.cloud_email_claims if any(v.strip() for v in c.get(n, ()))), None
        )
        if source in doubtful:
            verified = False
        try:
            return CloudIdentity(
                sub=sub,
                name=name,
                email=email,
                email_verified=verified,
                groups=tuple(user.get_all(self.group_attribute)),
                realm=user.user_directory,
            )
        except IdentityError as exc:
            raise ClaimsError(
                f"the Qlik Cloud identity cannot be made: {exc}",
                code="invalid_value",
                claim=exc.field,
            ) from None

    def to_user(
        self,
        claims: Mapping[str, Any],
        subject: str | None = None,
        *,
        unverified: Iterable[str] = (),
    ) -> QlikUser:
        """The :class:`~qlikauth.QlikUser` for one sign-in (see :meth:`map`; no Qlik Cloud part)."""
        return self._user(claims, subject, unverified)[0]

    def cloud_identity(
        self,
        claims: Mapping[str, Any],
        subject: str | None = None,
        *,
        unverified: Iterable[str] = (),
    ) -> CloudIdentity:
        """The :class:`CloudIdentity` for one sign-in (see :meth:`map`)."""
        return self.map(claims, subject, unverified=unverified).cloud
