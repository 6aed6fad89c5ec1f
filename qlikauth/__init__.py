"""qlikauth: sign portal users into Qlik Sense without a second login."""

from __future__ import annotations

from .exceptions import (
    BridgeError,
    CertificateError,
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
)
from .identity import QlikUser

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "QlikUser",
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
    "BridgeError",
]
