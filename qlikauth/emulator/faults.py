"""Faults on demand for one emulated port: what a failing Qlik node does to its clients.

A :class:`FaultSwitch` sits in front of one port of an :class:`~qlikauth.emulator.Emulator`
(``emu.inject("hang")``, ``emu.clear_faults()``); one fault per port at a time, switchable while
running. The kinds (:data:`FAULT_KINDS`):

========================= ==============================================================
``refuse``                the port stops listening: connections are refused (open ones reset)
``crash``                 the node dies: both ports refuse and every ticket and proxy session
                          is lost; clearing it (or ``restart()``) starts the node afresh
``hang``                  requests are read and never answered (``seconds``, default: until cleared;
                          at most :data:`MAX_HANG`, 600 s, then the connection is reset)
``error``                 every request gets ``status`` (default 503 Service Unavailable)
``drop``                  the connection is reset after the request is read, no answer
``slow``                  every answer waits ``seconds`` (default 1.0) first
``wrong-host``            the server certificate is issued by the site's root to another host name
``expired-cert``          the server certificate (right names, site's root) has expired
``untrusted-cert``        the server certificate (right names) comes from another CA
``client-ca``             the port requires a client certificate from another CA
========================= ==============================================================

TLS faults apply to new handshakes and end the open connections (a node restarted with another
certificate): pooled clients handshake again. ``wrong-host`` and ``expired-cert`` need the
site's ``root_key.pem`` (generated certificate directories have it).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import shutil
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..certgen import CA_KEY_USAGE, subject_alt_name
from ..exceptions import ConfigurationError
from ._web import Request, Response
from .serving import BackgroundServer

__all__ = ["Fault", "FaultSwitch", "FAULT_KINDS", "TLS_FAULTS", "DROPPED"]

TLS_FAULTS = ("wrong-host", "expired-cert", "untrusted-cert", "client-ca")
REQUEST_FAULTS = ("hang", "error", "drop", "slow")
#: Kinds that close the listening port.
CLOSED = ("refuse", "crash")
FAULT_KINDS = ("refuse", "crash", *REQUEST_FAULTS, *TLS_FAULTS)
#: The longest ``hang`` or ``slow`` (also a hang without ``seconds``: the connection is then reset).
MAX_HANG = 600.0

#: What a fault hook answers when the connection was reset instead of answered.
DROPPED = Response(0)


@dataclass(frozen=True)
class Fault:
    """One fault: its ``kind`` (see :data:`FAULT_KINDS`), ``seconds`` (hang, slow), ``status``
    (error)."""

    kind: str
    seconds: float | None = None
    status: int = 503

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigurationError(
                f"unknown fault {self.kind!r}: choose one of {', '.join(FAULT_KINDS)}."
            )
        if self.seconds is not None and not 0 <= self.seconds <= MAX_HANG:
            raise ConfigurationError(f"a fault's seconds must be between 0 and {MAX_HANG:g}.")
        if self.kind == "error" and not 500 <= self.status <= 599:
            raise ConfigurationError(f"an 'error' fault answers a 5xx status, not {self.status}.")

    def describe(self) -> str:
        """One line for logs and the CLI."""
        if self.kind == "error":
            return f"error {self.status}"
        if self.kind in ("hang", "slow") and self.seconds is not None:
            return f"{self.kind} {self.seconds:g}s"
        return self.kind


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qlikauth emulator fault"),
        ]
    )


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    hosts: Sequence[str], issuer: x509.Certificate, issuer_key: Any, *, expired: bool = False
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.UTC)
    start, end = (
        (now - _dt.timedelta(days=30), now - _dt.timedelta(days=1))
        if expired
        else (now - _dt.timedelta(days=1), now + _dt.timedelta(days=30))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(subject_alt_name(hosts), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return cert, key


class FaultSwitch:
    """The fault switch of one port: :meth:`set`, :meth:`clear`, and the request hook
    :meth:`before`.

    ``server`` is the port's :class:`BackgroundServer` (bound later, when the emulator starts);
    ``base_context`` makes the TLS contexts of TLS faults alike in everything else (client
    certificate required on the QPS port).
    """

    def __init__(
        self,
        name: str,
        certs_dir: Callable[[], Path],
        hosts: Callable[[], list[str]],
        base_context: Callable[[], ssl.SSLContext],
    ) -> None:
        self.name = name
        self._certs_dir = certs_dir
        self._hosts = hosts
        self._base_context = base_context
        self.server: BackgroundServer | None = None
        self._fault: Fault | None = None
        self._lock = threading.Lock()
        self._tmp: str | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}
        #: Requests a fault answered (or did not answer), for assertions.
        self.hits = 0

    @property
    def fault(self) -> Fault | None:
        """The active fault, or None."""
        return self._fault

    # -- switching ------------------------------------------------------------------------
    def set(self, fault: Fault | None) -> None:
        """Make ``fault`` the active one (None clears); takes effect at once."""
        with self._lock:
            old, self._fault = self._fault, fault
            srv = self.server
            if srv is None or not srv.running:
                return
            reopen = fault is None or fault.kind not in CLOSED
            if old is not None and old.kind in CLOSED and reopen:
                srv.refuse_connections(False)
            if fault is not None and fault.kind in TLS_FAULTS:
                srv.set_ssl_context(self._context_for(fault.kind))
            elif old is not None and old.kind in TLS_FAULTS:
                srv.set_ssl_context(None)
            if fault is not None and fault.kind in CLOSED:
                srv.refuse_connections(True)

    def clear(self) -> None:
        """End the active fault."""
        self.set(None)

    def arm(self, fault: Fault) -> None:
        """Make ``fault`` the active one for requests only: a closing kind drops every request
        from now on, before :meth:`set` closes the port."""
        with self._lock:
            self._fault = fault

    def attach(self, server: BackgroundServer) -> None:
        """Bind to the port's server once it runs (a fault set before start applies now)."""
        self.server = server
        pending, self._fault = self._fault, None
        if pending is not None:
            self.set(pending)

    def close(self) -> None:
        """Forget the server and remove the generated certificates."""
        self.server = None
        self._contexts.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- TLS ------------------------------------------------------------------------------
    def _context_for(self, kind: str) -> ssl.SSLContext:
        if kind in self._contexts:
            return self._contexts[kind]
        if self._tmp is None:
            self._tmp = tempfile.mkdtemp(prefix=f"qlikauth-fault-{self.name}-")
        tmp = Path(self._tmp)
        d = self._certs_dir()
        base = self._base_context()
        hosts = self._hosts()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        if kind == "client-ca":
            ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
            other, _ = _ca("qlikauth emulator fault: another site's root")
            (tmp / "other-root.pem").write_bytes(other.public_bytes(serialization.Encoding.PEM))
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=str(tmp / "other-root.pem"))
        else:
            issuer_key: Any
            if kind == "untrusted-cert":
                issuer, issuer_key = _ca("qlikauth emulator fault: untrusted CA")
            else:
                try:
                    issuer = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
                    issuer_key = serialization.load_pem_private_key(
                        (d / "root_key.pem").read_bytes(), password=None
                    )
                except (OSError, ValueError, TypeError) as exc:
                    raise ConfigurationError(
                        f"the {kind!r} fault issues a certificate from the site's root and needs "
                        f"{d / 'root_key.pem'} (unencrypted): {exc}"
                    ) from None
            names = ["wrong-host.invalid"] if kind == "wrong-host" else hosts
            cert, key = _leaf(names, issuer, issuer_key, expired=kind == "expired-cert")
            (tmp / f"{kind}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (tmp / f"{kind}_key.pem").write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
            ctx.load_cert_chain(tmp / f"{kind}.pem", tmp / f"{kind}_key.pem")
            if base.verify_mode == ssl.CERT_REQUIRED:
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cafile=str(d / "root.pem"))
        self._contexts[kind] = ctx
        return ctx

    # -- requests -------------------------------------------------------------------------
    def before(self, req: Request) -> Awaitable[Response | None] | None:
        """The request hook: None lets the request through (no fault: nothing to await on
        every request), else an awaitable giving the fault's answer (None: answer after all)."""
        fault = self._fault
        if fault is None or fault.kind not in REQUEST_FAULTS + CLOSED:
            return None
        return self._apply(fault, req)

    async def _apply(self, fault: Fault, req: Request) -> Response | None:
        self.hits += 1
        if fault.kind == "slow":
            await asyncio.sleep(1.0 if fault.seconds is None else fault.seconds)
            return None
        if fault.kind == "error":
            return Response.text(fault.status, f"{fault.status} (qlikauth emulator fault)\n")
        if fault.kind == "hang":
            deadline = time.monotonic() + (MAX_HANG if fault.seconds is None else fault.seconds)
            while self._fault is fault and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self._fault is not fault:
                return None  # cleared while hanging: answer after all, late
        srv = self.server
        if srv is not None and req.scope is not None:
            srv.drop(req.scope)
        return DROPPED
