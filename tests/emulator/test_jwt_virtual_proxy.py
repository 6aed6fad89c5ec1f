"""A real engine websocket through the emulated QSEoW JWT virtual proxy, driven by qlikauth's
JwtAuthenticator.

Since November 2024: the JWT makes the session; the websocket carries the session cookie, the
CSRF token from /qps/csrftoken and an allowed Origin, and no Authorization header.
"""

from __future__ import annotations

import json
import ssl

import pytest
import websocket

from qlikauth import QlikUser
from qlikauth.authenticators.jwt import JwtAuthenticator
from qlikauth.emulator import Emulator, VirtualProxy
from qlikauth.exceptions import QlikEndpointHTTPError
from qlikauth.jwtkeys import SigningKey

KEY = SigningKey.generate("RS256")
USER = QlikUser("ACME", "jdoe", [("group", "Sales"), ("group", "Finance")])


@pytest.fixture
def emu():
    vp = VirtualProxy(
        "jwt",
        method="jwt",
        jwt_certificate=KEY.certificate_pem(),
        jwt_user_id_attribute="uid",
        jwt_user_directory_attribute="dir",
    )
    with Emulator(virtual_proxies=[vp]) as e:
        yield e


@pytest.fixture
def auth(emu):
    a = JwtAuthenticator(
        KEY,
        f"{emu.hub_url}/jwt/",
        user_id_claim="uid",
        user_directory_claim="dir",
        verify=emu.certs_dir / "root.pem",
    )
    yield a
    a.close()


def _ws(emu, url, headers):
    return websocket.create_connection(
        url,
        timeout=5,
        header=[f"{k}: {v}" for k, v in headers.items()],
        sslopt={"ca_certs": str(emu.certs_dir / "root.pem"), "cert_reqs": ssl.CERT_REQUIRED},
    )


def test_websocket_with_the_csrf_token_succeeds(emu, auth):
    signed = auth.sign_in(USER)
    assert signed.qlik_user["userId"] == "jdoe" and signed.cookie.name == "X-Qlik-Session-jwt"
    rec = emu.state.session(signed.session_id, "jwt")
    assert rec is not None and rec.user.attributes == USER.attributes
    csrf = auth.csrf_token(signed.session_id)
    ws = _ws(emu, auth.engine_url("app-1", csrf), auth.websocket_headers(signed.session_id))
    try:
        hello = json.loads(ws.recv())
        assert hello["user"] == "ACME\\jdoe" and hello["app"] == "app-1"
        assert hello["attributes"] == [{"group": "Sales"}, {"group": "Finance"}]
    finally:
        ws.close()


def test_websocket_without_the_csrf_token_is_refused_403(emu, auth):
    signed = auth.sign_in(USER)
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        _ws(emu, auth.engine_url("app-1", None), auth.websocket_headers(signed.session_id))
    assert exc.value.status_code == 403


def test_websocket_that_still_sends_authorization_is_refused(emu, auth):
    signed = auth.sign_in(USER)
    csrf = auth.csrf_token(signed.session_id)
    headers = dict(
        auth.websocket_headers(signed.session_id), Authorization=f"Bearer {auth.mint(USER)}"
    )
    with pytest.raises(websocket.WebSocketBadStatusException) as exc:
        _ws(emu, auth.engine_url("app-1", csrf), headers)
    assert exc.value.status_code == 403  # the token made a new session the CSRF token is not for


