"""OpenID Connect relying party: discovery, the code flow with PKCE, id_token and logout_token checks.

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
  ``private_key_jwt`` (an RS256/ES256 assertion signed with the portal's key).
* **JWT checks** (id_token and logout_token): size capped before parsing; compact JWS only (no
  JWE); ``alg`` from an explicit allowlist of asymmetric algorithms (never ``none``, never
  HMAC); no key taken from the token (``jwk``/``jku``/``x5u`` refused) and no ``crit``; the key
  picked by ``kid`` from the provider's JWKS and its type, curve, ``use`` and ``alg`` checked
  against the token's ``alg`` before python-jose (cryptography backend) verifies; an unknown
  ``kid`` refetches the JWKS once, at most once per ``jwks_refetch_interval`` (a stream of
  forged kids cannot make the portal hammer the provider). Then ``iss`` exact, ``aud`` holding
  the client id, ``azp`` when there are several audiences, ``exp``/``iat``/``nbf`` with a leeway
  of at most 5 minutes, ``nonce``, and ``at_hash`` when the access token comes with it.
* **Logout tokens** (Back-Channel Logout 1.0): the same signature and issuer checks, ``iat``
  required and recent, the back-channel ``events`` member, ``sid`` and/or ``sub``, no
  ``nonce``, and ``jti`` used once (kept in the store, so a replay to another portal process
  is refused too).

python-jose 3.5 implements no RSASSA-PSS, so ``PS256`` is refused at configuration with that
reason rather than failing on the first sign-in.
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

from .._version import __version__
from ..authenticators.base import Cookie
from ..exceptions import ConfigurationError, OidcError, RedirectError
from ..store import StateStore

try:
    from jose import jwk as _jose_jwk
    from jose import jws as _jose_jws
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "qlikauth's OpenID Connect support needs python-jose: pip install 'qlikauth[oidc]'"
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

#: The signature algorithms python-jose verifies and qlikauth accepts (asymmetric only).
SUPPORTED_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
#: The ``events`` member a back-channel logout token must carry.
BACKCHANNEL_LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_HASHES = {"256": hashlib.sha256, "384": hashlib.sha384, "512": hashlib.sha512}
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_RESPONSE_MODES = ("query", "form_post")
_MAX_LEEWAY = 300.0
_MAX_RESPONSE_BYTES = 1 << 20
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")
_TENANT_PLACEHOLDER = "{tenantid}"
_BROWSER_VALUE = re.compile(r"[A-Za-z0-9_-]{32,128}\Z")


def _fail(reason: str, message: str, status: int = 401) -> OidcError:
    err = OidcError(message, reason=reason)
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
        return ConfigurationError(f"{what}: {msg}") if config else _fail("metadata", f"{what}: {msg}", 502)

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
        raise problem(f"{url[:100]!r} uses http: tokens must travel over https (plain http is "
                      "accepted only to a loopback host, for tests).")
    if "@" in parts.netloc or parts.fragment:
        raise problem(f"{url[:100]!r} must not carry user information or a fragment.")
    return url


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
        logout (registered at the provider).
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
    state_ttl: float = 600.0
    max_token_bytes: int = 16 * 1024
    logout_token_max_age: float = 300.0
    cookie_name: str = "__Host-qlikauth-oidc"
    cookie_secure: bool = True

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        issuer = _check_url(self.issuer, "OIDC issuer")
        if urlsplit(issuer).query:
            raise ConfigurationError("OIDC issuer: an issuer identifier has no query string.")
        put("issuer", issuer)
        templated = _TENANT_PLACEHOLDER in issuer
        if templated and not self.discovery_url:
            raise ConfigurationError(
                "OIDC issuer: a {tenantid} issuer (Entra ID multi-tenant) needs discovery_url, e.g. "
                "https://login.microsoftonline.com/organizations/v2.0/.well-known/openid-configuration.")
        tenants = tuple(t.strip() for t in ([self.tenants] if isinstance(self.tenants, str) else self.tenants) if t.strip())
        if templated and not tenants:
            raise ConfigurationError(
                "OIDC tenants: the issuer has {tenantid}, so list the Entra tenant ids allowed to "
                "sign in (or '*' for any tenant, on purpose).")
        if tenants and not templated:
            raise ConfigurationError("OIDC tenants: only meaningful with a {tenantid} issuer (Entra multi-tenant).")
        put("tenants", tenants)
        if self.discovery_url is not None:
            put("discovery_url", _check_url(self.discovery_url, "OIDC discovery_url"))
        if not isinstance(self.client_id, str) or not self.client_id.strip():
            raise ConfigurationError("OIDC client_id: missing; copy the client (application) id from the provider.")
        put("redirect_uri", _check_url(self.redirect_uri, "OIDC redirect_uri"))
        if self.post_logout_redirect_uri is not None:
            put("post_logout_redirect_uri", _check_url(self.post_logout_redirect_uri, "OIDC post_logout_redirect_uri"))
        method = self.token_endpoint_auth_method
        if method not in _AUTH_METHODS:
            raise ConfigurationError(f"OIDC token_endpoint_auth_method: {method!r} is not one of {', '.join(_AUTH_METHODS)}.")
        if method.startswith("client_secret") and not self.client_secret:
            raise ConfigurationError(f"OIDC client_secret: required with {method}; copy it from the provider.")
        if method == "private_key_jwt":
            if not self.client_private_key:
                raise ConfigurationError("OIDC client_private_key: required with private_key_jwt (PEM text or a file path).")
            put("client_private_key", self._load_private_key(self.client_private_key))
        scopes = tuple(self.scopes.split() if isinstance(self.scopes, str) else self.scopes)
        if "openid" not in scopes:
            raise ConfigurationError("OIDC scopes: must include 'openid' (without it there is no id_token).")
        put("scopes", scopes)
        if self.response_mode not in _RESPONSE_MODES:
            raise ConfigurationError(f"OIDC response_mode: {self.response_mode!r} is not 'query' or 'form_post'.")
        algorithms = tuple(a.strip() for a in ([self.algorithms] if isinstance(self.algorithms, str) else self.algorithms))
        if not algorithms:
            raise ConfigurationError("OIDC algorithms: give the provider's signing algorithm, e.g. RS256.")
        for alg in algorithms:
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ConfigurationError(
                    f"OIDC algorithms: {alg!r} is refused: id_tokens must be signed with the provider's "
                    "private key (RS256/ES256 family); 'none' and HMAC would let anyone mint tokens.")
            if alg.upper().startswith("PS"):
                raise ConfigurationError(
                    f"OIDC algorithms: {alg} (RSASSA-PSS) is not implemented by python-jose 3.5; set the "
                    "provider to sign id_tokens with RS256 (or ES256).")
            if alg not in SUPPORTED_ALGORITHMS:
                raise ConfigurationError(f"OIDC algorithms: {alg!r} is not one of {', '.join(SUPPORTED_ALGORITHMS)}.")
        put("algorithms", algorithms)
        for name, low, high in (("leeway", 0, _MAX_LEEWAY), ("timeout", 0.1, 60), ("state_ttl", 30, 3600),
                                ("logout_token_max_age", 30, 3600), ("metadata_ttl", 0, 7 * 86400),
                                ("jwks_ttl", 60, 7 * 86400), ("jwks_refetch_interval", 0, 3600)):
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
            raise ConfigurationError(f"OIDC ca_bundle: {self.ca_bundle!r} is not a file (a PEM bundle of CA certificates).")
        if self.cookie_name.startswith("__Host-") and not self.cookie_secure:
            raise ConfigurationError("OIDC cookie_name: a __Host- cookie needs cookie_secure=True (https).")

    @staticmethod
    def _load_private_key(value: str | bytes) -> bytes:
        from cryptography.hazmat.primitives import serialization

        data = value.encode() if isinstance(value, str) else value
        if b"-----BEGIN" not in data:
            try:
                data = Path(data.decode()).read_bytes()
            except OSError as exc:
                raise ConfigurationError(f"OIDC client_private_key: cannot read the key file: {exc.strerror}.") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigurationError("OIDC client_private_key: not an unencrypted PEM private key.") from None
        if getattr(key, "key_size", 2048) < 2048 and key.__class__.__name__.startswith("_RSA"):
            raise ConfigurationError("OIDC client_private_key: RSA keys must have at least 2048 bits.")
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())

    @property
    def discovery_document_url(self) -> str:
        """Where the provider's metadata is read."""
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"


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
            raise _fail("metadata", f"the discovery document's issuer {str(doc.get('issuer'))[:200]!r} is not "
                                    f"the configured issuer {expected_issuer!r}; fix the issuer setting "
                                    "(it must match exactly, trailing slash included).", 502)

        def url(name: str, required: bool = True) -> str | None:
            value = doc.get(name)
            if value is None and not required:
                return None
            return _check_url(value, f"the provider's {name}", config=False)

        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise _fail("metadata", "the provider does not support PKCE S256 (code_challenge_methods_supported).", 502)
        return cls(issuer=expected_issuer, authorization_endpoint=url("authorization_endpoint") or "",
                   token_endpoint=url("token_endpoint") or "", jwks_uri=url("jwks_uri") or "",
                   userinfo_endpoint=url("userinfo_endpoint", False), end_session_endpoint=url("end_session_endpoint", False),
                   iss_parameter_supported=doc.get("authorization_response_iss_parameter_supported") is True,
                   raw=dict(doc))


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
        try:
            resp = self.session.request(method, url, timeout=self.timeout, allow_redirects=False,
                                        stream=True, **kw)
        except requests.exceptions.SSLError as exc:
            raise _fail("provider_tls", f"the provider's certificate for {what} is not trusted ({type(exc).__name__}); "
                                        "set ca_bundle to the CA that issued it.", 502) from exc
        except requests.exceptions.Timeout:
            raise _fail("provider_timeout", f"the provider did not answer the {what} in {self.timeout[1]:g}s.", 504) from None
        except requests.exceptions.RequestException as exc:
            raise _fail("provider_unreachable", f"the provider cannot be reached for the {what}: {type(exc).__name__}.", 502) from None
        with resp:
            body = resp.raw.read(_MAX_RESPONSE_BYTES + 1, decode_content=True)
            if len(body) > _MAX_RESPONSE_BYTES:
                raise _fail("provider_answer", f"the provider's {what} answer is larger than 1 MiB; refused.", 502)
            if 300 <= resp.status_code < 400:
                raise _fail("provider_answer", f"the provider answered the {what} with a redirect "
                                               f"({resp.status_code}); redirects are not followed: check the URL.", 502)
            try:
                data = json.loads(body) if body else None
            except ValueError:
                data = None
            return resp.status_code, data

    def get_json(self, url: str, what: str, **kw: Any) -> Any:
        status, data = self.call("GET", url, what, **kw)
        if status != 200 or data is None:
            raise _fail("provider_answer", f"the provider answered the {what} with HTTP {status}"
                                           f"{'' if data is not None else ' and no JSON'}.", 502)
        return data

    def close(self) -> None:
        self.session.close()


