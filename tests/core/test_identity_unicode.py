"""Identities over the whole Unicode range: one normalisation, look-alikes refused, short messages.

The properties draw from every code point, lone surrogates and noncharacters included
(``st.text()`` leaves surrogates out, so the alphabet is ``st.characters(codec=None,
categories=None)``): whatever comes in, QlikUser, its attributes, ClaimsMapping and
CloudIdentity either give a value that encodes as UTF-8 JSON or raise their documented error.
"""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from qlikauth import ClaimsError, IdentityError, QlikUser
from qlikauth.cloud.client import CloudJwtIssuer
from qlikauth.exceptions import ConfigurationError
from qlikauth.identity import fold_identity
from qlikauth.jwtkeys import SigningKey
from qlikauth.mapping import UNVERIFIED, AttributeRule, ClaimsMapping, CloudIdentity

#: Every code point, surrogates (Cs) and noncharacters included.
ANY_CHAR = st.characters(codec=None, categories=None)
ANY_TEXT = st.text(alphabet=ANY_CHAR, max_size=40)
SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, codec=None, categories=None)
NONCHARACTERS = st.sampled_from(
    [chr(c) for c in (*range(0xFDD0, 0xFDF0), 0xFFFE, 0xFFFF, 0x1FFFE, 0x10FFFF)]
)


def utf8_json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


# -- QlikUser
# ---------------------------------------------------------------------------------------
@settings(max_examples=400, deadline=None)
@given(directory=ANY_TEXT, user_id=ANY_TEXT, name=ANY_TEXT, value=ANY_TEXT)
@example(directory="ACME", user_id="a\ud800b", name="group", value="x")
@example(directory="ACME", user_id="a", name="group", value="\udfff")
@example(directory="ACME", user_id="a\ufdd0", name="group", value="x")
def test_property_qlikuser_over_every_code_point(
    directory: str, user_id: str, name: str, value: str
) -> None:
    try:
        user = QlikUser(directory, user_id, [(name, value)])
    except IdentityError as exc:
        assert len(str(exc)) < 600  # a short prefix of the value at most
        return
    # what was accepted travels: UTF-8 JSON to QPS, headers built from it
    utf8_json(user.to_qps())
    for text in (user.user_directory, user.user_id, *user.attributes[0]):
        assert not any(unicodedata.category(ch) == "Cs" for ch in text)


@given(bad=SURROGATES | NONCHARACTERS, where=st.sampled_from(["dir", "id", "name", "value"]))
def test_surrogates_and_noncharacters_are_refused_everywhere(bad: str, where: str) -> None:
    fields = {"dir": "ACME", "id": "alice", "name": "group", "value": "Sales"}
    fields[where] = f"a{bad}b"
    with pytest.raises(IdentityError) as info:
        QlikUser(fields["dir"], fields["id"], [(fields["name"], fields["value"])])
    assert "surrogate" in str(info.value) or "noncharacter" in str(info.value)


def test_messages_quote_only_a_short_prefix() -> None:
    long_id = "x" * 10_000
    for make in (
        lambda: QlikUser("ACME", long_id + "\\"),
        lambda: QlikUser("ACME", long_id + "\ud800"),
        lambda: QlikUser("ACME", "a", [(long_id + ";", "v")]),
        lambda: QlikUser.parse(long_id),
        lambda: QlikUser("ACME", "a", [("g", long_id + "\x00")]),
        lambda: fold_identity("\u212a" + long_id),
    ):
        with pytest.raises(IdentityError) as info:
            make()
        assert len(str(info.value)) < 600 and "x" * 100 not in str(info.value)
    mapping = ClaimsMapping(user_id="email", user_directory="D")
    with pytest.raises(ClaimsError) as cinfo:
        mapping.to_user({"email": long_id + ";"})
    assert len(str(cinfo.value)) < 900 and "x" * 100 not in str(cinfo.value)


