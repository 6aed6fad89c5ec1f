"""qlikauth's local OpenID provider (qlikauth.emulator.oidc_op) against qlikauth's relying party,
with PyJWT as the independent check of what it signs.

The full code flow with PKCE (login page, code, token endpoint, id_token verified by the relying
party), single sign-on on the provider's session and ``prompt=login``, what the provider refuses
(an unregistered redirect or post-logout URI, no PKCE, a wrong verifier, a code used twice, a
wrong client secret), and back-channel logout to a registered client verified by the relying
party.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urljoin, urlsplit

import jwt
import pytest
import requests

from qlikauth.bridges.oidc import OidcRelyingParty, OidcSettings
from qlikauth.emulator.oidc_op import DEMO_USERS, OidcProvider
from qlikauth.exceptions import OidcError
from qlikauth.store import MemoryStore

CALLBACK = "http://127.0.0.1:9/cb"  # never served: the test reads the code from the redirect
SECRET = "portal-secret-" + "x" * 20


class _Receiver(BaseHTTPRequestHandler):
    got: list[str] = []

    def log_message(self, *a: Any) -> None:
        return

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        type(self).got.append(dict(parse_qsl(body)).get("logout_token", ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    got: list[str] = []
    handler = type("Receiver", (_Receiver,), {"got": got})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/oidc/backchannel-logout", got
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def op(receiver: tuple[str, list[str]]) -> Iterator[OidcProvider]:
    client = {
        "client_id": "portal",
        "client_secret": SECRET,
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": ["http://127.0.0.1:9/logged-out"],
        "backchannel_logout_uri": receiver[0],
    }
    with OidcProvider(host="127.0.0.1", clients=[client]) as provider:
        yield provider


def _rp(op: OidcProvider, **kw: Any) -> OidcRelyingParty:
    settings = OidcSettings(
        issuer=op.issuer,
        client_id="portal",
        client_secret=SECRET,
        redirect_uri=CALLBACK,
        scopes=("openid", "email", "profile", "groups"),
        post_logout_redirect_uri="http://127.0.0.1:9/logged-out",
        cookie_secure=False,
        cookie_name="qlikauth-oidc",
        **kw,
    )
    return OidcRelyingParty(settings, MemoryStore())


class Browser:
    def __init__(self) -> None:
        self.http = requests.Session()
        self.http.trust_env = False

    def authorize(self, url: str, user: str | None = "alice", password: str = "demo") -> Any:
        r = self.http.get(url, allow_redirects=False, timeout=10)
        if r.status_code == 302 or user is None:
            return r
        assert 'id="login"' in r.text, r.text[:300]
        action = html.unescape(re.search(r'action="([^"]+)"', r.text).group(1))  # type: ignore[union-attr]
        return self.http.post(
            urljoin(url, action),
            data={"username": user, "password": password},
            allow_redirects=False,
            timeout=10,
        )


def _code_params(r: Any) -> dict[str, str]:
    assert r.status_code == 302, r.text[:300]
    location = r.headers["Location"]
    assert location.startswith(CALLBACK + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def test_the_relying_party_signs_in_with_pkce_and_pyjwt_verifies_the_id_token(
    op: OidcProvider,
) -> None:
    rp = _rp(op)
    start = rp.begin(None, "/home")
    assert "code_challenge_method=S256" in start.url
    login = rp.complete(start.cookie.value, _code_params(Browser().authorize(start.url)))
    alice = DEMO_USERS["alice"].claims
    assert login.subject == alice["sub"] and login.claims["email"] == "alice@example.com"
    assert (
        login.claims["groups"] == ["Sales", "Finance"] and login.sid and login.next_url == "/home"
    )
    jwks = jwt.PyJWKClient(op.issuer + "/jwks")
    key = jwks.get_signing_key_from_jwt(login.id_token)
    claims = jwt.decode(
        login.id_token, key.key, algorithms=["RS256"], audience="portal", issuer=op.issuer
    )
    assert claims["sid"] == login.sid and claims["email_verified"] is True


def test_the_provider_session_is_single_sign_on_unless_prompt_login(op: OidcProvider) -> None:
    rp, b = _rp(op), Browser()
    first = rp.begin(None)
    rp.complete(first.cookie.value, _code_params(b.authorize(first.url)))
    again = rp.begin(first.cookie.value)
    r = b.http.get(again.url, allow_redirects=False, timeout=10)  # no login page: the session
    assert rp.complete(first.cookie.value, _code_params(r)).claims["email"] == "alice@example.com"
    forced = rp.begin(first.cookie.value, force_reauth=True)  # prompt=login, max_age=0
    page = b.http.get(forced.url, allow_redirects=False, timeout=10)
    assert page.status_code == 200 and 'id="login"' in page.text


def test_what_the_provider_refuses(op: OidcProvider) -> None:
    rp, b = _rp(op), Browser()
    start = rp.begin(None)
    q = dict(parse_qsl(urlsplit(start.url).query))
    auth = op.issuer + "/auth?"
    evil = b.http.get(
        auth + urlencode({**q, "redirect_uri": "https://evil.example/cb"}),
        allow_redirects=False,
        timeout=10,
    )
    assert evil.status_code == 400 and "Location" not in evil.headers  # never sent off-site
    no_pkce = {k: v for k, v in q.items() if not k.startswith("code_challenge")}
    assert b.http.get(auth + urlencode(no_pkce), timeout=10).status_code == 400
    params = _code_params(b.authorize(start.url))
    token = op.issuer + "/token"
    form = {"grant_type": "authorization_code", "code": params["code"], "redirect_uri": CALLBACK}
    wrong_secret = b.http.post(
        token, data={**form, "code_verifier": "x" * 43}, auth=("portal", "wrong"), timeout=10
    )
    assert wrong_secret.status_code == 401
    wrong_verifier = b.http.post(
        token, data={**form, "code_verifier": "x" * 43}, auth=("portal", SECRET), timeout=10
    )
    assert wrong_verifier.json()["error"] == "invalid_grant"
    # the code was used up by the attempt above: the real verifier no longer helps either
    with pytest.raises(OidcError):
        rp.complete(start.cookie.value, params)
    end = b.http.get(
        op.issuer
        + "/session/end?"
        + urlencode({"post_logout_redirect_uri": "https://evil.example/"}),
        allow_redirects=False,
        timeout=10,
    )
    assert end.status_code == 400 and "Location" not in end.headers


def test_rp_initiated_logout_ends_the_session_and_tells_the_client_by_back_channel(
    op: OidcProvider, receiver: tuple[str, list[str]]
) -> None:
    rp, b = _rp(op), Browser()
    start = rp.begin(None)
    login = rp.complete(start.cookie.value, _code_params(b.authorize(start.url)))
    url = rp.logout_url(login.id_token, "/bye")
    assert url is not None and url.startswith(op.issuer + "/session/end?")
    r = b.http.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 302 and r.headers["Location"].startswith(
        "http://127.0.0.1:9/logged-out?state="
    )
    assert rp.logout_return(dict(parse_qsl(urlsplit(r.headers["Location"]).query))) == "/bye"
    got = receiver[1]
    assert len(got) == 1
    event = rp.validate_logout_token(got[0])  # the relying party's own checks, key from the JWKS
    assert (event.subject, event.sid) == (login.subject, login.sid)
    assert op.sessions == {}
    again = rp.begin(start.cookie.value)  # the provider session is gone: the login page again
    assert 'id="login"' in b.http.get(again.url, allow_redirects=False, timeout=10).text


def test_an_administrator_ends_every_session_of_a_user(
    op: OidcProvider, receiver: tuple[str, list[str]]
) -> None:
    rp = _rp(op)
    logins = []
    for _ in range(2):  # two browsers
        start = rp.begin(None)
        logins.append(rp.complete(start.cookie.value, _code_params(Browser().authorize(start.url))))
    assert [o for _, o in op.end_sessions_of("alice")] == ["200", "200"]
    sids = {rp.validate_logout_token(t).sid for t in receiver[1]}
    assert sids == {login.sid for login in logins}


def test_the_commands_serve_both_local_identity_providers(
    server_process: Any, free_port: int, tmp_path: Any
) -> None:
    import os
    import sys

    from _support import free_port_number

    env = {
        "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path]),
        "QLIKAUTH_OIDC_CLIENT_SECRET": SECRET,
    }
    cmd = [
        sys.executable,
        "-m",
        "qlikauth.cli",
        "oidc-idp",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port),
        "--redirect-uri",
        CALLBACK,
    ]
    proc = server_process(cmd, free_port, env, ready_path="/.well-known/openid-configuration")
    issuer = f"http://127.0.0.1:{free_port}"
    assert (
        requests.get(issuer + "/.well-known/openid-configuration", timeout=10).json()["issuer"]
        == issuer
    )
    out = open(proc.log_path).read()
    assert f"OpenID provider {issuer}" in out and SECRET not in out  # the secret is never printed
    rp = OidcRelyingParty(
        OidcSettings(
            issuer=issuer,
            client_id="portal",
            client_secret=SECRET,
            redirect_uri=CALLBACK,
            cookie_secure=False,
            cookie_name="qlikauth-oidc",
        ),
        MemoryStore(),
    )
    start = rp.begin(None)
    assert rp.complete(start.cookie.value, _code_params(Browser().authorize(start.url))).subject

    port = free_port_number()
    md = tmp_path / "idp.xml"
    saml = [
        sys.executable,
        "-m",
        "qlikauth.cli",
        "saml-idp",
        "--port",
        str(port),
        "--metadata-out",
        str(md),
    ]
    server_process(saml, port, env, ready_path="/metadata")
    assert (
        "IDPSSODescriptor" in md.read_text()
        and "IDPSSODescriptor" in requests.get(f"http://localhost:{port}/metadata", timeout=10).text
    )
