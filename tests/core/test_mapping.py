"""qlikauth.mapping: IdP claims -> QlikUser and the Qlik Cloud identity (examples and
properties)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlikauth import ClaimsError, ConfigurationError, QlikUser
from qlikauth.mapping import (
    DEFAULT_GROUP_CLAIMS,
    ENTRA_GROUPS_CLAIM,
    ENTRA_GROUPS_LINK_CLAIM,
    SUBJECT,
    AttributeRule,
    ClaimsMapping,
    CloudIdentity,
    GroupNames,
    OverageInfo,
    normalise_claims,
)

SALES = "6b8a5d1e-1c7f-4d3a-9a51-0c2d1e7f9b10"
FINANCE = "0f3c2b1a-9d8e-4f7a-8b6c-5d4e3f2a1b0c"
EMAIL = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"

#: Seed 000/002: Entra ID SAML, email as user id, GUID groups -> Qlik `group`, the cloud realm as
#: directory.
ENTRA_SETTINGS = {
    "USER_ID": EMAIL,
    "USER_ID_TRANSFORMS": ["strip", "lower"],
    "USER_DIRECTORY": "AZURE",
    "ATTRIBUTES": {"group": ["groups", ENTRA_GROUPS_CLAIM], "department": "department"},
    "GROUP_NAMES": {SALES: "Sales", FINANCE: "Finance"},
    "UNKNOWN_GROUPS": "refuse",
    "REQUIRED": [EMAIL],
    "IDP": "Entra ID",
}


def test_entra_saml_claims_become_the_qlik_user_and_the_cloud_identity():
    m = ClaimsMapping.from_settings(ENTRA_SETTINGS)
    claims = {
        EMAIL: [" Ann.Lee@Example.com "],
        ENTRA_GROUPS_CLAIM: [SALES, FINANCE.upper()],
        "department": ["EMEA"],
        "http://schemas.microsoft.com/identity/claims/displayname": ["Ann Lee"],
    }
    mapped = m.map(claims, subject="opaque-nameid")
    assert mapped.user.same_user(QlikUser("AZURE", "ann.lee@example.com"))
    assert mapped.user.attributes == (
        ("group", "Sales"),
        ("group", "Finance"),
        ("department", "EMEA"),
    )
    assert mapped.cloud == CloudIdentity(
        sub="ann.lee@example.com",
        name="Ann Lee",
        email="Ann.Lee@Example.com",
        email_verified=False,
        groups=("Sales", "Finance"),
        realm="AZURE",
    )
    assert mapped.cloud.claims() == {
        "sub": "ann.lee@example.com",
        "subType": "user",
        "name": "Ann Lee",
        "email": "Ann.Lee@Example.com",
        "email_verified": False,
        "groups": ["Sales", "Finance"],
    }


def test_same_mapping_from_python_and_from_settings():
    py = ClaimsMapping(
        user_id=EMAIL,
        user_id_transforms=["strip", "lower"],
        user_directory="AZURE",
        attributes=[
            AttributeRule(
                "group",
                ["groups", ENTRA_GROUPS_CLAIM],
                groups=GroupNames({SALES: "Sales", FINANCE: "Finance"}, "refuse"),
            ),
            AttributeRule("department", "department"),
        ],
        required=[EMAIL],
        idp="Entra ID",
    )
    claims = {EMAIL: ["Bob@Example.com"], "groups": [FINANCE], "department": ["x", "y"]}
    assert py.to_user(claims) == ClaimsMapping.from_settings(ENTRA_SETTINGS).to_user(claims)
    assert py.to_user(claims).attributes == (
        ("group", "Finance"),
        ("department", "x"),
        ("department", "y"),
    )


def test_settings_keys_are_case_insensitive_as_flask_lowercases_them():
    lowered = {k.lower(): v for k, v in ENTRA_SETTINGS.items()}
    assert ClaimsMapping.from_settings(lowered) == ClaimsMapping.from_settings(ENTRA_SETTINGS)


def test_user_id_from_the_subject_and_the_named_transforms():
    m = ClaimsMapping(
        user_id=SUBJECT,
        user_id_transforms="after_backslash,before_at,upper",
        user_directory="ACME",
        attributes=[],
    )
    assert m.to_user({}, subject="CORP\\jdoe@corp.example").user_id == "JDOE"
    with pytest.raises(ClaimsError) as err:
        m.to_user({"email": ["x@y"]}, subject=None)
    assert err.value.code == "missing_claim" and err.value.claim == SUBJECT
    assert "NameID" in str(err.value)


def test_user_directory_from_a_claim():
    m = ClaimsMapping(
        user_id="upn",
        user_id_transforms=["after_backslash"],
        user_directory_claim="domain",
        user_directory_transforms=["upper"],
        attributes=[],
    )
    assert m.to_user({"upn": ["ACME\\jdoe"], "domain": ["acme"]}).qualified_name == "ACME\\jdoe"
    with pytest.raises(ClaimsError) as err:
        m.to_user({"upn": ["jdoe"]})
    assert err.value.claim == "domain" and "user directory" in str(err.value)


def test_default_attributes_take_groups_from_okta_entra_and_adfs():
    m = ClaimsMapping(user_id="sub", user_directory="OKTA")
    for claim in DEFAULT_GROUP_CLAIMS:
        assert m.to_user({"sub": ["u1"], claim: ["A", "B"]}).groups == ["A", "B"]
    # GUIDs are kept as they are unless a table is configured
    assert m.to_user({"sub": ["u1"], "groups": [SALES]}).groups == [SALES]


def test_constants_and_pass_through():
    m = ClaimsMapping(
        user_id="sub",
        user_directory="D",
        attributes=[],
        constants={"origin": "entra", "tier": ["gold", "x"]},
        pass_through=["costcenter"],
    )
    u = m.to_user({"sub": ["u"], "costcenter": ["42", "43"], "ignored": ["z"]})
    assert u.attributes == (
        ("costcenter", "42"),
        ("costcenter", "43"),
        ("origin", "entra"),
        ("tier", "gold"),
        ("tier", "x"),
    )


def test_unknown_guid_rules():
    claims = {"sub": ["u"], "groups": [SALES, "not-a-guid-name", str(uuid.UUID(int=7))]}

    def mapping(rule: str) -> ClaimsMapping:
        return ClaimsMapping(
            user_id="sub",
            user_directory="D",
            attributes=[
                AttributeRule("group", "groups", groups=GroupNames({SALES: "Sales"}, rule))
            ],
        )  # type: ignore[arg-type]

    assert mapping("drop").to_user(claims).groups == ["Sales", "not-a-guid-name"]
    assert mapping("keep").to_user(claims).groups == [
        "Sales",
        "not-a-guid-name",
        str(uuid.UUID(int=7)),
    ]
    with pytest.raises(ClaimsError) as err:
        mapping("refuse").to_user(claims)
    assert err.value.code == "unknown_group" and err.value.claim == "groups"
    assert str(uuid.UUID(int=7)) in str(err.value) and "GROUP_NAMES" in str(err.value)


def test_groups_overage_saml_is_refused_naming_the_entra_setting():
    m = ClaimsMapping.from_settings(ENTRA_SETTINGS)
    claims = {
        EMAIL: ["ann@example.com"],
        ENTRA_GROUPS_LINK_CLAIM: ["https://graph.windows.net/tenant/users/oid/getMemberObjects"],
    }
    with pytest.raises(ClaimsError) as err:
        m.map(claims)
    assert err.value.code == "groups_overage"
    assert "Groups assigned to the application" in str(err.value) and "150" in str(err.value)


def test_groups_overage_jwt_markers_are_detected():
    m = ClaimsMapping(user_id="sub", user_directory="D")
    for claims in (
        {
            "sub": "u",
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/..."}},
        },
        {"sub": "u", "hasgroups": True},
    ):
        with pytest.raises(ClaimsError) as err:
            m.to_user(claims)
        assert err.value.code == "groups_overage"


def test_groups_overage_resolved_by_a_hook():
    seen: list[OverageInfo] = []

    def resolver(info: OverageInfo) -> list[str]:
        seen.append(info)
        return [SALES, FINANCE]

    settings_ = {**ENTRA_SETTINGS, "GROUPS_OVERAGE": resolver}
    m = ClaimsMapping.from_settings(settings_)
    user = m.to_user(
        {EMAIL: ["ann@example.com"], ENTRA_GROUPS_LINK_CLAIM: ["https://graph/x"]}, subject="nid"
    )
    assert user.groups == ["Sales", "Finance"]
    assert (
        seen[0].protocol == "saml"
        and seen[0].link == "https://graph/x"
        and seen[0].subject == "nid"
    )


def test_groups_overage_resolver_by_dotted_path():
    m = ClaimsMapping.from_settings(
        {
            "USER_ID": "sub",
            "USER_DIRECTORY": "D",
            "GROUPS_OVERAGE": "tests.core.test_mapping.dotted_resolver",
        }
    )
    assert m.to_user({"sub": "u", "hasgroups": "true"}).groups == ["FromGraph"]


def dotted_resolver(info: OverageInfo) -> list[str]:
    return ["FromGraph"]


def test_required_claims_and_required_attributes():
    m = ClaimsMapping(
        user_id="sub",
        user_directory="D",
        required=["email"],
        attributes=[AttributeRule("group", ["groups", ENTRA_GROUPS_CLAIM], required=True)],
        idp="Okta",
    )
    with pytest.raises(ClaimsError) as err:
        m.to_user({"sub": ["u"], "groups": ["a"]})
    assert (
        err.value.claim == "email"
        and "Okta" in str(err.value)
        and err.value.code == "missing_claim"
    )
    with pytest.raises(ClaimsError) as err:
        m.to_user({"sub": ["u"], "email": ["e@x"]})
    assert err.value.claim == f"groups or {ENTRA_GROUPS_CLAIM}" and "'group'" in str(err.value)


def test_ambiguous_user_id_is_refused():
    m = ClaimsMapping(user_id="email", user_directory="D", attributes=[])
    # the same value twice is one value (IdPs repeat claims); the transforms apply before comparing
    assert m.to_user({"email": ["a@x", "a@x"]}).user_id == "a@x"
    lowered = ClaimsMapping(
        user_id="email", user_id_transforms=["strip", "lower"], user_directory="D", attributes=[]
    )
    assert lowered.to_user({"email": ["A@x", "a@x "]}).user_id == "a@x"
    with pytest.raises(ClaimsError) as err:
        m.to_user({"email": ["a@x", "b@x"]})
    assert err.value.code == "ambiguous_claim"


@pytest.mark.parametrize("value", ["Sales; Admin=1", "x\r\nX-Qlik-User: a", "a\x00b"])
def test_values_qlik_would_refuse_are_refused_naming_the_claim(value):
    m = ClaimsMapping(user_id="sub", user_directory="D")
    with pytest.raises(ClaimsError) as err:
        m.to_user({"sub": ["u"], ENTRA_GROUPS_CLAIM: ["ok", value]})
    assert err.value.code == "invalid_value" and err.value.claim == ENTRA_GROUPS_CLAIM


def test_user_id_qlik_would_refuse():
    m = ClaimsMapping(user_id="upn", user_directory="D", attributes=[])
    with pytest.raises(ClaimsError) as err:
        m.to_user({"upn": ["ACME\\jdoe"]})
    assert err.value.code == "invalid_value" and err.value.claim == "upn"
    assert "backslash" in str(err.value)


def test_cloud_identity_options():
    m = ClaimsMapping(
        user_id="sub",
        user_directory="REALM",
        attributes=[AttributeRule("group", "groups")],
        cloud_sub="oid",
        cloud_email_verified="email_verified",
    )
    cloud = m.cloud_identity(
        {
            "sub": "u1",
            "oid": "o-1",
            "email": "u1@x",
            "email_verified": True,
            "name": "U One",
            "groups": ["g"],
        }
    )
    assert cloud == CloudIdentity("o-1", "U One", "u1@x", True, ("g",), "REALM")
    with pytest.raises(ClaimsError) as err:
        m.cloud_identity({"sub": "u1"})
    assert err.value.claim == "oid"
    # no email or name claim: the e-mail shaped user id stands in for both
    plain = ClaimsMapping(
        user_id="sub", user_directory="REALM", attributes=[], cloud_email_verified=True
    )
    assert plain.cloud_identity({"sub": "ann@x"}) == CloudIdentity(
        "ann@x", "ann@x", "ann@x", True, (), "REALM"
    )


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"USER_ID": "sub"}, "USER_DIRECTORY"),
        ({"USER_ID": "sub", "USER_DIRECTORY": "D", "USER_DIRECTORY_CLAIM": "d"}, "USER_DIRECTORY"),
        (
            {"USER_ID": "sub", "USER_DIRECTORY": "D", "USER_ID_TRANSFORMS": ["lowercase"]},
            "USER_ID_TRANSFORMS",
        ),
        ({"USER_ID": "sub", "USER_DIRECTORY": "D", "GROUP_NAME": {}}, "GROUP_NAME"),
        (
            {"USER_ID": "sub", "USER_DIRECTORY": "D", "GROUP_NAMES": {"sales": "Sales"}},
            "GROUP_NAMES",
        ),
        ({"USER_ID": "sub", "USER_DIRECTORY": "D", "UNKNOWN_GROUPS": "ignore"}, "UNKNOWN_GROUPS"),
        (
            {"USER_ID": "sub", "USER_DIRECTORY": "D", "ATTRIBUTES": {"gr oup": "groups"}},
            "ATTRIBUTES",
        ),
        (
            {
                "USER_ID": "sub",
                "USER_DIRECTORY": "D",
                "ATTRIBUTES": {"dept": "d"},
                "GROUP_NAMES": {SALES: "S"},
            },
            "GROUP_NAMES",
        ),
        (
            {"USER_ID": "sub", "USER_DIRECTORY": "D", "GROUPS_OVERAGE": "nowhere.resolver"},
            "GROUPS_OVERAGE",
        ),
        ({"USER_ID": "sub", "USER_DIRECTORY": "D", "CONSTANTS": {"a": "x;y"}}, "CONSTANTS"),
        ({"USER_ID": "sub", "USER_DIRECTORY": "A\\B"}, "USER_DIRECTORY"),
    ],
)
def test_bad_settings_name_the_key(bad, key):
    with pytest.raises(ConfigurationError) as err:
        ClaimsMapping.from_settings(bad)
    assert err.value.key == key, str(err.value)


def test_unknown_setting_suggests_the_close_one():
    with pytest.raises(ConfigurationError, match="Did you mean GROUP_NAMES"):
        ClaimsMapping.from_settings({"USER_ID": "sub", "USER_DIRECTORY": "D", "GROUP_NAME": {}})


def test_normalise_claims_from_oidc_json():
    assert normalise_claims(
        {"a": "x", "b": ["y", 1, True], "c": None, "d": {"k": 1}, "e": 2.5}
    ) == {"a": ["x"], "b": ["y", "1", "true"], "d": ["k"], "e": ["2.5"]}


# -- properties -------------------------------------------------------------------
# Values Qlik takes: printable, no ';' (it would forge an attribute in X-Qlik-Security).
safe_text = st.text(
    st.characters(blacklist_categories=("Cc", "Cf", "Zl", "Zp", "Cs"), blacklist_characters=";"),
    max_size=40,
)
claim_names = st.sampled_from(["groups", ENTRA_GROUPS_CLAIM, "dept", "role"])
claims_strategy = st.dictionaries(claim_names, st.lists(safe_text, max_size=8), max_size=4)


@settings(max_examples=200, deadline=None)
@given(claims=claims_strategy)
def test_property_multi_valued_claims_expand_into_repeated_attributes(claims):
    m = ClaimsMapping(
        user_id=SUBJECT,
        user_directory="D",
        attributes=[
            AttributeRule("group", ["groups", ENTRA_GROUPS_CLAIM]),
            AttributeRule("dept", "dept"),
        ],
        pass_through=["role"],
    )
    user = m.to_user(claims, subject="u")
    expected_groups: list[str] = []
    for src in ("groups", ENTRA_GROUPS_CLAIM):
        for v in claims.get(src, []):
            if v not in expected_groups:
                expected_groups.append(v)
    expected_dept = list(dict.fromkeys(claims.get("dept", [])))
    # one attribute per distinct value, in the IdP's order, values unchanged
    assert user.get_all("group") == expected_groups
    assert user.get_all("dept") == expected_dept
    assert user.get_all("role") == claims.get("role", [])
    assert len(user.attributes) == len(expected_groups) + len(expected_dept) + len(
        claims.get("role", [])
    )
    assert user.attributes[: len(expected_groups)] == tuple(("group", g) for g in expected_groups)
    assert m.cloud_identity(claims, subject="u").groups == tuple(expected_groups)


@settings(max_examples=200, deadline=None)
@given(
    good=st.lists(safe_text, max_size=5),
    bad=safe_text,
    where=st.integers(min_value=0, max_value=5),
    forge=st.sampled_from([";", "\r", "\n", "\x00", "\u2028"]),
)
def test_property_a_forging_value_anywhere_refuses_never_drops(good, bad, where, forge):
    values = list(good)
    values.insert(min(where, len(values)), bad + forge + "Admin=1")
    m = ClaimsMapping(user_id=SUBJECT, user_directory="D")
    with pytest.raises(ClaimsError) as err:
        m.to_user({"groups": values}, subject="u")
    assert err.value.code == "invalid_value" and err.value.claim == "groups"


@settings(max_examples=100, deadline=None)
@given(
    known=st.lists(st.uuids(), min_size=1, max_size=5, unique=True),
    unknown=st.uuids(),
    rule=st.sampled_from(["drop", "keep", "refuse"]),
)
def test_property_guid_lookup(known, unknown, rule):
    table = {str(g): f"G{i}" for i, g in enumerate(known)}
    if str(unknown) in table:
        return
    m = ClaimsMapping(
        user_id=SUBJECT,
        user_directory="D",
        attributes=[AttributeRule("group", "groups", groups=GroupNames(table, rule))],
    )
    sent = [str(g).upper() for g in known] + [str(unknown)]
    if rule == "refuse":
        with pytest.raises(ClaimsError) as err:
            m.to_user({"groups": sent}, subject="u")
        assert err.value.code == "unknown_group"
        return
    groups = m.to_user({"groups": sent}, subject="u").groups
    assert groups[: len(known)] == [f"G{i}" for i in range(len(known))]
    assert groups[len(known) :] == ([str(unknown)] if rule == "keep" else [])


@settings(max_examples=100, deadline=None)
@given(
    present=st.dictionaries(
        st.sampled_from(["email", "sub", "groups", "dept"]),
        st.lists(st.text(min_size=1, max_size=5).filter(str.strip), min_size=1, max_size=2),
        max_size=4,
    ),
    required=st.lists(st.sampled_from(["email", "sub", "groups", "dept"]), max_size=4),
)
def test_property_required_claims(present, required):
    m = ClaimsMapping(user_id=SUBJECT, user_directory="D", attributes=[], required=required)
    missing = [r for r in required if r not in present]
    if missing:
        with pytest.raises(ClaimsError) as err:
            m.to_user(present, subject="u")
        assert err.value.claim == missing[0] and err.value.code == "missing_claim"
    else:
        assert m.to_user(present, subject="u").user_id == "u"


def test_every_python_block_in_docs_mapping_runs():
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "mapping.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 3
    for block in blocks:
        out = subprocess.run(
            [sys.executable, "-c", block], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr[-2000:]


def test_mapping_imports_no_protocol_or_framework():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('saml2', 'jose', 'jwt', 'django', 'flask', "
        "'werkzeug'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import qlikauth.mapping\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
