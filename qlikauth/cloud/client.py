"""A Qlik Cloud tenant client: JWT sign-in, the CSRF token, the users API and OAuth tokens.

What Qlik documents (qlik.dev: the Login, CSRF token, Users and OAuth API references; the
JWT and *Private Key JWT* guides; Qlik's ``@qlik/api`` source) and this module follows:

- ``POST /login/jwt-session`` with ``Authorization: Bearer <jwt>`` answers 200 with the
  cookies ``eas.sid``, ``eas.sid.sig``, ``_csrfToken``, ``_csrfToken.sig``; errors are
  ``{"errors": [{"title", "detail", "code", "status"}]}`` (401, or 400 for a token that
  breaks the claim rules). A browser also sends ``qlik-web-integration-id`` and must come
  from an origin the web integration allows. 100 calls a minute.
- ``GET /api/v1/csrf-token`` answers 204 with the header ``qlik-csrf-token``.
- ``POST /oauth/token`` (JSON): ``urn:qlik:oauth:user-impersonation`` with ``user_lookup``
  ``{"field": "subject" | "userId", "value"}``, or ``client_credentials``; the client
  authenticates with ``client_secret`` or with ``client_assertion`` +
  ``client_assertion_type`` (private_key_jwt: ``iss`` = ``sub`` = the client id, ``aud`` =
  the token endpoint URL without a trailing slash, a fresh ``jti``, ``exp`` at most 5
  minutes after ``iat``, header ``kid``; RS256, RS512 or ES384). Access tokens last 6 hours
  and are opaque. ``POST /oauth/revoke`` ``{"token", "token_type_hint"}`` answers 200.

Every call goes over one verified, proxy-free, redirect-free channel
(:class:`~qlikauth._provider_http.ProviderChannel`). Tokens, cookies and keys never appear
in logs or messages.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import logging
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qs, quote, urlsplit

from .._provider_http import ProviderChannel
from ..exceptions import ConfigurationError, QlikEndpointError, QlikEndpointHTTPError
from ..jwtkeys import ASYMMETRIC_ALGORITHMS, SigningKey, compact_json

__all__ = [
    "CloudUser",
    "CloudJwtIssuer",
    "CloudSession",
    "QlikCloud",
    "OAuthClient",
    "AccessToken",
    "JWT_SESSION_AUDIENCE",
    "IMPERSONATION_GRANT",
    "CLIENT_ASSERTION_TYPE",
    "SESSION_COOKIES",
]

log = logging.getLogger("qlikauth.cloud")

#: The ``aud`` of a Qlik Cloud JWT login.
JWT_SESSION_AUDIENCE = "qlik.api/login/jwt-session"
#: The OAuth grant of machine-to-machine impersonation.
IMPERSONATION_GRANT = "urn:qlik:oauth:user-impersonation"
#: RFC 7523's client assertion type (private_key_jwt).
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: The cookies ``/login/jwt-session`` sets.
SESSION_COOKIES = ("eas.sid", "eas.sid.sig", "_csrfToken", "_csrfToken.sig")
#: Qlik Cloud refuses a JWT whose exp - nbf is longer than this.
MAX_JWT_WINDOW = 3600
#: Qlik's private_key_jwt algorithms and the longest assertion it takes (exp - iat).
PRIVATE_KEY_JWT_ALGORITHMS = ("RS256", "RS512", "ES384")
MAX_ASSERTION_LIFETIME = 300
#: The claims written afresh for every token (the rest come from the identity: see
#: CloudJwtIssuer.mint).
_PER_TOKEN_CLAIMS = ("jti", "iat", "nbf", "exp")
#: How many distinct identities CloudJwtIssuer keeps encoded claims for.
_ENCODED_IDENTITIES = 4096
#: Qlik documents 6 h access tokens; used only when an answer gives no expiry at all.
DEFAULT_TOKEN_LIFETIME = 21600.0


@runtime_checkable
class CloudUser(Protocol):
    """The Qlik Cloud identity of one person (``qlikauth.mapping.CloudIdentity`` is one)."""

    @property
    def sub(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def email(self) -> str: ...
    @property
    def email_verified(self) -> bool: ...
    @property
    def groups(self) -> Sequence[str]: ...


def _tenant_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ConfigurationError(
            f"tenant_url {url!r} must be the tenant's https origin, e.g. "
            "https://acme.eu.qlikcloud.com."
        )
    return f"https://{parts.netloc}"


def _verified(value: Any) -> bool:
    """``email_verified`` read strictly: a bool, or the words true/false.

    Never ``bool(value)``: ``bool("false")`` is True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigurationError(
        "the Qlik Cloud identity's email_verified must be true or false, not "
        f"{type(value).__name__} {str(value)[:20]!r}."
    )


