"""Chromium signs in at the SAML IdP's login page, lands on the hub as the mapped user, and single
logout ends it.

The SSO example portal (examples/sso_portal) runs as its own process with its emulator and its
pysaml2 IdP; Chromium trusts the emulator's and the portal's certificates by SPKI pin.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import start_one_command_portal

pytestmark = pytest.mark.browser


@pytest.fixture
def sso_portal(
    server_process: Any, free_port: int, certs_dir: Path, portal_tls: tuple[Path, Path]
) -> dict[str, str]:
    _proc, log = start_one_command_portal(
        server_process, "examples/sso_portal/run.py", free_port, certs_dir, portal_tls
    )
    hub = re.search(r"hub (https://\S+)", log).group(1)  # type: ignore[union-attr]
    idp = re.search(r"SAML IdP (https://\S+)", log).group(1)  # type: ignore[union-attr]
    return {"base": f"https://localhost:{free_port}", "hub": hub, "idp": idp}


def idp_sign_in(page: Any, user: str) -> None:
    page.wait_for_selector("#username")
    page.fill("#username", user)
    page.fill("#password", "demo")
    page.click("#submit")
    page.wait_for_load_state("load")


def test_saml_sign_in_lands_on_the_hub_and_single_logout_ends_it(
    chromium: Any, sso_portal: dict[str, str], artifacts_dir: Path
) -> None:
    base, hub, idp = sso_portal["base"], sso_portal["hub"], sso_portal["idp"]
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        for page, user in ((pa, "alice"), (pb, "bob")):
            page.goto(base + "/")
            page.click("#sign-in")
            assert page.url.startswith(idp + "/sso?SAMLRequest=")
            idp_sign_in(page, user)
            page.wait_for_url(hub + "**")
        assert pa.text_content("#user") == "SSO\\alice@example.com"
        assert pa.text_content("#attributes").count(
            "group="
        ) == 2 and "group=Finance" in pa.text_content("#attributes")
        assert pb.text_content("#user") == "SSO\\bob@example.com"
        assert pb.text_content("#attributes") == "group=Marketing"
        pa.screenshot(path=str(artifacts_dir / "sso-saml-hub-alice.png"))
        # SP-initiated single logout from the portal: Qlik session, portal session and IdP
        # session end
        pa.goto(base + "/")
        assert pa.text_content("#portal-user") == "SSO\\alice@example.com"
        pa.click("#sign-out")
        pa.wait_for_url(base + "/")
        assert "Nobody is signed in" in pa.content()
        pa.goto(
            hub
        )  # no hub session any more: the module sends the browser to the IdP, which asks again
        assert pa.url.startswith(idp + "/sso?SAMLRequest=") and pa.query_selector("#username")
        # bob is still signed in to the hub
        pb.reload()
        assert pb.text_content("#user") == "SSO\\bob@example.com"
        # IdP-initiated single logout for bob: the IdP sends his browser to the portal's SLO URL
        pb.goto(f"{idp}/logout?user=bob&sp_slo={base}/qlik/saml/slo")
        pb.wait_for_load_state("load")
        assert pb.url.startswith(idp + "/slo?SAMLResponse=") and "signed out" in pb.content()
        pb.goto(hub)
        assert pb.url.startswith(idp + "/sso?SAMLRequest=")
        pb.goto(base + "/")
        assert "Nobody is signed in" in pb.content()
    finally:
        a.close()
        b.close()


def test_a_hub_visit_without_a_session_goes_through_the_idp_and_back(
    chromium: Any, sso_portal: dict[str, str]
) -> None:
    hub, idp = sso_portal["hub"], sso_portal["idp"]
    c = chromium.new_context()
    try:
        page = c.new_page()
        page.goto(hub + "stream/x")
        assert page.url.startswith(idp + "/sso?SAMLRequest=")
        idp_sign_in(page, "carol")
        # Back at /qlik/module from the IdP's page: a navigation another site started, so no
        # ticket is minted without the user's click (another site could use up her sessions)
        page.wait_for_selector("#qlikauth-continue-submit")
        page.click("#qlikauth-continue-submit")
        page.wait_for_url(hub + "stream/x**")
        assert page.text_content("#user") == "SSO\\carol@example.com"
        assert page.text_content("#attributes") == ""
    finally:
        c.close()
