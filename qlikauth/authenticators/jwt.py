"""JWT authentication through a QSEoW JWT virtual proxy: mint the token, sign in, open the engine.

A JWT virtual proxy (QMC: authentication method *JWT*) verifies ``Authorization: Bearer
<jwt>`` with the X.509 certificate configured on it (RS256, RS384 or RS512), reads the user
id and user directory from the claims named in *JWT attribute for user ID* /
*JWT attribute for user directory* (``userId`` / ``userDirectory`` in Qlik's samples) and
the session attributes from its attribute map (``groups`` -> ``group``), and answers with
its session cookie.

:class:`JwtAuthenticator` mints exactly those claims from a :class:`~qlikauth.QlikUser`,
and signs in for a browser: it presents the token to the virtual proxy once (``GET
/{prefix}/qps/user``, Qlik's Personal API, so the answer also says who Qlik thinks signed
in) and returns the proxy session cookie to set, like session authentication does.

Since November 2024 the engine websocket is guarded against cross-site websocket
hijacking: the client fetches ``GET /{prefix}/qps/csrftoken`` (204, header
``qlik-csrf-token``) with the session cookie, then opens the websocket with the same
cookie, the token as the ``qlik-csrf-token`` query parameter, an allowed ``Origin`` and
*no* ``Authorization`` header. Qlik's own Node client (``@qlik/api``, windows-cookie-node:
``Cookie`` header plus ``qlik-csrf-token`` query parameter) and the 2025 community report
"WebSocket connections via JWT fail with 403 (CSWSH)" agree on omitting it; so
:meth:`JwtAuthenticator.websocket_headers` never includes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._provider_http import ProviderChannel
from ..engine import CSRF_HEADER, engine_websocket_url, fetch_csrf_token
from ..exceptions import ConfigurationError, JwtError, QlikEndpointError
from ..identity import QlikUser
from ..jwtkeys import RSA_ALGORITHMS, SigningKey
from .base import Cookie, Headers, check_cookie_name
from .session import default_cookie_name

__all__ = ["JwtAuthenticator", "JwtSignIn", "CSRF_HEADER"]

log = logging.getLogger("qlikauth.jwt")

#: Qlik's default attribute map: the JWT's ``groups`` claim feeds the ``group`` attribute.
DEFAULT_ATTRIBUTE_CLAIMS: Mapping[str, str] = {"group": "groups"}

_RESERVED = frozenset({"iss", "sub", "aud", "exp", "nbf", "iat", "jti"})


@dataclass(frozen=True)
class JwtSignIn:
    """A finished sign-in: the proxy session, its cookie for the browser, and who Qlik says
    it is."""

    session_id: str = field(repr=False)
    cookie: Cookie
    qlik_user: dict[str, Any] = field(default_factory=dict)


class JwtAuthenticator:
    """Sign users in through a QSEoW JWT virtual proxy.

    :param signing_key: the private key whose certificate is configured on the virtual
        proxy (a :class:`~qlikauth.jwtkeys.SigningKey` with RS256, RS384 or RS512).
    :param proxy_url: the virtual proxy's base URL, ``https://qlik.example.com/jwt/``.
    :param user_id_claim, user_directory_claim: the QMC's *JWT attribute for user ID* and
        *JWT attribute for user directory*.
    :param attribute_claims: the attribute map, Qlik attribute name -> JWT claim name
        (``{"group": "groups"}``). Only mapped attributes are minted: the proxy ignores
        other claims, so sending them would only leak data. A multi-valued attribute becomes
        a JSON array.
    :param lifetime: seconds until ``exp``; the token is presented once, so keep it short.
    :param audience, issuer: optional ``aud`` / ``iss`` claims.
    :param cookie_name: the virtual proxy's *session cookie header name* (default
        ``X-Qlik-Session-<prefix>``); cookie_domain/secure/samesite as for session auth.
    :param verify: ``True`` (system trust) or the CA bundle that signed the proxy's
        certificate (the site's ``root.pem``); never ``False``.
    :param origin: the ``Origin`` a non-browser websocket client sends; it must be in the
        virtual proxy's host allow list. Defaults to the proxy's own origin.
    """

    def __init__(
        self,
        signing_key: SigningKey,
        proxy_url: str,
        *,
        user_id_claim: str = "userId",
        user_directory_claim: str = "userDirectory",
        attribute_claims: Mapping[str, str] | None = None,
        lifetime: float = 60.0,
        audience: str | None = None,
        issuer: str | None = None,
        cookie_name: str | None = None,
        cookie_domain: str | None = None,
        secure: bool = True,
        samesite: str | None = "None",
        verify: bool | str | Path = True,
        timeout: float = 10.0,
        origin: str | None = None,
    ) -> None:
        if not isinstance(signing_key, SigningKey):
            raise ConfigurationError(
                "signing_key must be a qlikauth.jwtkeys.SigningKey (SigningKey.from_file(...))."
            )
        if signing_key.algorithm not in RSA_ALGORITHMS:
            raise ConfigurationError(
                "a QSEoW JWT virtual proxy verifies RS256, RS384 or RS512 only, not "
                f"{signing_key.algorithm}."
            )
        parts = urlsplit(proxy_url)
        if parts.scheme != "https" or not parts.hostname or parts.query or parts.fragment:
            raise ConfigurationError(
                f"proxy_url {proxy_url!r} must be the virtual proxy's https URL, e.g. "
                "https://qlik.example.com/jwt/."
            )
        self.proxy_url = proxy_url if proxy_url.endswith("/") else proxy_url + "/"
        self.prefix = parts.path.strip("/")
        for what, claim in (
            ("user_id_claim", user_id_claim),
            ("user_directory_claim", user_directory_claim),
        ):
            if not isinstance(claim, str) or not claim or claim in _RESERVED:
                raise ConfigurationError(
                    f"{what} {claim!r} must be a claim name that is not a registered JWT claim."
                )
        if user_id_claim == user_directory_claim:
            raise ConfigurationError("user_id_claim and user_directory_claim must differ.")
        amap = dict(DEFAULT_ATTRIBUTE_CLAIMS if attribute_claims is None else attribute_claims)
        taken = {user_id_claim, user_directory_claim} | _RESERVED
        for attr, claim in amap.items():
            if not claim or claim in taken:
                raise ConfigurationError(
                    f"attribute {attr!r} maps to claim {claim!r}, which is empty or already used "
                    "by the user "
                    "id, user directory or a registered JWT claim."
                )
        if not 0 < lifetime <= 3600:
            raise ConfigurationError("lifetime must be between 0 and 3600 seconds.")
        self.signing_key = signing_key
        self.user_id_claim = user_id_claim
        self.user_directory_claim = user_directory_claim
        self.attribute_claims = {k.casefold(): v for k, v in amap.items()}
        self.lifetime = float(lifetime)
        self.audience = audience
        self.issuer = issuer
        self.cookie_name = check_cookie_name(cookie_name or default_cookie_name(self.prefix))
        self._cookie = Cookie(self.cookie_name, "", cookie_domain, "/", secure, True, samesite)
        self.origin = origin or f"https://{parts.netloc}"
        self._channel = ProviderChannel(
            self.proxy_url.rstrip("/"), verify=verify, timeout=timeout, what="the JWT virtual proxy"
        )

    # -- the token -----------------------------------------------------------------
    def claims(self, user: QlikUser, *, now: float | None = None) -> dict[str, Any]:
        """The claims the virtual proxy reads for ``user`` (configured names, mapped attributes)."""
        now = time.time() if now is None else now
        claims: dict[str, Any] = {
            self.user_id_claim: user.user_id,
            self.user_directory_claim: user.user_directory,
            "iat": int(now),
            "exp": int(now + self.lifetime),
        }
        if self.audience is not None:
            claims["aud"] = self.audience
        if self.issuer is not None:
            claims["iss"] = self.issuer
        values: dict[str, list[str]] = {}
        for name, value in user.attributes:
            claim = self.attribute_claims.get(name.casefold())
            if claim is not None:
                values.setdefault(claim, []).append(value)
        for claim, vals in values.items():
            claims[claim] = (
                vals if len(vals) > 1 or claim == self.attribute_claims.get("group") else vals[0]
            )
        return claims

    def mint(self, user: QlikUser, *, now: float | None = None) -> str:
        """A signed JWT for ``user`` (never log it: it signs the user in until ``exp``)."""
        return self.signing_key.sign(self.claims(user, now=now))

    def headers(self, user: QlikUser) -> Headers:
        """``Authorization: Bearer <jwt>`` for a client that calls the virtual proxy itself."""
        return Headers((("Authorization", f"Bearer {self.mint(user)}"),))

    # -- signing in ----------------------------------------------------------------
    def sign_in(self, user: QlikUser) -> JwtSignIn:
        """Present a fresh token to the virtual proxy; return its session and the cookie to set."""
        resp = self._channel.request(
            "GET",
            "/qps/user",
            headers={"Authorization": f"Bearer {self.mint(user)}", "Accept": "application/json"},
        )
        session_id = resp.cookies.get(self.cookie_name)
        if not session_id:
            raise QlikEndpointError(
                f"the JWT virtual proxy signed the request in but set no {self.cookie_name} "
                "cookie: set "
                "cookie_name to the virtual proxy's 'Session cookie header name' (QMC).",
                url=resp.url,
            )
        try:
            info = resp.json()
        except QlikEndpointError:
            info = {}
        if isinstance(info, dict):
            got = (
                str(info.get("userDirectory", "")).casefold(),
                str(info.get("userId", "")).casefold(),
            )
            if got != ("", "") and got != user.key:
                raise JwtError(
                    "the virtual proxy signed in "
                    f"{info.get('userDirectory')}\\{info.get('userId')}, not "
                    f"{user.qualified_name}: its JWT attribute names must be "
                    f"{self.user_id_claim!r} and "
                    f"{self.user_directory_claim!r}."
                )
        t = self._cookie
        cookie = Cookie(t.name, session_id, t.domain, t.path, t.secure, t.http_only, t.samesite)
        log.info("signed %s in through JWT virtual proxy %r", user.qualified_name, self.prefix)
        return JwtSignIn(session_id, cookie, info if isinstance(info, dict) else {})

    def login(self, user: QlikUser) -> Cookie:
        """Sign ``user`` in; return the proxy session cookie for the browser."""
        return self.sign_in(user).cookie

    # -- the engine websocket ------------------------------------------------------
    def csrf_token(self, session_id: str) -> str:
        """``GET /{prefix}/qps/csrftoken`` with the session cookie: the token the websocket needs.

        :func:`qlikauth.engine.fetch_csrf_token` over this authenticator's verified, pooled channel.
        """
        session = self._channel.session
        return fetch_csrf_token(
            self.proxy_url,
            self.cookie_name,
            session_id,
            verify=session.verify,
            timeout=self._channel.timeout[1],
            session=session,
        )

    def engine_url(self, app_id: str, csrf_token: str | None) -> str:
        """The engine websocket URL for ``app_id``, carrying the CSRF token as a query parameter
        (:func:`qlikauth.engine.engine_websocket_url`)."""
        return engine_websocket_url(self.proxy_url, app_id, csrf_token)

    def websocket_headers(self, session_id: str) -> dict[str, str]:
        """Headers for a non-browser websocket client: the session cookie and an allowed Origin.

        Never ``Authorization``: the JWT only creates the session (see the module docstring).
        """
        return {"Cookie": f"{self.cookie_name}={session_id}", "Origin": self.origin}

    def clear_cookie(self) -> Cookie:
        """The cookie that clears the proxy session cookie (end the session itself with QPS)."""
        return self._cookie.cleared()

    def close(self) -> None:
        """Close pooled connections to the virtual proxy."""
        self._channel.close()

    def __repr__(self) -> str:
        return (
            f"JwtAuthenticator(proxy_url={self.proxy_url!r}, "
            f"algorithm={self.signing_key.algorithm!r})"
        )
