"""Chromium signs in at the OpenID provider's login page and lands on the emulator hub as the mapped
user; a back-channel logout from the provider then ends the hub session in that browser."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .site import Site, qps_user_sessions

pytestmark = pytest.mark.browser


def test_chromium_signs_in_at_the_provider_and_is_signed_out_by_backchannel(
    chromium: Any, site_factory: Any, artifacts_dir: Path
) -> None:
    site: Site = site_factory()
    hub = site.emu.hub_url_for("portal")
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(f"{site.portal}/oidc/login")
        assert page.url.startswith(site.op.issuer + "/interaction/"), page.url
        page.fill("#username", "alice")
        page.fill("#password", "alice-pw")
        page.click("#submit")
        page.wait_for_url(f"{hub}**")
        assert page.text_content("#user") == "OIDC\\alice@example.com"
        assert "group=Finance" in (page.text_content("#security") or "")
        page.screenshot(path=str(artifacts_dir / "oidc-hub-alice.png"))
        cookies = {c["name"]: c for c in context.cookies()}
        assert (
            "__Host-qlikauth-oidc" not in cookies
        )  # the binding cookie was cleared at the callback
        # the portal's and Qlik's cookies are browser-session cookies (seed 004: shared
        # workstations)
        ours = [cookies[n] for n in ("session", "X-Qlik-Session-portal")]
        assert all(c["expires"] == -1 for c in ours), ours
        # the provider ends alice's session: it POSTs a logout_token to the portal
        result = site.op.end_sessions("a1b2c3-alice")
        assert result["results"] and all(r["ok"] for r in result["results"]), result
        assert qps_user_sessions(site.emu, "alice@example.com") == []
        page.reload()
        assert page.query_selector("#user") is None
        # no module URI on this virtual proxy: Qlik's internal module, the form login for
        # Linux Chromium
        assert "/portal/internal_forms_authentication/?targetId=" in page.url
        page.goto(f"{site.portal}/")
        assert page.query_selector("#anonymous") is not None
        page.screenshot(path=str(artifacts_dir / "oidc-after-backchannel-logout.png"))
    finally:
        context.close()
