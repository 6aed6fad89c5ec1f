"""Redirect policy: Django's list of unsafe URLs and friends must all be refused."""

from __future__ import annotations

import pytest

from qlikauth import ConfigurationError, RedirectError
from qlikauth.redirects import RedirectPolicy, normalise_base_url

POLICY = RedirectPolicy(
    ["https://qs2.example.com:8443"], default="https://hub.example.com/portal/hub/"
)

# From django/tests/utils_tests/test_http.py (URLHasAllowedHostAndSchemeTests.test_bad_urls),
# plus user-info and scheme tricks from OWASP's cheat sheet.
UNSAFE = [
    "http://example.com",
    "http:///example.com",
    "https://example.com",
    "ftp://example.com",
    r"\\example.com",
    r"\\\example.com",
    r"/\\/example.com",
    r"\\\example.com",
    r"\\example.com",
    r"\\//example.com",
    r"/\/example.com",
    r"\/example.com",
    r"/\example.com",
    "http:///example.com",
    r"http:/\//example.com",
    r"http:\/example.com",
    r"http:/\example.com",
    'javascript:alert("XSS")',
    "\njavascript:alert(x)",
    "java\nscript:alert(x)",
    "\x08//example.com",
    r"http://otherserver\@example.com",
    r"http:\\testserver\@example.com",
    r"http://testserver\me:pass@example.com",
    r"http://testserver\@example.com",
    r"http:\\testserver\confirm\me@example.com",
    "http:999999999",
    "ftp:9999999999",
    "\n",
    "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
    "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
    "//example.com",
    "///example.com",
    "https://user:pass@hub.example.com/",
    "https://hub.example.com@evil.com/",
    "http://hub.example.com/",  # scheme downgrade
    "https://hub.example.com:444/",
    "https://hub.example.com.evil.com/",
    "data:text/html,<script>alert(1)</script>",
    "/ok\r\nLocation: https://evil.com",
    "",
]


@pytest.mark.parametrize("url", UNSAFE)
def test_unsafe_targets_refused(url):
    with pytest.raises(RedirectError):
        POLICY.check(url)
    assert POLICY.check_or_default(url) == POLICY.default


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/portal/sense/app/1", "https://hub.example.com/portal/sense/app/1"),
        ("/portal/hub/?a=1#x", "https://hub.example.com/portal/hub/?a=1#x"),
        ("https://HUB.example.com/portal/hub/", "https://HUB.example.com/portal/hub/"),
        ("https://hub.example.com:443/x", "https://hub.example.com:443/x"),
        ("https://qs2.example.com:8443/portal/hub", "https://qs2.example.com:8443/portal/hub"),
    ],
)
def test_safe_targets_allowed(url, expected):
    assert POLICY.check(url) == expected


def test_configuration_errors_are_clear():
    with pytest.raises(ConfigurationError, match="query string"):
        normalise_base_url("https://hub.example.com/?x=1", "hub_url")
    with pytest.raises(ConfigurationError):
        RedirectPolicy(["not a url"], default="https://hub.example.com/")
    assert (
        normalise_base_url("https://Hub.Example.com:443/portal/")
        == "https://hub.example.com/portal"
    )


# -- issue 10 §1: a laundered ticket --------------------------------------------------
LAUNDERED = [
    "qlikTicket=ATTACKER",
    "QLIKTICKET=ATTACKER",
    "qlikticket=ATTACKER",
    "qlik%54icket=ATTACKER",
    "%71%6c%69%6b%74%69%63%6b%65%74=ATTACKER",
    "qlik%2554icket=ATTACKER",  # encoded twice
    "x-qlik-ticket=ATTACKER",
    "X-Qlik-Ticket=ATTACKER",
    "qlik_ticket=ATTACKER",
    "qlik+Ticket=ATTACKER",
    "ｑｌｉｋＴｉｃｋｅｔ=ATTACKER",  # fullwidth look-alikes (NFKC)
    "qlikTicket",
]


@pytest.mark.parametrize("param", LAUNDERED)
def test_targets_lose_every_ticket_like_parameter(param: str) -> None:
    from qlikauth.authenticators.ticket import add_ticket
    from qlikauth.redirects import strip_tickets

    for target in (
        f"https://hub.example.com/portal/hub/?{param}",
        f"https://hub.example.com/portal/hub/?a=1&{param}&b=2#frag",
        f"/portal/hub/stream?{param}",
    ):
        checked = POLICY.check(target)
        assert "ATTACKER" not in checked and "icket" not in checked.split("?", 1)[-1].lower(), (
            checked
        )
        assert "ATTACKER" not in strip_tickets(target)
        redeemed = add_ticket(target, "OURS")
        assert "ATTACKER" not in redeemed and redeemed.count("qlikTicket=") == 1, redeemed
    kept = POLICY.check(f"https://hub.example.com/portal/hub/?a=1&{param}&b=2#frag")
    assert kept == "https://hub.example.com/portal/hub/?a=1&b=2#frag"


def test_strip_tickets_keeps_everything_else_byte_for_byte() -> None:
    from qlikauth.redirects import is_ticket_param, strip_tickets

    url = "https://hub.example.com/portal/hub/stream?x=%2F&tick=1&ticket=2&qlik=3#a?qlikTicket=1"
    assert strip_tickets(url) == url  # only names that read as "qlikticket" go
    assert (
        not is_ticket_param("ticket")
        and not is_ticket_param("qlik")
        and is_ticket_param("QlIkTiCkEt")
    )


def test_relative_targets_stay_under_the_hubs_prefix() -> None:
    policy = RedirectPolicy(
        [], default="https://hub.example.com/portal/hub/", relative_prefix="/portal/"
    )
    assert policy.check("/portal/hub/stream") == "https://hub.example.com/portal/hub/stream"
    assert policy.check("/portal") == "https://hub.example.com/portal"
    for bad in (
        "/other/hub/",
        "/portalx/hub/",
        "/",
        "/portal/../other/hub/",
        "/portal/%2e%2e/other/",
        "/portal/%252e%252e/other",
        "/portal/.%2E/x",
        "/portal/..%2fother",
        "/hub/",
    ):
        with pytest.raises(RedirectError):
            policy.check(bad)
    # absolute targets on allowed origins are not path-restricted (QPS's TargetUri, other proxies)
    assert (
        policy.check("https://hub.example.com/other/hub/") == "https://hub.example.com/other/hub/"
    )
    # the default policy ("/") accepts any local path, dot segments still refused
    with pytest.raises(RedirectError):
        POLICY.check("/a/../b")


@pytest.mark.parametrize("url", ["/hub/\ud800", "https://hub.example.com/a\udfff", "/\udbff\udc00"])
def test_lone_surrogates_are_refused(url):
    # What is accepted goes into a Location header, which cannot carry a lone surrogate.
    policy = RedirectPolicy(["https://hub.example.com"], "https://hub.example.com/hub/")
    with pytest.raises(RedirectError):
        policy.check(url)
