"""qlikauth: sign portal users into Qlik Sense without a second login."""

from __future__ import annotations

from ._version import __version__
from .authenticators import (
    Authenticator,
    Cookie,
    HeaderAuthenticator,
    Headers,
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
    QlikAuthError,
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
    "BridgeError",
    "ClaimsError",
    "ClaimsMapping",
]
