"""Real Chromium signs in on each example portal and lands on the emulator's hub as the right user."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from test_example_portals import flask_portal, django_portal  # noqa: E402,F401  (fixtures)

pytestmark = pytest.mark.browser


def sign_in(page: Any, url: str, user: str) -> None:
    page.goto(url)
    page.fill("#username", user)
    page.fill("#password", "demo")
    page.click("#submit")
    page.wait_for_load_state("load")


def test_flask_portal_in_chromium(chromium: Any, flask_portal: tuple[Any, str], artifacts_dir: Path) -> None:
    emu, base = flask_portal
    hub = emu.hub_url_for("portal")
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        ticket_urls: list[str] = []
        pa.on("request", lambda req: ticket_urls.append(req.url) if "qlikTicket=" in req.url else None)
        # two users at the same time, each in their own context
        sign_in(pa, f"{base}/login", "alice")
        sign_in(pb, f"{base}/login", "bob")
        assert pa.url.startswith(hub) and pb.url.startswith(hub)
        assert pa.text_content("#user") == "PORTAL\\alice"
        assert pb.text_content("#user") == "PORTAL\\bob"
        assert pa.text_content("#attributes").count("group=") == 2 and "group=Finance" in pa.text_content("#attributes")
        assert pb.text_content("#attributes") == "group=Marketing"
        pa.screenshot(path=str(artifacts_dir / "flask-portal-hub-alice.png"))
        pa.reload()
        assert pa.text_content("#user") == "PORTAL\\alice" and pb.text_content("#user") == "PORTAL\\bob"
        # the same ticket URL a second time signs nobody in (fresh context, no cookies)
        assert ticket_urls
        c = chromium.new_context()
        try:
            pc = c.new_page()
            pc.goto(ticket_urls[0])
            assert "Access denied" in pc.content() and not pc.query_selector("#user")
        finally:
            c.close()
        # a hub visit without a session goes through /qlik/module to the portal's login page
        d = chromium.new_context()
        try:
            pd = d.new_page()
            pd.goto(hub + "stream/x")
            assert pd.url.startswith(f"{base}/login")
            sign_in(pd, pd.url, "carol")
            assert pd.url.startswith(hub + "stream/x") and pd.text_content("#user") == "PORTAL\\carol"
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
    finally:
        a.close()
        b.close()


def test_django_portal_mashup_in_chromium(chromium: Any, django_portal: tuple[Any, str], artifacts_dir: Path) -> None:
    emu, base = django_portal
    hub = emu.hub_url_for("mashup")
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        sign_in(pa, f"{base}/accounts/login/?next=/mashup/", "alice")
        sign_in(pb, f"{base}/accounts/login/?next=/mashup/", "bob")
        assert pa.url == f"{base}/mashup/"
        # the cookie set by http://localhost:PORT reaches the cross-site https hub iframe:
        # SameSite=None; Secure accepted from http://localhost (a secure context for Chromium)
        [cookie] = [c for c in a.cookies() if c["name"] == "X-Qlik-Session-mashup"]
        assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "None"
        assert pa.query_selector("iframe#qlik").get_attribute("src") == hub
        # The hub in a top-level page carries the cookie: each user sees only themselves.
        # (Inside the iframe Chromium treats the cookie as third-party: http://localhost and
        # https://localhost are different sites under schemeful same-site, and current Chromium
        # blocks third-party cookies; a real deployment serves portal and hub over https on one site.)
        ha, hb = a.new_page(), b.new_page()
        ha.goto(hub)
        hb.goto(hub)
        assert ha.text_content("#user") == "PORTAL\\alice"
        assert hb.text_content("#user") == "PORTAL\\bob"
        assert "group=Finance" in ha.text_content("#attributes")
        assert hb.text_content("#attributes") == "group=Marketing"
        ha.screenshot(path=str(artifacts_dir / "django-portal-hub-alice.png"))
        pa.screenshot(path=str(artifacts_dir / "django-portal-mashup-alice.png"))
        before = emu.state.qps_requests
        for _ in range(3):
            pa.reload()
            assert pa.text_content("#signed-in").startswith("Signed in as alice")
        assert emu.state.qps_requests == before  # signed-in page views: zero QPS calls
        # logout ends the proxy session: the hub no longer knows alice; bob is untouched
        pa.click("#logout")
        pa.wait_for_load_state("load")
        pa.goto(hub)
        assert pa.query_selector("#user") is None and "Not signed in" in pa.content()
        pb.goto(hub)
        assert pb.text_content("#user") == "PORTAL\\bob"
    finally:
        a.close()
        b.close()