# -- one normalisation: NFKC then case-fold, look-alikes refused -----------------------------------
def test_kelvin_sign_is_refused_not_folded_into_ascii() -> None:
    mapping = ClaimsMapping(
        user_id="email", user_id_transforms=["strip", "lower"], user_directory="D"
    )
    assert mapping.to_user({"email": "Kate@Example.com"}).user_id == "kate@example.com"
    with pytest.raises(ClaimsError) as info:
        mapping.to_user({"email": "\u212aate@example.com"})
    assert info.value.code == "invalid_value" and info.value.claim == "email"
    assert "U+212A KELVIN SIGN" in str(info.value) and "\\u212a" in str(info.value)
    for lookalike in ("\uff4bate@example.com", "\U0001d5c4ate@example.com", "\ufb01le@example.com"):
        with pytest.raises(ClaimsError):
            mapping.to_user({"email": lookalike})
    # allowed by the integrator: folded to the plain letters
    lenient = ClaimsMapping.from_settings(
        {
            "USER_ID": "email",
            "USER_ID_TRANSFORMS": "lower",
            "USER_DIRECTORY": "D",
            "ALLOW_COMPATIBILITY_CHARACTERS": "true",
        }
    )
    assert lenient.to_user({"email": "\u212aate@example.com"}).user_id == "kate@example.com"


def test_mixed_scripts_are_refused_unless_allowed() -> None:
    mapping = ClaimsMapping(
        user_id="preferred_username", user_id_transforms="lower", user_directory="D"
    )
    assert mapping.to_user({"preferred_username": "Иван"}).user_id == "иван"
    assert mapping.to_user({"preferred_username": "山田たろう"}).user_id == "山田たろう"
    assert mapping.to_user({"preferred_username": "Ünal.Straße"}).user_id == "ünal.strasse"
    assert (
        mapping.to_user({"preferred_username": "U\u0308nal"}).user_id == "ünal"
    )  # canonical: same person
    with pytest.raises(ClaimsError) as info:
        mapping.to_user({"preferred_username": "p\u0430ypal"})  # Cyrillic a
    assert info.value.code == "invalid_value" and "CYRILLIC" in str(info.value)
    allowed = ClaimsMapping(
        user_id="preferred_username",
        user_id_transforms="lower",
        user_directory="D",
        allow_mixed_scripts=True,
    )
    assert allowed.to_user({"preferred_username": "p\u0430ypal"}).user_id == "p\u0430ypal"
    # the same rule for attribute values mapped with lower
    rule = ClaimsMapping(
        user_id="$subject",
        user_directory="D",
        attributes=[AttributeRule("group", "groups", transforms="lower")],
    )
    assert rule.to_user({"groups": ["Sales"]}, subject="u").groups == ["sales"]
    with pytest.raises(ClaimsError) as info:
        rule.to_user({"groups": ["\u212aitchen"]}, subject="u")
    assert info.value.claim == "groups"


@settings(max_examples=400, deadline=None)
@given(value=ANY_TEXT)
@example(value="\u212aate")
@example(value="a\ud800")
def test_property_fold_is_stable_and_only_raises_identity_error(value: str) -> None:
    try:
        folded = fold_identity(value)
    except IdentityError:
        return
    assert fold_identity(folded) == folded  # once normalised, normalising again changes nothing
    assert unicodedata.is_normalized("NFKC", unicodedata.normalize("NFKC", folded))


# -- ClaimsMapping and CloudIdentity over every code point -----------------------------------------
@settings(max_examples=300, deadline=None)
@given(
    email=ANY_TEXT,
    groups=st.lists(ANY_TEXT, max_size=3),
    name=ANY_TEXT,
    verified=st.sampled_from([True, False, "true", "false", "False", "1", None]),
)
@example(email="\u212aate@example.com", groups=[], name="Kate", verified=True)
@example(email="a\ud800@x", groups=["\udc00"], name="n", verified="false")
def test_property_mapping_over_every_code_point(
    email: str, groups: list[str], name: str, verified: object
) -> None:
    mapping = ClaimsMapping.from_settings(
        {
            "USER_ID": "email",
            "USER_ID_TRANSFORMS": "strip,lower",
            "USER_DIRECTORY": "OIDC",
            "CLOUD_EMAIL_VERIFIED": "email_verified",
        }
    )
    claims = {"email": email, "groups": groups, "name": name, "email_verified": verified}
    try:
        mapped = mapping.map(claims)
    except ClaimsError as exc:
        assert exc.code in ("missing_claim", "invalid_value", "ambiguous_claim", "unknown_group")
        return
    utf8_json(mapped.user.to_qps())
    utf8_json(mapped.cloud.claims())
    # only JSON true or the word true verifies an e-mail
    assert mapped.cloud.email_verified is (verified is True or verified == "true")


