"""Discovery and settings: issuer equality, https only, Entra's {tenantid} issuer, refused settings.

The Entra case is served by a small https server of our own (the certified provider cannot
publish a templated issuer): discovery and JWKS shaped like Microsoft's, tokens signed by PyJWT.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from op_peer import new_rsa_jwk, private_key_of, public_jwk  # noqa: E402

from qlikauth.bridges.oidc import OidcRelyingParty, OidcSettings
from qlikauth.exceptions import ConfigurationError, OidcError
from qlikauth.store import MemoryStore

TENANT_A = "11111111-2222-3333-4444-555555555555"
TENANT_B = "99999999-8888-7777-6666-555555555555"


class MetadataServer:
    """Serves /v2.0/.well-known/openid-configuration and /keys over https."""

    def __init__(self, tls: tuple[Path, Path], issuer_template: str) -> None:
        self.key = new_rsa_jwk("entra-key")
        self.docs: dict[str, Any] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                doc = server.docs.get(self.path)
                body = json.dumps(doc).encode()
                self.send_response(200 if doc is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.base = f"https://localhost:{self.httpd.server_address[1]}"
        self.issuer = issuer_template.format(base=self.base)
        self.docs["/organizations/v2.0/.well-known/openid-configuration"] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.base}/authorize",
            "token_endpoint": f"{self.base}/token",
            "jwks_uri": f"{self.base}/keys",
            "code_challenge_methods_supported": ["plain", "S256"],
        }
        self.docs["/keys"] = {"keys": [public_jwk(self.key)]}
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def token(self, tid: str, **extra: Any) -> str:
        import jwt

        now = int(time.time())
        claims = {
            "iss": f"{self.base}/{tid}/v2.0",
            "tid": tid,
            "aud": "app-id",
            "sub": "s-1",
            "iat": now,
            "exp": now + 600,
            "nonce": "n",
            **extra,
        }
        return jwt.encode(claims, private_key_of(self.key), "RS256", headers={"kid": "entra-key"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def entra(portal_tls: tuple[Path, Path]) -> Iterator[MetadataServer]:
    server = MetadataServer(portal_tls, "{base}/{{tenantid}}/v2.0")
    yield server
    server.close()


def entra_rp(server: MetadataServer, certs_dir: Path, tenants: tuple[str, ...]) -> OidcRelyingParty:
    return OidcRelyingParty(
        OidcSettings(
            issuer=server.issuer,
            discovery_url=f"{server.base}/organizations/v2.0/.well-known/openid-configuration",
            tenants=tenants,
            client_id="app-id",
            client_secret="x",
            redirect_uri="https://localhost:8443/cb",
            ca_bundle=str(certs_dir / "root.pem"),
        ),
        MemoryStore(),
    )


def test_entra_multi_tenant_issuer(entra: MetadataServer, certs_dir: Path) -> None:
    rp = entra_rp(entra, certs_dir, (TENANT_A,))
    assert "{tenantid}" in rp.metadata().issuer
    claims = rp.validate_id_token(entra.token(TENANT_A), nonce="n")
    assert claims["iss"] == f"{entra.base}/{TENANT_A}/v2.0"
    cases = {
        "tenant": entra.token(TENANT_B),  # another tenant
        "issuer": entra.token(
            TENANT_A, iss=f"{entra.base}/{TENANT_B}/v2.0"
        ),  # iss of another tenant
    }
    for reason, token in cases.items():
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(token, nonce="n")
        assert info.value.code == reason
    no_tid = entra.token(TENANT_A)
    import jwt

    claims = jwt.decode(no_tid, options={"verify_signature": False})
    claims.pop("tid")
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(
            jwt.encode(claims, private_key_of(entra.key), "RS256", headers={"kid": "entra-key"}),
            nonce="n",
        )
    assert info.value.code == "issuer"
    # '*' admits any tenant, still with the iss form checked against the token's own tid
    anyone = entra_rp(entra, certs_dir, ("*",))
    assert anyone.validate_id_token(entra.token(TENANT_B), nonce="n")["tid"] == TENANT_B
    with pytest.raises(OidcError):
        anyone.validate_id_token(
            entra.token(TENANT_A, iss=f"{entra.base}/{TENANT_B}/v2.0"), nonce="n"
        )


def test_discovery_issuer_must_equal_the_configured_one(
    entra: MetadataServer, certs_dir: Path
) -> None:
    doc = entra.docs["/organizations/v2.0/.well-known/openid-configuration"]
    rp = OidcRelyingParty(
        OidcSettings(
            issuer=entra.base + "/organizations/v2.0",
            client_id="app-id",
            client_secret="x",
            redirect_uri="https://localhost:8443/cb",
            ca_bundle=str(certs_dir / "root.pem"),
        ),
        MemoryStore(),
    )
    with pytest.raises(OidcError) as info:
        rp.metadata()
    assert info.value.code == "metadata" and "issuer" in str(info.value)
    assert doc["issuer"] != rp.settings.issuer


def test_discovery_endpoints_must_be_https(entra: MetadataServer, certs_dir: Path) -> None:
    doc = entra.docs["/organizations/v2.0/.well-known/openid-configuration"]
    doc["token_endpoint"] = "http://idp.example.com/token"
    rp = entra_rp(entra, certs_dir, (TENANT_A,))
    with pytest.raises(OidcError) as info:
        rp.metadata()
    assert info.value.code == "metadata" and "http" in str(info.value)


def test_discovery_without_s256_is_refused(entra: MetadataServer, certs_dir: Path) -> None:
    entra.docs["/organizations/v2.0/.well-known/openid-configuration"][
        "code_challenge_methods_supported"
    ] = ["plain"]
    with pytest.raises(OidcError) as info:
        entra_rp(entra, certs_dir, (TENANT_A,)).metadata()
    assert "S256" in str(info.value)


BASE = {"client_id": "c", "client_secret": "s", "redirect_uri": "https://portal.example.com/cb"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"issuer": "http://idp.example.com"}, "https"),
        (
            {"issuer": "https://idp.example.com", "redirect_uri": "http://portal.example.com/cb"},
            "https",
        ),
        ({"issuer": "https://idp.example.com", "algorithms": ("none",)}, "refused"),
        ({"issuer": "https://idp.example.com", "algorithms": ("HS256",)}, "HMAC"),
        (
            {"issuer": "https://idp.example.com/.well-known/openid-configuration"},
            "drop /.well-known",
        ),
        ({"issuer": "https://idp.example.com", "prompt": "none"}, "prompt"),
        (
            {"issuer": "https://idp.example.com", "allow_unverified_email": "perhaps"},
            "true or false",
        ),
        ({"issuer": "https://idp.example.com", "algorithms": ()}, "algorithm"),
        ({"issuer": "https://idp.example.com", "leeway": 3600}, "leeway"),
        ({"issuer": "https://idp.example.com", "scopes": ("email",)}, "openid"),
        ({"issuer": "https://idp.example.com", "response_mode": "fragment"}, "form_post"),
        ({"issuer": "https://idp.example.com", "client_secret": None}, "client_secret"),
        (
            {"issuer": "https://idp.example.com", "token_endpoint_auth_method": "private_key_jwt"},
            "client_private_key",
        ),
        (
            {"issuer": "https://idp.example.com", "token_endpoint_auth_method": "none"},
            "token_endpoint_auth_method",
        ),
        ({"issuer": "https://login.microsoftonline.com/{tenantid}/v2.0"}, "discovery_url"),
        (
            {
                "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
                "discovery_url": (
                    "https://login.microsoftonline.com/organizations/v2.0"
                    "/.well-known/openid-configuration"
                ),
            },
            "tenants",
        ),
        ({"issuer": "https://idp.example.com", "tenants": (TENANT_A,)}, "tenantid"),
        ({"issuer": "https://idp.example.com", "ca_bundle": "/nonexistent.pem"}, "ca_bundle"),
        ({"issuer": "https://idp.example.com", "cookie_secure": False}, "__Host-"),
    ],
)
def test_settings_refused(change: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        OidcSettings(**{**BASE, **change})
    assert words in str(info.value)
    assert "s3cret" not in str(info.value)


def test_loopback_http_is_allowed_for_tests() -> None:
    s = OidcSettings(
        issuer="http://127.0.0.1:9000",
        client_id="c",
        client_secret="hush-hush",
        redirect_uri="http://localhost:8000/cb",
        cookie_name="qlikauth-oidc",
        cookie_secure=False,
    )
    assert s.issuer == "http://127.0.0.1:9000"
    assert "hush-hush" not in repr(s)


# -- boolean settings read as QLIKAUTH and QLIKAUTH_SAML read them (qlikauth._parse) ----------
WEB_BASE = {
    "ISSUER": "https://idp.example.com",
    "CLIENT_ID": "c",
    "CLIENT_SECRET": "s3cret",
    "REDIRECT_URI": "https://portal.example.com/cb",
    "COOKIE_NAME": "qlikauth-oidc",
}


@pytest.mark.parametrize("key", ["COOKIE_SECURE", "USERINFO", "FRONTCHANNEL_LOGOUT"])
@pytest.mark.parametrize("value", ["ture", "maybe", "nein"])
def test_a_boolean_oidc_setting_that_is_not_one_is_refused(key: str, value: str) -> None:
    """A typo in COOKIE_SECURE once read as False: the binding cookie silently lost Secure."""
    from qlikauth.web.oidc import OidcWebSettings

    with pytest.raises(ConfigurationError, match=f"OIDC {key}: expected true or false") as info:
        OidcWebSettings.from_mapping({**WEB_BASE, key: value})
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Yes", True),
        (" on ", True),
        ("TRUE", True),
        ("1", True),
        ("0", False),
        ("off", False),
        ("no", False),
        ("", False),
    ],
)
def test_boolean_oidc_settings_read_the_documented_words(value: str, expected: bool) -> None:
    from qlikauth.web.oidc import OidcWebSettings

    s = OidcWebSettings.from_mapping(
        {**WEB_BASE, "USERINFO": value, "COOKIE_SECURE": value, "FRONTCHANNEL_LOGOUT": value}
    )
    assert (
        s.rp.userinfo is expected
        and s.rp.cookie_secure is expected
        and s.frontchannel_logout is expected
    )
