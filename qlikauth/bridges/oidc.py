"""OpenID Connect relying party: discovery, the code flow with PKCE, id_token and logout_token
checks.

Framework-free. :class:`OidcRelyingParty` turns a browser's callback into verified claims
(:class:`OidcLogin`) that :mod:`qlikauth.mapping` makes into a Qlik user, and a provider's
back-channel ``logout_token`` into a :class:`LogoutEvent`. What it does and why:

* **Discovery** from ``{issuer}/.well-known/openid-configuration`` over https (plain http
  only to a loopback host), cached for ``metadata_ttl``; the document's ``issuer`` must equal
  the configured one. Entra ID's multi-tenant documents say ``.../{tenantid}/v2.0``: that
  form is configured as such, with the tenants allowed, and each token's ``iss`` must equal it
  with the token's ``tid`` put in; the issuer check is never skipped.
* **Code flow with PKCE S256**: ``state``, ``nonce`` and the code verifier are kept in the
  :class:`~qlikauth.store.StateStore` under a hash of ``state``, bound to this browser by a
  random value in a browser-session cookie (SameSite=None, so a ``form_post`` callback still
  carries it) and taken once: a replayed or cross-browser ``state`` is refused. The redirect
  URI comes from the settings, never from the request.
* **Every call to the provider** (discovery, JWKS, token, userinfo) goes through one
  ``requests.Session`` of its own with ``trust_env`` off: requests otherwise lets
  ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace the configured CA bundle and sends tokens
  through proxies from the environment. Timeouts always; redirects never followed; answers
  capped in size; TLS verified (against ``ca_bundle`` when configured).
* **Client authentication** ``client_secret_basic``, ``client_secret_post`` or
  ``private_key_jwt``: an assertion signed (with ``cryptography``, :mod:`qlikauth.jwtkeys`) by
  the portal's key, checked by type and size when the settings are built: RSA of at least
  2048 bits signs RS256, an EC key the ES algorithm of its curve (P-256 ES256, P-384 ES384,
  P-521 ES512).
* **JWT checks** (id_token and logout_token), through :mod:`qlikauth.jose` (joserfc): size
  capped before parsing; compact JWS only (no JWE); ``alg`` from an explicit allowlist of
  asymmetric algorithms (RS, PS, ES; never ``none``, never HMAC); no key taken from the token
  (``jwk``/``jku``/``x5u``/``x5c`` refused) and no ``crit``; the key picked by ``kid`` from the
  provider's JWKS and its type, curve, size, ``use`` and ``alg`` checked against the token's
  ``alg`` before the signature is verified. An unknown ``kid`` refetches the JWKS, at most
  once per ``jwks_refetch_interval`` for each path: id_tokens (which come from the token
  endpoint, over TLS) and logout tokens (which anyone can POST) have separate refetch slots,
  so a forged logout token cannot use up the refetch a real key rotation needs. Then ``iss``
  exact, ``aud`` holding the client id, ``azp`` when there are several audiences,
  ``exp``/``iat``/``nbf`` with a leeway of at most 5 minutes, ``nonce``, ``at_hash`` when the
  access token comes with it, and ``auth_time`` when a fresh sign-in was asked for.
* **Re-authentication**: ``prompt`` (e.g. ``login``) and ``max_age`` settings go into every
  authorization request; with ``max_age`` the id_token's ``auth_time`` must be that recent.
  ``begin(..., force_reauth=True)`` (after an idle cap, on a shared workstation) asks for
  ``prompt=login`` and ``max_age=0`` and refuses an id_token whose ``auth_time`` is older
  than the request: a provider that skipped the password prompt is caught.
* **Unverified e-mail**: an ``email`` the provider does not mark verified (``email_verified``
  false or absent) is listed in :attr:`OidcLogin.unverified`; the claims mapping refuses it
  as the Qlik user id (nOAuth) unless ``allow_unverified_email`` is set for this provider.
* **Logout tokens** (Back-Channel Logout 1.0): the same signature and issuer checks, ``iat``
  required and recent, ``exp`` required, the back-channel ``events`` member, ``sid`` and/or
  ``sub``, no ``nonce``; every check that needs no key runs before the key is looked up; then
  ``jti`` used once, in a replay cache that refuses when full (never evicts a used ``jti``).
* **RP-initiated logout** sends only the registered ``post_logout_redirect_uri`` (a setting);
  where to land afterwards is kept under the logout ``state``, read back with
  :meth:`OidcRelyingParty.logout_return`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import requests

from .._parse import parse_bool
from .._version import __version__
from ..authenticators.base import Cookie
from ..exceptions import ConfigurationError, JwtError, OidcError, RedirectError, StoreFull
from ..mapping import UNVERIFIED
from ..store import MemoryStore, StateStore

try:
    from .. import jose as _jose
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "qlikauth's OpenID Connect support needs joserfc: pip install 'qlikauth[oidc]'"
    ) from exc

__all__ = [
    "OidcSettings",
    "OidcRelyingParty",
    "ProviderMetadata",
    "JwksCache",
    "AuthorizationRequest",
    "OidcLogin",
    "LogoutEvent",
    "SUPPORTED_ALGORITHMS",
    "BACKCHANNEL_LOGOUT_EVENT",
]

log = logging.getLogger("qlikauth.oidc")

#: The signature algorithms qlikauth accepts in id_tokens and logout tokens (asymmetric only).
SUPPORTED_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
)
#: The ``events`` member a back-channel logout token must carry.
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_RESPONSE_MODES = ("query", "form_post")
_MAX_LEEWAY = 300.0
_MAX_RESPONSE_BYTES = 1 << 20
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
_TENANT_PLACEHOLDER = "{tenantid}"
_BROWSER_VALUE = re.compile(r"[A-Za-z0-9_-]{32,128}\Z")
_PROMPTS = ("login", "consent", "select_account")
_WELL_KNOWN = "/.well-known/"
#: joserfc's refusal reasons, in this module's words.
_JOSE_REASONS = {"algorithm": "alg_not_allowed", "key": "jwks", "kid": "unknown_kid"}


def _fail(reason: str, message: str, status: int = 401) -> OidcError:
    err = OidcError(message, code=reason)
    err.status = status
    return err


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_url(url: Any, what: str, *, config: bool = True) -> str:
    """An absolute https URL (http only to a loopback host), no user-info or fragment."""

    def problem(msg: str) -> Exception:
        return (
            ConfigurationError(f"{what}: {msg}")
            if config
            else _fail("metadata", f"{what}: {msg}", 502)
        )

    if not isinstance(url, str) or not url.strip():
        raise problem("missing; give an absolute https URL.")
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise problem(f"{url[:100]!r} cannot be parsed.") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise problem(f"{url[:100]!r} is not an absolute https URL.")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise problem(
            f"{url[:100]!r} uses http: tokens must travel over https (plain http is "
            "accepted only to a loopback host, for tests)."
        )
    if "@" in parts.netloc or parts.fragment:
        raise problem(f"{url[:100]!r} must not carry user information or a fragment.")
    return url


def _is_text(value: Any) -> bool:
    """A non-empty string of Unicode scalar values (JSON can carry lone surrogates: no encoder
    writes them, so a hash, a store key or a header built from one would fail)."""
    if not isinstance(value, str) or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _origin(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"[:120]
    except ValueError:
        return "(an unreadable URL)"


def _short_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"[:200]
    except ValueError:
        return "(an unreadable URL)"


def _b64decode(segment: str, what: str) -> bytes:
    if not _B64URL.match(segment):
        raise _fail("malformed", f"the {what} is not base64url; refused.")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _fail("malformed", f"the {what} is not base64url; refused.") from None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class OidcSettings:
    """One OpenID provider and this portal's registration with it (checked on construction).

    :param issuer: the provider's issuer identifier, e.g. ``https://login.example.com``. For
        Entra ID multi-tenant apps: ``https://login.microsoftonline.com/{tenantid}/v2.0`` with
        ``discovery_url`` set (``.../organizations/v2.0/.well-known/openid-configuration``) and
        ``tenants`` listing the tenant ids allowed (``("*",)`` for any tenant, on purpose).
    :param redirect_uri: the callback URL registered at the provider (this portal's).
    :param token_endpoint_auth_method: ``client_secret_basic`` (default), ``client_secret_post``
        or ``private_key_jwt`` (give ``client_private_key``, a PEM string or a path to one).
    :param algorithms: the id_token signature algorithms accepted (subset of
        :data:`SUPPORTED_ALGORITHMS`); pick the provider's, usually ``("RS256",)``.
    :param leeway: clock skew allowed on ``exp``/``iat``/``nbf``, at most 300 seconds.
    :param ca_bundle: a PEM file of CA certificates for a private provider; default: the system's.
    :param jwks_refetch_interval: the least number of seconds between two JWKS refetches caused
        by an unknown ``kid``.
    :param userinfo: also call the userinfo endpoint and merge its claims.
    :param post_logout_redirect_uri: where the provider sends the browser after RP-initiated
        logout; it must be registered at the provider exactly as written here, and it is the
        only one ever sent (where to go next travels in the logout ``state``).
    :param prompt: sent with every authorization request: ``login`` (ask for the password
        every time: shared workstations), ``consent``, ``select_account``, or several of them
        separated by spaces.
    :param max_age: seconds: the provider's sign-in (``auth_time``) must be at most this old;
        sent as ``max_age`` and checked in the id_token (0: every sign-in asks again).
    :param allow_unverified_email: let an ``email`` the provider does not mark verified
        (``email_verified`` false or absent) be the Qlik user id. Off: such an e-mail never
        decides who signs in (see docs/oidc.md for the stable claim of each provider).
    :param cookie_name: the browser-binding cookie (``__Host-`` prefixed by default).
    """

    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    client_private_key: str | bytes | None = field(default=None, repr=False)
    client_key_id: str | None = None
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    response_mode: str = "query"
    algorithms: tuple[str, ...] = ("RS256",)
    leeway: float = 60.0
    ca_bundle: str | None = None
    timeout: float = 5.0
    discovery_url: str | None = None
    tenants: tuple[str, ...] = ()
    metadata_ttl: float = 3600.0
    jwks_ttl: float = 24 * 3600.0
    jwks_refetch_interval: float = 60.0
    userinfo: bool = False
    post_logout_redirect_uri: str | None = None
    prompt: str | None = None
    max_age: float | None = None
    allow_unverified_email: bool = False
    state_ttl: float = 600.0
    max_token_bytes: int = 16 * 1024
    logout_token_max_age: float = 300.0
    cookie_name: str = "__Host-qlikauth-oidc"
    cookie_secure: bool = True

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        issuer = _check_url(self.issuer, "OIDC issuer")
        if _WELL_KNOWN in urlsplit(issuer).path:
            base = issuer.split(_WELL_KNOWN, 1)[0]
            raise ConfigurationError(
                f"OIDC issuer: {issuer[:120]!r} is the discovery document's URL, not the issuer "
                f"identifier: drop /.well-known/openid-configuration and set {base[:100]!r} (the "
                "'issuer' value inside that document)."
            )
        if urlsplit(issuer).query:
            raise ConfigurationError("OIDC issuer: an issuer identifier has no query string.")
        put("issuer", issuer)
        templated = _TENANT_PLACEHOLDER in issuer
        if templated and not self.discovery_url:
            raise ConfigurationError(
                "OIDC issuer: a {tenantid} issuer (Entra ID multi-tenant) needs discovery_url, "
                "e.g. https://login.microsoftonline.com/organizations/v2.0"
                "/.well-known/openid-configuration."
            )
        tenants = tuple(
            t.strip()
            for t in ([self.tenants] if isinstance(self.tenants, str) else self.tenants)
            if t.strip()
        )
        if templated and not tenants:
            raise ConfigurationError(
                "OIDC tenants: the issuer has {tenantid}, so list the Entra tenant ids allowed to "
                "sign in (or '*' for any tenant, on purpose)."
            )
        if tenants and not templated:
            raise ConfigurationError(
                "OIDC tenants: only meaningful with a {tenantid} issuer (Entra multi-tenant)."
            )
        put("tenants", tenants)
        if self.discovery_url is not None:
            put("discovery_url", _check_url(self.discovery_url, "OIDC discovery_url"))
        if not isinstance(self.client_id, str) or not self.client_id.strip():
            raise ConfigurationError(
                "OIDC client_id: missing; copy the client (application) id from the provider."
            )
        put("redirect_uri", _check_url(self.redirect_uri, "OIDC redirect_uri"))
        if self.post_logout_redirect_uri is not None:
            put(
                "post_logout_redirect_uri",
                _check_url(self.post_logout_redirect_uri, "OIDC post_logout_redirect_uri"),
            )
        method = self.token_endpoint_auth_method
        if method not in _AUTH_METHODS:
            raise ConfigurationError(
                f"OIDC token_endpoint_auth_method: {method!r} is not one of "
                f"{', '.join(_AUTH_METHODS)}."
            )
        if method.startswith("client_secret") and not self.client_secret:
            raise ConfigurationError(
                f"OIDC client_secret: required with {method}; copy it from the provider."
            )
        if method == "private_key_jwt":
            if not self.client_private_key:
                raise ConfigurationError(
                    "OIDC client_private_key: required with private_key_jwt (PEM text or a file "
                    "path)."
                )
            pem = self._load_private_key(self.client_private_key)
            if self.client_key_id is not None and (
                not isinstance(self.client_key_id, str) or not self.client_key_id.strip()
            ):
                raise ConfigurationError(
                    "OIDC client_key_id: the key id registered at the "
                    "provider "
                    "(a non-empty string), or leave it unset."
                )
            _client_signing_key(pem, self.client_key_id)  # refuses weak or unusable keys now
            put("client_private_key", pem)
        scopes = tuple(self.scopes.split() if isinstance(self.scopes, str) else self.scopes)
        if "openid" not in scopes:
            raise ConfigurationError(
                "OIDC scopes: must include 'openid' (without it there is no id_token)."
            )
        put("scopes", scopes)
        if self.response_mode not in _RESPONSE_MODES:
            raise ConfigurationError(
                f"OIDC response_mode: {self.response_mode!r} is not 'query' or 'form_post'."
            )
        algorithms = tuple(
            a.strip()
            for a in ([self.algorithms] if isinstance(self.algorithms, str) else self.algorithms)
        )
        if not algorithms:
            raise ConfigurationError(
                "OIDC algorithms: give the provider's signing algorithm, e.g. RS256."
            )
        for alg in algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ConfigurationError(
                    f"OIDC algorithms: {alg!r} is refused: id_tokens must be signed with the "
                    "provider's "
                    "private key (RS256/ES256 family); 'none' and HMAC would let anyone mint "
                    "tokens."
                )
            if alg not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(
                    f"OIDC algorithms: {alg!r} is not one of {', '.join(SUPPORTED_ALGORITHMS)}."
                )
        put("algorithms", algorithms)
        for name, low, high in (
            ("leeway", 0, _MAX_LEEWAY),
            ("timeout", 0.1, 60),
            ("state_ttl", 30, 3600),
            ("logout_token_max_age", 30, 3600),
            ("metadata_ttl", 0, 7 * 86400),
            ("jwks_ttl", 60, 7 * 86400),
            ("jwks_refetch_interval", 0, 3600),
        ):
            try:
                value = float(getattr(self, name))
            except (TypeError, ValueError):
                raise ConfigurationError(f"OIDC {name}: expected a number of seconds.") from None
            if not low <= value <= high:
                raise ConfigurationError(f"OIDC {name}: must be between {low} and {high} seconds.")
            put(name, value)
        if not 1024 <= int(self.max_token_bytes) <= 256 * 1024:
            raise ConfigurationError("OIDC max_token_bytes: must be between 1 KiB and 256 KiB.")
        if self.ca_bundle is not None and not Path(self.ca_bundle).is_file():
            raise ConfigurationError(
                f"OIDC ca_bundle: {self.ca_bundle!r} is not a file (a PEM bundle of CA "
                "certificates)."
            )
        prompt = self.prompt
        if prompt is not None:
            words = prompt.split() if isinstance(prompt, str) else None
            if not words or any(w not in _PROMPTS for w in words):
                raise ConfigurationError(
                    f"OIDC prompt: {str(prompt)[:40]!r} is not {', '.join(_PROMPTS)} (or "
                    "several of "
                    "them separated by spaces); 'login' asks for the password on every sign-in."
                )
            put("prompt", " ".join(dict.fromkeys(words)))
        if self.max_age is not None:
            try:
                max_age = float(self.max_age)
            except (TypeError, ValueError):
                raise ConfigurationError(
                    "OIDC max_age: expected a number of seconds (0: always sign in again)."
                ) from None
            if not 0 <= max_age <= 30 * 86400 or isinstance(self.max_age, bool):
                raise ConfigurationError(
                    "OIDC max_age: must be between 0 and 2592000 seconds (30 days)."
                )
            put("max_age", max_age)
        for name in ("allow_unverified_email", "userinfo", "cookie_secure"):
            flag = parse_bool(getattr(self, name))
            if flag is None:
                raise ConfigurationError(
                    f"OIDC {name}: expected true or false, got {str(getattr(self, name))[:20]!r}."
                )
            put(name, flag)
        if self.cookie_name.startswith("__Host-") and not self.cookie_secure:
            raise ConfigurationError(
                "OIDC cookie_name: a __Host- cookie needs cookie_secure=True (https)."
            )

    @staticmethod
    def _load_private_key(value: str | bytes) -> bytes:
        from cryptography.hazmat.primitives import serialization

        data = value.encode() if isinstance(value, str) else value
        if b"-----BEGIN" not in data:
            try:
                data = Path(data.decode()).read_bytes()
            except OSError as exc:
                raise ConfigurationError(
                    f"OIDC client_private_key: cannot read the key file: {exc.strerror}."
                ) from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigurationError(
                "OIDC client_private_key: not an unencrypted PEM private key."
            ) from None
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def discovery_document_url(self) -> str:
        """Where the provider's metadata is read."""
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"


#: The ES algorithm of each EC curve (cryptography's curve names).
_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


def _client_signing_key(pem: bytes, kid: str | None) -> Any:
    """The ``private_key_jwt`` signing key: its algorithm from its type and curve, size checked.

    RSA keys (at least 2048 bits) sign RS256; EC keys the ES algorithm of their curve. Any
    other key type is refused: providers take no other assertion algorithm from a client.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from ..jwtkeys import MIN_RSA_BITS, SigningKey

    key = serialization.load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(
                f"OIDC client_private_key: the RSA key has {key.key_size} bits; at least "
                f"{MIN_RSA_BITS} are required (openssl genrsa -out client.pem 3072)."
            )
        alg = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        found = _CURVE_ALGORITHMS.get(key.curve.name)
        if found is None:
            raise ConfigurationError(
                f"OIDC client_private_key: an EC key on {key.curve.name} cannot sign a client "
                "assertion; use P-256 (ES256), P-384 (ES384) or P-521 (ES512)."
            )
        alg = found
    else:
        raise ConfigurationError(
            "OIDC client_private_key: an RSA (2048 bits or more) or EC "
            "(P-256, P-384, P-521) private key is required."
        )
    return SigningKey(key, alg, kid=kid)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the discovery document qlikauth uses (all URLs checked)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    end_session_endpoint: str | None = None
    iss_parameter_supported: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, doc: Any, expected_issuer: str) -> ProviderMetadata:
        """Check a discovery document against the configured issuer."""
        if not isinstance(doc, Mapping):
            raise _fail("metadata", "the provider's discovery document is not a JSON object.", 502)
        if doc.get("issuer") != expected_issuer:
            raise _fail(
                "metadata",
                f"the discovery document's issuer {str(doc.get('issuer'))[:200]!r} is not "
                f"the configured issuer {expected_issuer!r}; fix the issuer setting "
                "(it must match exactly, trailing slash included).",
                502,
            )

        def url(name: str, required: bool = True) -> str | None:
            value = doc.get(name)
            if value is None and not required:
                return None
            return _check_url(value, f"the provider's {name}", config=False)

        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise _fail(
                "metadata",
                "the provider does not support PKCE S256 (code_challenge_methods_supported).",
                502,
            )
        return cls(
            issuer=expected_issuer,
            authorization_endpoint=url("authorization_endpoint") or "",
            token_endpoint=url("token_endpoint") or "",
            jwks_uri=url("jwks_uri") or "",
            userinfo_endpoint=url("userinfo_endpoint", False),
            end_session_endpoint=url("end_session_endpoint", False),
            iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported")
            is True,
            raw=dict(doc),
        )


class _ProviderHttp:
    """The one HTTP session towards the provider (see the module docstring for why)."""

    def __init__(self, settings: OidcSettings) -> None:
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.max_redirects = 0
        self.session.verify = settings.ca_bundle or True
        self.session.headers["User-Agent"] = f"qlikauth/{__version__}"
        self.timeout = (settings.timeout, settings.timeout)
        self.requests = 0

    def call(self, method: str, url: str, what: str, **kw: Any) -> tuple[int, Any]:
        self.requests += 1
        origin = _origin(url)
        try:
            resp = self.session.request(
                method, url, timeout=self.timeout, allow_redirects=False, stream=True, **kw
            )
        except requests.exceptions.SSLError as exc:
            raise _fail(
                "provider_tls",
                f"the provider's certificate at {origin} ({what}) is not trusted "
                f"({type(exc).__name__}); set ca_bundle to the CA that issued it.",
                502,
            ) from exc
        except requests.exceptions.Timeout:
            raise _fail(
                "provider_timeout",
                f"the provider at {origin} did not answer the {what} in "
                f"{self.timeout[1]:g}s; check that this server can reach it "
                "(firewall, outbound proxy) or raise the timeout setting.",
                504,
            ) from None
        except requests.exceptions.RequestException as exc:
            raise _fail(
                "provider_unreachable",
                f"the provider at {origin} cannot be reached for the {what} "
                f"({type(exc).__name__}): check the issuer setting's host and port, "
                "DNS, and that this server may connect to it (environment proxies are "
                "not used).",
                502,
            ) from None
        with resp:
            body = resp.raw.read(_MAX_RESPONSE_BYTES + 1, decode_content=True)
            if len(body) > _MAX_RESPONSE_BYTES:
                raise _fail(
                    "provider_answer",
                    f"the provider's {what} answer is larger than 1 MiB; refused.",
                    502,
                )
            if 300 <= resp.status_code < 400:
                raise _fail(
                    "provider_answer",
                    f"the provider answered the {what} with a redirect "
                    f"({resp.status_code}); redirects are not followed: check the URL.",
                    502,
                )
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            return resp.status_code, data

    def get_json(self, url: str, what: str, *, hint: str = "", **kw: Any) -> Any:
        status, data = self.call("GET", url, what, **kw)
        if status != 200 or data is None:
            no_json = "" if data is not None else " and no JSON"
            raise _fail(
                "provider_answer",
                f"the provider at {_origin(url)} answered the {what} "
                f"({_short_url(url)}) with HTTP {status}"
                f"{no_json}{hint}.",
                502,
            )
        return data

    def close(self) -> None:
        self.session.close()


class JwksCache:
    """The provider's signing keys by ``kid``, fetched on first use and refetched rarely.

    ``fetch()`` returns the JWKS document. A ``kid`` not in the cache causes one refetch, but
    never more than one per ``refetch_interval`` seconds for each ``path`` (a cold or expired
    cache is not a miss): ``"sign_in"`` for id_tokens, which come from the token endpoint,
    and ``"logout"`` for logout tokens, which anyone can POST. Each path has its own slot, so
    forged logout tokens naming unknown kids never delay the refetch a key rotation needs.
    :attr:`fetches` counts every fetch (the bench and the rotation test read it).
    """

    PATHS = ("sign_in", "logout")

    def __init__(
        self,
        fetch: Callable[[], Any],
        *,
        ttl: float = 86400.0,
        refetch_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._objects: dict[tuple[str, str], Any] = {}
        self._loaded_at: float | None = None
        self._last_miss_fetch: dict[str, float] = {}
        self.fetches = 0

    def _load(self) -> None:
        doc = self._fetch()
        self.fetches += 1
        if not isinstance(doc, Mapping) or not isinstance(doc.get("keys"), list):
            raise _fail("jwks", "the provider's JWKS is not a JSON object with a 'keys' list.", 502)
        keys: dict[str, dict[str, Any]] = {}
        for index, key in enumerate(doc["keys"]):
            if not isinstance(key, Mapping) or key.get("kty") not in ("RSA", "EC"):
                continue
            if key.get("use") not in (None, "sig"):
                continue
            kid = key.get("kid")
            keys[kid if isinstance(kid, str) and kid else f"#{index}"] = dict(key)
        self._keys = keys
        self._objects = {}
        self._loaded_at = self._clock()

    def _fresh(self, now: float) -> bool:
        return self._loaded_at is not None and now - self._loaded_at < self.ttl

    def key_for(self, kid: Any, alg: str, *, path: str = "sign_in") -> Any:
        """The verifying key (:mod:`qlikauth.jose`, joserfc) for ``kid`` and ``alg``."""
        if path not in self.PATHS:
            raise ValueError(f"path must be one of {self.PATHS}")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise _fail("unknown_kid", "the token's kid is not a short string; refused.")
        now = self._clock()
        with self._lock:
            if not self._fresh(now):
                self._load()
            jwk = self._pick(kid, alg)
            if jwk is None and kid is not None:
                last = self._last_miss_fetch.get(path)
                if last is not None and now - last < self.refetch_interval:
                    raise _fail(
                        "unknown_kid",
                        f"the token's kid {kid[:40]!r} is not among the provider's keys "
                        "(keys refetched recently, not again yet); refused.",
                    )
                self._last_miss_fetch[path] = now
                log.info("unknown kid in a token from the provider; refetching its JWKS once")
                self._load()
                jwk = self._pick(kid, alg)
            if jwk is None:
                raise _fail(
                    "unknown_kid",
                    f"no key of the provider matches the token (kid {str(kid)[:40]!r}, "
                    f"alg {alg}); refused.",
                )
            cache_key = (jwk.get("kid") or "", alg)
            obj = self._objects.get(cache_key)
            if obj is None:
                obj = self._construct(jwk, alg)
                self._objects[cache_key] = obj
            return obj

    def _pick(self, kid: str | None, alg: str) -> dict[str, Any] | None:
        if kid is not None:
            return self._keys.get(kid)
        # No kid: only a provider with a single key of the right type may omit it.
        kty = "EC" if alg.startswith("ES") else "RSA"
        matching = [k for k in self._keys.values() if k.get("kty") == kty]
        return matching[0] if len(matching) == 1 else None

    @staticmethod
    def _construct(jwk: Mapping[str, Any], alg: str) -> Any:
        try:
            return _jose.key_from_jwk(jwk, alg)
        except JwtError as exc:
            reason = _JOSE_REASONS.get(_jose.reason_of(exc), _jose.reason_of(exc))
            status = 502 if reason == "jwks" else 401
            raise _fail(reason, f"the provider's JWKS: {exc}", status) from None


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and the browser-binding cookie to set first."""

    url: str = field(repr=False)
    cookie: Cookie
    state: str = field(repr=False)


@dataclass(frozen=True)
class OidcLogin:
    """A verified sign-in: the claims (id_token + userinfo) and what logout needs later.

    ``unverified`` names the claims the provider does not vouch for (``email`` when
    ``email_verified`` is not true, unless ``allow_unverified_email``); ``claims`` lists
    them under :data:`~qlikauth.mapping.UNVERIFIED` too, so
    :meth:`~qlikauth.mapping.ClaimsMapping.map` refuses such a claim as the Qlik user id
    whether or not the caller passes ``unverified``. ``auth_time``: when the provider last
    authenticated the person (None when the provider did not say).
    """

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    sid: str | None
    id_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    next_url: str | None = None
    clear_cookie: Cookie | None = None
    unverified: frozenset[str] = frozenset()
    auth_time: float | None = None


@dataclass(frozen=True)
class LogoutEvent:
    """A verified back-channel logout: end what belongs to ``sid`` (or every session of ``sub``)."""

    issuer: str
    subject: str | None
    sid: str | None
    jti: str = field(repr=False)


class OidcRelyingParty:
    """The relying party for one provider (see the module docstring). Thread-safe.

    :param store: where one-time values live (state/nonce/verifier, the logout ``state``).
        Several portal processes must share one (Redis, Django cache).
    :param replay_cache: the used logout-token ``jti`` values. It must **refuse when full**
        (``when_full="refuse"``) rather than evict, and be shared by every portal process
        (the web runtime's ``replay_cache``). Without one, a used ``jti`` is recorded both in
        ``store`` (seen by every process, but it may evict) and in an in-process
        ``MemoryStore(when_full="refuse")`` (never evicts); a replay found in either is refused.
    :param clock: seconds since the epoch (tests move it to expire tokens).
    """

    def __init__(
        self,
        settings: OidcSettings,
        store: StateStore,
        *,
        replay_cache: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        # A used jti evicted from an evicting store could be replayed: this one refuses when full.
        self.replay_cache: StateStore = (
            replay_cache if replay_cache is not None else MemoryStore(when_full="refuse")
        )
        self._shared_jti_store = store if replay_cache is None else None
        self.clock = clock
        method = settings.token_endpoint_auth_method
        pem = settings.client_private_key
        self._client_key = None
        if method == "private_key_jwt" and isinstance(pem, bytes):  # noqa: S105 - a method name
            self._client_key = _client_signing_key(pem, settings.client_key_id)
        self.http = _ProviderHttp(settings)
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._metadata_lock = threading.Lock()
        self.jwks = JwksCache(
            self._fetch_jwks, ttl=settings.jwks_ttl, refetch_interval=settings.jwks_refetch_interval
        )

    # -- provider metadata ------------------------------------------------------------
    def metadata(self) -> ProviderMetadata:
        """The provider's checked discovery document (cached for ``metadata_ttl``)."""
        now = time.monotonic()
        meta = self._metadata
        if meta is not None and now - self._metadata_at < self.settings.metadata_ttl:
            return meta
        with self._metadata_lock:
            if self._metadata is not None and now - self._metadata_at < self.settings.metadata_ttl:
                return self._metadata
            try:
                doc = self.http.get_json(
                    self.settings.discovery_document_url,
                    "discovery document",
                    hint=": check the issuer setting; it is the provider's issuer identifier (the "
                    "'issuer' inside its discovery document), and qlikauth adds "
                    "/.well-known/openid-configuration itself",
                )
                fresh = ProviderMetadata.parse(doc, self.settings.issuer)
            except OidcError as exc:
                if self._metadata is None or getattr(exc, "code", None) == "metadata":
                    raise
                # The provider is briefly unreachable: keep the last good document a while.
                log.warning(
                    "could not refresh the provider's discovery document, keeping the cached one: "
                    "%s",
                    exc,
                )
                self._metadata_at = (
                    now - self.settings.metadata_ttl + min(60.0, self.settings.metadata_ttl)
                )
                return self._metadata
            self._metadata, self._metadata_at = fresh, now
            return fresh

    def _fetch_jwks(self) -> Any:
        return self.http.get_json(self.metadata().jwks_uri, "JWKS")

    # -- the authorization request ------------------------------------------------------
    def browser_cookie(self, value: str) -> Cookie:
        """The browser-binding cookie carrying ``value`` (browser-session, HttpOnly)."""
        samesite = "None" if self.settings.cookie_secure else "Lax"
        return Cookie(
            self.settings.cookie_name, value, None, "/", self.settings.cookie_secure, True, samesite
        )

    def clear_browser_cookie(self) -> Cookie:
        """The cookie that removes the browser binding."""
        return self.browser_cookie("x").cleared()

    def begin(
        self,
        browser: str | None,
        next_url: str | None = None,
        *,
        prompt: str | None = None,
        login_hint: str | None = None,
        extra: Mapping[str, str] | None = None,
        force_reauth: bool = False,
    ) -> AuthorizationRequest:
        """Start a sign-in: keep state/nonce/verifier for this browser; return where to go.

        :param browser: the browser-binding cookie's value if the browser has one (several tabs
            signing in at once share it), else None and a new one is made.
        :param next_url: where to land after sign-in; the caller has already checked it.
        :param prompt: this request's ``prompt`` (default: the ``prompt`` setting).
        :param force_reauth: the person must authenticate again at the provider, whatever
            session it still has (after an idle cap on a shared workstation): sends
            ``prompt=login`` and ``max_age=0``, and :meth:`complete` refuses an id_token whose
            ``auth_time`` is older than this request (reason ``reauth``).
        """
        s = self.settings
        meta = self.metadata()
        if not browser or not _BROWSER_VALUE.match(browser):
            browser = secrets.token_urlsafe(32)
        state, nonce, verifier = (
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(32),
            secrets.token_urlsafe(48),
        )
        now = self.clock()
        max_age = 0.0 if force_reauth else s.max_age
        record = {
            "b": _digest(browser),
            "n": nonce,
            "v": verifier,
            "next": next_url,
            "t": now,
            "ma": max_age,
            "fr": bool(force_reauth),
        }
        self.store.put("oidc:state:" + _digest(state), json.dumps(record).encode(), s.state_ttl)
        params = {
            "response_type": "code",
            "client_id": s.client_id,
            "redirect_uri": s.redirect_uri,
            "scope": " ".join(s.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64encode(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        if s.response_mode != "query":
            params["response_mode"] = s.response_mode
        words = (prompt or s.prompt or "").split()
        if force_reauth and "login" not in words:
            words.append("login")
        if words:
            params["prompt"] = " ".join(words)
        if max_age is not None:
            params["max_age"] = str(int(max_age))
        if login_hint:
            params["login_hint"] = login_hint
        for k, v in (extra or {}).items():
            if k not in params:
                params[k] = v
        sep = "&" if urlsplit(meta.authorization_endpoint).query else "?"
        return AuthorizationRequest(
            meta.authorization_endpoint + sep + urlencode(params),
            self.browser_cookie(browser),
            state,
        )

    # -- the callback ---------------------------------------------------------------------
    def complete(self, browser: str | None, params: Mapping[str, str]) -> OidcLogin:
        """Finish a sign-in from the callback's parameters (query or form_post body).

        Raises :class:`~qlikauth.exceptions.OidcError` (``.code`` says which check failed)
        before anything is signed in anywhere.
        """
        state = params.get("state")
        if not state or not isinstance(state, str) or len(state) > 512:
            raise _fail(
                "state_missing",
                "the callback has no state: start signing in from the portal again.",
                400,
            )
        raw = self.store.take("oidc:state:" + _digest(state))
        if raw is None:
            raise _fail(
                "state_unknown",
                "this sign-in link is unknown, expired or already used: start "
                "signing in from the portal again.",
                400,
            )
        record = json.loads(raw)
        if not browser or not hmac.compare_digest(_digest(browser), str(record.get("b"))):
            raise _fail(
                "state_browser",
                "this sign-in was started in another browser (or the portal's "
                "sign-in cookie was lost); start signing in again here.",
                400,
            )
        meta = self.metadata()
        iss = params.get("iss")
        if (
            iss is not None
            and iss != self.settings.issuer
            and _TENANT_PLACEHOLDER not in self.settings.issuer
        ):
            raise _fail(
                "issuer",
                "the authorization response comes from another issuer (iss parameter); refused.",
            )
        if iss is None and meta.iss_parameter_supported:
            raise _fail(
                "issuer",
                "the provider sends the iss parameter but this response has none; refused.",
            )
        if params.get("error"):
            error = re.sub(r"[^A-Za-z0-9_.-]", "", str(params["error"]))[:64]
            desc = re.sub(r"[^\w .,:;'()-]", "", str(params.get("error_description") or ""))[:200]
            raise _fail(
                "provider_error",
                f"the provider refused the sign-in: {error}{' (' + desc + ')' if desc else ''}.",
                401,
            )
        code = params.get("code")
        if not code or not isinstance(code, str) or len(code) > 4096:
            raise _fail(
                "code_missing",
                "the callback has no authorization code; start signing in again.",
                400,
            )
        tokens = self._token_request(meta, code, str(record["v"]))
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _fail(
                "token_response",
                "the provider's token answer has no id_token (is 'openid' allowed for this "
                "client?).",
                502,
            )
        access_token = (
            tokens.get("access_token") if isinstance(tokens.get("access_token"), str) else None
        )
        max_age = record.get("ma")
        claims = self.validate_id_token(
            id_token,
            nonce=str(record["n"]),
            access_token=access_token,
            max_age=float(max_age) if isinstance(max_age, (int, float)) else None,
            authenticated_after=float(record["t"]) if record.get("fr") else None,
        )
        if self.settings.userinfo and meta.userinfo_endpoint and access_token:
            extra = self.fetch_userinfo(access_token, claims["sub"])
            # What the id_token says wins; userinfo cannot vouch for an e-mail it did not sign.
            claims = {**{k: v for k, v in extra.items() if k != "email_verified"}, **claims}
        auth_time = claims.get("auth_time")
        unverified = self.unverified_claims(claims)
        # The mapping reads the list under UNVERIFIED: only this bridge may write it.
        claims = {k: v for k, v in claims.items() if k != UNVERIFIED}
        if unverified:
            claims[UNVERIFIED] = sorted(unverified)
        return OidcLogin(
            issuer=str(claims["iss"]),
            subject=str(claims["sub"]),
            claims=claims,
            sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
            id_token=id_token,
            access_token=access_token,
            next_url=record.get("next"),
            clear_cookie=self.clear_browser_cookie(),
            unverified=unverified,
            auth_time=float(auth_time)
            if isinstance(auth_time, (int, float)) and not isinstance(auth_time, bool)
            else None,
        )

    def unverified_claims(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """The claims the provider does not vouch for: ``email`` unless ``email_verified`` is true.

        Only JSON ``true`` counts (a string ``"true"`` or ``1`` does not: the OpenID Connect
        claim is a boolean). Empty when ``allow_unverified_email`` is set.
        """
        if self.settings.allow_unverified_email or "email" not in claims:
            return frozenset()
        verified = claims.get("email_verified") is True
        return frozenset() if verified else frozenset({"email"})

    def map_user(self, login: OidcLogin, mapping: Any) -> Any:
        """``mapping.map(...)`` for a verified sign-in; its unverified claims are refused as the
        user id.

        :param mapping: a :class:`~qlikauth.mapping.ClaimsMapping`.
        :returns: the :class:`~qlikauth.mapping.MappedIdentity` (``.user``, ``.cloud``).
        """
        return mapping.map(dict(login.claims), login.subject, unverified=login.unverified)

    def _client_auth(self, meta: ProviderMetadata, data: dict[str, str]) -> Any:
        s = self.settings
        if s.token_endpoint_auth_method == "client_secret_basic":  # noqa: S105 - a method name
            from urllib.parse import quote_plus

            # RFC 6749 2.3.1: both parts form-urlencoded before they are joined.
            return (quote_plus(s.client_id), quote_plus(s.client_secret or ""))
        data["client_id"] = s.client_id
        if s.token_endpoint_auth_method == "client_secret_post":  # noqa: S105 - a method name
            data["client_secret"] = s.client_secret or ""
            return None
        now = int(self.clock())
        assertion = {
            "iss": s.client_id,
            "sub": s.client_id,
            "aud": meta.token_endpoint,
            "jti": secrets.token_urlsafe(24),
            "iat": now,
            "exp": now + 60,
        }
        assert self._client_key is not None
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        data["client_assertion"] = self._client_key.sign(assertion)
        return None

    def _token_request(self, meta: ProviderMetadata, code: str, verifier: str) -> Mapping[str, Any]:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        auth = self._client_auth(meta, data)
        status, body = self.http.call(
            "POST",
            meta.token_endpoint,
            "token request",
            data=data,
            auth=auth,
            headers={"Accept": "application/json"},
        )
        if status != 200 or not isinstance(body, Mapping):
            err = body.get("error") if isinstance(body, Mapping) else None
            code_ = re.sub(r"[^A-Za-z0-9_.-]", "", str(err or ""))[:64]
            hint = {
                "invalid_grant": (
                    " (the code was already used or expired, or the PKCE verifier does not "
                    "match: start signing in again)"
                ),
                "invalid_client": (
                    " (the client id or its credentials are wrong: check client_secret / "
                    "client_private_key and token_endpoint_auth_method)"
                ),
            }.get(code_, "")
            raise _fail(
                "token_request",
                f"the provider refused the token request: HTTP {status}"
                f"{' ' + code_ if code_ else ''}{hint}.",
                401 if code_ else 502,
            )
        token_type = body.get("token_type")
        if body.get("access_token") is not None and str(token_type).lower() not in (
            "bearer",
            "dpop",
        ):
            raise _fail(
                "token_response",
                f"the provider's token_type is {str(token_type)[:20]!r}, not Bearer.",
                502,
            )
        return body

    # -- JWT checks -----------------------------------------------------------------------
    def _parse_jws(self, token: Any, what: str) -> tuple[Any, str]:
        """The token split (size capped first) and its allowed ``alg``; nothing verified yet."""
        try:
            jws = _jose.parse_compact(token, max_bytes=self.settings.max_token_bytes, what=what)
            alg = _jose.check_header(jws, self.settings.algorithms, what=what)
        except JwtError as exc:
            reason = _jose.reason_of(exc)
            raise _fail(_JOSE_REASONS.get(reason, reason), str(exc)) from None
        return jws, alg

    def _verify_signature(self, jws: Any, alg: str, what: str, path: str) -> None:
        kid = jws.header.get("kid")
        key = self.jwks.key_for(kid, alg, path=path)
        try:
            _jose.verify_signature(jws, key, alg, what=what)
        except JwtError:
            raise _fail(
                "signature",
                f"the {what}'s signature does not verify with the provider's key "
                f"{str(kid)[:40]!r}; refused.",
            ) from None

    def _expected_issuer(self, claims: Mapping[str, Any]) -> str:
        issuer = self.settings.issuer
        if _TENANT_PLACEHOLDER not in issuer:
            return issuer
        tid = claims.get("tid")
        if not isinstance(tid, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", tid):
            raise _fail(
                "issuer",
                "the token has no Entra tenant id (tid) for the {tenantid} issuer; refused.",
            )
        if "*" not in self.settings.tenants and tid.lower() not in {
            t.lower() for t in self.settings.tenants
        }:
            raise _fail(
                "tenant",
                f"tenant {tid} is not among the tenants allowed to sign in (OIDC tenants); "
                "refused.",
            )
        return issuer.replace(_TENANT_PLACEHOLDER, tid)

    def _check_claims(self, claims: Mapping[str, Any], what: str) -> None:
        s = self.settings
        now = self.clock()
        expected = self._expected_issuer(claims)
        if claims.get("iss") != expected:
            raise _fail(
                "issuer",
                f"the {what} was issued by {str(claims.get('iss'))[:120]!r}, not by the configured "
                f"issuer {expected!r}; refused.",
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not audiences or not all(isinstance(a, str) for a in audiences):
            raise _fail("audience", f"the {what} has no audience; refused.")
        if s.client_id not in audiences:
            raise _fail(
                "audience",
                f"the {what} is for another client (aud does not contain this portal's "
                "client id); refused.",
            )
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise _fail("audience", f"the {what} has several audiences and no azp; refused.")
        if azp is not None and azp != s.client_id:
            raise _fail("audience", f"the {what} was issued to another party (azp); refused.")
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                raise _fail("malformed", f"the {what}'s {name} is not a number; refused.")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if exp is None:
            raise _fail("expired", f"the {what} has no expiry (exp); refused.")
        if exp is not None and now > exp + s.leeway:
            raise _fail("expired", f"the {what} expired {int(now - exp)}s ago; sign in again.")
        if iat is None:
            raise _fail("iat", f"the {what} has no issue time (iat); refused.")
        if iat > now + s.leeway:
            raise _fail(
                "iat_future",
                f"the {what} was issued {int(iat - now)}s in the future (more than the "
                f"{s.leeway:g}s leeway): check the clocks; refused.",
            )
        if nbf is not None and nbf > now + s.leeway:
            raise _fail(
                "not_yet_valid", f"the {what} is not valid for another {int(nbf - now)}s; refused."
            )

    def validate_id_token(
        self,
        token: str,
        *,
        nonce: str | None,
        access_token: str | None = None,
        max_age: float | None = None,
        authenticated_after: float | None = None,
    ) -> dict[str, Any]:
        """Verify an id_token (see the module docstring); return its claims.

        :param max_age: the ``auth_time`` must be at most this many seconds old (default: the
            ``max_age`` setting); the id_token must then carry ``auth_time``.
        :param authenticated_after: the ``auth_time`` must not be before this time (seconds
            since the epoch, within the leeway): a forced re-authentication really happened.
        """
        jws, alg = self._parse_jws(token, "id_token")
        self._verify_signature(jws, alg, "id_token", "sign_in")
        header, claims = jws.header, jws.claims
        if header.get("typ") not in (None, "JWT", "jwt", "application/jwt"):
            raise _fail(
                "header", f"the id_token's typ is {str(header.get('typ'))[:30]!r}; refused."
            )
        self._check_claims(claims, "id_token")
        sub = claims.get("sub")
        if not _is_text(sub) or len(sub) > 255:
            raise _fail("subject", "the id_token has no usable subject (sub); refused.")
        if claims.get("sid") is not None and not _is_text(claims.get("sid")):
            raise _fail("malformed", "the id_token's sid is not text; refused.")
        if "events" in claims:
            raise _fail("header", "a logout token was sent where an id_token belongs; refused.")
        if nonce is not None:
            got = claims.get("nonce")
            if got is None:
                raise _fail(
                    "nonce_missing",
                    "the id_token has no nonce, so it cannot be tied to this sign-in; refused.",
                )
            if not _is_text(got) or not hmac.compare_digest(got.encode(), nonce.encode()):
                raise _fail(
                    "nonce_mismatch", "the id_token's nonce belongs to another sign-in; refused."
                )
        at_hash = claims.get("at_hash")
        if at_hash is not None and access_token is not None:
            hash_fn = _HASHES[str(header["alg"])[2:]]
            digest = hash_fn(access_token.encode("ascii", "replace")).digest()
            if not isinstance(at_hash, str) or not hmac.compare_digest(
                _b64encode(digest[: len(digest) // 2]), at_hash
            ):
                raise _fail(
                    "at_hash",
                    "the access token does not belong to this id_token (at_hash); refused.",
                )
        self._check_auth_time(
            claims, self.settings.max_age if max_age is None else max_age, authenticated_after
        )
        return claims

    def _check_auth_time(
        self, claims: Mapping[str, Any], max_age: float | None, after: float | None
    ) -> None:
        if max_age is None and after is None:
            return
        leeway, now = self.settings.leeway, self.clock()
        auth_time = claims.get("auth_time")
        if auth_time is None:
            raise _fail(
                "reauth",
                "the id_token has no auth_time, so the provider's sign-in "
                "cannot be shown to be recent (max_age or a forced "
                "re-authentication asked for it); refused. Make the provider "
                "send auth_time.",
            )
        if isinstance(auth_time, bool) or not isinstance(auth_time, (int, float)):
            raise _fail("malformed", "the id_token's auth_time is not a number; refused.")
        if auth_time > now + leeway:
            raise _fail(
                "iat_future",
                "the id_token's auth_time is in the future: check the clocks; refused.",
            )
        if max_age is not None and now - auth_time > max_age + leeway:
            raise _fail(
                "reauth",
                f"the provider's sign-in is {int(now - auth_time)}s old, more "
                f"than max_age {max_age:g}s allows: sign in again.",
            )
        if after is not None and auth_time < after - leeway:
            raise _fail(
                "reauth",
                "the provider did not ask the person to sign in again "
                "(auth_time is older than the request for a fresh sign-in): "
                "sign in again; if this repeats, the provider ignores "
                "prompt=login and max_age.",
            )

    def fetch_userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo claims; their ``sub`` must be the id_token's."""
        meta = self.metadata()
        if not meta.userinfo_endpoint:
            return {}
        status, body = self.http.call(
            "GET",
            meta.userinfo_endpoint,
            "userinfo request",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
        if status != 200 or not isinstance(body, Mapping):
            raise _fail(
                "userinfo",
                f"the provider answered the userinfo request with HTTP {status} "
                "(signed or encrypted userinfo is not supported).",
                502,
            )
        if body.get("sub") != subject:
            raise _fail(
                "userinfo",
                "the userinfo answer is about another subject than the id_token; refused.",
            )
        return {
            k: v
            for k, v in body.items()
            if k not in ("iss", "aud", "exp", "iat", "nbf", "nonce", "azp")
        }

    # -- logout ---------------------------------------------------------------------------
    def validate_logout_token(self, token: str) -> LogoutEvent:
        """Verify a back-channel ``logout_token`` and use its ``jti`` up (see the module docstring).

        Anyone can POST a logout token, so every check that needs no key runs first: a token
        that fails one of them never reaches the JWKS (nor its refetch). Refusals have status 400.
        """
        try:
            return self._validate_logout_token(token)
        except OidcError as exc:
            if getattr(exc, "status", 400) == 401:
                exc.status = 400
            raise

    def _validate_logout_token(self, token: str) -> LogoutEvent:
        s = self.settings
        jws, alg = self._parse_jws(token, "logout_token")
        header, claims = jws.header, jws.claims
        if header.get("typ") not in (None, "JWT", "jwt", "logout+jwt", "application/logout+jwt"):
            typ = str(header.get("typ"))[:30]
            raise _fail("header", f"the logout_token's typ is {typ!r}; refused.", 400)
        self._check_claims(claims, "logout_token")
        iat = float(claims["iat"])
        if self.clock() - iat > s.logout_token_max_age + s.leeway:
            raise _fail(
                "expired",
                f"the logout_token was issued {int(self.clock() - iat)}s ago (older than "
                f"{s.logout_token_max_age:g}s); refused.",
                400,
            )
        if "nonce" in claims:
            raise _fail(
                "logout_nonce",
                "the logout_token carries a nonce (an id_token sent as a logout token?); refused.",
                400,
            )
        events = claims.get("events")
        if not isinstance(events, Mapping) or not isinstance(
            events.get(BACKCHANNEL_LOGOUT_EVENT), Mapping
        ):
            raise _fail(
                "logout_events",
                "the logout_token lacks the back-channel logout event "
                f"({BACKCHANNEL_LOGOUT_EVENT}); refused.",
                400,
            )
        sub, sid = claims.get("sub"), claims.get("sid")
        for name, value in (("sub", sub), ("sid", sid)):
            if value is not None and not _is_text(value):
                raise _fail("malformed", f"the logout_token's {name} is not text; refused.", 400)
        sub = sub if sub else None
        sid = sid if sid else None
        if sub is None and sid is None:
            raise _fail(
                "logout_subject",
                "the logout_token names neither a session (sid) nor a subject (sub); refused.",
                400,
            )
        jti = claims.get("jti")
        if not _is_text(jti) or len(jti) > 256:
            raise _fail("logout_jti", "the logout_token has no jti; refused.", 400)
        # Only now the key: with its own refetch slot, separate from sign-ins'.
        self._verify_signature(jws, alg, "logout_token", "logout")
        exp = float(claims["exp"])
        ttl = max(exp - self.clock(), 0.0) + s.logout_token_max_age + 2 * s.leeway
        key = "oidc:jti:" + _digest(f"{claims['iss']}|{jti}")
        try:
            fresh = self.replay_cache.add(key, b"1", ttl)
            if self._shared_jti_store is not None:
                fresh = self._shared_jti_store.add(key, b"1", ttl) and fresh
        except StoreFull:
            raise _fail(
                "replay_cache_full",
                "the logout-token replay cache is full, so this "
                "token cannot be recorded as used; refused (raise "
                "the cache's max_items).",
                503,
            ) from None
        if not fresh:
            raise _fail(
                "logout_replay",
                "this logout_token was already used (jti seen before); refused.",
                400,
            )
        return LogoutEvent(issuer=str(claims["iss"]), subject=sub, sid=sid, jti=jti)

    def logout_url(
        self, id_token_hint: str | None, next: str | None = None, *, allowed: Iterable[str] = ()
    ) -> str | None:
        """The provider's RP-initiated logout URL, or None when it has no end_session_endpoint.

        Only the registered ``post_logout_redirect_uri`` setting is ever sent (strict providers
        refuse any other, and the provider session would then survive). ``next``, where the
        browser should land afterwards, is kept in the store under a fresh ``state`` sent
        along; :meth:`logout_return` reads it back at the post-logout redirect URI. ``next``
        must be a path, or on the origin of ``post_logout_redirect_uri``/``redirect_uri`` (or
        of ``allowed``): otherwise :class:`~qlikauth.RedirectError` and nothing is sent.
        Without ``post_logout_redirect_uri`` the provider keeps the browser (its own
        signed-out page) and ``next`` is not used.
        """
        from ..redirects import RedirectPolicy

        s = self.settings
        checked: str | None = None
        if next:
            base = s.post_logout_redirect_uri or s.redirect_uri
            policy = RedirectPolicy([base, s.redirect_uri, *allowed], default=base)
            try:
                policy.check(next)
                checked = next  # given back as the caller wrote it, once it passed
            except RedirectError as exc:
                raise RedirectError(
                    f"the page to land on after logout was refused: {exc}"
                ) from None
        meta = self.metadata()
        if not meta.end_session_endpoint:
            return None
        params: dict[str, str] = {"client_id": s.client_id}
        if s.post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = s.post_logout_redirect_uri
            state = secrets.token_urlsafe(32)
            record = json.dumps({"next": checked}).encode()
            self.store.put("oidc:logout:" + _digest(state), record, s.state_ttl)
            params["state"] = state
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        sep = "&" if urlsplit(meta.end_session_endpoint).query else "?"
        return meta.end_session_endpoint + sep + urlencode(params)

    def logout_return(self, params: Mapping[str, str]) -> str | None:
        """Where to land after RP-initiated logout: the ``next`` kept under the returned ``state``.

        Call it at the ``post_logout_redirect_uri`` with the query parameters the provider
        sent; the state is used once. None when there is no state, it is unknown or used, or
        no ``next`` was given (land on the portal's default page then).
        """
        state = params.get("state")
        if not isinstance(state, str) or not state or len(state) > 512:
            return None
        raw = self.store.take("oidc:logout:" + _digest(state))
        if raw is None:
            return None
        try:
            nxt = json.loads(raw).get("next")
        except (ValueError, AttributeError):
            return None
        return nxt if isinstance(nxt, str) and nxt else None

    def close(self) -> None:
        """Close the provider session's pooled connections."""
        self.http.close()