class CloudJwtIssuer:
    """Mints Qlik Cloud JWT-login tokens with every claim Qlik requires.

    :param signing_key: the JWT identity provider's key (RS/PS/ES, never HS) with the
        ``kid`` configured at the IdP (Management Console > Identity provider > JWT).
    :param issuer: the IdP's *issuer* setting, compared exactly by Qlik.
    :param lifetime: seconds from now to ``exp``; ``nbf`` is ``now - not_before_skew`` and
        ``exp - nbf`` may not exceed 3600 s.
    """

    def __init__(
        self,
        signing_key: SigningKey,
        issuer: str,
        *,
        lifetime: float = 300.0,
        not_before_skew: float = 5.0,
    ) -> None:
        if not isinstance(signing_key, SigningKey):
            raise ConfigurationError("signing_key must be a qlikauth.jwtkeys.SigningKey.")
        if (
            signing_key.algorithm not in ASYMMETRIC_ALGORITHMS
        ):  # pragma: no cover - SigningKey refuses them
            raise ConfigurationError("Qlik Cloud JWTs must be signed with RS, PS or ES algorithms.")
        if not signing_key.kid:
            raise ConfigurationError(
                "Qlik Cloud JWTs need a kid: build the SigningKey with kid= the key id of the JWT "
                "identity provider."
            )
        if not isinstance(issuer, str) or not issuer.strip():
            raise ConfigurationError("issuer must be the JWT identity provider's issuer setting.")
        if lifetime <= 0 or not_before_skew < 0 or lifetime + not_before_skew > MAX_JWT_WINDOW:
            raise ConfigurationError(
                f"lifetime + not_before_skew must be positive and at most {MAX_JWT_WINDOW} s "
                "(Qlik Cloud refuses exp - nbf over an hour)."
            )
        self.signing_key = signing_key
        self.issuer = issuer
        self.lifetime = float(lifetime)
        self.not_before_skew = float(not_before_skew)
        # identity -> its claims written as JSON, around the slot of the per-token claims
        self._encoded: dict[tuple[Any, ...], tuple[str, str]] = {}

    def claims(self, user: CloudUser, *, now: float | None = None) -> dict[str, Any]:
        """The claims for ``user``: iss, aud, sub, subType, name, email, email_verified, groups,
        jti, iat, nbf, exp."""
        now = time.time() if now is None else now
        for attr in ("sub", "name", "email"):
            value = getattr(user, attr, None)
            if not isinstance(value, str) or not value.strip():
                raise ConfigurationError(
                    f"the Qlik Cloud identity has no {attr}: Qlik Cloud requires it in the JWT."
                )
        groups = [str(g) for g in (user.groups or ())]
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": JWT_SESSION_AUDIENCE,
            "sub": user.sub,
            "subType": "user",
            "name": user.name,
            "email": user.email,
            "email_verified": _verified(user.email_verified),
            "jti": secrets.token_urlsafe(24),
            "iat": int(now),
            "nbf": int(now - self.not_before_skew),
            "exp": int(now + self.lifetime),
        }
        if groups:
            claims["groups"] = groups
        return claims

    def mint(self, user: CloudUser, *, now: float | None = None) -> str:
        """A signed JWT for ``user`` (one use: ``jti`` is fresh every time): :meth:`claims`, signed.

        The claims that come from the identity (``iss`` to ``email_verified``, ``groups``) are
        checked and written as JSON once per distinct identity (a bounded cache keyed by every
        value they come from); each token writes its own ``jti``, ``iat``, ``nbf`` and ``exp``
        into that text. The JSON is the same, byte for byte, as :meth:`claims` encoded: with an
        EC key, encoding the claims again for every token cost about a sixth of the minting.
        """
        now = time.time() if now is None else now
        if type(self).claims is not CloudJwtIssuer.claims:  # a subclass's own claims: use them
            return self.signing_key.sign(self.claims(user, now=now))
        groups = user.groups
        if groups and not isinstance(groups, (list, tuple)):  # read once, by claims() itself
            return self.signing_key.sign(self.claims(user, now=now))
        try:
            key = (
                user.sub,
                user.name,
                user.email,
                user.email_verified,
                tuple(groups) if groups else (),
            )
            parts = self._encoded.get(key)
        except TypeError:  # an unhashable value: no caching for this identity
            return self.signing_key.sign(self.claims(user, now=now))
        if parts is None:
            parts = self._encode_identity(user)
            if len(self._encoded) >= _ENCODED_IDENTITIES:
                self._encoded.clear()  # bounded: a very large user base only re-encodes
            self._encoded[key] = parts
        body = (
            f'{parts[0]},"jti":"{secrets.token_urlsafe(24)}","iat":{int(now)},'
            f'"nbf":{int(now - self.not_before_skew)},"exp":{int(now + self.lifetime)}{parts[1]}'
        )
        return self.signing_key.sign_payload(body.encode("ascii"))

    def _encode_identity(self, user: CloudUser) -> tuple[str, str]:
        """The JSON of ``claims(user)`` before ``jti`` (without its closing brace) and after
        ``exp``."""
        claims = self.claims(user, now=0.0)  # every claim rule checked here
        head = {k: v for k, v in claims.items() if k not in _PER_TOKEN_CLAIMS and k != "groups"}
        tail = ',"groups":' + compact_json(claims["groups"]) + "}" if "groups" in claims else "}"
        return compact_json(head)[:-1], tail