class JwksCache:
    """The provider's signing keys by ``kid``, fetched on first use and refetched rarely.

    ``fetch()`` returns the JWKS document. A ``kid`` not in the cache causes one refetch, but
    never more than one per ``refetch_interval`` seconds (a cold or expired cache is not a
    miss). :attr:`fetches` counts every fetch (the bench and the rotation test read it).
    """

    def __init__(self, fetch: Callable[[], Any], *, ttl: float = 86400.0, refetch_interval: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self.ttl = ttl
        self.refetch_interval = refetch_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._objects: dict[tuple[str, str], Any] = {}
        self._loaded_at: float | None = None
        self._last_miss_fetch: float | None = None
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

    def key_for(self, kid: Any, alg: str) -> Any:
        """The verifying key (python-jose, cryptography backend) for ``kid`` and ``alg``."""
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise _fail("unknown_kid", "the token's kid is not a short string; refused.")
        now = self._clock()
        with self._lock:
            if not self._fresh(now):
                self._load()
            jwk = self._pick(kid, alg)
            if jwk is None and kid is not None:
                if self._last_miss_fetch is not None and now - self._last_miss_fetch < self.refetch_interval:
                    raise _fail("unknown_kid", f"the token's kid {kid[:40]!r} is not among the provider's keys "
                                               "(keys refetched recently, not again yet); refused.")
                self._last_miss_fetch = now
                log.info("unknown kid in a token from the provider; refetching its JWKS once")
                self._load()
                jwk = self._pick(kid, alg)
            if jwk is None:
                raise _fail("unknown_kid", f"no key of the provider matches the token (kid {str(kid)[:40]!r}, "
                                           f"alg {alg}); refused.")
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
        kty = "RSA" if alg.startswith("RS") else "EC"
        matching = [k for k in self._keys.values() if k.get("kty") == kty]
        return matching[0] if len(matching) == 1 else None

    @staticmethod
    def _construct(jwk: Mapping[str, Any], alg: str) -> Any:
        kty = jwk.get("kty")
        want = "RSA" if alg.startswith("RS") else "EC"
        if kty != want:
            raise _fail("key_type", f"the token says {alg} but the provider's key {jwk.get('kid')!r} is {kty}; refused "
                                    "(a token must not choose how the provider's key is used).")
        if jwk.get("alg") not in (None, alg):
            raise _fail("key_type", f"the provider's key {jwk.get('kid')!r} is for {jwk.get('alg')}, the token says {alg}; refused.")
        ops = jwk.get("key_ops")
        if isinstance(ops, list) and not {"verify", "sign"} & set(ops):
            raise _fail("key_type", f"the provider's key {jwk.get('kid')!r} is not a signature key (key_ops); refused.")
        if want == "EC" and jwk.get("crv") != _EC_CURVES[alg]:
            raise _fail("key_type", f"{alg} needs a {_EC_CURVES[alg]} key, the provider's key is {jwk.get('crv')!r}; refused.")
        if want == "RSA":
            n = jwk.get("n")
            if not isinstance(n, str) or len(_b64decode(n, "key modulus").lstrip(b"\0")) * 8 < 2048:
                raise _fail("key_type", f"the provider's RSA key {jwk.get('kid')!r} is shorter than 2048 bits; refused.")
        public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            return _jose_jwk.construct(public, alg)
        except Exception as exc:
            raise _fail("jwks", f"the provider's key {jwk.get('kid')!r} cannot be used: {type(exc).__name__}.", 502) from None


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and the browser-binding cookie to set first."""

    url: str = field(repr=False)
    cookie: Cookie
    state: str = field(repr=False)


@dataclass(frozen=True)
class OidcLogin:
    """A verified sign-in: the claims (id_token + userinfo) and what logout needs later."""

    issuer: str
    subject: str
    claims: Mapping[str, Any]
    sid: str | None
    id_token: str = field(repr=False)
    access_token: str | None = field(default=None, repr=False)
    next_url: str | None = None
    clear_cookie: Cookie | None = None


@dataclass(frozen=True)
class LogoutEvent:
    """A verified back-channel logout: end what belongs to ``sid`` (or every session of ``sub``)."""

    issuer: str
    subject: str | None
    sid: str | None
    jti: str = field(repr=False)


class OidcRelyingParty:
    """The relying party for one provider (see the module docstring). Thread-safe.

    :param store: where one-time values live (state/nonce/verifier; used logout-token ``jti``).
        Several portal processes must share one (Redis, Django cache).
    :param clock: seconds since the epoch (tests move it to expire tokens).
    """

    def __init__(self, settings: OidcSettings, store: StateStore, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.http = _ProviderHttp(settings)
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._metadata_lock = threading.Lock()
        self.jwks = JwksCache(self._fetch_jwks, ttl=settings.jwks_ttl,
                              refetch_interval=settings.jwks_refetch_interval)

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
                doc = self.http.get_json(self.settings.discovery_document_url, "discovery document")
                fresh = ProviderMetadata.parse(doc, self.settings.issuer)
            except OidcError as exc:
                if self._metadata is None or getattr(exc, "reason", None) == "metadata":
                    raise
                # The provider is briefly unreachable: keep the last good document a while.
                log.warning("could not refresh the provider's discovery document, keeping the cached one: %s", exc)
                self._metadata_at = now - self.settings.metadata_ttl + min(60.0, self.settings.metadata_ttl)
                return self._metadata
            self._metadata, self._metadata_at = fresh, now
            return fresh

    def _fetch_jwks(self) -> Any:
        return self.http.get_json(self.metadata().jwks_uri, "JWKS")

    # -- the authorization request ------------------------------------------------------
    def browser_cookie(self, value: str) -> Cookie:
        """The browser-binding cookie carrying ``value`` (browser-session, HttpOnly)."""
        samesite = "None" if self.settings.cookie_secure else "Lax"
        return Cookie(self.settings.cookie_name, value, None, "/", self.settings.cookie_secure, True, samesite)

    def clear_browser_cookie(self) -> Cookie:
        """The cookie that removes the browser binding."""
        return self.browser_cookie("x").cleared()

    def begin(self, browser: str | None, next_url: str | None = None, *, prompt: str | None = None,
              login_hint: str | None = None, extra: Mapping[str, str] | None = None) -> AuthorizationRequest:
        """Start a sign-in: keep state/nonce/verifier for this browser; return where to go.

        :param browser: the browser-binding cookie's value if the browser has one (several tabs
            signing in at once share it), else None and a new one is made.
        :param next_url: where to land after sign-in; the caller has already checked it.
        """
        s = self.settings
        meta = self.metadata()
        if not browser or not _BROWSER_VALUE.match(browser):
            browser = secrets.token_urlsafe(32)
        state, nonce, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        record = {"b": _digest(browser), "n": nonce, "v": verifier, "next": next_url, "t": self.clock()}
        self.store.put("oidc:state:" + _digest(state), json.dumps(record).encode(), s.state_ttl)
        params = {
            "response_type": "code", "client_id": s.client_id, "redirect_uri": s.redirect_uri,
            "scope": " ".join(s.scopes), "state": state, "nonce": nonce,
            "code_challenge": _b64encode(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
        }
        if s.response_mode != "query":
            params["response_mode"] = s.response_mode
        if prompt:
            params["prompt"] = prompt
        if login_hint:
            params["login_hint"] = login_hint
        for k, v in (extra or {}).items():
            if k not in params:
                params[k] = v
        sep = "&" if urlsplit(meta.authorization_endpoint).query else "?"
        return AuthorizationRequest(meta.authorization_endpoint + sep + urlencode(params),
                                    self.browser_cookie(browser), state)

    # -- the callback ---------------------------------------------------------------------
    def complete(self, browser: str | None, params: Mapping[str, str]) -> OidcLogin:
        """Finish a sign-in from the callback's parameters (query or form_post body).

        Raises :class:`~qlikauth.exceptions.OidcError` (``.reason`` says which check failed)
        before anything is signed in anywhere.
        """
        state = params.get("state")
        if not state or not isinstance(state, str) or len(state) > 512:
            raise _fail("state_missing", "the callback has no state: start signing in from the portal again.", 400)
        raw = self.store.take("oidc:state:" + _digest(state))
        if raw is None:
            raise _fail("state_unknown", "this sign-in link is unknown, expired or already used: start "
                                         "signing in from the portal again.", 400)
        record = json.loads(raw)
        if not browser or not hmac.compare_digest(_digest(browser), str(record.get("b"))):
            raise _fail("state_browser", "this sign-in was started in another browser (or the portal's "
                                         "sign-in cookie was lost); start signing in again here.", 400)
        meta = self.metadata()
        iss = params.get("iss")
        if iss is not None and iss != self.settings.issuer and _TENANT_PLACEHOLDER not in self.settings.issuer:
            raise _fail("issuer", "the authorization response comes from another issuer (iss parameter); refused.")
        if iss is None and meta.iss_parameter_supported:
            raise _fail("issuer", "the provider sends the iss parameter but this response has none; refused.")
        if params.get("error"):
            error = re.sub(r"[^A-Za-z0-9_.-]", "", str(params["error"]))[:64]
            desc = re.sub(r"[^\w .,:;'()-]", "", str(params.get("error_description") or ""))[:200]
            raise _fail("provider_error", f"the provider refused the sign-in: {error}"
                                          f"{' (' + desc + ')' if desc else ''}.", 401)
        code = params.get("code")
        if not code or not isinstance(code, str) or len(code) > 4096:
            raise _fail("code_missing", "the callback has no authorization code; start signing in again.", 400)
        tokens = self._token_request(meta, code, str(record["v"]))
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise _fail("token_response", "the provider's token answer has no id_token (is 'openid' allowed for this client?).", 502)
        access_token = tokens.get("access_token") if isinstance(tokens.get("access_token"), str) else None
        claims = self.validate_id_token(id_token, nonce=str(record["n"]), access_token=access_token)
        if self.settings.userinfo and meta.userinfo_endpoint and access_token:
            extra = self.fetch_userinfo(access_token, claims["sub"])
            claims = {**{k: v for k, v in extra.items()}, **claims}
        return OidcLogin(issuer=str(claims["iss"]), subject=str(claims["sub"]), claims=claims,
                         sid=claims.get("sid") if isinstance(claims.get("sid"), str) else None,
                         id_token=id_token, access_token=access_token, next_url=record.get("next"),
                         clear_cookie=self.clear_browser_cookie())

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
        assertion = {"iss": s.client_id, "sub": s.client_id, "aud": meta.token_endpoint,
                     "jti": secrets.token_urlsafe(24), "iat": now, "exp": now + 60}
        key = s.client_private_key
        assert isinstance(key, bytes)
        alg = "ES256" if b"EC PRIVATE" in key or self._is_ec(key) else "RS256"
        headers = {"kid": s.client_key_id} if s.client_key_id else None
        data["client_assertion_type"] = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        data["client_assertion"] = _jose_jws.sign(assertion, key.decode(), headers=headers, algorithm=alg)
        return None

    @staticmethod
    def _is_ec(pem: bytes) -> bool:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        return isinstance(serialization.load_pem_private_key(pem, password=None), ec.EllipticCurvePrivateKey)

    def _token_request(self, meta: ProviderMetadata, code: str, verifier: str) -> Mapping[str, Any]:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.settings.redirect_uri,
                "code_verifier": verifier}
        auth = self._client_auth(meta, data)
        status, body = self.http.call("POST", meta.token_endpoint, "token request", data=data, auth=auth,
                                      headers={"Accept": "application/json"})
        if status != 200 or not isinstance(body, Mapping):
            err = body.get("error") if isinstance(body, Mapping) else None
            code_ = re.sub(r"[^A-Za-z0-9_.-]", "", str(err or ""))[:64]
            hint = {
                "invalid_grant": " (the code was already used or expired, or the PKCE verifier does not match: "
                                 "start signing in again)",
                "invalid_client": " (the client id or its credentials are wrong: check client_secret / "
                                  "client_private_key and token_endpoint_auth_method)",
            }.get(code_, "")
            raise _fail("token_request", f"the provider refused the token request: HTTP {status}"
                                         f"{' ' + code_ if code_ else ''}{hint}.", 401 if code_ else 502)
        token_type = body.get("token_type")
        if body.get("access_token") is not None and str(token_type).lower() not in ("bearer", "dpop"):
            raise _fail("token_response", f"the provider's token_type is {str(token_type)[:20]!r}, not Bearer.", 502)
        return body

    # -- JWT checks -----------------------------------------------------------------------
    def _verify_jws(self, token: Any, what: str) -> tuple[dict[str, Any], dict[str, Any]]:
        s = self.settings
        if not isinstance(token, str) or not token:
            raise _fail("malformed", f"the {what} is missing.")
        if len(token) > s.max_token_bytes:
            raise _fail("too_large", f"the {what} is larger than {s.max_token_bytes} bytes; refused before parsing.")
        parts = token.split(".")
        if len(parts) != 3:
            raise _fail("malformed", f"the {what} is not a signed JWT (compact JWS; encrypted tokens are not accepted).")
        try:
            header = json.loads(_b64decode(parts[0], f"{what} header"))
            claims = json.loads(_b64decode(parts[1], f"{what} payload"))
        except ValueError:
            raise _fail("malformed", f"the {what} header or payload is not JSON; refused.") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise _fail("malformed", f"the {what} header or payload is not a JSON object; refused.")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise _fail("alg_none", f"the {what} is unsigned (alg 'none'); refused.")
        if alg not in s.algorithms:
            raise _fail("alg_not_allowed", f"the {what} is signed with {alg[:20]!r}, which is not allowed "
                                           f"(allowed: {', '.join(s.algorithms)}); refused.")
        for carried in ("jwk", "jku", "x5u"):
            if carried in header:
                raise _fail("header", f"the {what} names its own key ({carried} header); keys come only from "
                                      "the provider's JWKS; refused.")
        if "crit" in header:
            raise _fail("header", f"the {what} has critical header extensions qlikauth does not implement; refused.")
        signature = _b64decode(parts[2], f"{what} signature")
        if not signature:
            raise _fail("signature", f"the {what} has an empty signature; refused.")
        key = self.jwks.key_for(header.get("kid"), alg)
        if not key.verify(f"{parts[0]}.{parts[1]}".encode("ascii"), signature):
            raise _fail("signature", f"the {what}'s signature does not verify with the provider's key "
                                     f"{str(header.get('kid'))[:40]!r}; refused.")
        return header, claims

    def _expected_issuer(self, claims: Mapping[str, Any]) -> str:
        issuer = self.settings.issuer
        if _TENANT_PLACEHOLDER not in issuer:
            return issuer
        tid = claims.get("tid")
        if not isinstance(tid, str) or not re.fullmatch(r"[0-9a-fA-F-]{36}", tid):
            raise _fail("issuer", "the token has no Entra tenant id (tid) for the {tenantid} issuer; refused.")
        if "*" not in self.settings.tenants and tid.lower() not in {t.lower() for t in self.settings.tenants}:
            raise _fail("tenant", f"tenant {tid} is not among the tenants allowed to sign in (OIDC tenants); refused.")
        return issuer.replace(_TENANT_PLACEHOLDER, tid)

    def _check_claims(self, claims: Mapping[str, Any], what: str, *, require_exp: bool = True) -> None:
        s = self.settings
        now = self.clock()
        expected = self._expected_issuer(claims)
        if claims.get("iss") != expected:
            raise _fail("issuer", f"the {what} was issued by {str(claims.get('iss'))[:120]!r}, not by the configured "
                                  f"issuer {expected!r}; refused.")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else None
        if not audiences or not all(isinstance(a, str) for a in audiences):
            raise _fail("audience", f"the {what} has no audience; refused.")
        if s.client_id not in audiences:
            raise _fail("audience", f"the {what} is for another client (aud does not contain this portal's "
                                    "client id); refused.")
        azp = claims.get("azp")
        if len(audiences) > 1 and azp is None:
            raise _fail("audience", f"the {what} has several audiences and no azp; refused.")
        if azp is not None and azp != s.client_id:
            raise _fail("audience", f"the {what} was issued to another party (azp); refused.")
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _fail("malformed", f"the {what}'s {name} is not a number; refused.")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if exp is None and require_exp:
            raise _fail("expired", f"the {what} has no expiry (exp); refused.")
        if exp is not None and now > exp + s.leeway:
            raise _fail("expired", f"the {what} expired {int(now - exp)}s ago; sign in again.")
        if iat is None:
            raise _fail("iat", f"the {what} has no issue time (iat); refused.")
        if iat > now + s.leeway:
            raise _fail("iat_future", f"the {what} was issued {int(iat - now)}s in the future (more than the "
                                      f"{s.leeway:g}s leeway): check the clocks; refused.")
        if nbf is not None and nbf > now + s.leeway:
            raise _fail("not_yet_valid", f"the {what} is not valid for another {int(nbf - now)}s; refused.")

    def validate_id_token(self, token: str, *, nonce: str | None, access_token: str | None = None) -> dict[str, Any]:
        """Verify an id_token (see the module docstring); return its claims."""
        header, claims = self._verify_jws(token, "id_token")
        if header.get("typ") not in (None, "JWT", "jwt", "application/jwt"):
            raise _fail("header", f"the id_token's typ is {str(header.get('typ'))[:30]!r}; refused.")
        self._check_claims(claims, "id_token")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 255:
            raise _fail("subject", "the id_token has no usable subject (sub); refused.")
        if "events" in claims:
            raise _fail("header", "a logout token was sent where an id_token belongs; refused.")
        if nonce is not None:
            got = claims.get("nonce")
            if got is None:
                raise _fail("nonce_missing", "the id_token has no nonce, so it cannot be tied to this sign-in; refused.")
            if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
                raise _fail("nonce_mismatch", "the id_token's nonce belongs to another sign-in; refused.")
        at_hash = claims.get("at_hash")
        if at_hash is not None and access_token is not None:
            hash_fn = _HASHES[str(header["alg"])[2:]]
            digest = hash_fn(access_token.encode("ascii", "replace")).digest()
            if not isinstance(at_hash, str) or not hmac.compare_digest(_b64encode(digest[: len(digest) // 2]), at_hash):
                raise _fail("at_hash", "the access token does not belong to this id_token (at_hash); refused.")
        return claims

    def fetch_userinfo(self, access_token: str, subject: str) -> dict[str, Any]:
        """The userinfo claims; their ``sub`` must be the id_token's."""
        meta = self.metadata()
        if not meta.userinfo_endpoint:
            return {}
        status, body = self.http.call("GET", meta.userinfo_endpoint, "userinfo request",
                                      headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"})
        if status != 200 or not isinstance(body, Mapping):
            raise _fail("userinfo", f"the provider answered the userinfo request with HTTP {status} "
                                    "(signed or encrypted userinfo is not supported).", 502)
        if body.get("sub") != subject:
            raise _fail("userinfo", "the userinfo answer is about another subject than the id_token; refused.")
        return {k: v for k, v in body.items() if k not in ("iss", "aud", "exp", "iat", "nbf", "nonce", "azp")}

    # -- logout ---------------------------------------------------------------------------
    def validate_logout_token(self, token: str) -> LogoutEvent:
        """Verify a back-channel ``logout_token`` and use its ``jti`` up (see the module docstring)."""
        header, claims = self._verify_jws(token, "logout_token")
        if header.get("typ") not in (None, "JWT", "jwt", "logout+jwt", "application/logout+jwt"):
            raise _fail("header", f"the logout_token's typ is {str(header.get('typ'))[:30]!r}; refused.", 400)
        try:
            self._check_claims(claims, "logout_token", require_exp=False)
        except OidcError as exc:
            exc.status = 400
            raise
        iat = float(claims["iat"])
        if self.clock() - iat > self.settings.logout_token_max_age + self.settings.leeway:
            raise _fail("expired", f"the logout_token was issued {int(self.clock() - iat)}s ago (older than "
                                   f"{self.settings.logout_token_max_age:g}s); refused.", 400)
        if "nonce" in claims:
            raise _fail("logout_nonce", "the logout_token carries a nonce (an id_token sent as a logout token?); refused.", 400)
        events = claims.get("events")
        if not isinstance(events, Mapping) or not isinstance(events.get(BACKCHANNEL_LOGOUT_EVENT), Mapping):
            raise _fail("logout_events", "the logout_token lacks the back-channel logout event "
                                         f"({BACKCHANNEL_LOGOUT_EVENT}); refused.", 400)
        sub, sid = claims.get("sub"), claims.get("sid")
        sub = sub if isinstance(sub, str) and sub else None
        sid = sid if isinstance(sid, str) and sid else None
        if sub is None and sid is None:
            raise _fail("logout_subject", "the logout_token names neither a session (sid) nor a subject (sub); refused.", 400)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise _fail("logout_jti", "the logout_token has no jti; refused.", 400)
        ttl = self.settings.logout_token_max_age + 2 * self.settings.leeway
        if not self.store.add("oidc:jti:" + _digest(f"{claims['iss']}|{jti}"), b"1", ttl):
            raise _fail("logout_replay", "this logout_token was already used (jti seen before); refused.", 400)
        return LogoutEvent(issuer=str(claims["iss"]), subject=sub, sid=sid, jti=jti)

    def logout_url(self, id_token_hint: str | None, post_logout_redirect_uri: str | None = None, *,
                   allowed: Iterable[str] = (), state: str | None = None) -> str | None:
        """The provider's RP-initiated logout URL, or None when it has no end_session_endpoint.

        ``post_logout_redirect_uri`` (default: the setting) must be a path or on an allowed
        origin (the setting's own, the redirect URI's, or ``allowed``); otherwise
        :class:`~qlikauth.RedirectError` is raised and nothing is sent.
        """
        from ..redirects import RedirectPolicy

        meta = self.metadata()
        if not meta.end_session_endpoint:
            return None
        base = self.settings.post_logout_redirect_uri or self.settings.redirect_uri
        target = post_logout_redirect_uri or self.settings.post_logout_redirect_uri
        params: dict[str, str] = {"client_id": self.settings.client_id}
        if target:
            policy = RedirectPolicy([base, *allowed], default=base)
            try:
                params["post_logout_redirect_uri"] = policy.check(target)
            except RedirectError as exc:
                raise RedirectError(f"post_logout_redirect_uri refused: {exc}") from None
        if id_token_hint:
            params["id_token_hint"] = id_token_hint
        if state:
            params["state"] = state
        sep = "&" if urlsplit(meta.end_session_endpoint).query else "?"
        return meta.end_session_endpoint + sep + urlencode(params)

    def close(self) -> None:
        """Close the provider session's pooled connections."""
        self.http.close()
