"""The exceptions qlikauth raises, all under one root.

The tree::

    QlikAuthError
    ├── ConfigurationError(ValueError)    a setting is missing or wrong
    ├── IdentityError(ValueError)         a user directory, user id or attribute is invalid
    ├── CertificateError                  Qlik's exported certificates cannot be used
    ├── RedirectError(ValueError)         a redirect target / proxyRestUri is not allowed
    ├── HeaderError(ValueError)           a header name or value cannot be injected safely
    ├── QpsError                          a call to the Qlik Proxy Service failed
    │   ├── QpsConnectionError            no answer from any node
    │   │   ├── QpsTLSError               the mutual-TLS handshake failed
    │   │   └── QpsTimeout                connect or read timed out
    │   ├── QpsHTTPError(.status_code)    QPS answered with an error status
    │   │   ├── QpsForbidden              403: certificate not trusted or xrfkey rejected
    │   │   ├── QpsNotFound               404: wrong virtual proxy prefix (or unknown object)
    │   │   └── QpsTooManySessions        the user has too many sessions in parallel
    │   └── QpsResponseError              QPS answered something that is not what the API says
    ├── StoreError                        the shared state store (Redis, Django cache) failed
    │   ├── StoreUnavailable              the store cannot be reached or answered an error
    │   └── StoreFull                     a replay cache is full and refuses rather than forget
    ├── QlikEndpointError                 a call to a Qlik Cloud tenant or a JWT virtual proxy
    failed
    │   ├── QlikEndpointConnectionError   no usable answer (TLS, timeout, refused)
    │   └── QlikEndpointHTTPError         an error status (.status_code, Qlik's .errors list)
    └── BridgeError(.code)                turning an IdP login into a Qlik user failed
        ├── ClaimsError(.code, .claim)    the IdP's claims cannot make a Qlik user
        ├── SamlError(.code)
        ├── OidcError(.code)
        └── JwtError(.code)

Every message says what was wrong and what to do. Secrets (tickets, session ids,
private keys, passphrases, JWTs) never appear in a message: at most a short prefix.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "QlikAuthError",
    "ConfigurationError",
    "IdentityError",
    "CertificateError",
    "RedirectError",
    "HeaderError",
    "QpsError",
    "QpsConnectionError",
    "QpsTLSError",
    "QpsTimeout",
    "QpsHTTPError",
    "QpsForbidden",
    "QpsNotFound",
    "QpsTooManySessions",
    "QpsResponseError",
    "StoreError",
    "StoreUnavailable",
    "StoreFull",
    "QlikEndpointError",
    "QlikEndpointConnectionError",
    "QlikEndpointHTTPError",
    "BridgeError",
    "ClaimsError",
    "SamlError",
    "OidcError",
    "JwtError",
]


class QlikAuthError(Exception):
    """Root of every error qlikauth raises.

    ``status`` is the HTTP status a web integration should answer with when the
    error reaches a browser (502 for upstream failures, 400 for bad input, ...).
    """

    status: int = 500

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in context.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ConfigurationError(QlikAuthError, ValueError):
    """A setting is missing or has a value qlikauth cannot use."""

    status = 500


class IdentityError(QlikAuthError, ValueError):
    """A user directory, user id or attribute breaks Qlik's rules.

    ``field`` names the offending field (``"user_directory"``, ``"user_id"``,
    ``"attributes[2].name"``...).
    """

    status = 400
    field: str | None

    def __init__(self, message: str, *, field: str | None = None, **context: Any) -> None:
        super().__init__(message, field=field, **context)


class CertificateError(QlikAuthError):
    """Qlik's exported certificates are missing, unreadable, mismatched or expired.

    ``path`` names the file concerned when there is one.
    """

    status = 500
    path: str | None

    def __init__(self, message: str, *, path: str | None = None, **context: Any) -> None:
        super().__init__(message, path=path, **context)


class RedirectError(QlikAuthError, ValueError):
    """A redirect target, ``proxyRestUri`` or ``TargetUri`` is not in the configuration."""

    status = 400


class HeaderError(QlikAuthError, ValueError):
    """A header name or value cannot be injected safely (non-ASCII, CR/LF, reserved)."""

    status = 400


class QpsError(QlikAuthError):
    """A call to the Qlik Proxy Service API failed.

    ``node`` is the base URL of the node concerned, when known.
    """

    status = 502
    node: str | None

    def __init__(self, message: str, *, node: str | None = None, **context: Any) -> None:
        super().__init__(message, node=node, **context)


class QpsConnectionError(QpsError):
    """No usable answer: the node refused, reset or could not be reached."""


class QpsTLSError(QpsConnectionError):
    """The mutual-TLS handshake failed (untrusted server, wrong host name, client cert refused)."""


class QpsTimeout(QpsConnectionError):
    """The connection or the answer took longer than the configured timeout."""

    status = 504


class QpsHTTPError(QpsError):
    """QPS answered with an error status; ``status_code`` holds it."""

    status_code: int

    def __init__(
        self, message: str, *, status_code: int, node: str | None = None, **context: Any
    ) -> None:
        super().__init__(message, node=node, status_code=status_code, **context)


class QpsForbidden(QpsHTTPError):
    """403: the client certificate is not trusted or the xrfkey was rejected."""


class QpsNotFound(QpsHTTPError):
    """404: the virtual proxy prefix is wrong, or the session/user is unknown."""


class QpsTooManySessions(QpsHTTPError):
    """QPS refused a new session: the user already has the maximum in parallel."""


class QpsResponseError(QpsError):
    """QPS answered, but not with what its API promises (bad JSON, missing fields)."""


class StoreError(QlikAuthError):
    """The shared state store failed; ``store`` describes which one (credentials removed).

    A one-time value that cannot be checked is refused: nothing falls back to "allow".
    """

    status = 503
    store: str | None

    def __init__(self, message: str, *, store: str | None = None, **context: Any) -> None:
        super().__init__(message, store=store, **context)


class StoreUnavailable(StoreError):
    """The store could not be reached, timed out, or answered with an error."""


class StoreFull(StoreError):
    """A store in replay-cache mode is full of live entries and refuses new ones.

    Evicting a consumed one-time id (a SAML assertion id) would let it be replayed, so a
    replay cache refuses the sign-in instead until entries expire or the bound is raised.
    """


class QlikEndpointError(QlikAuthError):
    """A call to a Qlik Cloud tenant or a QSEoW JWT virtual proxy failed.

    ``url`` is the endpoint concerned (never with credentials in it).
    """

    status = 502
    url: str | None

    def __init__(self, message: str, *, url: str | None = None, **context: Any) -> None:
        super().__init__(message, url=url, **context)


class QlikEndpointConnectionError(QlikEndpointError):
    """No usable answer: TLS failed, the endpoint timed out or refused the connection."""


class QlikEndpointHTTPError(QlikEndpointError):
    """An error status; ``status_code`` holds it and ``errors`` Qlik's ``errors`` list (title,
    detail, code)."""

    status_code: int
    errors: list[dict[str, Any]]

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        errors: list[dict[str, Any]] | None = None,
        url: str | None = None,
        **context: Any,
    ) -> None:
        super().__init__(
            message, url=url, status_code=status_code, errors=list(errors or []), **context
        )

    @property
    def codes(self) -> list[str]:
        """Qlik's error codes in the answer (e.g. ``INTERNAL-TOKEN-1``)."""
        return [str(e.get("code")) for e in self.errors if e.get("code")]


