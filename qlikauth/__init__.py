"""qlikauth: sign portal users into Qlik Sense without a second login."""

from __future__ import annotations

from ._version import __version__
from .authenticators import (
    Authenticator,
    Cookie,
    HeaderAuthenticator,
    Headers,
    JwtAuthenticator,
    Redirect,
    SessionAuthenticator,
    TicketAuthenticator,
)
from .certs import Certificates
from .exceptions import (
    BridgeError,
    CertificateError,
    ClaimsError,
    ConfigurationError,
    HeaderError,
    IdentityError,
    JwtError,
    QlikAuthError,
    QlikEndpointConnectionError,
    QlikEndpointError,
    QlikEndpointHTTPError,
    QpsConnectionError,
    QpsError,
    QpsForbidden,
    QpsHTTPError,
    QpsNotFound,
    QpsResponseError,
    QpsTimeout,
    QpsTLSError,
    QpsTooManySessions,
    RedirectError,
    StoreError,
    StoreFull,
    StoreUnavailable,
)
from .identity import QlikUser
from .jwtkeys import SigningKey
from .mapping import ClaimsMapping
from .qps import ProxySession, QpsClient, Ticket

__all__ = [
    "__version__",
    "QlikUser",
    "Certificates",
    "QpsClient",
    "Ticket",
    "ProxySession",
    "Authenticator",
    "TicketAuthenticator",
    "SessionAuthenticator",
    "HeaderAuthenticator",
    "JwtAuthenticator",
    "SigningKey",
    "Redirect",
    "Cookie",
    "Headers",
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
    "ClaimsMapping",
    "JwtError",
]