@dataclass(frozen=True)
class CloudSession:
    """The cookies of a Qlik Cloud session (from ``/login/jwt-session``); never log them."""

    cookies: dict[str, str] = field(repr=False)

    def cookie_header(self) -> str:
        """The ``Cookie`` header value that carries the session."""
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


@dataclass(frozen=True)
class AccessToken:
    """An OAuth access token (opaque) and when it expires (epoch seconds)."""

    access_token: str = field(repr=False)
    expires_at: float
    token_type: str = "bearer"  # noqa: S105 - the token type, not a secret
    scope: str = ""

    def expires_in(self, now: float | None = None) -> float:
        """Seconds left (negative once expired)."""
        return self.expires_at - (time.time() if now is None else now)

    def to_json(self) -> bytes:
        """For a :class:`~qlikauth.store.StateStore`."""
        return json.dumps(
            {"t": self.access_token, "e": self.expires_at, "y": self.token_type, "s": self.scope}
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AccessToken:
        """The inverse of :meth:`to_json`."""
        d = json.loads(data)
        return cls(d["t"], float(d["e"]), d.get("y", "bearer"), d.get("s", ""))


class OAuthClient:
    """A Qlik Cloud OAuth client (type Web, machine-to-machine impersonation) and how it
    authenticates.

    Give ``client_secret``, or ``private_key`` for private_key_jwt (a
    :class:`~qlikauth.jwtkeys.SigningKey` with RS256, RS512 or ES384 and the ``kid`` of the
    public key registered on the client), not both.
    """

    def __init__(
        self,
        client_id: str,
        *,
        client_secret: str | None = None,
        private_key: SigningKey | None = None,
        scope: str = "user_default",
        assertion_lifetime: float = 60.0,
    ) -> None:
        if not isinstance(client_id, str) or not client_id.strip():
            raise ConfigurationError(
                "client_id must be the OAuth client's id (Administration > OAuth)."
            )
        if (client_secret is None) == (private_key is None):
            raise ConfigurationError(
                "give the OAuth client either client_secret or private_key (private_key_jwt)."
            )
        if private_key is not None:
            if private_key.algorithm not in PRIVATE_KEY_JWT_ALGORITHMS:
                raise ConfigurationError(
                    f"Qlik Cloud's private_key_jwt takes {', '.join(PRIVATE_KEY_JWT_ALGORITHMS)}, "
                    f"not {private_key.algorithm}."
                )
            if not private_key.kid:
                raise ConfigurationError(
                    "private_key needs kid= the key id of the JWK registered on the OAuth client."
                )
            if not 0 < assertion_lifetime <= MAX_ASSERTION_LIFETIME:
                raise ConfigurationError(
                    f"assertion_lifetime must be at most {MAX_ASSERTION_LIFETIME} s."
                )
        self.client_id = client_id
        self._secret = client_secret
        self.private_key = private_key
        self.scope = scope
        self.assertion_lifetime = float(assertion_lifetime)

    @property
    def method(self) -> str:
        """``client_secret`` or ``private_key_jwt``."""
        return "client_secret" if self._secret is not None else "private_key_jwt"

    def credentials(self, token_endpoint: str, *, now: float | None = None) -> dict[str, str]:
        """The client-authentication fields of a token request body."""
        if self._secret is not None:
            return {"client_id": self.client_id, "client_secret": self._secret}
        assert self.private_key is not None
        now = time.time() if now is None else now
        # qlik.dev (Private Key JWT reference): jti is "a new UUID for each token request".
        assertion = self.private_key.sign(
            {
                "iss": self.client_id,
                "sub": self.client_id,
                "aud": token_endpoint,
                "jti": str(uuid.uuid4()),
                "iat": int(now),
                "exp": int(now + self.assertion_lifetime),
            }
        )
        return {
            "client_id": self.client_id,
            "client_assertion": assertion,
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
        }

    def __repr__(self) -> str:
        return (
            f"OAuthClient(client_id={self.client_id!r}, method={self.method!r}, "
            f"scope={self.scope!r})"
        )


def _retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


def _token_from(data: Any, now: float, url: str) -> AccessToken:
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("access_token"), str)
        or not data["access_token"]
    ):
        raise QlikEndpointError("the tenant's /oauth/token answer has no access_token.", url=url)
    expires_at: float | None = None
    if isinstance(data.get("expires_in"), (int, float)) and not isinstance(
        data.get("expires_in"), bool
    ):
        expires_at = now + float(data["expires_in"])
    elif isinstance(data.get("expires_at"), str):
        # Qlik's schema documents expires_at (ISO 8601); RFC 6749 servers send expires_in.
        try:
            expires_at = _dt.datetime.fromisoformat(
                data["expires_at"].replace("Z", "+00:00")
            ).timestamp()
        except ValueError:
            expires_at = None
    if expires_at is None:
        expires_at = now + DEFAULT_TOKEN_LIFETIME
    return AccessToken(
        data["access_token"],
        expires_at,
        str(data.get("token_type") or "bearer"),
        str(data.get("scope") or ""),
    )


