"""The emulated tenant: its configuration, its state and its TLS server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import shutil
import ssl
import tempfile
from collections.abc import Iterable
from pathlib import Path

from ...certgen import generate_certificates
from ...exceptions import CertificateError
from .._web import asgi_app
from ..serving import BackgroundServer
from .config import JwtIdentityProvider, OAuthClientConfig, WebIntegration
from .handler import TenantHandler
from .state import CloudTenantState

log = logging.getLogger("qlikauth.emulator.cloud")


class CloudTenant:
    """An emulated Qlik Cloud tenant on a local TLS port.

    :param certs_dir: a directory with ``root.pem``, ``server.pem``, ``server_key.pem``;
        ``None`` generates them into a temporary directory (removed on :meth:`stop`).
    :param jwt_idps, oauth_clients, web_integrations: the tenant's configuration.
    :param token_lifetime: seconds an access token lives (Qlik: 6 hours).
    :param jwt_login_rate: ``/login/jwt-session`` calls a minute (Qlik: 100; None: no limit).
    :param token_rate, token_rate_window: ``/oauth/token`` calls per client per window
        (Qlik: 100 a minute; None: no limit); beyond it 429 with ``Retry-After``.
    :param max_tokens_per_user: live access tokens a user may hold; one more request answers 403
        (Qlik has such a maximum; its value is not published, so None: no maximum).
    """

    def __init__(
        self,
        certs_dir: str | Path | None = None,
        *,
        host: str = "localhost",
        bind: str = "127.0.0.1",
        port: int = 0,
        jwt_idps: Iterable[JwtIdentityProvider] = (),
        oauth_clients: Iterable[OAuthClientConfig] = (),
        web_integrations: Iterable[WebIntegration] = (),
        token_lifetime: float = 21600.0,
        jwt_login_rate: int | None = 100,
        tenant_id: str | None = None,
        token_rate: int | None = 100,
        token_rate_window: float = 60.0,
        max_tokens_per_user: int | None = None,
    ) -> None:
        self.host, self.bind, self._want_port = host, bind, int(port)
        self._given = Path(certs_dir) if certs_dir is not None else None
        self._tmp: str | None = None
        self.jwt_idps: list[JwtIdentityProvider] = list(jwt_idps)
        self.oauth_clients: dict[str, OAuthClientConfig] = {c.client_id: c for c in oauth_clients}
        self.web_integrations: dict[str, WebIntegration] = {w.id: w for w in web_integrations}
        self.token_lifetime = float(token_lifetime)
        self.jwt_login_rate = jwt_login_rate
        self.token_rate = token_rate
        self.token_rate_window = float(token_rate_window)
        self.max_tokens_per_user = max_tokens_per_user
        self.tenant_id = tenant_id or secrets.token_urlsafe(24)
        self.state = CloudTenantState(self.tenant_id)
        self._sig_key = secrets.token_bytes(32)
        self._server: BackgroundServer | None = None
        self._certs: Path | None = None

    # -- configuration at run time ---------------------------------------------------
    def add_jwt_idp(self, idp: JwtIdentityProvider) -> None:
        """Add a JWT identity provider."""
        self.jwt_idps = [*self.jwt_idps, idp]

    def add_oauth_client(self, client: OAuthClientConfig) -> None:
        """Add (or replace) an OAuth client."""
        self.oauth_clients = {**self.oauth_clients, client.client_id: client}

    def add_web_integration(self, wi: WebIntegration) -> None:
        """Add (or replace) a web integration."""
        self.web_integrations = {**self.web_integrations, wi.id: wi}

    def token_valid(self, access_token: str) -> bool:
        """Would the tenant accept ``access_token`` now (not expired, not revoked)?"""
        return self.state.token_valid(access_token)

    def sign(self, value: str) -> str:
        """The ``.sig`` cookie value for ``value`` (the tenant's cookie signature)."""
        return (
            base64.urlsafe_b64encode(hmac.new(self._sig_key, value.encode(), hashlib.sha1).digest())
            .rstrip(b"=")
            .decode()
        )

    # -- running ---------------------------------------------------------------------
    def start(self) -> CloudTenant:
        """Bind the port and serve; returns self."""
        if self._server is not None:
            return self
        d = self._given
        if d is None:
            self._tmp = tempfile.mkdtemp(prefix="qlikauth-cloud-")
            d = Path(self._tmp)
        if not (d / "root.pem").exists():
            generate_certificates(d, list(dict.fromkeys([self.host, self.bind])))
        self._certs = d
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
        except (OSError, ssl.SSLError) as exc:
            self.stop()
            raise CertificateError(
                f"cannot load {d / 'server.pem'}: {exc}", path=str(d / "server.pem")
            ) from None
        ctx.set_alpn_protocols(["http/1.1"])
        server = BackgroundServer(
            asgi_app(TenantHandler(self), name="cloud"),
            ctx,
            bind=self.bind,
            port=self._want_port,
            name="cloud",
        )
        try:
            server.start()
        except BaseException:
            self.stop()
            raise
        self._server = server
        log.info("emulated Qlik Cloud tenant at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and remove generated certificates. Idempotent."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> CloudTenant:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._server is None:
            raise RuntimeError("the tenant is not running")
        return self._server.port

    @property
    def url(self) -> str:
        """``https://localhost:PORT`` (the tenant URL)."""
        return f"https://{self.host}:{self.port}"

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL (the ``aud`` of private_key_jwt assertions)."""
        return self.url + "/oauth/token"

    @property
    def root_pem(self) -> Path:
        """The CA that signed the tenant's certificate (pass it as ``verify=``)."""
        if self._certs is None:
            raise RuntimeError("the tenant is not running")
        return self._certs / "root.pem"
