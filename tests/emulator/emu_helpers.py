"""Helpers for the emulator tests: QPS calls with a fresh xrfkey, clients that verify root.pem."""

from __future__ import annotations

import secrets
import string

import requests

_ALNUM = string.ascii_letters + string.digits


def xrf() -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(16))


def api_session(certs) -> requests.Session:
    """A QPS client: client certificate, root.pem as the only trust anchor, no environment."""
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would replace root.pem
    s.verify = str(certs / "root.pem")
    s.cert = (str(certs / "client.pem"), str(certs / "client_key.pem"))
    return s


def browser_session(certs) -> requests.Session:
    """A browser stand-in: verifies the hub against root.pem, no client certificate."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(certs / "root.pem")
    return s


def call(
    s: requests.Session, emu, method: str, path: str, prefix: str = "portal", **kw
) -> requests.Response:
    """One QPS API call with a fresh xrfkey in the query and the header."""
    key = xrf()
    url = f"{emu.rest_uri_for(prefix)}{path}"
    url += ("&" if "?" in url else "?") + f"xrfkey={key}"
    headers = {"X-Qlik-Xrfkey": key, **kw.pop("headers", {})}
    return s.request(method, url, headers=headers, timeout=10, **kw)


def ticket(s, emu, user_id="jdoe", prefix="portal", **extra) -> str:
    r = call(
        s,
        emu,
        "POST",
        "ticket",
        prefix,
        json={
            "UserDirectory": "ACME",
            "UserId": user_id,
            "Attributes": [{"group": "Sales"}, {"group": "Finance"}],
            **extra,
        },
    )
    assert r.status_code == 201, r.text
    return r.json()["Ticket"]
