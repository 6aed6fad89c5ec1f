"""Chromium drives the hybrid example portal: one sign-in, the same person in the hub and in Qlik
Cloud, one sign-out.

examples/hybrid_portal runs as its own process with the QPS emulator and the emulated Qlik
Cloud tenant (one CA; Chromium trusts the emulators' and the portal's certificates by SPKI
pin). The embed page's qlik-embed-style loader asks the portal for an access token
(``data-get-access-token``) and calls the tenant's ``/api/v1/users/me`` with it, cross-origin.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import requests
from e2e_helpers import sign_in, start_one_command_portal

pytestmark = pytest.mark.browser

ANN = "HYBRID\\ann@example.com"


@pytest.fixture
def hybrid_portal(
    server_process: Any, free_port: int, certs_dir: Path, portal_tls: tuple[Path, Path]
) -> dict[str, Any]:
    proc, log = start_one_command_portal(
        server_process, "examples/hybrid_portal/app.py", free_port, certs_dir, portal_tls
    )
    hub = re.search(r"hub (https://\S+/hub/)", log).group(1)  # type: ignore[union-attr]
    tenant = re.search(r"Qlik Cloud tenant: (https://\S+)", log).group(1)  # type: ignore[union-attr]
    return {
        "base": f"https://localhost:{free_port}",
        "hub": hub,
        "tenant": tenant,
        "ca": str(certs_dir / "root.pem"),
        "log": proc.log_path,
    }


def portal_sign_in(page: Any, base: str, user: str) -> None:
    """From the portal's home page, its "Sign in" link and login form (e2e_helpers.sign_in), back
    home."""
    page.goto(base + "/")
    page.click("#sign-in")
    sign_in(page, page.url, user)
    page.wait_for_url(base + "/")


def embedded_identity(page: Any, base: str) -> dict[str, str]:
    page.goto(base + "/embed")
    page.wait_for_selector("qlik-embed[data-state]")
    assert page.get_attribute("qlik-embed", "data-state") == "ready", page.text_content(
        "qlik-embed"
    )
    return {k: page.text_content(f"#cloud-{k}") for k in ("email", "subject", "groups")}


def token_endpoint(page: Any) -> dict[str, Any]:
    """What the portal's token endpoint answers the page (status, and the token when 200)."""
    return page.evaluate("""async () => {
        const r = await fetch("/qlik/cloud/access-token",
                              {method: "POST", credentials: "same-origin"});
        return {status: r.status, body: await r.text()};
    }""")


def me(portal: dict[str, Any], token: str) -> requests.Response:
    return requests.get(
        portal["tenant"] + "/api/v1/users/me",
        headers={"Authorization": f"Bearer {token}"},
        verify=portal["ca"],
        timeout=10,
    )


def test_one_sign_in_one_person_in_the_hub_and_in_qlik_cloud_one_sign_out(
    chromium: Any, hybrid_portal: dict[str, Any], artifacts_dir: Path
) -> None:
    base, hub = hybrid_portal["base"], hybrid_portal["hub"]
    a, b = chromium.new_context(), chromium.new_context()
    try:
        pa, pb = a.new_page(), b.new_page()
        portal_sign_in(pa, base, "ann")
        assert pa.text_content("#qseow-user") == ANN
        assert pa.text_content("#cloud-identity") == "ann@example.com (realm HYBRID)"

        # the client-managed hub: the same person, with the groups as attributes
        pa.click("#open-qlik")
        pa.wait_for_url(hub + "**")
        assert pa.text_content("#user") == ANN
        assert sorted(pa.text_content("#attributes").split("group=")[1:]) == ["Finance", "Sales"]
        pa.screenshot(path=str(artifacts_dir / "hybrid-hub-ann.png"))

        # Qlik Cloud: the embed page's token fetch yields /api/v1/users/me as the same person
        cloud = embedded_identity(pa, base)
        assert cloud == {
            "email": "ann@example.com",
            "subject": "ann@example.com",
            "groups": "Sales, Finance",
        }
        pa.screenshot(path=str(artifacts_dir / "hybrid-embed-ann.png"))
        answer = token_endpoint(pa)
        assert answer["status"] == 200
        token = answer["body"]
        assert me(hybrid_portal, token).json()["email"] == "ann@example.com"

        # another site's page cannot read the token (the hub's origin is another origin)
        pa.goto(hub)
        cross = pa.evaluate(
            """async (url) => {
            try { const r = await fetch(url, {method: "POST", credentials: "include"});
            return "read " + r.status; }
            catch (e) { return "blocked"; }
        }""",
            base + "/qlik/cloud/access-token",
        )
        assert cross == "blocked"

        # ben, in another browser, is signed in to the hub too
        portal_sign_in(pb, base, "ben")
        pb.click("#open-qlik")
        pb.wait_for_url(hub + "**")
        assert pb.text_content("#user") == "HYBRID\\ben@example.com"

        # one sign-out ends everything of ann's
        pa.goto(base + "/")
        pa.click("#sign-out")
        pa.wait_for_url(base + "/")
        assert pa.query_selector("#nobody") is not None
        assert me(hybrid_portal, token).status_code == 401  # the cloud token is revoked
        assert token_endpoint(pa)["status"] == 401  # and the endpoint refuses
        pa.goto(hub)  # no hub session: back to the portal's login
        assert pa.url.startswith(base + "/login"), pa.url
        pa.goto(base + "/embed")
        assert pa.url.startswith(base + "/login"), pa.url
        # ben's sessions are his own: still in the hub and in Qlik Cloud
        pb.reload()
        assert pb.text_content("#user") == "HYBRID\\ben@example.com"
        assert embedded_identity(pb, base)["groups"] == "Marketing"
        assert token not in Path(hybrid_portal["log"]).read_text()  # never logged
    finally:
        a.close()
        b.close()
