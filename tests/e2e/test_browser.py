"""Real Chromium signs in on each example portal and lands on the emulator's hub as the
right user."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import sign_in

pytestmark = pytest.mark.browser


def test_flask_portal_in_chromium(
    chromium: Any, flask_portal: tuple[Any, str], artifacts_dir: Path
) -> None:
    emu, base = flask_portal
    hub = emu.hub_url_for("portal")
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        ticket_urls: list[str] = []
        pa.on(
            "request", lambda req: ticket_urls.append(req.url) if "qlikTicket=" in req.url else None
        )
        # two users at the same time, each in their own context
        sign_in(pa, f"{base}/login", "alice")
        sign_in(pb, f"{base}/login", "bob")
        assert pa.url.startswith(hub) and pb.url.startswith(hub)
        assert pa.text_content("#user") == "PORTAL\\alice"
        assert pb.text_content("#user") == "PORTAL\\bob"
        assert pa.text_content("#attributes").count(
            "group="
        ) == 2 and "group=Finance" in pa.text_content("#attributes")
        assert pb.text_content("#attributes") == "group=Marketing"
        pa.screenshot(path=str(artifacts_dir / "flask-portal-hub-alice.png"))
        pa.reload()
        assert (
            pa.text_content("#user") == "PORTAL\\alice"
            and pb.text_content("#user") == "PORTAL\\bob"
        )
        # the same ticket URL a second time signs nobody in (fresh context, no cookies)
        assert ticket_urls
        c = chromium.new_context()
        try:
            pc = c.new_page()
            pc.goto(ticket_urls[0])
            # a spent ticket sends the browser back to the authentication module (the
            # portal's login)
            assert not pc.query_selector("#user") and "qlikTicket" not in pc.url
        finally:
            c.close()
        # a hub visit without a session goes through /qlik/module to the portal's login page
        d = chromium.new_context()
        try:
            pd = d.new_page()
            pd.goto(hub + "stream/x")
            assert pd.url.startswith(f"{base}/login")
            sign_in(pd, pd.url, "carol")
            assert (
                pd.url.startswith(hub + "stream/x") and pd.text_content("#user") == "PORTAL\\carol"
            )
        finally:
            d.close()
        # logout: the hub is signed out for alice, bob stays signed in
        pa.goto(base + "/")
        pa.click("#logout")
        pa.wait_for_load_state("load")
        pa.goto(hub)
        assert not pa.url.startswith(hub) and pa.query_selector("#user") is None
        pb.reload()
        assert pb.text_content("#user") == "PORTAL\\bob"
        # "Sign out of Qlik Sense only": a POST from the portal's page (Chromium sends Origin,
        # flask_qlikauth checks it) ends bob's proxy sessions; bob stays signed in to the portal.
        from qlikauth import QlikUser

        assert emu.state.sessions("portal", QlikUser("PORTAL", "bob"))
        pb.goto(base + "/")
        pb.click("#qlik-logout")
        pb.wait_for_load_state("load")
        assert pb.url == base + "/" and pb.text_content("#signed-in").startswith("Signed in as bob")
        assert emu.state.sessions("portal", QlikUser("PORTAL", "bob")) == []
    finally:
        a.close()
        b.close()


def test_django_portal_mashup_in_chromium(
    chromium: Any, django_portal: tuple[Any, str], artifacts_dir: Path
) -> None:
    """The hub inside the mashup page's iframe is signed in as the portal's user.

    The portal is served over https (issued from the emulator's CA), so portal and hub are the
    same site (https + localhost; ports do not count) and the proxy session cookie reaches the
    framed hub. Chromium trusts both certificates by SPKI pin only.
    """
    emu, base = django_portal
    hub = emu.hub_url_for("mashup")
    assert base.startswith("https://localhost:") and hub.startswith("https://localhost:")
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        hub_answers: list[tuple[str, dict[str, str]]] = []
        pa.on(
            "response",
            lambda r: hub_answers.append((r.url, r.headers)) if r.url.startswith(hub) else None,
        )
        sign_in(pa, f"{base}/accounts/login/?next=/mashup/", "alice")
        sign_in(pb, f"{base}/accounts/login/?next=/mashup/", "bob")
        assert pa.url == f"{base}/mashup/" and pb.url == f"{base}/mashup/"
        [cookie] = [c for c in a.cookies() if c["name"] == "X-Qlik-Session-mashup"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax"  # same site
        assert cookie["domain"] == "localhost"  # host-only: sent to every port of localhost
        assert pa.query_selector("iframe#qlik").get_attribute("src") == hub
        # Inside the iframe: the hub saw the cookie and shows the signed-in user and attributes.
        fa, fb = pa.frame_locator("iframe#qlik"), pb.frame_locator("iframe#qlik")
        assert fa.locator("#user").text_content(timeout=10_000) == "PORTAL\\alice"
        assert fb.locator("#user").text_content(timeout=10_000) == "PORTAL\\bob"
        attrs_a = fa.locator("#attributes").text_content()
        assert "group=Finance" in attrs_a and "group=Sales" in attrs_a
        assert fb.locator("#attributes").text_content() == "group=Marketing"
        # The hub does not forbid framing (Qlik's hub can be framed where the site allows it).
        assert hub_answers
        for _, headers in hub_answers:
            assert "x-frame-options" not in headers
            assert "frame-ancestors" not in headers.get("content-security-policy", "")
        pa.screenshot(path=str(artifacts_dir / "django-portal-mashup-alice.png"))
        before = emu.state.qps_requests
        for _ in range(3):
            pa.reload()
            assert pa.text_content("#signed-in").startswith("Signed in as alice")
            assert fa.locator("#user").text_content(timeout=10_000) == "PORTAL\\alice"
        assert emu.state.qps_requests == before  # signed-in page views: zero QPS calls
        # logout ends the proxy session: the hub no longer knows alice; bob is untouched
        pa.click("#logout")
        pa.wait_for_load_state("load")
        pa.goto(hub)
        # no module URI on this virtual proxy: Qlik's internal module, the form login for
        # Linux Chromium
        assert (
            pa.query_selector("#user") is None
            and "/mashup/internal_forms_authentication/?targetId=" in pa.url
        )
        assert pa.query_selector('input[name="pwd"]') is not None
        pb.reload()
        assert fb.locator("#user").text_content(timeout=10_000) == "PORTAL\\bob"
    finally:
        a.close()
        b.close()
