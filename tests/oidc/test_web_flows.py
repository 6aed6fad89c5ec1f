"""OIDC sign-in end to end through the web layer: a real Flask portal process over https, the real
OpenID provider, the emulator (QPS + hub) over real TLS.

Sign-in lands on the hub as the mapped user; a back-channel logout from the provider ends the
proxy session on the QPS node and the portal's SSO session (in another portal process too);
refused callbacks make no Qlik call; the session caps end everything.
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from .site import Site, qps_user_sessions


def test_sign_in_lands_on_the_hub_as_the_mapped_user(site_factory: Callable[..., Site]) -> None:
    site = site_factory()
    browser = site.browser()
    answer = site.sign_in(browser, "alice")
    hub = site.follow_to_hub(browser, answer)
    assert hub.status_code == 200
    assert '<dd id="user">OIDC\\alice@example.com</dd>' in hub.text
    assert (
        "group=Finance" in hub.text.replace("</li>", "").replace("<li>", "")
        or "Finance" in hub.text
    )
    # the binding cookie is cleared at the callback; the portal knows the user
    assert any(
        c.startswith("__Host-qlikauth-oidc=;")
        for c in answer.headers.get("set-cookie", "").split(", ")
    )
    assert (
        browser.get(f"{site.portal}/whoami", timeout=10).json()["user"] == "OIDC\\alice@example.com"
    )
    assert len(qps_user_sessions(site.emu, "alice@example.com")) == 1


def test_backchannel_logout_ends_the_proxy_session_and_the_portal_session(
    site_factory: Callable[..., Site],
) -> None:
    site = site_factory()
    alice, bob = site.browser(), site.browser()
    site.follow_to_hub(alice, site.sign_in(alice, "alice"))
    site.follow_to_hub(bob, site.sign_in(bob, "bob"))
    assert qps_user_sessions(site.emu, "alice@example.com")
    result = site.op.end_sessions("a1b2c3-alice")  # the provider signs alice out everywhere
    assert result["results"] and all(r["ok"] for r in result["results"]), (
        result,
        site.op.log_text()[-2000:],
    )
    assert qps_user_sessions(site.emu, "alice@example.com") == []
    assert qps_user_sessions(site.emu, "bob@example.com")  # bob is untouched
    assert browser_user(site, alice) is None
    assert browser_user(site, bob) == "OIDC\\bob@example.com"
    hub = alice.get(site.emu.hub_url_for("portal"), timeout=10, allow_redirects=False)
    assert 'id="user"' not in hub.text


def browser_user(site: Site, browser: requests.Session, portal: str | None = None) -> str | None:
    return browser.get(f"{portal or site.portal}/whoami", timeout=10).json()["user"]


def test_refused_callbacks_make_no_qlik_call(site_factory: Callable[..., Site]) -> None:
    site = site_factory()
    browser = site.browser()
    answer = site.sign_in(browser, "alice")
    assert answer.status_code == 302
    callback_url = None
    # replay the same callback: refused, and QPS is not asked for anything
    start = browser.get(f"{site.portal}/oidc/login", allow_redirects=False, timeout=10)
    got = site.op.sign_in(start.headers["location"], "alice", session=browser.op_session)  # type: ignore[attr-defined]
    callback_url = site.portal + urlsplit(got["url"]).path + "?" + urlsplit(got["url"]).query
    assert browser.get(callback_url, allow_redirects=False, timeout=10).status_code == 302
    before = site.emu.state.qps_requests
    again = browser.get(callback_url, allow_redirects=False, timeout=10)
    assert again.status_code == 400 and "text/html" in again.headers["content-type"]
    assert "Signing in with your identity provider failed" in again.text
    assert got["params"]["code"] not in again.text and got["params"]["state"] not in again.text
    # the same callback in another browser
    other = site.browser()
    other.get(f"{site.portal}/oidc/login", allow_redirects=False, timeout=10)
    start = browser.get(f"{site.portal}/oidc/login", allow_redirects=False, timeout=10)
    got = site.op.sign_in(start.headers["location"], "alice", session=browser.op_session)  # type: ignore[attr-defined]
    stolen = other.get(
        site.portal + urlsplit(got["url"]).path + "?" + urlsplit(got["url"]).query,
        allow_redirects=False,
        timeout=10,
    )
    assert stolen.status_code == 400
    # a bad target is refused before the provider is even asked
    bad = browser.get(
        f"{site.portal}/oidc/login",
        params={"target": "https://evil.example/"},
        allow_redirects=False,
        timeout=10,
    )
    assert bad.status_code == 400
    assert site.emu.state.qps_requests == before


def test_backchannel_refusals_answer_400(site_factory: Callable[..., Site]) -> None:
    site = site_factory()
    browser = site.browser()
    site.follow_to_hub(browser, site.sign_in(browser, "alice"))
    url = f"{site.portal}/oidc/backchannel-logout"
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would otherwise replace verify=
    s.verify = site.ca
    assert s.post(url, data={"logout_token": "not.a.token"}, timeout=10).status_code == 400
    assert s.get(url, timeout=10).status_code == 405
    now = __import__("time").time()
    forged = site.op.sign(
        {
            "iss": site.op.issuer,
            "aud": "portal-web",
            "iat": now,
            "exp": now + 120,
            "jti": "j1",
            "sub": "a1b2c3-alice",
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            "nonce": "x",
        }
    )
    r = s.post(url, data={"logout_token": forged}, timeout=10)
    assert r.status_code == 400 and r.json()["error_description"] == "logout_nonce"
    assert qps_user_sessions(site.emu, "alice@example.com")  # nothing was ended
    assert browser_user(site, browser) == "OIDC\\alice@example.com"


def test_rp_initiated_logout(site_factory: Callable[..., Site]) -> None:
    site = site_factory()
    browser = site.browser()
    site.follow_to_hub(browser, site.sign_in(browser, "alice"))
    page = browser.get(f"{site.portal}/oidc/logout", timeout=10)
    assert page.status_code == 200 and "<form" in page.text
    cross = browser.post(
        f"{site.portal}/oidc/logout",
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert cross.status_code == 403 and browser_user(site, browser) is not None
    out = browser.post(
        f"{site.portal}/oidc/logout",
        headers={"Origin": site.portal},
        allow_redirects=False,
        timeout=10,
    )
    assert out.status_code == 302 and out.headers["location"].startswith(
        site.op.issuer + "/session/end?"
    )
    assert "id_token_hint=" in out.headers["location"]
    assert (
        "post_logout_redirect_uri=" + requests.utils.quote(site.portal + "/", safe="")
        in out.headers["location"]
    )
    assert qps_user_sessions(site.emu, "alice@example.com") == []
    assert browser_user(site, browser) is None


def test_form_post_and_session_mode(site_factory: Callable[..., Site]) -> None:
    site = site_factory(mode="session", extra_oidc={"RESPONSE_MODE": "form_post"})
    browser = site.browser()
    answer = site.sign_in(browser, "bob")
    assert answer.status_code == 302
    cookies = answer.headers.get("set-cookie", "")
    assert (
        "X-Qlik-Session-portal=" in cookies
        and "Max-Age" not in cookies.split("X-Qlik-Session-portal=")[1].split(",")[0]
    )
    hub = browser.get(site.emu.hub_url_for("portal"), timeout=10)
    assert '<dd id="user">OIDC\\bob@example.com</dd>' in hub.text
    sessions = qps_user_sessions(site.emu, "bob@example.com")
    assert len(sessions) == 1
    site.op.end_sessions("d4e5f6-bob")
    assert qps_user_sessions(site.emu, "bob@example.com") == []
    assert browser_user(site, browser) is None


def test_session_caps_end_the_proxy_sessions(site_factory: Callable[..., Site]) -> None:
    """SESSION_IDLE_TIMEOUT (seed 004: shared workstations): an idle browser is signed out."""
    import time

    site = site_factory(extra_oidc={"SESSION_IDLE_TIMEOUT": 2, "SESSION_MAX_AGE": 3600})
    browser = site.browser()
    site.follow_to_hub(browser, site.sign_in(browser, "alice"))
    assert qps_user_sessions(site.emu, "alice@example.com")
    time.sleep(3)  # idle longer than the cap (no assertion about speed: only that it has passed)
    assert browser_user(site, browser) is None
    assert qps_user_sessions(site.emu, "alice@example.com") == []
    # the provider's own session is still live: the next sign-in in this browser must make the
    # person authenticate again (the next person at the workstation must not inherit it)
    from urllib.parse import parse_qs

    start = browser.get(f"{site.portal}/oidc/login", allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert query.get("prompt") == ["login"] and query.get("max_age") == ["0"]
    # after that fresh sign-in, sign-ins are ordinary again
    site.sign_in(browser, "alice")
    again = browser.get(f"{site.portal}/oidc/login", allow_redirects=False, timeout=10)
    assert "prompt" not in parse_qs(urlsplit(again.headers["location"]).query)


def test_logout_reaches_sessions_of_another_portal_process(
    site_factory: Callable[..., Site], redis_url: str
) -> None:
    """Two portal processes on one Redis: the provider's back-channel call reaches the first, the
    browser signed in through the second; its proxy session and SSO session end all the same."""
    site = site_factory(portals=2, redis_url=redis_url)
    browser = site.browser()
    second = site.portals[1]
    site.follow_to_hub(browser, site.sign_in(browser, "alice", portal=second))
    assert browser_user(site, browser, second) == "OIDC\\alice@example.com"
    result = site.op.end_sessions("a1b2c3-alice")
    assert all(r["ok"] for r in result["results"]), result
    assert qps_user_sessions(site.emu, "alice@example.com") == []
    assert browser_user(site, browser, second) is None


def test_the_next_user_at_a_shared_workstation_ends_the_previous_users_sessions(
    site_factory: Callable[..., Site],
) -> None:
    """Seed 004 (fast user switching): bob signs in in alice's browser; alice's Qlik
    session ends."""
    site = site_factory()
    browser = site.browser()
    site.follow_to_hub(browser, site.sign_in(browser, "alice"))
    assert qps_user_sessions(site.emu, "alice@example.com")
    browser.op_session = requests.Session()  # type: ignore[attr-defined]  # the provider's session switched user too
    site.follow_to_hub(browser, site.sign_in(browser, "bob"))
    assert qps_user_sessions(site.emu, "alice@example.com") == []
    assert browser_user(site, browser) == "OIDC\\bob@example.com"


def test_a_session_mode_sign_in_ends_the_browsers_proxy_session_from_an_earlier_sign_in(
    site_factory: Callable[..., Site],
) -> None:
    """The browser still carries carol's proxy session cookie from a sign-in the portal no longer
    remembers (a password sign-in, an expired portal session); bob signs in with OIDC in it: carol's
    proxy session ends, bob's is the only one the cookie names."""
    from qlikauth.identity import QlikUser

    site = site_factory(mode="session")
    rec, _ = site.emu.state.add_session(QlikUser("OIDC", "carol@example.com"), "portal", "api")
    browser = site.browser()
    browser.cookies.set("X-Qlik-Session-portal", rec.session_id)
    answer = site.sign_in(browser, "bob")
    assert answer.status_code == 302
    assert qps_user_sessions(site.emu, "carol@example.com") == []
    assert len(qps_user_sessions(site.emu, "bob@example.com")) == 1
    hub = browser.get(site.emu.hub_url_for("portal"), timeout=10)
    assert '<dd id="user">OIDC\\bob@example.com</dd>' in hub.text


