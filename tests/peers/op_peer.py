"""Start and drive the OpenID provider test peer (tests/peers/oidc-provider, panva's oidc-provider).

:class:`OpenIDProvider` runs ``node provider.mjs`` on a free loopback port over https (its
certificate issued by the same QMC-style CA as the emulator's, so one ``root.pem`` trusts
both), and gives the tests what a real provider cannot: its signing keys (to forge altered
tokens with PyJWT), key rotation on demand, and "send a back-channel logout now".

Used by ``tests/oidc`` fixtures, the Chromium test, the SSO example portal's OIDC mode and
the bench; nothing in ``qlikauth/`` imports it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

PEER_DIR = Path(__file__).resolve().parent / "oidc-provider"

#: The accounts the provider knows by default: username -> (password, claims).
DEFAULT_ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "password": "alice-pw",
        "claims": {
            "sub": "a1b2c3-alice",
            "email": "alice@example.com",
            "email_verified": True,
            "name": "Alice Andersen",
            "preferred_username": "alice",
            "groups": ["Finance", "Clinicians"],
        },
    },
    "bob": {
        "password": "bob-pw",
        "claims": {
            "sub": "d4e5f6-bob",
            "email": "bob@example.com",
            "email_verified": True,
            "name": "Bob Berg",
            "preferred_username": "bob",
            "groups": ["Marketing"],
        },
    },
}


def node_available() -> str | None:
    """Why the peer cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (Debian package 'nodejs')"
    if not (PEER_DIR / "node_modules" / "oidc-provider").is_dir():
        return (
            "the npm test peer is not installed: run scripts/bootstrap.sh --test (npm ci in "
            f"{PEER_DIR})"
        )
    return None


