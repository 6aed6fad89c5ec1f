"""Fixtures for the OpenID Connect tests: a real OpenID provider (oidc-provider on node) and
helpers.

* ``op`` (module): the provider (tests/peers/op_peer.py) with three registered clients, one per
  client authentication method, all redirecting to ``RP_BASE`` and posting back-channel
  logouts to the ``logout_sink``;
* ``logout_sink`` (module): an https endpoint that records what the provider POSTs to it;
* ``rp_factory``: ``make(**settings)`` builds an :class:`OidcRelyingParty` for ``op``;
* ``site_factory``: ``make(portals=1, mode="ticket", ...)`` starts an emulator, a provider and
  Flask portal processes (tests/oidc/oidc_flask_portal.py) over https: a :class:`~.site.Site`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import free_port_number, skip_or_fail

PEERS = Path(__file__).resolve().parent.parent / "peers"
if str(PEERS) not in sys.path:
    sys.path.insert(0, str(PEERS))

from op_peer import (  # noqa: E402
    LogoutSink,
    OpenIDProvider,
    new_rsa_jwk,
    node_available,
    private_key_of,
    public_jwk,
)

from .site import SECRET, Site, portal_env, web_client  # noqa: E402

RP_BASE = "https://localhost:8443"
REDIRECT_URI = f"{RP_BASE}/oidc/callback"


@pytest.fixture(scope="module")
def logout_sink(portal_tls: tuple[Path, Path]) -> Iterator[LogoutSink]:
    sink = LogoutSink(portal_tls)
    yield sink
    sink.close()


@pytest.fixture(scope="module")
def client_key() -> dict[str, Any]:
    """The portal's own key for private_key_jwt (private JWK)."""
    return new_rsa_jwk("portal-key-1")


def clients_for(
    backchannel: str,
    client_key: dict[str, Any],
    redirect_uri: str = REDIRECT_URI,
    base: str = RP_BASE,
) -> list[dict[str, Any]]:
    common = {
        "redirect_uris": [redirect_uri],
        "post_logout_redirect_uris": [f"{base}/", f"{base}/signed-out"],
        "backchannel_logout_uri": backchannel,
        "backchannel_logout_session_required": True,
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    return [
        {
            "client_id": "portal-basic",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            **common,
        },
        {
            "client_id": "portal-post",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            **common,
        },
        {
            "client_id": "portal-pkjwt",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "RS256",
            "jwks": {"keys": [public_jwk(client_key)]},
            **common,
        },
    ]


def start_op(
    certs_dir: Path, clients: list[dict[str, Any]], tls: tuple[Path, Path] | None = None
) -> OpenIDProvider:
    """Start the provider (``tls``: serve that certificate, e.g. the one Chromium pins)."""
    why = node_available()
    if why:
        skip_or_fail(why)
    return OpenIDProvider(certs_dir, clients=clients, tls=tls).start()


@pytest.fixture(scope="module")
def op(
    certs_dir: Path, logout_sink: LogoutSink, client_key: dict[str, Any]
) -> Iterator[OpenIDProvider]:
    provider = start_op(certs_dir, clients_for(logout_sink.url, client_key))
    yield provider
    provider.stop()


def pem_of(jwk: dict[str, Any]) -> str:
    from cryptography.hazmat.primitives import serialization

    return (
        private_key_of(jwk)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@pytest.fixture
def rp_factory(op: OpenIDProvider, client_key: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    from qlikauth.bridges.oidc import OidcRelyingParty, OidcSettings
    from qlikauth.store import MemoryStore

    made: list[Any] = []

    def make(provider: OpenIDProvider | None = None, store: Any = None, **kw: Any) -> Any:
        p = provider or op
        kw.setdefault("client_id", "portal-basic")
        if kw["client_id"] == "portal-pkjwt":
            kw.setdefault("token_endpoint_auth_method", "private_key_jwt")
            kw.setdefault("client_private_key", pem_of(client_key))
            kw.setdefault("client_key_id", client_key["kid"])
        else:
            kw.setdefault("client_secret", SECRET)
            kw.setdefault(
                "token_endpoint_auth_method",
                "client_secret_post" if kw["client_id"] == "portal-post" else "client_secret_basic",
            )
        kw.setdefault("redirect_uri", REDIRECT_URI)
        kw.setdefault("ca_bundle", p.ca_bundle)
        kw.setdefault("scopes", ("openid", "email", "profile", "groups"))
        rp = OidcRelyingParty(
            OidcSettings(issuer=p.issuer, **kw), store if store is not None else MemoryStore()
        )
        made.append(rp)
        return rp

    yield make
    for rp in made:
        rp.close()


@pytest.fixture
def site_factory(
    emulator_factory: Any,
    server_process: Any,
    certs_dir: Path,
    portal_tls: tuple[Path, Path],
    free_port: int,
) -> Iterator[Callable[..., Site]]:
    made: list[Any] = []

    def make(
        *,
        portals: int = 1,
        mode: str = "ticket",
        extra_oidc: dict[str, Any] | None = None,
        redis_url: str | None = None,
    ) -> Site:
        ports = [free_port] + [free_port_number() for _ in range(portals - 1)]
        from qlikauth.emulator import VirtualProxy

        emu = emulator_factory(
            virtual_proxies=[
                VirtualProxy(prefix="portal", method=mode if mode == "session" else "ticket")
            ]
        )
        op = start_op(certs_dir, [web_client(ports)], tls=portal_tls)
        made.append(op)
        for port in ports:
            server_process(
                [sys.executable, str(Path(__file__).resolve().parent / "oidc_flask_portal.py")],
                port,
                portal_env(
                    emu, op, port, portal_tls, mode=mode, extra_oidc=extra_oidc, redis_url=redis_url
                ),
                scheme="https",
                cafile=Path(emu.certs_dir) / "root.pem",
            )
        return Site(emu, op, [f"https://localhost:{p}" for p in ports])

    yield make
    for op in made:
        op.stop()
