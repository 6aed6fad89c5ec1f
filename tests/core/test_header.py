"""HeaderAuthenticator: static and dynamic user directories, refusing unsafe headers."""

from __future__ import annotations

import pytest

from qlikauth import ConfigurationError, HeaderAuthenticator, QlikUser
from qlikauth.exceptions import HeaderError, IdentityError


def test_dynamic_pattern():
    h = HeaderAuthenticator("X-Portal-User")
    assert h.headers(QlikUser("ACME", "jdoe")).as_dict() == {"X-Portal-User": "ACME\\jdoe"}
    h2 = HeaderAuthenticator("X-Portal-User", pattern="$id@$ud")
    assert h2.value(QlikUser("ACME", "jdoe")) == "jdoe@ACME"


def test_static_directory():
    h = HeaderAuthenticator("X-Portal-User", user_directory="ACME")
    assert h.value(QlikUser("acme", "jdoe")) == "jdoe"
    with pytest.raises(IdentityError, match="static"):
        h.value(QlikUser("OTHER", "jdoe"))


@pytest.mark.parametrize(
    "name",
    [
        "X-Qlik-User",
        "x-qlik-security",
        "X-Qlik-ProxySession",
        "X_Portal_User",
        "X Portal",
        "X-Portal:User",
        "",
        "X-Portal-User\r\n",
    ],
)
def test_reserved_or_unsafe_names(name):
    with pytest.raises(ConfigurationError):
        HeaderAuthenticator(name)


@pytest.mark.parametrize("user_id", ["jdöe", "j\u00a0doe", "日本"])
def test_non_ascii_refused(user_id):
    with pytest.raises(HeaderError, match="US-ASCII"):
        HeaderAuthenticator("X-Portal-User").value(QlikUser("ACME", user_id))


def test_separator_in_directory_refused():
    with pytest.raises(HeaderError, match="separator"):
        HeaderAuthenticator("X-Portal-User", pattern="$ud:$id").value(QlikUser("AC:ME", "jdoe"))


@pytest.mark.parametrize("pattern", ["$id", "$ud$ud$id", "nothing"])
def test_bad_patterns(pattern):
    with pytest.raises(ConfigurationError):
        HeaderAuthenticator("X-Portal-User", pattern=pattern)


def test_identity_answer_for_nginx_auth_request():
    h = HeaderAuthenticator("X-Portal-User")
    ok = h.identity_answer(QlikUser("ACME", "jdoe"), "X-Qlik-Header-Value")
    assert ok.status == 200
    assert dict(ok.headers) == {"X-Qlik-Header-Value": "ACME\\jdoe", "Cache-Control": "no-store"}
    nobody = h.identity_answer(None)
    assert nobody.status == 401 and "X-Qlik-Header-Value" not in dict(nobody.headers)
    unsendable = h.identity_answer(QlikUser("ACME", "jdöe"))
    assert unsendable.status == 403 and dict(unsendable.headers) == {"Cache-Control": "no-store"}


@pytest.mark.parametrize(
    ("qmc", "value"),
    [
        ("$ud\\\\$id", "ACME\\jdoe"),  # the QMC field's own example: matches USERDIRECTORY\userid
        ("$ud\\$id", "ACME\\jdoe"),  # a single backslash before $id stands for itself
        ("$id@$ud", "jdoe@ACME"),
        ("$ud::$id", "ACME::jdoe"),
        ("[$ud\\]]$id", "[ACME]]jdoe"),  # an escaped character is itself
    ],
)
def test_pattern_is_read_as_the_qmc_field_holds_it(qmc, value):
    assert (
        HeaderAuthenticator("X-Portal-User", pattern=qmc).value(QlikUser("ACME", "jdoe")) == value
    )


def test_default_pattern_is_the_qmc_example():
    h = HeaderAuthenticator("X-Portal-User")
    assert h.pattern == "$ud\\\\$id" and h.value(QlikUser("ACME", "jdoe")) == "ACME\\jdoe"


def test_qmc_pattern_separator_in_the_directory_is_refused():
    with pytest.raises(HeaderError, match="separator"):
        # the separator is the escaped character, not the backslash
        HeaderAuthenticator("X-Portal-User", pattern="$ud\\:$id").value(QlikUser("AC:ME", "jdoe"))