@settings(max_examples=300, deadline=None)
@given(
    sub=ANY_TEXT,
    name=ANY_TEXT,
    email=ANY_TEXT,
    groups=st.lists(ANY_TEXT, max_size=3),
    realm=ANY_TEXT,
    verified=st.one_of(st.booleans(), ANY_TEXT, st.integers(), st.none()),
)
def test_property_cloud_identity_validates_its_fields(
    sub: str, name: str, email: str, groups: list[str], realm: str, verified: object
) -> None:
    try:
        cloud = CloudIdentity(
            sub=sub,
            name=name,
            email=email,
            email_verified=verified,  # type: ignore[arg-type]
            groups=tuple(groups),
            realm=realm,
        )
    except IdentityError:
        return
    assert isinstance(cloud.email_verified, bool)
    utf8_json(cloud.claims())


def test_cloud_identity_refuses_what_qlikuser_refuses() -> None:
    good = {
        "sub": "ann@x.com",
        "name": "Ann",
        "email": "ann@x.com",
        "email_verified": True,
        "groups": ("Sales",),
        "realm": "AZURE",
    }
    for field, bad in (
        ("sub", "a\ud800"),
        ("sub", " "),
        ("name", "A\x00nn"),
        ("email", "a\ufffe@x"),
        ("groups", ("\udc00",)),
        ("groups", "Sales"),
        ("realm", ""),
        ("email_verified", "yes"),
        ("email_verified", 1),
        ("sub", "x" * 5000),
    ):
        with pytest.raises(IdentityError) as info:
            CloudIdentity(**(good | {field: bad}))  # type: ignore[arg-type]
        assert len(str(info.value)) < 300
    assert CloudIdentity(**(good | {"email_verified": "false"})).email_verified is False  # type: ignore[arg-type]


# -- unverified claims never decide identity
# --------------------------------------------------------
def test_unverified_claims_are_refused_as_the_user_id_only() -> None:
    by_email = ClaimsMapping(
        user_id="email", user_directory="OIDC", cloud_email_verified="email_verified"
    )
    claims = {"sub": "s-1", "email": "alice@example.com", "email_verified": True}
    assert by_email.to_user(claims).user_id == "alice@example.com"
    for how in ({"unverified": ["email"]}, {}):
        given_claims = claims | ({UNVERIFIED: ["email"]} if not how else {})
        with pytest.raises(ClaimsError) as info:
            by_email.to_user(given_claims, **how)  # type: ignore[arg-type]
        assert info.value.code == "unverified_claim" and info.value.claim == "email"
    by_sub = ClaimsMapping(
        user_id="$subject", user_directory="OIDC", cloud_email_verified="email_verified"
    )
    mapped = by_sub.map(claims | {UNVERIFIED: ["email"]}, "s-1")
    assert mapped.user.user_id == "s-1" and mapped.cloud.email == "alice@example.com"
    assert mapped.cloud.email_verified is False  # the provider did not vouch for it
    directory = ClaimsMapping(user_id="$subject", user_directory_claim="tenant")
    with pytest.raises(ClaimsError) as info:
        directory.to_user({"tenant": "T1"}, "s-1", unverified=["tenant"])
    assert info.value.code == "unverified_claim"


# -- the Qlik Cloud JWT: email_verified parsed strictly
# ---------------------------------------------
class _Person:
    def __init__(self, verified: object) -> None:
        self.sub = self.email = "ann@example.com"
        self.name = "Ann"
        self.groups = ("Sales",)
        self.email_verified = verified


def test_cloud_jwt_email_verified_from_the_word_false_is_false() -> None:
    issuer = CloudJwtIssuer(SigningKey.generate("ES256", kid="k1"), "https://portal.example.com")
    assert issuer.claims(_Person("false"))["email_verified"] is False  # type: ignore[arg-type]
    assert issuer.claims(_Person("True"))["email_verified"] is True  # type: ignore[arg-type]
    import jwt as pyjwt

    token = issuer.mint(_Person("false"))  # type: ignore[arg-type]
    decoded = pyjwt.decode(
        token,
        issuer.signing_key.public_key,
        algorithms=["ES256"],
        audience="qlik.api/login/jwt-session",
    )
    assert decoded["email_verified"] is False
    for bad in ("no", "yes", 1, None, "maybe"):
        with pytest.raises(ConfigurationError):
            issuer.claims(_Person(bad))  # type: ignore[arg-type]