class BridgeError(QlikAuthError):
    """Turning an identity provider's login into a Qlik user failed.

    ``code`` names the check that failed (a short ``snake_case`` word, the same name on every
    bridge error), for logs, metrics and tests; the message says what to do.
    """

    status = 401
    code: str

    def __init__(self, message: str, *, code: str = "invalid", **context: Any) -> None:
        super().__init__(message, code=code, **context)


class ClaimsError(BridgeError):
    """The identity provider's claims cannot be turned into a Qlik user; sign-in is refused.

    ``code`` says why (``missing_claim``, ``ambiguous_claim``, ``unknown_group``,
    ``groups_overage``, ``invalid_value``) and ``claim`` names the claim concerned.
    """

    status = 403
    code: str
    claim: str | None

    def __init__(
        self, message: str, *, code: str, claim: str | None = None, **context: Any
    ) -> None:
        super().__init__(message, code=code, claim=claim, **context)


class SamlError(BridgeError):
    """A SAML message was refused; ``code`` says which check failed.

    Codes: ``unsigned``, ``signature``, ``algorithm``, ``structure`` (signature wrapping),
    ``doctype`` (XXE / entities), ``comment``, ``expired``, ``not_yet_valid``, ``audience``,
    ``destination``, ``recipient``, ``unknown_request``, ``other_browser``, ``replayed``,
    ``unsolicited``, ``issuer``, ``no_subject``, ``idp_status``, ``relay_state``,
    ``logout_unsigned``, ``logout_signature``, ``logout_old``, ``encoding``, ``xml``,
    ``too_large``, ``missing``.
    """


class OidcError(BridgeError):
    """An OpenID Connect login was refused; ``code`` says which check failed (``signature``,
    ``expired``, ``unknown_kid``, ``nonce``, ``provider_tls``, ...)."""


class JwtError(BridgeError):
    """A JWT could not be minted or was refused; ``code`` says which check failed."""