def test_jwt_proxy_refuses_bad_tokens(emu, auth):
    other = JwtAuthenticator(
        SigningKey.generate("RS256"),
        f"{emu.hub_url}/jwt/",
        user_id_claim="uid",
        user_directory_claim="dir",
        verify=emu.certs_dir / "root.pem",
    )
    with pytest.raises(QlikEndpointHTTPError) as exc:
        other.sign_in(USER)  # signed by a key the proxy's certificate does not hold
    assert exc.value.status_code == 401
    wrong_names = JwtAuthenticator(KEY, f"{emu.hub_url}/jwt/", verify=emu.certs_dir / "root.pem")
    with pytest.raises(QlikEndpointHTTPError) as exc:
        wrong_names.sign_in(USER)  # userId/userDirectory, but the proxy reads uid/dir
    assert exc.value.status_code == 401
    expired = JwtAuthenticator(
        KEY,
        f"{emu.hub_url}/jwt/",
        user_id_claim="uid",
        user_directory_claim="dir",
        verify=emu.certs_dir / "root.pem",
    )
    import requests

    r = requests.get(
        f"{emu.hub_url}/jwt/qps/user",
        verify=str(emu.certs_dir / "root.pem"),
        timeout=5,
        headers={"Authorization": f"Bearer {expired.mint(USER, now=1_000_000_000)}"},
    )
    assert r.status_code == 401


def test_cli_spec_for_a_jwt_virtual_proxy(tmp_path):
    from qlikauth.emulator.cli import parse_virtual_proxy

    cert = KEY.certificate_pem()
    (tmp_path / "jwt.pem").write_text(cert)
    vp = parse_virtual_proxy(
        f"prefix=jwt,method=jwt,jwt_cert={tmp_path / 'jwt.pem'},jwt_user_id=uid,"
        "jwt_user_directory=dir"
    )
    assert (vp.method, vp.jwt_user_id_attribute, vp.jwt_user_directory_attribute) == (
        "jwt",
        "uid",
        "dir",
    )
    assert vp.jwt_certificate == cert
    from qlikauth.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="jwt_certificate"):
        parse_virtual_proxy("prefix=jwt,method=jwt")


def test_csrf_token_goes_through_qlikauth_engine_with_the_proxy_ca(emu, auth, monkeypatch):
    """JwtAuthenticator uses qlikauth.engine's helpers (one copy), over its own verified channel."""
    from qlikauth import engine
    from qlikauth.exceptions import QlikEndpointError

    calls = []
    real = engine.fetch_csrf_token

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr("qlikauth.authenticators.jwt.fetch_csrf_token", spy)
    signed = auth.sign_in(USER)
    assert (
        auth.csrf_token(signed.session_id) == emu.state.session(signed.session_id, "jwt").csrf_token
    )
    assert calls and calls[0]["verify"] == str(emu.certs_dir / "root.pem")
    with pytest.raises(QlikEndpointError, match="not valid on this virtual proxy"):
        auth.csrf_token("no-such-session")
    assert auth.engine_url("a b", "t/k") == engine.engine_websocket_url(
        auth.proxy_url, "a b", "t/k"
    )


def _get(emu, token):
    import requests

    return requests.get(
        f"{emu.hub_url}/jwt/qps/user",
        verify=str(emu.certs_dir / "root.pem"),
        timeout=5,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_a_token_not_valid_yet_is_refused(emu, auth):
    import time

    import jwt as pyjwt

    now = int(time.time())
    claims = {"uid": "jdoe", "dir": "ACME", "iat": now, "nbf": now + 600, "exp": now + 900}
    early = pyjwt.encode(claims, KEY.private_pem(), algorithm="RS256")
    r = _get(emu, early)
    assert r.status_code == 401 and "nbf" in r.text
    assert emu.state.sessions("jwt") == []
    ok = pyjwt.encode({**claims, "nbf": now - 5}, KEY.private_pem(), algorithm="RS256")
    assert _get(emu, ok).json()["userId"] == "jdoe"


def test_the_same_token_keeps_one_session(emu, auth):
    token = auth.mint(USER)
    answers = [_get(emu, token) for _ in range(8)]  # more than the five parallel sessions
    assert all(r.status_code == 200 and r.json()["userId"] == "jdoe" for r in answers)
    assert len(emu.state.sessions("jwt")) == 1
    cookies = {r.cookies.get("X-Qlik-Session-jwt") for r in answers} - {None}
    assert cookies == {emu.state.sessions("jwt")[0].session_id}
    # another token makes another session (a new sign-in)
    import time

    assert _get(emu, auth.mint(USER, now=time.time() + 2)).status_code == 200
    assert len(emu.state.sessions("jwt")) == 2
