"""The pieces of an OIDC test site: the emulator, the provider and portal processes (tests/oidc)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

#: The client secret every test client is registered with.
SECRET = "s3cret-" + "x" * 40


class Site:
    """The emulator, the provider and one or more portal processes registered with it."""

    def __init__(self, emu: Any, op: Any, portals: list[str]) -> None:
        self.emu, self.op, self.portals = emu, op, portals
        self.ca = str(Path(emu.certs_dir) / "root.pem")

    @property
    def portal(self) -> str:
        return self.portals[0]

    def browser(self) -> requests.Session:
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca
        s.op_session = requests.Session()  # type: ignore[attr-defined]  # the browser's cookies at the provider
        return s

    def sign_in(
        self,
        browser: requests.Session,
        user: str = "alice",
        portal: str | None = None,
        target: str | None = None,
    ) -> requests.Response:
        """Portal login -> provider login page -> portal callback; returns the callback's answer."""
        base = portal or self.portal
        start = browser.get(
            f"{base}/oidc/login",
            params={"target": target} if target else None,
            allow_redirects=False,
            timeout=10,
        )
        assert start.status_code == 302, start.text[:300]
        answer = self.op.sign_in(start.headers["location"], user, session=browser.op_session)  # type: ignore[attr-defined]
        callback = answer["url"]
        callback = (
            base
            + urlsplit(callback).path
            + ("?" + urlsplit(callback).query if urlsplit(callback).query else "")
        )
        if answer.get("form_post"):
            return browser.post(callback, data=answer["params"], allow_redirects=False, timeout=10)
        return browser.get(callback, allow_redirects=False, timeout=10)

    def follow_to_hub(
        self, browser: requests.Session, answer: requests.Response
    ) -> requests.Response:
        assert answer.status_code == 302, answer.text[:500]
        location = answer.headers["location"]
        assert location.startswith(self.emu.hub_url_for("portal")), location
        return browser.get(location, timeout=10)


_SITE_STORE_KEY = "site:" + "c2l0ZS1zdG9yZS1rZXktZm9yLXRoZS10ZXN0cy0zMmI"


def portal_env(
    emu: Any,
    op: Any,
    port: int,
    tls: tuple[Path, Path],
    *,
    mode: str = "ticket",
    extra_oidc: dict[str, Any] | None = None,
    redis_url: str | None = None,
) -> dict[str, str]:
    oidc = {
        "ISSUER": op.issuer,
        "CLIENT_ID": "portal-web",
        "CLIENT_SECRET": SECRET,
        "REDIRECT_URI": f"https://localhost:{port}/oidc/callback",
        "CA_BUNDLE": op.ca_bundle,
        "SCOPES": "openid email profile groups",
        "POST_LOGOUT_REDIRECT_URI": f"https://localhost:{port}/",
        **(extra_oidc or {}),
    }
    env = {
        "PORTAL_PORT": str(port),
        "PORTAL_TLS_CERT": str(tls[0]),
        "PORTAL_TLS_KEY": str(tls[1]),
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("portal"),
        "QLIKAUTH_VIRTUAL_PROXY": "portal",
        "QLIKAUTH_MODE": mode,
        "QLIKAUTH_OIDC": json.dumps(oidc),
        "PORTAL_SECRET_KEY": "one-site-one-secret-" + "k" * 32,
    }
    if redis_url:
        env["QLIKAUTH_STATE_STORE"] = redis_url
        # a shared store keeps proxy session ids sealed: every portal of the site has the keys
        env["QLIKAUTH_STORE_KEYS"] = _SITE_STORE_KEY
    return env


def web_client(ports: list[int], *, form_post: bool = False) -> dict[str, Any]:
    return {
        "client_id": "portal-web",
        "client_secret": SECRET,
        "token_endpoint_auth_method": "client_secret_basic",
        "redirect_uris": [f"https://localhost:{p}/oidc/callback" for p in ports],
        "post_logout_redirect_uris": [f"https://localhost:{p}/" for p in ports],
        # one back-channel URI per client: the first portal's (the shared store tells the others)
        "backchannel_logout_uri": f"https://localhost:{ports[0]}/oidc/backchannel-logout",
        "backchannel_logout_session_required": True,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }


def qps_user_sessions(emu: Any, user_id: str) -> list[Any]:
    """The emulator's live proxy sessions (virtual proxy ``portal``) of ``user_id``."""
    return [s for s in emu.state.sessions("portal") if s.user.user_id == user_id]