class QlikCloud:
    """One Qlik Cloud tenant.

    :param tenant_url: ``https://<tenant>.<region>.qlikcloud.com``.
    :param verify: ``True`` (system trust) or a CA bundle file; never ``False``.
    :param timeout: read timeout in seconds (connect: at most 5 s).
    :param rate_limit_retries: how often :meth:`token` tries again after a 429 (Qlik's rate
        limit: ``/oauth/token`` takes 100 calls a minute).
    :param max_retry_wait: the longest wait in seconds for one retry; a ``Retry-After`` longer
        than this is raised at once (a portal request should not hang for a minute).
    """

    def __init__(
        self,
        tenant_url: str,
        *,
        verify: bool | str | Path = True,
        timeout: float = 10.0,
        pool_maxsize: int = 20,
        rate_limit_retries: int = 3,
        max_retry_wait: float = 10.0,
    ) -> None:
        if rate_limit_retries < 0 or max_retry_wait < 0:
            raise ConfigurationError("rate_limit_retries and max_retry_wait must not be negative.")
        self.rate_limit_retries = int(rate_limit_retries)
        self.max_retry_wait = float(max_retry_wait)
        self.tenant_url = _tenant_url(tenant_url)
        self.token_endpoint = self.tenant_url + "/oauth/token"
        self._channel = ProviderChannel(
            self.tenant_url,
            verify=verify,
            timeout=timeout,
            pool_maxsize=pool_maxsize,
            what="the Qlik Cloud tenant",
        )

    # -- JWT sign-in ---------------------------------------------------------------
    def jwt_session(
        self, token: str, *, web_integration_id: str | None = None, origin: str | None = None
    ) -> CloudSession:
        """Exchange a JWT for a session (``POST /login/jwt-session``): the session cookies.

        ``web_integration_id`` and ``origin`` are what a browser sends; a backend call needs
        neither.
        """
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if web_integration_id:
            headers["qlik-web-integration-id"] = web_integration_id
        if origin:
            headers["Origin"] = origin
        resp = self._channel.request("POST", "/login/jwt-session", headers=headers)
        cookies = {k: v for k, v in resp.cookies.items() if k in SESSION_COOKIES}
        if "eas.sid" not in cookies:
            raise QlikEndpointError(
                "the tenant accepted the JWT but set no eas.sid session cookie.", url=resp.url
            )
        return CloudSession(cookies)

    def csrf_token(self, session: CloudSession) -> str:
        """``GET /api/v1/csrf-token`` with the session: the ``qlik-csrf-token`` for state-changing
        calls."""
        resp = self._channel.request(
            "GET",
            "/api/v1/csrf-token",
            headers={"Cookie": session.cookie_header()},
            expect=(200, 204),
        )
        token = resp.headers.get("qlik-csrf-token")
        if not token:
            raise QlikEndpointError(
                "the tenant answered /api/v1/csrf-token without a qlik-csrf-token header.",
                url=resp.url,
            )
        return token

    def _auth(
        self, session: CloudSession | None, access_token: AccessToken | str | None
    ) -> dict[str, str]:
        if access_token is not None:
            tok = (
                access_token.access_token if isinstance(access_token, AccessToken) else access_token
            )
            return {"Authorization": f"Bearer {tok}"}
        if session is not None:
            return {"Cookie": session.cookie_header()}
        raise ConfigurationError("pass a session or an access token.")

    # -- users ---------------------------------------------------------------------
    def me(
        self, *, session: CloudSession | None = None, access_token: AccessToken | str | None = None
    ) -> dict[str, Any]:
        """``GET /api/v1/users/me``: who the session or token belongs to."""
        data = self._channel.request(
            "GET", "/api/v1/users/me", headers=self._auth(session, access_token)
        ).json()
        if not isinstance(data, dict):
            raise QlikEndpointError("the tenant's /api/v1/users/me answer is not a user object.")
        return data

    def find_user(self, subject: str, *, access_token: AccessToken | str) -> dict[str, Any] | None:
        """The tenant's user with this ``subject``, or None (``GET /api/v1/users?filter=subject eq
        "..."``)."""
        value = subject.replace("\\", "\\\\").replace('"', '\\"')
        data = self._channel.request(
            "GET",
            "/api/v1/users",
            params={"filter": f'subject eq "{value}"'},
            headers=self._auth(None, access_token),
        ).json()
        users = data.get("data") if isinstance(data, dict) else None
        if isinstance(users, list) and users and isinstance(users[0], dict):
            return users[0]
        return None

    def create_user(self, user: CloudUser, *, access_token: AccessToken | str) -> dict[str, Any]:
        """``POST /api/v1/users`` (subject, name, email): 201, or the existing user on 409."""
        body = {"subject": user.sub, "name": user.name, "email": user.email, "status": "active"}
        try:
            data = self._channel.request(
                "POST",
                "/api/v1/users",
                json_body=body,
                headers=self._auth(None, access_token),
                expect=(200, 201),
            ).json()
        except QlikEndpointError as exc:
            if getattr(exc, "status_code", None) == 409:
                found = self.find_user(user.sub, access_token=access_token)
                if found is not None:
                    return found
            raise
        return data if isinstance(data, dict) else {}

    # -- the OAuth tokens API (list and revoke a user's tokens) -----------------------
    def oauth_tokens(
        self, user_id: str, *, access_token: AccessToken | str, max_pages: int = 20
    ) -> list[dict[str, Any]]:
        """The user's active OAuth tokens (``GET /api/v1/oauth-tokens?userId=...``), every page.

        ``user_id`` is the tenant's user id (:meth:`find_user`'s ``id``), not the subject. The
        caller's token needs the ``TenantAdmin`` role to list another user's tokens. Pages are
        followed only on this tenant (a ``next`` link elsewhere is refused).
        """
        out: list[dict[str, Any]] = []
        params: dict[str, str] = {"userId": user_id, "limit": "100"}
        for _ in range(max_pages):
            data = self._channel.request(
                "GET", "/api/v1/oauth-tokens", params=params, headers=self._auth(None, access_token)
            ).json()
            page = data.get("data") if isinstance(data, dict) else None
            if not isinstance(page, list):
                raise QlikEndpointError(
                    "the tenant's /api/v1/oauth-tokens answer has no data list."
                )
            out += [t for t in page if isinstance(t, dict)]
            nxt = ((data.get("links") or {}).get("next") or {}).get("href")
            if not nxt:
                return out
            parts = urlsplit(nxt)
            if (
                f"{parts.scheme}://{parts.netloc}" != self.tenant_url
                or parts.path != "/api/v1/oauth-tokens"
            ):
                raise QlikEndpointError(
                    "the tenant's next page of OAuth tokens points elsewhere; refused."
                )
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
        return out

    def revoke_oauth_token(self, token_id: str, *, access_token: AccessToken | str) -> bool:
        """``DELETE /api/v1/oauth-tokens/{id}``: True when it was revoked, False when
        already gone."""
        resp = self._channel.request(
            "DELETE",
            f"/api/v1/oauth-tokens/{quote(token_id, safe='')}",
            headers=self._auth(None, access_token),
            expect=(204, 200, 404),
        )
        return resp.status_code != 404

    # -- the tenant's configuration (read-only; the TenantAdmin role) ------------------
    def web_integration(
        self, integration_id: str, *, access_token: AccessToken | str
    ) -> dict[str, Any]:
        """``GET /api/v1/web-integrations/{id}``: its ``name`` and ``validOrigins``."""
        data = self._channel.request(
            "GET",
            f"/api/v1/web-integrations/{quote(integration_id, safe='')}",
            headers=self._auth(None, access_token),
        ).json()
        if not isinstance(data, dict):
            raise QlikEndpointError("the tenant's web integration answer is not an object.")
        return data

    def identity_providers(self, *, access_token: AccessToken | str) -> list[dict[str, Any]]:
        """``GET /api/v1/identity-providers``: the tenant's identity providers (for a JWT one,
        ``options.issuer`` and ``options.staticKeys``, each a ``kid`` and a ``pem``)."""
        data = self._channel.request(
            "GET", "/api/v1/identity-providers", headers=self._auth(None, access_token)
        ).json()
        idps = data.get("data") if isinstance(data, dict) else None
        if not isinstance(idps, list):
            raise QlikEndpointError("the tenant's identity providers answer has no data list.")
        return [i for i in idps if isinstance(i, dict)]

    # -- OAuth ---------------------------------------------------------------------
    def token(
        self,
        client: OAuthClient,
        *,
        subject: str | None = None,
        user_id: str | None = None,
        scope: str | None = None,
        now: float | None = None,
    ) -> AccessToken:
        """``POST /oauth/token``: impersonation when ``subject`` or ``user_id`` is given, else
        client_credentials.

        ``now`` is the caller's clock (epoch seconds) for turning ``expires_in`` into
        ``expires_at``.
        """
        if subject is not None and user_id is not None:
            raise ConfigurationError("impersonate by subject or by user_id, not both.")
        body: dict[str, Any] = {"scope": scope or client.scope}
        if subject is not None or user_id is not None:
            body["grant_type"] = IMPERSONATION_GRANT
            body["user_lookup"] = (
                {"field": "subject", "value": subject}
                if subject is not None
                else {"field": "userId", "value": user_id}
            )
        else:
            body["grant_type"] = "client_credentials"
        given_now = now
        for attempt in range(self.rate_limit_retries + 1):
            # a fresh private_key_jwt assertion each time: its jti is single-use
            body.update(client.credentials(self.token_endpoint))
            now = time.time() if given_now is None else given_now
            resp = self._channel.request(
                "POST",
                "/oauth/token",
                json_body=body,
                headers={"Accept": "application/json"},
                expect=(200, 429),
            )
            if resp.status_code == 200:
                return _token_from(resp.json(), now, resp.url)
            wait = _retry_after(resp.headers.get("Retry-After"))
            if wait is None:
                # no Retry-After: exponential back-off with jitter, so callers spread out
                jitter = 0.5 + secrets.randbelow(1000) / 2000
                wait = min(0.5 * 2**attempt, self.max_retry_wait) * jitter
            if attempt == self.rate_limit_retries or wait > self.max_retry_wait:
                raise QlikEndpointHTTPError(
                    f"the Qlik Cloud tenant rate-limited /oauth/token (429) after {attempt + 1} "
                    f"attempt(s); it asks to wait {wait:.0f} s. Cache access tokens "
                    "(AccessTokenCache) so one token serves many page loads.",
                    status_code=429,
                    url=resp.url,
                    retry_after=wait,
                )
            log.info("Qlik Cloud /oauth/token answered 429: retrying in %.1f s", wait)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def revoke(self, client: OAuthClient, token: AccessToken | str) -> None:
        """``POST /oauth/revoke`` for an access token (errors are raised; an unknown token is not an
        error)."""
        tok = token.access_token if isinstance(token, AccessToken) else token
        body: dict[str, Any] = {"token": tok, "token_type_hint": "access_token"}
        body.update(client.credentials(self.token_endpoint))
        self._channel.request("POST", "/oauth/revoke", json_body=body, expect=(200, 204))

    def close(self) -> None:
        """Close pooled connections."""
        self._channel.close()

    def __repr__(self) -> str:
        return f"QlikCloud({self.tenant_url!r})"