def new_rsa_jwk(kid: str | None = None, alg: str = "RS256") -> dict[str, Any]:
    """A fresh RSA-2048 private JWK (PyJWT's encoding) with ``kid``, ``alg`` and ``use``."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwt.algorithms import RSAAlgorithm

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)  # providers publish "use": "sig", not the private key's key_ops
    jwk.update(kid=kid or f"rsa-{secrets.token_hex(4)}", alg=alg, use="sig")
    return jwk


def new_ec_jwk(kid: str | None = None) -> dict[str, Any]:
    """A fresh P-256 private JWK for ES256."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)
    jwk.update(kid=kid or f"ec-{secrets.token_hex(4)}", alg="ES256", use="sig")
    return jwk


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The public half of a private JWK."""
    return {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


def private_key_of(jwk: Mapping[str, Any]) -> Any:
    """The ``cryptography`` private key of a private JWK."""
    from jwt.algorithms import ECAlgorithm, RSAAlgorithm

    alg = RSAAlgorithm if jwk["kty"] == "RSA" else ECAlgorithm
    return alg.from_jwk(json.dumps(dict(jwk)))


class OpenIDProvider:
    """A running oidc-provider on ``https://{host}:{port}`` (see the module docstring).

    :param certs_dir: a QMC-style certificate directory (``root.pem`` + ``root_key.pem``) whose
        CA issues the provider's server certificate; relying parties trust ``root.pem``.
    :param clients: client metadata (oidc-provider's names); see :meth:`client`.
    """

    def __init__(
        self,
        certs_dir: Path | str,
        *,
        host: str = "localhost",
        clients: Sequence[Mapping[str, Any]] = (),
        accounts: Mapping[str, Mapping[str, Any]] | None = None,
        keys: Sequence[Mapping[str, Any]] | None = None,
        tls: tuple[Path | str, Path | str] | None = None,
    ) -> None:
        self.certs_dir = Path(certs_dir)
        self.host = host
        self.clients = [dict(c) for c in clients]
        self.accounts = {k: dict(v) for k, v in (accounts or DEFAULT_ACCOUNTS).items()}
        self.keys = [dict(k) for k in keys] if keys else [new_rsa_jwk()]
        self.admin_token = secrets.token_urlsafe(24)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.ca_bundle = str(self.certs_dir / "root.pem")
        #: (certificate, key) to serve, e.g. one a browser already pins; else one is
        #: issued by the CA.
        self.tls = tls

    # -- lifecycle ------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> OpenIDProvider:
        """Start node and wait for ``READY <port>``."""
        from qlikauth.certgen import issue_server_certificate

        self._dir = tempfile.TemporaryDirectory(prefix="qlikauth-op-")
        work = Path(self._dir.name)
        if self.tls is not None:
            cert, key = Path(self.tls[0]), Path(self.tls[1])
        else:
            cert, key = work / "op.pem", work / "op_key.pem"
            issue_server_certificate(self.certs_dir, ["localhost", "127.0.0.1"], cert, key)
        settings = {
            "host": self.host,
            "bind": "127.0.0.1",
            "tls": {"cert": str(cert), "key": str(key)},
            "admin_token": self.admin_token,
            "cookie_keys": [secrets.token_urlsafe(32)],
            "keys": self.keys,
            "clients": self.clients,
            "accounts": self.accounts,
        }
        settings_path = work / "settings.json"
        settings_path.write_text(json.dumps(settings))
        settings_path.chmod(0o600)
        self.log_path = work / "provider.log"
        env = {**os.environ, "NODE_EXTRA_CA_CERTS": self.ca_bundle, "NODE_ENV": "production"}
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own test peer
                ["node", str(PEER_DIR / "provider.mjs"), str(settings_path)],
                cwd=str(PEER_DIR),
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            line = self._proc.stdout.readline()
            if line.startswith(b"READY "):
                self.port = int(line.split()[1])
                return self
            if not line and self._proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(
            f"the OpenID provider did not start: {line!r}\n{self.log_text()[-3000:]}"
        )

    def log_text(self) -> str:
        """What the provider wrote to stderr (errors, back-channel results)."""
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, AttributeError):
            return ""

    def stop(self) -> None:
        """Stop node (its process group) and remove the temporary directory."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                self._proc.wait(timeout=5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self._proc.wait(timeout=5)
        if self._proc is not None and self._proc.stdout is not None:
            self._proc.stdout.close()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> OpenIDProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts ------------------------------------------------------------------------
    @property
    def issuer(self) -> str:
        """The issuer identifier (also the discovery base)."""
        return f"https://{self.host}:{self.port}"

    @property
    def signing_jwk(self) -> dict[str, Any]:
        """The private JWK the provider signs with now (the first key)."""
        return self.keys[0]

    def _admin(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        resp = requests.post(
            f"{self.issuer}/__admin/{path}",
            json=dict(body),
            timeout=10,
            headers={"x-admin-token": self.admin_token},
            verify=self.ca_bundle,
        )
        resp.raise_for_status()
        return dict(resp.json())

    # -- changes ----------------------------------------------------------------------
    def set_clients(self, clients: Sequence[Mapping[str, Any]]) -> None:
        """Replace the registered clients (a relying party's URLs are known only once it runs)."""
        self.clients = [dict(c) for c in clients]
        self._admin("configure", {"clients": self.clients})

    def add_client(self, client: Mapping[str, Any]) -> None:
        """Register one more client (replacing one with the same client_id)."""
        self.set_clients(
            [c for c in self.clients if c["client_id"] != client["client_id"]] + [dict(client)]
        )

    def rotate_keys(
        self, new: Mapping[str, Any] | None = None, *, keep_old: bool = True
    ) -> dict[str, Any]:
        """Sign with a new key from now on (the old one stays published unless ``keep_old`` is
        false)."""
        jwk = dict(new) if new is not None else new_rsa_jwk()
        self.keys = [jwk, *self.keys] if keep_old else [jwk]
        self._admin("configure", {"keys": self.keys})
        return jwk

    def backchannel_logout(self, client_id: str, sub: str, sid: str | None) -> dict[str, Any]:
        """Make the provider POST a real logout_token to the client's backchannel_logout_uri now."""
        return self._admin("backchannel-logout", {"client_id": client_id, "sub": sub, "sid": sid})

    def end_sessions(self, sub: str) -> dict[str, Any]:
        """End every provider session of ``sub``, with back-channel logout to each client in it."""
        return self._admin("end-session", {"sub": sub})

    # -- forging (refusal tests) -------------------------------------------------------
    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        headers: Mapping[str, Any] | None = None,
        jwk: Mapping[str, Any] | None = None,
        algorithm: str | None = None,
    ) -> str:
        """A JWT signed with the provider's current key (or ``jwk``), by PyJWT."""
        import jwt

        key = dict(jwk or self.signing_jwk)
        hdr = {"kid": key["kid"], **(headers or {})}
        return jwt.encode(
            dict(claims), private_key_of(key), algorithm=algorithm or key["alg"], headers=hdr
        )

    # -- a browser-less sign-in (requests) ----------------------------------------------
    def sign_in(
        self,
        authorize_url: str,
        username: str,
        password: str | None = None,
        *,
        session: requests.Session | None = None,
    ) -> dict[str, Any]:
        """Follow ``authorize_url`` through the login page as a browser would; stop at the RP.

        Returns ``{"url": the redirect to the relying party, "params": its query}`` for
        response_mode=query, or ``{"url": form action, "params": form fields, "form_post": True}``
        for form_post. ``session`` keeps the provider's cookies (a second sign-in of the same
        browser then skips the login page).
        """
        s = session or requests.Session()
        s.trust_env = False
        s.verify = self.ca_bundle
        url = authorize_url
        for _ in range(10):
            resp = s.get(url, allow_redirects=False, timeout=10)
            if resp.is_redirect:
                nxt = urljoin(url, resp.headers["location"])
                if not nxt.startswith(self.issuer):
                    return {
                        "url": nxt,
                        "params": {k: v[0] for k, v in parse_qs(urlsplit(nxt).query).items()},
                    }
                url = nxt
                continue
            if 'id="login"' in resp.text:
                pw = password if password is not None else self.accounts[username]["password"]
                action = urljoin(url, _attr(resp.text, "form", "action"))
                resp = s.post(
                    action,
                    data={"username": username, "password": pw},
                    allow_redirects=False,
                    timeout=10,
                )
                if not resp.is_redirect:
                    raise AssertionError(
                        f"login refused by the provider: {resp.status_code} {resp.text[:300]}"
                    )
                url = urljoin(action, resp.headers["location"])
                continue
            if "<form" in resp.text and 'method="post"' in resp.text.lower():
                return {
                    "url": _attr(resp.text, "form", "action"),
                    "params": _hidden_fields(resp.text),
                    "form_post": True,
                }
            raise AssertionError(f"unexpected provider page {resp.status_code}: {resp.text[:500]}")
        raise AssertionError("too many redirects at the provider")


def _attr(html: str, tag: str, attr: str) -> str:
    import html as html_mod
    import re

    m = re.search(rf"<{tag}\b[^>]*\b{attr}=\"([^\"]*)\"", html, re.I)
    if not m:
        raise AssertionError(f"no {tag} {attr} in page: {html[:300]}")
    return html_mod.unescape(m.group(1))


def _hidden_fields(html: str) -> dict[str, str]:
    import html as html_mod
    import re

    out = {}
    for tag in re.findall(r"<input\b[^>]*>", html, re.I):
        name = re.search(r"name=\"([^\"]*)\"", tag)
        value = re.search(r"value=\"([^\"]*)\"", tag)
        if name:
            out[html_mod.unescape(name.group(1))] = (
                html_mod.unescape(value.group(1)) if value else ""
            )
    return out


class LogoutSink:
    """An https server recording each POST body (the provider's back-channel logout calls):
    ``received`` the bodies, ``tokens`` their ``logout_token`` values; answers ``status``."""

    def __init__(self, tls: tuple[Path, Path]) -> None:
        received: list[dict[str, str]] = []
        self.received = received
        self.tokens: list[str] = []
        tokens = self.tokens
        self.status = 200

        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode()
                received.append({k: v[0] for k, v in parse_qs(body).items()})
                tokens.extend(parse_qs(body).get("logout_token", []))
                self.send_response(sink.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://localhost:{self.server.server_address[1]}/backchannel"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
