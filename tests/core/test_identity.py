"""QlikUser: Qlik's validation rules, attribute payloads, and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlikauth import IdentityError, QlikUser
from qlikauth.identity import security_header_value


def test_trims_and_serialises_repeated_and_empty_attributes():
    user = QlikUser(
        "  ACME ", "\tjdoe ", attributes=[("group", "Sales"), ("group", "Finance"), ("email", "")]
    )
    assert (user.user_directory, user.user_id) == ("ACME", "jdoe")
    assert user.to_qps() == {
        "UserDirectory": "ACME",
        "UserId": "jdoe",
        "Attributes": [{"group": "Sales"}, {"group": "Finance"}, {"email": ""}],
    }
    assert user.groups == ["Sales", "Finance"]
    assert user.get_all("EMAIL") == [""]


def test_parse_qualified_name():
    user = QlikUser.parse("ACME\\jdoe", {"group": ["A", "B"]})
    assert user.qualified_name == "ACME\\jdoe"
    assert user.attributes == (("group", "A"), ("group", "B"))


@pytest.mark.parametrize("bad", ["jdoe", "", "\\jdoe", "ACME\\"])
def test_parse_refuses_malformed(bad):
    with pytest.raises(IdentityError):
        QlikUser.parse(bad)


@pytest.mark.parametrize(
    ("directory", "user_id", "field"),
    [
        ("", "jdoe", "user_directory"),
        ("   ", "jdoe", "user_directory"),
        ("ACME", " \t ", "user_id"),
        ("AC\\ME", "jdoe", "user_directory"),
        ("ACME", "j\\doe", "user_id"),
        ("ACME", "j\ndoe", "user_id"),
        ("AC\x00ME", "jdoe", "user_directory"),
        ("ACME", "jdoe\u200b", "user_id"),
        ("ACME", "x" * 1025, "user_id"),
    ],
)
def test_invalid_identity_names_the_field(directory, user_id, field):
    with pytest.raises(IdentityError) as info:
        QlikUser(directory, user_id)
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(
    ("qualified", "field"),
    [
        ("PORTAL\\alice; UserDirectory=INTERNAL; UserId=sa_repository", "user_id"),
        ("PORTAL\\alice;x", "user_id"),
        ("PORTAL\\a=b", "user_id"),
        ("PORTAL; UserId=sa_repository\\alice", "user_directory"),
        ("PORT=AL\\alice", "user_directory"),
    ],
)
def test_semicolon_and_equals_in_directory_or_id_are_refused(qualified, field):
    # Qlik composes "UserDirectory=...; UserId=..." headers from these: one could pass for
    # another user.
    with pytest.raises(IdentityError) as info:
        QlikUser.parse(qualified)
    assert info.value.field == field
    message = str(info.value)
    assert field in message and "X-Qlik-User" in message
    directory, _, user_id = qualified.partition("\\")
    with pytest.raises(IdentityError):
        QlikUser(directory, user_id)


@pytest.mark.parametrize(
    "attrs",
    [
        [("group", "Sales; Admin=1")],
        [("gro;up", "x")],
        [("a=b", "x")],
        [("", "x")],
        [("group", "x\r\nX-Qlik-User: evil")],
        [("group", None)],
        [("group",)],
        "group=Sales",
        [{"a": "1", "b": "2"}],
    ],
)
def test_attributes_that_could_forge_another_are_refused(attrs):
    with pytest.raises(IdentityError):
        QlikUser("ACME", "jdoe", attributes=attrs)


def test_from_qps_accepts_both_casings():
    a = QlikUser.from_qps(
        {"UserDirectory": "ACME", "UserId": "jdoe", "Attributes": [{"group": "S"}]}
    )
    b = QlikUser.from_qps(
        {"userDirectory": "ACME", "userId": "jdoe", "attributes": [{"group": "S"}]}
    )
    assert a == b
    assert a.same_user(QlikUser("acme", "JDOE"))


def test_security_header_rendering():
    user = QlikUser("ACME", "jdoe", [("group", "Sales"), ("empty", "")])
    assert (
        security_header_value(user.attributes)
        == "SecureRequest=true; Context=AppAccess; group=Sales; empty="
    )


_name_part = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())


@given(directory=_name_part, user_id=_name_part)
def test_property_valid_or_clear_error(directory, user_id):
    """Any text either becomes a user whose fields obey Qlik's rules, or an IdentityError."""
    try:
        user = QlikUser(directory, user_id)
    except IdentityError as exc:
        assert exc.field in ("user_directory", "user_id")
        bad = directory if exc.field == "user_directory" else user_id
        assert (
            "\\" in bad
            or ";" in bad
            or "=" in bad
            or any(not c.isprintable() or c in "\u2028\u2029" for c in bad)
            or not bad.strip()
        )
        return
    for value in (user.user_directory, user.user_id):
        assert value == value.strip() and value
        assert "\\" not in value and ";" not in value and "=" not in value
    assert QlikUser.parse(user.qualified_name) == user


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,10}", fullmatch=True),
            st.text(max_size=20).filter(lambda v: ";" not in v and v.isprintable()),
        )
    )
)
def test_property_attribute_round_trip(pairs):
    user = QlikUser("ACME", "jdoe", pairs)
    again = QlikUser.from_qps(user.to_qps())
    assert again.attributes == user.attributes
    rendered = security_header_value(user.attributes)
    # Each attribute adds exactly one "; " separated pair: none can forge another.
    assert rendered.count("; ") == 1 + len(pairs)


def test_checked_values_are_remembered_but_every_construction_is_checked() -> None:
    """QlikUser remembers values that passed its checks (portals build the same users on every
    page view); what fails is refused every time, and other shapes are checked as before."""
    import qlikauth.identity as identity

    first = QlikUser(" PORTAL ", "alice", [("group", "Sales")])
    assert (first.user_directory, first.attributes) == ("PORTAL", (("group", "Sales"),))
    assert (
        QlikUser(" PORTAL ", "alice", (("group", "Sales"),)) == first
    )  # remembered: the same result
    for _ in range(2):
        with pytest.raises(IdentityError):
            QlikUser("PORTAL", "alice; UserId=sa_repository")
        with pytest.raises(IdentityError):
            QlikUser("PORTAL", "alice", [("group", "Sales;x")])
        with pytest.raises(IdentityError):
            QlikUser("PORTAL", "alice", [("group", 5)])
        with pytest.raises(IdentityError):
            QlikUser("PORTAL", "al\u200bice")  # a zero-width space (Cf)
    # other shapes: lists as pairs, QPS-style objects, mappings
    assert QlikUser("PORTAL", "alice", [["group", "Sales"]]) == first
    assert QlikUser("PORTAL", "alice", [{"group": "Sales"}]) == first
    assert QlikUser("PORTAL", "alice", {"group": ["Sales"]}) == first
    assert (
        QlikUser("PORTAL", "alice\u00a0b").user_id == "alice\u00a0b"
    )  # a no-break space is allowed
    # bounded
    for i in range(identity._CHECKED_KEPT + 10):
        QlikUser("PORTAL", f"user{i}")
    assert len(identity._CHECKED) <= identity._CHECKED_KEPT