def test_next_brings_the_browser_back_to_the_portal_signed_in(
    site_factory: Callable[..., Site],
) -> None:
    site = site_factory()
    browser = site.browser()
    start = browser.get(
        f"{site.portal}/oidc/login", params={"next": "/whoami"}, allow_redirects=False, timeout=10
    )
    got = site.op.sign_in(start.headers["location"], "bob", session=browser.op_session)  # type: ignore[attr-defined]
    before = site.emu.state.tickets_issued
    back = browser.get(
        site.portal + urlsplit(got["url"]).path + "?" + urlsplit(got["url"]).query,
        allow_redirects=False,
        timeout=10,
    )
    assert back.status_code == 302 and back.headers["location"] == "/whoami"
    assert site.emu.state.tickets_issued == before  # no ticket until the user opens Qlik
    assert browser_user(site, browser) == "OIDC\\bob@example.com"
    # /qlik/login (the portal's "open Qlik") then signs the SSO user in with a ticket
    qlik = browser.get(f"{site.portal}/qlik/login", allow_redirects=False, timeout=10)
    assert qlik.status_code == 302 and "qlikTicket=" in qlik.headers["location"]
    hub = browser.get(qlik.headers["location"], timeout=10)
    assert '<dd id="user">OIDC\\bob@example.com</dd>' in hub.text
    # next must be a path of the portal; another host is refused before the provider is asked
    for bad in ("//evil.example/", "https://evil.example/"):
        assert (
            browser.get(
                f"{site.portal}/oidc/login", params={"next": bad}, allow_redirects=False, timeout=10
            ).status_code
            == 400
        )
