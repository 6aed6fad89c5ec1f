"""The :class:`Emulator`: one Qlik Proxy Service node (REST API + hub) over real TLS, and clusters
of them."""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from ..certgen import generate_certificates
from ..exceptions import CertificateError, ConfigurationError
from ._web import asgi_app
from .faults import Fault, FaultSwitch
from .hub import Hub
from .proxy import VirtualProxy
from .qps_api import QpsApi
from .serving import BackgroundServer
from .state import EmulatorState, SiteSessions

__all__ = ["Emulator", "EmulatorCluster"]

log = logging.getLogger("qlikauth.emulator")
#: Bind addresses that are no host name (a certificate cannot name them).
_ANY_ADDRESS = ("0.0.0.0", "::")  # noqa: S104 - compared against, never bound here


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Emulator:
    """A local stand-in for one Qlik Proxy Service node and its hub.

    The QPS API (``qps_url``) requires a client certificate signed by ``root.pem``, as
    port 4243 does; the hub (``hub_url``) serves browsers over TLS with the server
    certificate. ``certs_dir=None`` generates certificates into a temporary directory
    removed on :meth:`stop`; a directory without ``root.pem`` gets certificates for
    ``host`` and ``bind``. ``session_timeout`` is the inactivity timeout of virtual proxies
    without their own (:attr:`VirtualProxy.session_timeout`). Use it as a context manager::

        with Emulator(virtual_proxies=[VirtualProxy("portal")]) as emu:
            emu.qps_url, emu.hub_url_for("portal"), emu.state.sessions()
    """

    def __init__(
        self,
        certs_dir: str | Path | None = None,
        host: str = "localhost",
        bind: str = "127.0.0.1",
        qps_port: int = 0,
        hub_port: int = 0,
        virtual_proxies: Iterable[VirtualProxy] = (),
        ticket_ttl: float = 60.0,
        session_timeout: float = 1800.0,
        max_sessions_per_user: int = 5,
        site_sessions: SiteSessions | None = None,
    ) -> None:
        self.host = host
        self.bind = bind
        self._want_qps_port = int(qps_port)
        self._want_hub_port = int(hub_port)
        self._given_certs = Path(certs_dir) if certs_dir is not None else None
        self._certs: Path | None = self._given_certs
        self._tmp: str | None = None
        self._proxies: dict[str, VirtualProxy] = {"": VirtualProxy("", method="ticket")}
        for vp in virtual_proxies:
            self._register(vp)
        self.state = EmulatorState(
            ticket_ttl=ticket_ttl,
            session_timeout=session_timeout,
            max_sessions_per_user=max_sessions_per_user,
            site=site_sessions,
        )
        self._qps: BackgroundServer | None = None
        self._hub: BackgroundServer | None = None
        self._lock = threading.Lock()
        self._started = False
        self._ctx: dict[str, ssl.SSLContext] = {}
        self._own_hosts_cache: tuple[tuple[str, str], set[str]] | None = None
        self._faults = {
            port: FaultSwitch(
                port, lambda: self.certs_dir, self._cert_hosts, self._context_getter(port)
            )
            for port in ("qps", "hub")
        }

    # -- virtual proxies ----------------------------------------------------------------
    def _register(self, vp: VirtualProxy) -> None:
        if not isinstance(vp, VirtualProxy):
            raise ConfigurationError(
                f"virtual_proxies takes VirtualProxy objects, got {type(vp).__name__}."
            )
        if vp.prefix in self._proxies and vp.prefix:
            raise ConfigurationError(f"two virtual proxies with prefix {vp.prefix!r}.")
        cookie_owner = next(
            (
                p
                for p in self._proxies.values()
                if p.session_cookie_name == vp.session_cookie_name and p.prefix != vp.prefix
            ),
            None,
        )
        if cookie_owner is not None:
            raise ConfigurationError(
                f"virtual proxy {vp.prefix!r} uses the session cookie name "
                f"{vp.session_cookie_name!r} of "
                f"{cookie_owner.prefix!r}: each virtual proxy needs its own."
            )
        # Copy-on-write: request threads read the dict without a lock.
        self._proxies = {**self._proxies, vp.prefix: vp}

    def add_virtual_proxy(self, vp: VirtualProxy) -> None:
        """Add a virtual proxy, also while running (replacing the default one is allowed)."""
        with self._lock:
            if vp.prefix == "":
                rest = {k: v for k, v in self._proxies.items() if k}
                self._proxies = {"": vp, **rest}
            else:
                self._register(vp)

    def _session_timeout_for(self, prefix: str) -> float:
        """The inactivity timeout of sessions on virtual proxy ``prefix`` (its own, else the
        node's)."""
        vp = self._proxies.get(prefix)
        if vp is not None and vp.session_timeout is not None:
            return vp.session_timeout
        return self.state.session_timeout

    @property
    def virtual_proxies(self) -> dict[str, VirtualProxy]:
        """The virtual proxies by prefix (``""`` is the default one)."""
        return dict(self._proxies)

    # -- lifecycle ----------------------------------------------------------------------
    def _prepare_certs(self) -> Path:
        if self._given_certs is None:
            self._tmp = tempfile.mkdtemp(prefix="qlikauth-emulator-")
            d = Path(self._tmp)
        else:
            d = self._given_certs
        if not (d / "root.pem").exists():
            hosts = list(
                dict.fromkeys(h for h in (self.host, self.bind) if h and h not in _ANY_ADDRESS)
            )
            generate_certificates(d, hosts)
        for name in ("root.pem", "server.pem", "server_key.pem"):
            if not (d / name).exists():
                raise CertificateError(
                    f"{d / name} is missing: the emulator needs root.pem, server.pem and "
                    "server_key.pem (generate them with `qlikauth certs generate`).",
                    path=str(d / name),
                )
        return d

    def _contexts(self, d: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        def base() -> ssl.SSLContext:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            try:
                ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
            except (OSError, ssl.SSLError) as exc:
                raise CertificateError(
                    f"cannot load {d / 'server.pem'} with server_key.pem: {exc}",
                    path=str(d / "server.pem"),
                ) from None
            ctx.set_alpn_protocols(["http/1.1"])
            return ctx

        qps = base()
        # Port 4243 trusts exactly the site's root: a client certificate is required.
        qps.verify_mode = ssl.CERT_REQUIRED
        qps.load_verify_locations(cafile=str(d / "root.pem"))
        return qps, base()

    def start(self) -> Emulator:
        """Bind both ports and start serving; returns self."""
        with self._lock:
            if self._started:
                return self
            try:
                d = self._prepare_certs()
                self._certs = d
                qps_ctx, hub_ctx = self._contexts(d)
                # Qlik's inactivity timeout is a virtual proxy setting (the node's is the default).
                self.state.timeout_for = self._session_timeout_for
                self._ctx = {"qps": qps_ctx, "hub": hub_ctx}
                qps_app = asgi_app(
                    QpsApi(self.state, lambda: self._proxies, self._own_hosts),
                    name="qps",
                    before=self._faults["qps"].before,
                )
                hub_app = asgi_app(
                    Hub(
                        self.state,
                        lambda: self._proxies,
                        self.rest_uri_for,
                        lambda: f"{_url_host(self.host)}:{self.hub_port}",
                        self._own_hosts,
                    ),
                    name="hub",
                    before=self._faults["hub"].before,
                )
                self._qps = BackgroundServer(
                    qps_app,
                    qps_ctx,
                    bind=self.bind,
                    port=self._want_qps_port,
                    name="qps",
                    on_connect=lambda: self.state.count("connections_accepted"),
                )
                self._hub = BackgroundServer(
                    hub_app,
                    hub_ctx,
                    bind=self.bind,
                    port=self._want_hub_port,
                    name="hub",
                    on_connect=lambda: self.state.count("hub_connections_accepted"),
                )
                self._qps.start()
                self._hub.start()
                self._faults["qps"].attach(self._qps)
                self._faults["hub"].attach(self._hub)
            except BaseException:
                self._shutdown()
                raise
            self._started = True
        log.info(
            "emulator: QPS %s, hub %s, virtual proxies %s",
            self.qps_url,
            self.hub_url,
            sorted(self._proxies),
        )
        return self

    def _shutdown(self) -> None:
        for srv in (self._qps, self._hub):
            if srv is not None:
                srv.stop()
        for switch in self._faults.values():
            switch.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def stop(self) -> None:
        """Close both ports, end every connection and join the threads. Idempotent."""
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._shutdown()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._started

    # -- faults -------------------------------------------------------------------------
    def _own_hosts(self) -> set[str]:
        """The node's own names as a Host header carries them (IPv6 in brackets)."""
        key = (self.host, self.bind)
        cached = self._own_hosts_cache
        if cached is not None and cached[0] == key:  # asked on every QPS request
            return cached[1]
        hosts = self._cert_hosts() or ["localhost"]
        names = {h.lower() for h in hosts} | {_url_host(h).lower() for h in hosts}
        self._own_hosts_cache = (key, names)
        return names

    def _context_getter(self, port: str) -> Callable[[], ssl.SSLContext]:
        return lambda: self._ctx[port]

    def _cert_hosts(self) -> list[str]:
        return list(dict.fromkeys(h for h in (self.host, self.bind) if h and h not in _ANY_ADDRESS))

    def inject(
        self,
        kind: str | Fault,
        *,
        port: str = "qps",
        seconds: float | None = None,
        status: int = 503,
    ) -> Fault:
        """Make ``port`` ("qps", "hub" or "both") fail as ``kind`` says until :meth:`clear_faults`.

        Kinds: refuse, hang, error, drop, slow, wrong-host, expired-cert, untrusted-cert,
        client-ca (see :mod:`qlikauth.emulator.faults`). One fault per port; a new one replaces
        the old. Takes effect at once, also while running; returns the :class:`Fault`.
        """
        fault = kind if isinstance(kind, Fault) else Fault(kind, seconds=seconds, status=status)
        ports = self._ports(port)
        if fault.kind == "crash":
            # A crash takes the whole node down, whichever port was named.
            ports = ("qps", "hub")
        elif self.crashed:
            raise ConfigurationError(
                "the node has crashed: restart() it (or clear_faults()) first."
            )
        if fault.kind == "crash":
            # A process dies at one instant: both ports drop every request and the memory is
            # gone before the (slower) closing of the listening sockets, so no port answers
            # from a session the other has already lost.
            for p in ports:
                self._faults[p].arm(fault)
            lost = self.state.lose()
            log.info("emulator: crashed, %d proxy session(s) and every ticket lost", lost)
        for p in ports:
            self._faults[p].set(fault)
        return fault

    def clear_faults(self, port: str = "both") -> None:
        """End the faults of ``port`` ("qps", "hub" or "both"); ending a crash restarts the node."""
        crashed = self.crashed
        ports = ("qps", "hub") if crashed else self._ports(port)
        if crashed:
            self.state.revive()
        for p in ports:
            self._faults[p].clear()

    @property
    def crashed(self) -> bool:
        """True between :meth:`crash` and :meth:`restart`."""
        return any(s.fault is not None and s.fault.kind == "crash" for s in self._faults.values())

    def crash(self) -> Fault:
        """Kill the node: both ports stop listening (open connections are reset) and every
        ticket, proxy session and module target is lost, as when Qlik's proxy process dies.
        Websockets get no ``OnSession*`` message. :meth:`restart` brings it back, empty."""
        return self.inject("crash")

    def restart(self) -> None:
        """Restart the node on the same ports: a crashed node comes back; a running one is
        crashed first. Either way it starts with no tickets and no proxy sessions (browsers'
        session cookies name sessions it no longer knows); other faults are cleared too."""
        if not self.crashed:
            self.crash()
        self.clear_faults("both")

    @contextmanager
    def fault(
        self,
        kind: str | Fault,
        *,
        port: str = "qps",
        seconds: float | None = None,
        status: int = 503,
    ) -> Iterator[Fault]:
        """``with emu.fault("hang"): ...``: :meth:`inject` for the block, cleared after it."""
        f = self.inject(kind, port=port, seconds=seconds, status=status)
        try:
            yield f
        finally:
            self.clear_faults(port)

    @property
    def faults(self) -> dict[str, Fault]:
        """The active faults by port."""
        return {p: s.fault for p, s in self._faults.items() if s.fault is not None}

    def fault_hits(self, port: str = "qps") -> int:
        """How many requests a fault on ``port`` answered (or left unanswered) so far."""
        return self._faults[port].hits

    def _ports(self, port: str) -> tuple[str, ...]:
        if port == "both":
            return ("qps", "hub")
        if port not in self._faults:
            raise ConfigurationError(f"port must be 'qps', 'hub' or 'both', not {port!r}.")
        return (port,)

    # -- addresses ----------------------------------------------------------------------
    def _need(self, srv: BackgroundServer | None) -> BackgroundServer:
        if srv is None:
            raise ConfigurationError(
                "the emulator is not started: call start() or use it in a with block."
            )
        return srv

    @property
    def qps_port(self) -> int:
        """The QPS API port."""
        return self._need(self._qps).port

    @property
    def hub_port(self) -> int:
        """The hub port."""
        return self._need(self._hub).port

    @property
    def qps_url(self) -> str:
        """``https://host:port`` of the QPS API (mutual TLS)."""
        return f"https://{_url_host(self.host)}:{self.qps_port}"

    @property
    def hub_url(self) -> str:
        """``https://host:port`` of the hub (TLS, server certificate only)."""
        return f"https://{_url_host(self.host)}:{self.hub_port}"

    def hub_url_for(self, prefix: str = "") -> str:
        """The hub of a virtual proxy: ``{hub_url}/{prefix}/hub/`` (``/hub/`` for the default)."""
        prefix = prefix.strip("/")
        return f"{self.hub_url}/{prefix}/hub/" if prefix else f"{self.hub_url}/hub/"

    def rest_uri_for(self, prefix: str = "") -> str:
        """The node's REST base for a virtual proxy, as sent in ``proxyRestUri``."""
        prefix = prefix.strip("/")
        return f"{self.qps_url}/qps/{prefix}/" if prefix else f"{self.qps_url}/qps/"

    @property
    def certs_dir(self) -> Path:
        """The directory with root.pem, client.pem, client_key.pem, server.pem, ..."""
        if self._certs is None:
            raise ConfigurationError("the emulator has no certificates yet: call start() first.")
        return self._certs

    def __repr__(self) -> str:
        where = f"{self.qps_url}, {self.hub_url}" if self._started else "stopped"
        return f"<Emulator {where} proxies={sorted(self._proxies)}>"


class EmulatorCluster:
    """Several emulated nodes sharing one certificate directory (a multi-node site).

    Tickets and sessions stay on the node that made them, as in Qlik.
    """

    def __init__(self, nodes: int = 2, certs_dir: str | Path | None = None, **kwargs: Any) -> None:
        if nodes < 1:
            raise ConfigurationError("a cluster needs at least one node.")
        self._count = nodes
        self._given = Path(certs_dir) if certs_dir is not None else None
        self._tmp: str | None = None
        self._kwargs = kwargs
        self.nodes: list[Emulator] = []

    def start(self) -> EmulatorCluster:
        """Start every node."""
        if self.nodes:
            return self
        d = self._given
        if d is None:
            self._tmp = tempfile.mkdtemp(prefix="qlikauth-cluster-")
            d = Path(self._tmp)
        if not (d / "root.pem").exists():
            host = self._kwargs.get("host", "localhost")
            bind = self._kwargs.get("bind", "127.0.0.1")
            generate_certificates(d, list(dict.fromkeys([host, bind])))
        # Qlik counts a user's parallel sessions across the site, not per node.
        site = SiteSessions()
        try:
            for _ in range(self._count):
                self.nodes.append(Emulator(certs_dir=d, site_sessions=site, **self._kwargs).start())
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node and remove generated certificates. Idempotent."""
        for n in self.nodes:
            n.stop()
        self.nodes = []
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> EmulatorCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __getitem__(self, i: int) -> Emulator:
        return self.nodes[i]

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def qps_urls(self) -> list[str]:
        """The QPS URL of every node, in order."""
        return [n.qps_url for n in self.nodes]

    @property
    def certs_dir(self) -> Path:
        """The shared certificate directory."""
        return self.nodes[0].certs_dir

    def add_virtual_proxy(self, vp: VirtualProxy) -> None:
        """Add a virtual proxy to every node."""
        for n in self.nodes:
            n.add_virtual_proxy(vp)
