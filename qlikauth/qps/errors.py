"""Turning what went wrong on a QPS call into qlikauth's typed errors, in the integrator's terms.

Two inputs only: the transport's typed failures (:class:`ConnectFailed`,
:class:`SendFailed`, with the original :class:`OSError`/:class:`ssl.SSLError` attached)
and QPS's HTTP status. TLS failures are read from structured fields, never from message
text: :attr:`ssl.SSLCertVerificationError.verify_code` (OpenSSL's ``X509_V_ERR_*``) for
the server certificate, :attr:`ssl.SSLError.reason` for the alert a server sent.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from urllib.parse import urlsplit

from ..exceptions import (
    QpsConnectionError,
    QpsError,
    QpsForbidden,
    QpsHTTPError,
    QpsNotFound,
    QpsTimeout,
    QpsTLSError,
    QpsTooManySessions,
)
from .transport import ConnectFailed, PoolExhausted, SendFailed, TransportError

__all__ = ["tls_problem", "transport_error", "http_error", "all_failed"]

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h): stable numbers, the same in OpenSSL 1.1 and 3.
_V_UNABLE_TO_GET_ISSUER_CERT = 2
_V_CERT_SIGNATURE_FAILURE = 7
_V_CERT_NOT_YET_VALID = 9
_V_CERT_HAS_EXPIRED = 10
_V_DEPTH_ZERO_SELF_SIGNED_CERT = 18
_V_SELF_SIGNED_CERT_IN_CHAIN = 19
_V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY = 20
_V_UNABLE_TO_VERIFY_LEAF_SIGNATURE = 21
_V_INVALID_CA = 24
_V_INVALID_PURPOSE = 26
_V_CERT_UNTRUSTED = 27
_V_HOSTNAME_MISMATCH = 62
_V_IP_ADDRESS_MISMATCH = 64

_NOT_SIGNED = {
    _V_UNABLE_TO_GET_ISSUER_CERT,
    _V_CERT_SIGNATURE_FAILURE,
    _V_DEPTH_ZERO_SELF_SIGNED_CERT,
    _V_SELF_SIGNED_CERT_IN_CHAIN,
    _V_UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    _V_UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    _V_CERT_UNTRUSTED,
    _V_INVALID_CA,
}

#: The alert a server sent (``ssl.SSLError.reason``) -> how the TLS alert is named in RFC 8446.
_CLIENT_CERT_ALERTS = {
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "certificate required",
    "SSLV3_ALERT_BAD_CERTIFICATE": "bad certificate",
    "TLSV1_ALERT_UNKNOWN_CA": "unknown ca",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "certificate unknown",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "certificate revoked",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "certificate expired",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "unsupported certificate",
    "TLSV1_ALERT_ACCESS_DENIED": "access denied",
    "TLSV1_ALERT_DECRYPT_ERROR": "decrypt error",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "handshake failure",
}
#: What OpenSSL reports when the other end does not speak TLS (plain HTTP on that port).
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
}

_QMC_CLIENT_HINT = (
    "Use client.pem/client_key.pem exported from this site's QMC; a certificate from another "
    "site or one re-issued since is not trusted."
)


def tls_problem(exc: ssl.SSLError, node: str, *, after_sending: bool = False) -> str:
    """Explain a TLS failure with ``node`` in the integrator's terms."""
    host = urlsplit(node).hostname
    code = (
        getattr(exc, "verify_code", None) if isinstance(exc, ssl.SSLCertVerificationError) else None
    )
    if code is not None:
        if code in (_V_HOSTNAME_MISMATCH, _V_IP_ADDRESS_MISMATCH):
            return (
                f"the server certificate of {node} is not issued to {host!r}: no subjectAltName "
                "entry "
                "of it names that host. Connect with the host name the node's certificate was "
                "issued "
                "to (the node's name in the QMC), not an alias or IP address. A certificate that "
                "names "
                "the host only in its Common Name (CN) is refused too: matching the CN is a legacy "
                "fallback (RFC 6125 and RFC 2818 require subjectAltName) that qlikauth turns off; "
                "re-issue it with the host in subjectAltName (Qlik's own certificates have it)."
            )
        if code == _V_CERT_HAS_EXPIRED:
            return (
                f"the server certificate of {node} has expired; renew the site's certificates "
                "(or check this machine's clock)."
            )
        if code == _V_CERT_NOT_YET_VALID:
            return (
                f"the server certificate of {node} is not valid yet (its start date lies in the "
                "future): check the clocks of this machine and of the node; if the site's "
                "certificates were just re-issued, the node's clock is ahead of this one."
            )
        if code == _V_INVALID_PURPOSE:
            return (
                f"the server certificate of {node} is not meant for TLS servers (its extended key "
                "usage lacks serverAuth): is a client certificate installed on the node?"
            )
        if code in _NOT_SIGNED:
            return (
                f"the server certificate of {node} is not signed by root.pem. Use root.pem from "
                "this "
                "site's QMC export (the same export as client.pem), and check nothing in between "
                "re-signs the traffic."
            )
        return (
            f"the server certificate of {node} failed verification against root.pem "
            f"({getattr(exc, 'verify_message', '') or 'OpenSSL error'}, X509_V_ERR code {code})."
        )
    reason = getattr(exc, "reason", None) or ""
    alert = _CLIENT_CERT_ALERTS.get(reason)
    if alert is not None:
        return f"{node} refused our client certificate ({alert}). {_QMC_CLIENT_HINT}"
    if isinstance(exc, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        # TLS 1.3 servers that reject a client certificate often just close the connection.
        when = (
            "right after the TLS handshake, without answering"
            if after_sending
            else "during the TLS handshake"
        )
        return (
            f"{node} closed the connection {when}: it most likely refused our client certificate. "
            f"{_QMC_CLIENT_HINT} (Or check the URL is the QPS API port, 4243.)"
        )
    if reason in _NOT_TLS:
        return (
            f"{node} does not speak TLS on that port; check the URL points at the QPS API port "
            "(4243) over https."
        )
    return (
        f"the TLS handshake with {node} failed ({reason or type(exc).__name__}); check the URL "
        "points "
        "at the QPS API port (4243) over https."
    )


def _why_not_connected(cause: BaseException | None) -> str:
    """A short reason from the OS error's number (not its text)."""
    if isinstance(cause, socket.gaierror):
        return "the host name does not resolve"
    code = getattr(cause, "errno", None)
    if code == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(code, int) and code > 0:
        return os.strerror(code).lower()
    return type(cause).__name__ if cause is not None else "no connection"


def transport_error(
    exc: TransportError, node: str, what: str, timeout: tuple[float, float]
) -> QpsError:
    """The qlikauth error for a transport failure; ``.sent`` says whether QPS may have acted."""
    if isinstance(exc, PoolExhausted):
        return QpsTimeout(
            f"{what}: all {exc.maxsize} pooled connections to {node} stayed busy for "
            f"{exc.waited:g}s; "
            "raise pool_maxsize to the number of threads that call QPS at once.",
            node=node,
            sent=False,
            pool_exhausted=True,
        )
    if isinstance(exc, ConnectFailed):
        if exc.tls is not None:
            return QpsTLSError(f"{what}: {tls_problem(exc.tls, node)}", node=node, sent=False)
        if exc.timeout:
            return QpsTimeout(
                f"{what}: connecting to {node} timed out after {timeout[0]:g}s. Check the node "
                "is up and port 4243 is open from this machine.",
                node=node,
                sent=False,
            )
        return QpsConnectionError(
            f"{what}: cannot reach {node} ({_why_not_connected(exc.cause)}). Check the node URL, "
            "that the Qlik Proxy Service is running and that port 4243 is open from this machine.",
            node=node,
            sent=False,
            stale=False,
        )
    stale = isinstance(exc, SendFailed) and exc.reused
    if exc.timeout:
        return QpsTimeout(
            f"{what}: {node} did not answer within {timeout[1]:g}s.",
            node=node,
            sent=True,
            stale=False,
        )
    if exc.tls is not None:
        return QpsTLSError(
            f"{what}: {tls_problem(exc.tls, node, after_sending=True)}",
            node=node,
            sent=True,
            stale=stale,
        )
    if isinstance(exc, SendFailed) and exc.reading:
        return QpsConnectionError(
            f"{what}: the connection to {node} broke while reading the answer.",
            node=node,
            sent=True,
            stale=False,
        )
    return QpsConnectionError(
        f"{what}: the connection to {node} broke after the request was sent "
        f"({_why_not_connected(exc.cause)}); QPS may or may not have acted on it.",
        node=node,
        sent=True,
        stale=stale,
    )


def http_error(
    status: int, payload: bytes, node: str, what: str, virtual_proxy: str
) -> QpsHTTPError:
    """The typed error for an error status from QPS, saying what to do."""
    text = payload[:300].decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    if status == 403 and "initial authentication request must be" in text.lower():
        # The Qlik proxy's browser port answers a POST with this; the QPS API never does.
        return QpsForbidden(
            f"{what}: {node} answered 403 with Qlik's 'The initial authentication request must be "
            "a GET request': that is the proxy's browser (hub) port, not the QPS API. Use the QPS "
            "API port: https://<node>:4243.",
            status_code=status,
            node=node,
            hub_port=True,
        )
    if status == 403:
        return QpsForbidden(
            f"{what}: {node} answered 403 Forbidden: client certificate not trusted or xrfkey "
            "rejected. Check that client.pem comes from this site's QMC export"
            + (f" (QPS said: {text[:120]})" if text else "")
            + ".",
            status_code=status,
            node=node,
        )
    if status == 404:
        return QpsNotFound(
            f"{what}: {node} answered 404: check the virtual proxy prefix "
            f"{virtual_proxy or '(default)'!r} exists and is linked to this proxy.",
            status_code=status,
            node=node,
        )
    if "too many sessions" in text.lower() or status == 409:
        return QpsTooManySessions(
            f"{what}: {node} refused: the user has too many sessions active in parallel "
            "(Qlik allows 5). End an old session (logout) or wait for it to time out.",
            status_code=status,
            node=node,
        )
    if status == 400:
        return QpsHTTPError(
            f"{what}: {node} refused the request as invalid (400){': ' + text if text else ''}.",
            status_code=status,
            node=node,
        )
    if 300 <= status < 400:
        return QpsHTTPError(
            f"{what}: {node} answered {status} (a redirect, not followed: the QPS API never "
            "redirects, so the URL is not the QPS API or something in between rewrites it).",
            status_code=status,
            node=node,
        )
    return QpsHTTPError(
        f"{what}: {node} answered {status}{': ' + text[:120] if text else ''}.",
        status_code=status,
        node=node,
    )


def all_failed(what: str, errors: list[QpsError]) -> QpsError:
    """One error for a call that failed on every node it was tried on."""
    if len(errors) == 1:
        return errors[0]
    detail = "; ".join(str(e) for e in errors)
    cls = (
        QpsTLSError
        if all(isinstance(e, QpsTLSError) for e in errors)
        else (QpsTimeout if all(isinstance(e, QpsTimeout) for e in errors) else QpsConnectionError)
    )
    return cls(f"{what} failed on every QPS node: {detail}", node=None, errors=errors)
