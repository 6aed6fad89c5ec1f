"""Redirect policy: Django's list of unsafe URLs and friends must all be refused."""

from __future__ import annotations

import pytest

from qlikauth import ConfigurationError, RedirectError
from qlikauth.urls import RedirectPolicy, normalise_base_url

POLICY = RedirectPolicy(["https://qs2.example.com:8443"], default="https://hub.example.com/portal/hub/")

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
    assert normalise_base_url("https://Hub.Example.com:443/portal/") == "https://hub.example.com/portal"
