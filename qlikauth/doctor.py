"""``qlikauth doctor``: check a client-managed site end to end and say, for each failure, the fix.

:class:`Doctor` takes the portal's checked settings (:class:`~qlikauth.web.config.QlikAuthConfig`,
the same the Flask and Django integrations read) and runs, in order:

* the certificate files: each file parses, the key opens (passphrase) and belongs to the
  client certificate, nothing has expired, the client certificate chains to ``root.pem``;
* per QPS node: the TCP connection and the mutual-TLS handshake (server certificate signed by
  ``root.pem``, our client certificate accepted), the node's name in the server certificate,
  an xrfkey round trip (``GET /qps/alive``), the node's clock (its ``Date`` header);
* per node: a test ticket request for the virtual proxy (404: no virtual proxy with that prefix;
  403: the client certificate is not trusted; the hub's port given as the QPS port);
* the hub URL(s): an anonymous browser is sent to the portal's authentication module
  (ticket and session modes) and the ``proxyRestUri`` Qlik sends names a configured node;
* with ``session_checks``: a ticket redeemed at the hub (which signs the test user into Qlik),
  the session cookie's name against the portal's setting, and an engine websocket with the
  session cookie, the CSRF token and the portal's ``Origin`` (Qlik's November 2024 rule); the
  proxy session is ended afterwards;
* for header authentication, the nginx configuration given checked with ``nginx -t``.

Checks that depend on a failed one are reported as skipped, so every failure is named once.
Nothing secret is printed: no ticket, session id, key or passphrase.
"""

from __future__ import annotations

import base64
import datetime as _dt
import email.utils
import http.client
import ipaddress
import os
import secrets
import shutil
import socket
import ssl
import subprocess  # noqa: S404 - nginx -t, with a fixed argument list
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from cryptography import x509

from .exceptions import (
    CertificateError,
    ConfigurationError,
    QlikAuthError,
    QlikEndpointError,
    QpsForbidden,
    QpsNotFound,
    RedirectError,
)
from .identity import QlikUser
from .qps.errors import tls_problem
from .xrf import new_xrfkey

__all__ = ["Finding", "Report", "Doctor", "MAX_CLOCK_SKEW", "server_cert_names_host"]

#: Seconds a node's clock may differ from this machine's before the doctor fails the node:
#: tickets live a minute, and SAML and OIDC allow a few minutes at most.
MAX_CLOCK_SKEW = 30.0

#: A browser's User-Agent without "Windows": Qlik's internal module would answer one containing
#: the virtual proxy's Windows authentication pattern with a Negotiate challenge instead.
_BROWSER_UA = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36 qlikauth-doctor"
)

OK, FAIL, WARN, SKIP = "ok", "fail", "warn", "skip"


#: The scope a machine-to-machine OAuth client acts as a tenant admin with (qlik.dev, OAuth
#: scopes): needed to read web integrations and identity providers.
ADMIN_SCOPE = "admin_classic"


@dataclass
class Finding:
    """One check's result: ``status`` is ok, fail, warn or skip; ``fix`` says what to do."""

    check: str
    status: str
    message: str
    fix: str = ""
    target: str = ""

    def line(self) -> str:
        """One line (two with a fix) for the terminal."""
        where = f" [{self.target}]" if self.target else ""
        text = f"{self.status.upper():4} {self.check}{where}: {self.message}"
        return text + (
            f"\n     fix: {self.fix}" if self.fix and self.status in (FAIL, WARN) else ""
        )


@dataclass
class Report:
    """Every finding of one run; :attr:`ok` is False when any check failed."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (warnings and skips allowed)."""
        return not any(f.status == FAIL for f in self.findings)

    def failed(self) -> list[Finding]:
        """The failed checks."""
        return [f for f in self.findings if f.status == FAIL]

    def get(self, check: str, target: str | None = None) -> Finding | None:
        """The first finding of ``check`` (on ``target`` when given)."""
        return next(
            (
                f
                for f in self.findings
                if f.check == check and (target is None or f.target == target)
            ),
            None,
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}

    def text(self) -> str:
        """The report for a terminal: one line per check, then a summary."""
        failed = len(self.failed())
        summary = (
            "all checks passed"
            if not failed
            else f"{failed} check(s) failed: fix them in the order shown"
        )
        return "\n".join([*(f.line() for f in self.findings), summary])


def server_cert_names_host(cert: x509.Certificate, host: str) -> bool:
    """Whether ``cert``'s subjectAltName names ``host`` (DNS with one leading wildcard, or IP)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    host = host.strip("[]").lower().rstrip(".")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    for name in san.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def _san_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(v) for v in san.get_values_for_type(x509.DNSName)] + [
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    ]


def _proxy_url(hub_url: str) -> str:
    """The virtual proxy's base URL from its hub URL (``https://h/p/hub/`` -> ``https://h/p/``)."""
    parts = urlsplit(hub_url)
    path = parts.path.rstrip("/")
    if path.endswith("/hub") or path == "hub":
        path = path[: -len("hub")]
    path = path.rstrip("/") + "/"
    return f"https://{parts.netloc}{path}"


@dataclass
class CloudTarget:
    """A Qlik Cloud tenant to check: its URL, the portal's OAuth client and, for impersonation,
    the subject of a user that exists in the tenant. ``verify`` is True or a CA bundle file.
    Reading the web integration and the identity providers needs the client's token to act as
    a tenant admin (scope ``admin_classic``)."""

    tenant_url: str
    client: Any  # qlikauth.cloud.OAuthClient
    subject: str | None = None
    verify: Any = True
    #: the web integration the portal's pages name (``qlik-web-integration-id``): the portal's
    #: origin (``Doctor(portal_url=...)``) must be one of its allowed origins.
    web_integration_id: str | None = None
    #: the portal's :class:`~qlikauth.cloud.CloudJwtIssuer`: its issuer, ``kid`` and key must
    #: be those of one of the tenant's JWT identity providers.
    jwt_issuer: Any = None


class Doctor:
    """Runs the checks of a client-managed site (see the module docstring).

    :param config: the portal's :class:`~qlikauth.web.config.QlikAuthConfig`.
    :param portal_url: the portal's public base URL (``https://portal.example.com``): the
        expected authentication module is ``{portal_url}/qlik/module`` and the websocket's
        ``Origin`` is its origin. Without it those two checks are looser (any external module;
        the hub's own origin).
    :param session_checks: redeem a test ticket at the hub (this signs the test user into Qlik,
        which may allocate a license on a real site) to check the session cookie and the engine
        websocket; the proxy session is ended afterwards.
    :param test_user: the Qlik user of the test ticket (default
        ``USER_DIRECTORY\\qlikauth-doctor``).
    :param nginx_conf: for header authentication, the generated nginx configuration to test.
    :param cloud: a Qlik Cloud tenant and OAuth client to check (:class:`CloudTarget`);
        ``config`` may then be None for a Cloud-only portal.
    :param header: the virtual proxy uses header authentication behind nginx: its hub has no
        authentication module and no tickets are redeemed (default: when ``nginx_conf`` is given).
    :param hub_ca: CA bundle for the hub's certificate when it is not signed by ``root.pem`` or
        a public CA (the system store and ``root.pem`` are trusted by default).
    """

    def __init__(
        self,
        config: Any,
        *,
        portal_url: str | None = None,
        session_checks: bool = False,
        test_user: QlikUser | None = None,
        nginx_conf: str | os.PathLike[str] | None = None,
        hub_ca: str | None = None,
        timeout: float = 10.0,
        max_clock_skew: float = MAX_CLOCK_SKEW,
        app_id: str = "engineData",
        nginx_binary: str = "nginx",
        header: bool | None = None,
        cloud: CloudTarget | None = None,
    ) -> None:
        self.config = config
        self.portal_url = portal_url.rstrip("/") if portal_url else None
        if self.portal_url is not None and urlsplit(self.portal_url).scheme != "https":
            raise ConfigurationError(
                f"portal URL {self.portal_url[:60]!r} must be the portal's https URL, e.g. "
                "https://portal.example.com (Qlik sends browsers there; session cookies need "
                "https)."
            )
        self.session_checks = session_checks
        directory = getattr(config, "user_directory", None) or "QLIKAUTH"
        self.test_user = test_user or QlikUser(directory, "qlikauth-doctor")
        self.nginx_conf = Path(nginx_conf) if nginx_conf is not None else None
        self.hub_ca = hub_ca
        self.timeout = float(timeout)
        self.max_clock_skew = float(max_clock_skew)
        self.app_id = app_id
        self.nginx_binary = nginx_binary
        self.header = header
        self.cloud = cloud
        self.report = Report()
        self._certs: Any = None
        self._good_nodes: list[str] = []

    # -- recording --------------------------------------------------------------------------
    def _add(
        self, check: str, status: str, message: str, fix: str = "", target: str = ""
    ) -> Finding:
        f = Finding(check, status, message, fix, target)
        self.report.findings.append(f)
        return f

    @property
    def header_mode(self) -> bool:
        """True for a header virtual proxy behind nginx (``header``, or an ``nginx_conf`` given)."""
        return self.header if self.header is not None else self.nginx_conf is not None

    # -- run --------------------------------------------------------------------------------
    def run(self) -> Report:
        """Run every check; returns the :class:`Report` (also kept as :attr:`report`)."""
        self.report = Report()
        if self.config is not None:
            self.check_certificates()
            for node in self.config.qps_nodes:
                self.check_node(node)
            for node in self.config.qps_nodes:
                self.check_ticket(node)
            if self.header_mode:
                self.check_nginx()
                self.check_header_spoof()
            else:
                self.check_hub_module()
            self.check_cookie_domain()
            if self.session_checks and not self.header_mode:
                self.check_session()
            self.check_saml()
            self.check_oidc()
        if self.cloud is not None:
            self.check_cloud()
        return self.report

    # -- certificates -----------------------------------------------------------------------
    def check_certificates(self) -> None:
        """certificates.files, .key, .expiry, .chain."""
        from . import certs as c

        src = Path(self.config.certs)
        passphrase = self.config.cert_passphrase
        if src.suffix.lower() in (".pfx", ".p12"):
            try:
                self._certs = c.Certificates.from_pfx(src, passphrase)
            except CertificateError as exc:
                self._add(
                    "certificates.files",
                    FAIL,
                    str(exc),
                    "Export the certificates again from the QMC as PFX with the secret key.",
                    str(src),
                )
                return
            self._add("certificates.files", OK, f"{src} opened")
            self._add("certificates.key", OK, "the key belongs to the client certificate")
            self._after_load()
            return
        files = {
            "client certificate": src / "client.pem",
            "client key": src / "client_key.pem",
            "root certificate": src / "root.pem",
        }
        try:
            if not src.is_dir():
                raise CertificateError(
                    f"certificate directory {str(src)!r} does not exist.", path=str(src)
                )
            cert = c._load_cert(
                c._read(files["client certificate"], "client certificate"),
                str(files["client certificate"]),
                "client certificate",
            )
            roots = c.Certificates._load_roots(
                c._read(files["root certificate"], "root certificate"),
                str(files["root certificate"]),
            )
            key_data = c._read(files["client key"], "client key")
        except CertificateError as exc:
            self._add(
                "certificates.files",
                FAIL,
                str(exc),
                "Copy client.pem, client_key.pem and root.pem from one QMC export "
                "(Certificates > Export, PEM, include the secret key) into CERTS.",
                str(src),
            )
            return
        self._add(
            "certificates.files", OK, f"client.pem, client_key.pem and root.pem parse ({src})"
        )
        try:
            key = c._load_key(key_data, str(files["client key"]), passphrase)
        except CertificateError as exc:
            self._add(
                "certificates.key",
                FAIL,
                str(exc),
                "Set CERT_PASSPHRASE to the password chosen at export (or none for an "
                "unprotected key).",
                str(files["client key"]),
            )
            return
        if c.public_key_bytes(cert.public_key()) != c.public_key_bytes(key.public_key()):
            self._add(
                "certificates.key",
                FAIL,
                f"client_key.pem does not belong to client.pem (in {src}).",
                "Use client.pem and client_key.pem from the same QMC export.",
                str(files["client key"]),
            )
            return
        self._add("certificates.key", OK, "the key opens and belongs to client.pem")
        now = _dt.datetime.now(_dt.UTC)
        expired = [
            (name, x)
            for name, x in (("client.pem", cert), *(("root.pem", r) for r in roots))
            if x.not_valid_after_utc <= now
        ]
        if expired:
            name, x = expired[0]
            self._add(
                "certificates.expiry",
                FAIL,
                f"{name} expired on {x.not_valid_after_utc:%Y-%m-%d}: QPS refuses it.",
                "Renew the site's certificates if needed, then export new ones from the QMC.",
                str(src / name),
            )
            return
        try:
            self._certs = c.Certificates._checked(
                cert,
                key,
                roots,
                str(files["client certificate"]),
                str(files["client key"]),
                str(files["root certificate"]),
            )
        except CertificateError as exc:
            self._add(
                "certificates.expiry",
                FAIL,
                str(exc),
                "Check this machine's clock, then export the certificates again.",
                str(src),
            )
            return
        self._after_load()

    def _after_load(self) -> None:
        certs = self._certs
        cert = certs.client_cert
        days = (cert.not_valid_after_utc - _dt.datetime.now(_dt.UTC)).days
        from .certs import EXPIRY_WARNING_DAYS, issued_by

        if days < EXPIRY_WARNING_DAYS:
            self._add(
                "certificates.expiry",
                WARN,
                f"client.pem expires in {days} days ({cert.not_valid_after_utc:%Y-%m-%d}).",
                "Renew it in the QMC and export new certificates before then.",
            )
        else:
            self._add("certificates.expiry", OK, f"client.pem valid for {days} more days")
        if not any(issued_by(cert, r) for r in certs.root_certs):
            self._add(
                "certificates.chain",
                FAIL,
                "client.pem was not issued by root.pem: the files come from different "
                "sites' (or different) QMC exports.",
                "Copy client.pem, client_key.pem and root.pem from the same export of this "
                "site's QMC.",
                certs.root_path or "",
            )
            self._certs = None
            return
        self._add("certificates.chain", OK, "client.pem chains to root.pem")

    # -- nodes ------------------------------------------------------------------------------
    def check_node(self, node: str) -> None:
        """node.tls, node.server-name, node.xrfkey, node.clock for one QPS node."""
        if self._certs is None:
            self._add("node.tls", SKIP, "the certificates failed: fix them first", target=node)
            return
        parts = urlsplit(node)
        host, port = parts.hostname or "", parts.port or 443
        ctx = self._certs.client_ssl_context()
        # The chain is verified here (CERT_REQUIRED, root.pem only); the name is checked just
        # below against the certificate itself, to say which names it carries.
        ctx.check_hostname = False
        try:
            raw = socket.create_connection((host, port), timeout=self.timeout)
        except socket.gaierror:
            self._add(
                "node.tls",
                FAIL,
                f"{host!r} does not resolve from this machine.",
                "Use the node's name as the QMC shows it (Nodes), resolvable here (DNS or hosts).",
                node,
            )
            return
        except TimeoutError:
            self._add(
                "node.tls",
                FAIL,
                f"connecting to {host}:{port} timed out after {self.timeout:g}s.",
                "Open port 4243 from this machine to the node (firewall) and check the node is up.",
                node,
            )
            return
        except OSError as exc:
            self._add(
                "node.tls",
                FAIL,
                f"cannot connect to {host}:{port} ({exc.strerror or exc}).",
                "Start the Qlik Proxy Service on the node and open port 4243 to this machine; "
                "QPS_NODES takes the QPS API port (4243), not the hub's.",
                node,
            )
            return
        try:
            tls = ctx.wrap_socket(raw, server_hostname=host)
        except ssl.SSLError as exc:
            raw.close()
            self._add("node.tls", FAIL, tls_problem(exc, node), self._tls_fix(exc), node)
            return
        except OSError as exc:
            raw.close()
            self._add(
                "node.tls",
                FAIL,
                f"the TLS handshake with {node} failed ({exc}).",
                "Check QPS_NODES points at the QPS API port (4243) over https.",
                node,
            )
            return
        try:
            der = tls.getpeercert(binary_form=True)
            server_cert = x509.load_der_x509_certificate(der) if der else None
            key = new_xrfkey()
            conn = http.client.HTTPSConnection(host, port, timeout=self.timeout)
            conn.sock = tls
            try:
                conn.request(
                    "GET",
                    f"/qps/alive?xrfkey={key}",
                    headers={
                        "X-Qlik-Xrfkey": key,
                        "Accept": "application/json",
                        "User-Agent": "qlikauth-doctor",
                    },
                )
                resp = conn.getresponse()
                body = resp.read(4096)
            except ssl.SSLError as exc:
                self._add(
                    "node.tls",
                    FAIL,
                    tls_problem(exc, node, after_sending=True),
                    self._tls_fix(exc),
                    node,
                )
                return
            except TimeoutError:
                self._add(
                    "node.tls",
                    FAIL,
                    f"{node} accepted the connection but did not answer GET /qps/alive within "
                    f"{self.timeout:g}s.",
                    "Check the Qlik Proxy Service on the node (restart it; look at its logs) "
                    "and anything in between that holds connections.",
                    node,
                )
                return
            except (OSError, http.client.HTTPException) as exc:
                self._add(
                    "node.tls",
                    FAIL,
                    f"{node} closed the connection after the handshake without answering "
                    f"({type(exc).__name__}): it most likely refused our client certificate.",
                    "Use client.pem/client_key.pem from this site's QMC export.",
                    node,
                )
                return
            finally:
                conn.close()
        finally:
            tls.close()
        self._add("node.tls", OK, "TLS handshake with root.pem trust and our client certificate")
        if server_cert is None or not server_cert_names_host(server_cert, host):
            names = ", ".join(_san_names(server_cert)) if server_cert is not None else "none"
            self._add(
                "node.server-name",
                FAIL,
                f"the server certificate of {node} does not name {host!r} (its names: {names}).",
                "Use the node's name the certificate was issued to in QPS_NODES (one of the "
                "names above), or re-issue the site's certificates for this name.",
                node,
            )
            return
        self._add("node.server-name", OK, f"the server certificate names {host}", target=node)
        status = resp.status
        text = body.decode("utf-8", "replace")
        if 300 <= status < 400 or (status == 200 and "<html" in text.lower()):
            self._add(
                "node.xrfkey",
                FAIL,
                f"{node} answered the QPS API call with {status} like a browser page: that is "
                "the proxy's hub (browser) port, not the QPS API.",
                "Use the QPS API port in QPS_NODES: https://<node>:4243.",
                node,
            )
            return
        if status == 403 and "xsrf" in text.lower():
            self._add(
                "node.xrfkey",
                FAIL,
                f"{node} refused the xrfkey (the X-Qlik-Xrfkey header and the xrfkey "
                "parameter did not reach it equal).",
                "Something between this machine and QPS strips or rewrites the X-Qlik-Xrfkey "
                "header or the query string: connect to port 4243 directly, or make the "
                "gateway pass both unchanged.",
                node,
            )
            return
        if status != 200:
            self._add(
                "node.xrfkey",
                FAIL,
                f"{node} answered GET /qps/alive with {status}.",
                "Check the URL is the QPS API (https://<node>:4243) and the service is healthy.",
                node,
            )
            return
        self._add("node.xrfkey", OK, "xrfkey round trip (GET /qps/alive) answered 200", target=node)
        self._check_clock(node, resp.getheader("Date"))
        self._good_nodes.append(node)

    @staticmethod
    def _tls_fix(exc: ssl.SSLError) -> str:
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (
                "Use root.pem from this site's QMC export and the node name its certificate "
                "was issued to; renew expired site certificates."
            )
        return (
            "Use client.pem/client_key.pem exported from this site's QMC, and the QPS API "
            "port (4243) in QPS_NODES."
        )

    def _check_clock(self, node: str, date: str | None) -> None:
        if not date:
            self._add(
                "node.clock",
                WARN,
                f"{node} sent no Date header: its clock cannot be compared.",
                "Nothing to do unless tickets or SSO sign-ins fail with time errors.",
                node,
            )
            return
        try:
            theirs = email.utils.parsedate_to_datetime(date)
        except (TypeError, ValueError):
            self._add("node.clock", WARN, f"{node} sent an unreadable Date header.", "", node)
            return
        if theirs.tzinfo is None:
            theirs = theirs.replace(tzinfo=_dt.UTC)
        skew = (theirs - _dt.datetime.now(_dt.UTC)).total_seconds()
        if abs(skew) > self.max_clock_skew:
            way = "ahead of" if skew > 0 else "behind"
            self._add(
                "node.clock",
                FAIL,
                f"{node}'s clock is {abs(skew):.0f}s {way} this machine's (more than "
                f"{self.max_clock_skew:g}s): tickets (valid a minute), SAML assertions and "
                "OIDC tokens fail on time checks.",
                "Synchronise both machines with NTP (w32time on Windows nodes).",
                node,
            )
            return
        self._add("node.clock", OK, f"clock within {abs(skew):.0f}s of this machine's", target=node)

    # -- ticket -----------------------------------------------------------------------------
    @contextmanager
    def _client(self) -> Iterator[Any]:
        from .qps import QpsClient

        client = QpsClient(
            list(self.config.qps_nodes),
            self._certs,
            virtual_proxy=self.config.virtual_proxy,
            timeout=self.timeout,
        )
        try:
            yield client
        finally:
            client.close()

    def check_ticket(self, node: str) -> None:
        """ticket: a test ticket request for the virtual proxy on ``node``."""
        if node not in self._good_nodes:
            self._add(
                "ticket", SKIP, "the node's connection checks failed: fix them first", target=node
            )
            return
        prefix = self.config.virtual_proxy or "(default)"
        try:
            with self._client() as qps:
                qps.request_ticket(self.test_user, node=node)
        except QpsNotFound:
            self._add(
                "ticket",
                FAIL,
                f"{node} answered 404 to the ticket request: no virtual proxy with prefix "
                f"{prefix!r} is linked to this node's proxy.",
                f"In the QMC create the virtual proxy {prefix!r} (Virtual proxies), link it to "
                "the proxy of this node (Proxies), or set VIRTUAL_PROXY to an existing prefix.",
                node,
            )
            return
        except QpsForbidden as exc:
            if getattr(exc, "hub_port", False):
                self._add(
                    "ticket",
                    FAIL,
                    f"{node} is the proxy's hub (browser) port: it answered the ticket request "
                    "with 'The initial authentication request must be a GET request'.",
                    "Use the QPS API port in QPS_NODES: https://<node>:4243.",
                    node,
                )
            else:
                self._add(
                    "ticket",
                    FAIL,
                    f"{node} answered 403 to the ticket request: the client certificate is not "
                    "trusted by this site.",
                    "Export client.pem/client_key.pem again from this site's QMC "
                    "(Certificates > Export) and check nothing between re-signs the traffic.",
                    node,
                )
            return
        except QlikAuthError as exc:
            self._add(
                "ticket", FAIL, str(exc), "Fix the node's connection as the message says.", node
            )
            return
        self._add(
            "ticket",
            OK,
            f"a ticket for virtual proxy {prefix!r} was issued (and left unused)",
            target=node,
        )

    # -- hub --------------------------------------------------------------------------------
    def _hub_urls(self) -> list[str]:
        hubs = [self.config.hub_url]
        hubs += [h for h in getattr(self.config, "node_hub_urls", {}).values() if h not in hubs]
        return hubs

    @contextmanager
    def _hub_verify(self) -> Iterator[str | bool]:
        """A CA bundle for the hub: the system store plus root.pem (or ``hub_ca``)."""
        if self.hub_ca:
            yield self.hub_ca
            return
        import certifi

        fd, path = tempfile.mkstemp(prefix="qlikauth-doctor-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(Path(certifi.where()).read_bytes())
                if self._certs is not None:
                    fh.write(b"\n" + self._certs.root_pem())
            yield path
        finally:
            os.unlink(path)

    def _session(self) -> Any:
        import requests

        s = requests.Session()
        s.trust_env = False  # environment proxies would test another path than browsers take
        s.headers["User-Agent"] = _BROWSER_UA
        return s

    def check_hub_module(self) -> None:
        """hub.module: the hub sends an anonymous browser to the portal's module."""
        import requests

        expected = f"{self.portal_url}/qlik/module" if self.portal_url else None
        with self._hub_verify() as verify:
            for hub in self._hub_urls():
                try:
                    with self._session() as s:
                        resp = s.get(
                            hub, verify=verify, timeout=self.timeout, allow_redirects=False
                        )
                except requests.exceptions.SSLError:
                    if self._certs is None and not self.hub_ca:
                        self._add(
                            "hub.module",
                            SKIP,
                            "the hub's certificate cannot be checked "
                            "without root.pem: fix the certificates first",
                            target=hub,
                        )
                        continue
                    self._add(
                        "hub.module",
                        FAIL,
                        f"the hub {hub} presents a certificate neither a public CA nor "
                        "root.pem signed.",
                        "Pass the hub's CA bundle (--hub-ca) or install a trusted certificate "
                        "on the hub.",
                        hub,
                    )
                    continue
                except requests.RequestException as exc:
                    self._add(
                        "hub.module",
                        FAIL,
                        f"cannot reach the hub {hub} ({type(exc).__name__}).",
                        "Check HUB_URL (the address browsers use for the virtual proxy's hub) "
                        "and that port 443 of the proxy is open.",
                        hub,
                    )
                    continue
                self._judge_module(hub, resp, expected)

    def _judge_module(self, hub: str, resp: Any, expected: str | None) -> None:
        location = resp.headers.get("Location", "") if resp.is_redirect else ""
        if not location:
            self._add(
                "hub.module",
                FAIL,
                f"the hub answered an anonymous browser with {resp.status_code} instead of "
                "sending it to the portal's authentication module.",
                "In the QMC set the virtual proxy's Authentication module redirect URI to "
                f"{expected or 'https://<portal>/qlik/module'}; check HUB_URL names that "
                "virtual proxy's hub.",
                hub,
            )
            return
        if (
            "/internal_windows_authentication/" in location
            or "/internal_forms_authentication/" in location
        ):
            self._add(
                "hub.module",
                FAIL,
                "the hub sends anonymous browsers to Qlik's own Windows/form login: the virtual "
                "proxy has no Authentication module redirect URI.",
                f"Set it in the QMC to {expected or 'https://<portal>/qlik/module'}.",
                hub,
            )
            return
        target = location.split("?", 1)[0]
        if expected is not None and target.rstrip("/") != expected:
            self._add(
                "hub.module",
                FAIL,
                f"the hub sends anonymous browsers to {target[:120]}, not to the portal's "
                f"module {expected}.",
                f"Set the virtual proxy's Authentication module redirect URI to {expected} in "
                "the QMC (or pass the portal's own URL with --portal-url).",
                hub,
            )
            return
        query = parse_qs(urlsplit(location).query)
        rest = (query.get("proxyRestUri") or [""])[0]
        if not rest or not query.get("targetId"):
            self._add(
                "hub.module",
                FAIL,
                f"the hub's redirect to {target[:120]} carries no proxyRestUri and targetId: it "
                "is not a virtual proxy's authentication module redirect.",
                "Check HUB_URL is the hub of the virtual proxy set in VIRTUAL_PROXY.",
                hub,
            )
            return
        if self._certs is not None:
            try:
                with self._client() as qps:
                    qps.node_for_rest_uri(rest)
            except RedirectError:
                shown = urlsplit(rest)
                self._add(
                    "hub.module",
                    FAIL,
                    f"the hub names the QPS node {shown.scheme}://{shown.netloc}{shown.path} in "
                    "proxyRestUri, which is not in QPS_NODES with this VIRTUAL_PROXY: the portal "
                    "will refuse every sign-in from it.",
                    "Add that node (its QMC name and port 4243) to QPS_NODES, or fix "
                    "VIRTUAL_PROXY.",
                    hub,
                )
                return
        self._add("hub.module", OK, f"anonymous browsers go to {target[:120]}", target=hub)

    # -- cookie -----------------------------------------------------------------------------
    def check_cookie_domain(self) -> None:
        """session.cookie-domain: COOKIE_DOMAIN covers the hub's host (session mode sets it)."""
        domain = getattr(self.config, "cookie_domain", None)
        if not domain:
            return
        bare = domain.lstrip(".").lower()
        for hub in self._hub_urls():
            host = (urlsplit(hub).hostname or "").lower()
            if host != bare and not host.endswith("." + bare):
                self._add(
                    "session.cookie-domain",
                    FAIL,
                    f"COOKIE_DOMAIN {domain!r} does not cover the hub's host {host!r}: the browser "
                    "will not send the session cookie the portal sets to Qlik.",
                    f"Set COOKIE_DOMAIN to a domain both the portal and {host} are in (or leave "
                    "it unset when they share a host).",
                    hub,
                )
                return
        self._add("session.cookie-domain", OK, f"COOKIE_DOMAIN {domain!r} covers the hub")

    def check_session(self) -> None:
        """session.cookie and engine.websocket with a redeemed test ticket."""
        import requests

        if not self._good_nodes:
            self._add("session.cookie", SKIP, "no node passed its checks: fix them first")
            return
        node = self._good_nodes[0]
        try:
            with self._client() as qps:
                ticket = qps.request_ticket(self.test_user, node=node)
        except QlikAuthError:
            self._add("session.cookie", SKIP, "the ticket request failed (see above)")
            return
        hub = self.config.node_hub_urls.get(node) or self.config.hub_url
        sep = "&" if "?" in hub else "?"
        want = self.config.effective_cookie_name
        session_id = None
        with self._hub_verify() as verify:
            try:
                with self._session() as s:
                    resp = s.get(
                        f"{hub}{sep}qlikTicket={quote(ticket.ticket, safe='')}",
                        verify=verify,
                        timeout=self.timeout,
                        allow_redirects=False,
                    )
            except requests.RequestException as exc:
                self._add(
                    "session.cookie",
                    FAIL,
                    f"cannot reach the hub {hub} ({type(exc).__name__}).",
                    "Check HUB_URL.",
                    hub,
                )
                return
            names = [c.name for c in resp.cookies]
            session_id = next((c.value for c in resp.cookies if c.name == want), None)
            if session_id is None:
                got = ", ".join(repr(n) for n in names) or "no cookie"
                self._add(
                    "session.cookie",
                    FAIL,
                    f"redeeming a ticket at the hub set {got}, not the portal's {want!r}.",
                    (
                        f"Set COOKIE_NAME to {names[0]!r} (the virtual proxy's Session cookie "
                        "header "
                        "name in the QMC), or change that QMC field to match."
                        if names
                        else "Check HUB_URL is the hub of the virtual proxy in VIRTUAL_PROXY."
                    ),
                    hub,
                )
                if names:
                    self._end_sessions()
                return
            self._add("session.cookie", OK, f"the hub set the session cookie {want!r}", target=hub)
            try:
                self._check_websocket(hub, want, session_id, verify)
            finally:
                self._end_sessions()

    def _end_sessions(self) -> None:
        """End the test user's proxy sessions (the doctor's own user: nobody else's)."""
        try:
            with self._client() as qps:
                qps.logout_user(self.test_user)
        except QlikAuthError as exc:
            self._add(
                "session.cleanup",
                WARN,
                f"the doctor's proxy session could not be ended ({exc}).",
                "It ends by itself after the virtual proxy's inactivity timeout.",
            )

    def _check_websocket(self, hub: str, cookie: str, session_id: str, verify: Any) -> None:
        from .engine import fetch_csrf_token

        proxy = _proxy_url(hub)
        token: str | None
        try:
            token = fetch_csrf_token(proxy, cookie, session_id, verify=verify, timeout=self.timeout)
        except QlikEndpointError:
            token = None  # a release before November 2024: the websocket needs no token
        hub_origin = f"https://{urlsplit(hub).netloc}"
        origin = f"https://{urlsplit(self.portal_url).netloc}" if self.portal_url else hub_origin
        status = self._websocket_status(proxy, cookie, session_id, token, origin, verify)
        if status == 101:
            self._add(
                "engine.websocket",
                OK,
                f"the engine websocket opened with the session cookie from origin {origin}",
                target=hub,
            )
            return
        if isinstance(status, str):
            self._add(
                "engine.websocket",
                FAIL,
                f"the engine websocket could not be opened: {status}.",
                "Check the hub is reachable over https from this machine.",
                hub,
            )
            return
        if (
            status == 403
            and origin != hub_origin
            and self._websocket_status(proxy, cookie, session_id, token, hub_origin, verify) == 101
        ):
            host = urlsplit(self.portal_url or "").hostname
            self._add(
                "engine.websocket",
                FAIL,
                f"the engine websocket is refused from the portal's origin {origin} (403) but "
                "opens from the hub's own: the portal's host is not on the virtual proxy's host "
                "allow list.",
                f"Add {host} to the virtual proxy's Host allow list in the QMC.",
                hub,
            )
            return
        if status == 403:
            self._add(
                "engine.websocket",
                FAIL,
                "the engine websocket was refused (403, Qlik's cross-site websocket hijacking "
                "check): the CSRF token or the Origin was not accepted.",
                "Add the portal's host to the virtual proxy's Host allow list and open engine "
                "websockets with ?qlik-csrf-token= from GET /{prefix}/qps/csrftoken "
                "(qlikauth.engine).",
                hub,
            )
            return
        self._add(
            "engine.websocket",
            FAIL,
            f"the engine websocket upgrade was answered with {status}, not 101: something "
            "between (a gateway, a proxy or a VPN) does not pass websockets.",
            "Let the gateway pass Upgrade: websocket to the hub (nginx: proxy_http_version 1.1 "
            "and the Upgrade/Connection headers).",
            hub,
        )

    def _websocket_status(
        self, proxy: str, cookie: str, session_id: str, token: str | None, origin: str, verify: Any
    ) -> int | str:
        """The status of a websocket upgrade to the engine (101: opened), or why none came."""
        from .engine import engine_websocket_url

        url = engine_websocket_url(proxy, self.app_id, token)
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 443
        ctx = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {origin}\r\nCookie: {cookie}={session_id}\r\n"
            f"User-Agent: {_BROWSER_UA}\r\n\r\n"
        )
        try:
            with (
                socket.create_connection((host, port), timeout=self.timeout) as raw,
                ctx.wrap_socket(raw, server_hostname=host) as tls,
            ):
                tls.sendall(request.encode("ascii"))
                head = b""
                while b"\r\n" not in head and len(head) < 4096:
                    chunk = tls.recv(1024)
                    if not chunk:
                        break
                    head += chunk
        except (OSError, ssl.SSLError) as exc:
            return type(exc).__name__
        line = head.split(b"\r\n", 1)[0].split()
        if len(line) < 2 or not line[1].isdigit():
            return "no HTTP answer"
        return int(line[1])

    # -- single sign-on ---------------------------------------------------------------------
    def _adder(self, target: str) -> Callable[..., Finding]:
        """``_add`` for one identity provider: its name is the findings' target."""

        def add(check: str, status: str, message: str, fix: str = "") -> Finding:
            return self._add(check, status, message, fix, target)

        return add

    def _idps(self, section: str, known: Any, check: str) -> dict[str, dict[str, Any]] | None:
        """The IdPs of ``SAML`` or ``OIDC`` as the portal reads them (``{"default": ...}`` for
        the single form); None, with ``check`` failed, when the setting's shape is wrong."""
        from .web.saml import idp_sections

        try:
            return idp_sections(getattr(self.config, section.lower(), None), section, known)
        except QlikAuthError as exc:
            self._add(check, FAIL, str(exc), f"Fix the shape of the {section} setting.")
            return None

    @staticmethod
    def _idp_target(name: str) -> str:
        from .web.saml import DEFAULT_IDP

        # The single-IdP form names nothing; with several, every finding names its IdP.
        return "" if name == DEFAULT_IDP else f"IdP {name}"

    def check_saml(self) -> None:
        """saml.metadata, saml.idp-cert, saml.sp-cert, saml.urls for every SAML IdP (when SAML
        is configured); with several IdPs each finding names its IdP (``target``)."""
        if not getattr(self.config, "saml", None):
            return
        try:
            from .bridges.saml import SamlSettings
            from .web.saml import _WEB_ONLY
        except ImportError:
            self._add(
                "saml.metadata",
                FAIL,
                "SAML is configured but the saml extra is not installed.",
                "pip install 'qlikauth[saml]'",
            )
            return
        idps = self._idps("SAML", (*SamlSettings._KEYS, *_WEB_ONLY), "saml.metadata")
        for name, values in (idps or {}).items():
            # The doctor builds its own provider: the portal-side keys (state store, claims,
            # label) are not needed to read the settings.
            self._check_saml_idp(
                {k: v for k, v in values.items() if str(k).upper() not in _WEB_ONLY},
                self._idp_target(name),
            )

    def _check_saml_idp(self, values: dict[str, Any], target: str) -> None:
        from .bridges.saml import SamlServiceProvider, SamlSettings

        add = self._adder(target)
        try:
            settings = SamlSettings.from_settings(values)
            sp = SamlServiceProvider(settings)
        except QlikAuthError as exc:
            add(
                "saml.metadata",
                FAIL,
                str(exc),
                "Fix the SAML setting named; for IDP_METADATA download the IdP's federation "
                "metadata XML again and give the file's path.",
            )
            return
        add("saml.metadata", OK, f"IdP {sp.idp_entity_id} read from IDP_METADATA")
        warnings = sp.certificate_warnings()
        expired = [w for w in warnings if " expired on " in w]
        if expired:
            add(
                "saml.idp-cert",
                FAIL,
                expired[0],
                "Download the IdP's metadata again (it carries the new signing certificate) "
                "and, during a roll-over, set IDP_NEXT_CERT.",
            )
        elif warnings:
            add(
                "saml.idp-cert",
                WARN,
                warnings[0],
                "Get the IdP's next signing certificate into IDP_NEXT_CERT before then.",
            )
        else:
            add("saml.idp-cert", OK, "the IdP's signing certificate is valid")
        self._check_sp_pair(settings.sp_cert, settings.sp_key, add)
        bad = [
            (k, u)
            for k, u in (
                ("ACS_URL", settings.acs_url),
                ("SLO_URL", settings.slo_url),
                ("SP_ENTITY_ID", settings.sp_entity_id),
            )
            if u and k != "SP_ENTITY_ID" and urlsplit(u).scheme != "https"
        ]
        if bad:
            key, url = bad[0]
            add(
                "saml.urls",
                FAIL,
                f"SAML {key} {url[:100]!r} is not https: the IdP posts assertions to it in the "
                "clear and browsers drop the SameSite=None cookie the ACS needs.",
                "Serve the portal over https and set BASE_URL to its https address "
                "(ALLOW_HTTP is for local tests only).",
            )
            return
        add("saml.urls", OK, "ACS and SLO URLs are https")

    @staticmethod
    def _check_sp_pair(
        cert_path: str | None, key_path: str | None, add: Callable[..., Finding]
    ) -> None:
        if not cert_path or not key_path:
            return
        from cryptography.hazmat.primitives import serialization

        from .certs import public_key_bytes

        try:
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            add(
                "saml.sp-cert",
                FAIL,
                f"SAML SP_CERT/SP_KEY cannot be read as an unencrypted PEM pair "
                f"({type(exc).__name__}).",
                "Give the SP's certificate and its unencrypted private key as PEM files.",
            )
            return
        if public_key_bytes(cert.public_key()) != public_key_bytes(key.public_key()):
            add(
                "saml.sp-cert",
                FAIL,
                "SAML SP_KEY does not belong to SP_CERT.",
                "Give the key pair made together (the certificate in the SP metadata).",
            )
            return
        if cert.not_valid_after_utc <= _dt.datetime.now(_dt.UTC):
            add(
                "saml.sp-cert",
                FAIL,
                f"SAML SP_CERT expired on {cert.not_valid_after_utc:%Y-%m-%d}.",
                "Make a new SP key pair, publish the new SP metadata and give it to the IdP.",
            )
            return
        add("saml.sp-cert", OK, "SP certificate and key match and are valid")

    def check_oidc(self) -> None:
        """oidc.settings, .discovery, .issuer, .clock, .jwks, .redirect for every OpenID
        provider (when OIDC is configured); with several each finding names its provider."""
        if not getattr(self.config, "oidc", None):
            return
        try:
            from .web.oidc import _KNOWN
        except ImportError:
            self._add(
                "oidc.settings",
                FAIL,
                "OIDC is configured but the oidc extra is not installed.",
                "pip install 'qlikauth[oidc]'",
            )
            return
        for name, values in (self._idps("OIDC", _KNOWN, "oidc.settings") or {}).items():
            self._check_oidc_provider(values, self._idp_target(name))

    def _check_oidc_provider(self, raw: dict[str, Any], target: str) -> None:
        add = self._adder(target)
        try:
            from .bridges.oidc import OidcRelyingParty
            from .store import MemoryStore
            from .web.oidc import OidcWebSettings

            web = OidcWebSettings.from_mapping(raw, getattr(self.config, "claims", None))
        except ImportError:
            add(
                "oidc.settings",
                FAIL,
                "OIDC is configured but the oidc extra is not installed.",
                "pip install 'qlikauth[oidc]'",
            )
            return
        except QlikAuthError as exc:
            add("oidc.settings", FAIL, str(exc), "Fix the OIDC setting named.")
            return
        settings = web.rp
        add("oidc.settings", OK, f"issuer {settings.issuer}")
        rp = OidcRelyingParty(settings, MemoryStore())
        try:
            meta = rp.metadata()
        except QlikAuthError as exc:
            if getattr(exc, "code", None) == "metadata" and "issuer" in str(exc):
                add(
                    "oidc.issuer",
                    FAIL,
                    str(exc),
                    "Copy the 'issuer' value of the provider's discovery document into ISSUER "
                    "exactly (trailing slash included).",
                )
            else:
                add(
                    "oidc.discovery",
                    FAIL,
                    str(exc),
                    "Check ISSUER (qlikauth appends /.well-known/openid-configuration), "
                    "that this server reaches the provider, and CA_BUNDLE for a private CA.",
                )
            rp.http.close()
            return
        add("oidc.discovery", OK, "discovery document read")
        add("oidc.issuer", OK, "the document's issuer is the configured one")
        self._check_provider_clock(settings, add)
        try:
            jwks = rp.http.get_json(meta.jwks_uri, "JWKS")
            keys = jwks.get("keys") if isinstance(jwks, dict) else None
            usable = [
                k
                for k in keys or []
                if isinstance(k, dict)
                and k.get("use", "sig") == "sig"
                and (k.get("alg") in (None, *settings.algorithms))
            ]
            if not usable:
                add(
                    "oidc.jwks",
                    FAIL,
                    f"the provider's JWKS ({meta.jwks_uri[:100]}) holds no signing key for "
                    f"{', '.join(settings.algorithms)}: no id_token can be verified.",
                    "Set ALGORITHMS to what the provider signs with (its "
                    "id_token_signing_alg_values_supported) or fix the provider's keys.",
                )
            else:
                add("oidc.jwks", OK, f"{len(usable)} signing key(s) in the JWKS")
        except QlikAuthError as exc:
            add("oidc.jwks", FAIL, str(exc), "Check the provider's jwks_uri answers.")
        finally:
            rp.http.close()
        plain = [
            (k, u)
            for k, u in (
                ("REDIRECT_URI", settings.redirect_uri),
                ("POST_LOGOUT_REDIRECT_URI", settings.post_logout_redirect_uri),
            )
            if u and urlsplit(u).scheme != "https"
        ]
        if plain:
            key, url = plain[0]
            add(
                "oidc.redirect",
                FAIL,
                f"OIDC {key} {url[:100]!r} is not https (accepted for loopback tests only): "
                "codes and sign-outs would travel in the clear.",
                "Register and set the portal's https URL (https://<portal>/oidc/callback).",
            )
            return
        add("oidc.redirect", OK, "redirect URIs are https")

    def _check_provider_clock(self, settings: Any, add: Callable[..., Finding]) -> None:
        """oidc.clock: the provider's clock (its ``Date`` header) within the id_token leeway."""
        import requests

        url = settings.discovery_document_url
        try:
            with requests.Session() as s:
                s.trust_env = False
                resp = s.get(
                    url,
                    verify=settings.ca_bundle or True,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
        except requests.RequestException:
            return  # the discovery check above has just reached it; nothing new to say
        date = resp.headers.get("Date")
        try:
            theirs = email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            theirs = None
        if theirs is None:
            add(
                "oidc.clock",
                WARN,
                "the provider sent no readable Date header: its clock cannot be compared.",
                "Nothing to do unless sign-ins fail on time checks.",
            )
            return
        if theirs.tzinfo is None:
            theirs = theirs.replace(tzinfo=_dt.UTC)
        skew = (theirs - _dt.datetime.now(_dt.UTC)).total_seconds()
        if abs(skew) > settings.leeway:
            way = "ahead of" if skew > 0 else "behind"
            add(
                "oidc.clock",
                FAIL,
                f"the provider's clock is {abs(skew):.0f}s {way} this machine's, more than "
                f"the {settings.leeway:g}s LEEWAY: id_tokens will be refused as not yet "
                "valid or expired.",
                "Synchronise this machine's clock with NTP (the provider's is usually right).",
            )
            return
        add("oidc.clock", OK, f"the provider's clock is within {abs(skew):.0f}s of ours")

    # -- Qlik Cloud ---------------------------------------------------------------------------
    def check_cloud(self) -> None:
        """cloud.tenant, cloud.token (client credentials), cloud.web-integration, cloud.jwt-idp
        (the tenant's configuration, when given), cloud.impersonation."""
        import requests

        from .cloud import QlikCloud
        from .exceptions import QlikEndpointHTTPError

        target = self.cloud
        assert target is not None
        try:
            with requests.Session() as s:
                s.trust_env = False
                s.get(
                    target.tenant_url,
                    verify=target.verify,
                    timeout=self.timeout,
                    allow_redirects=False,
                )
        except requests.exceptions.SSLError:
            self._add(
                "cloud.tenant",
                FAIL,
                f"the tenant {target.tenant_url} presents a certificate this machine does not "
                "trust.",
                "Let the portal trust the tenant's CA (system store), or check that no "
                "TLS-inspecting proxy sits in between.",
                target.tenant_url,
            )
            return
        except requests.RequestException as exc:
            self._add(
                "cloud.tenant",
                FAIL,
                f"the tenant {target.tenant_url} cannot be reached ({type(exc).__name__}).",
                "Check the tenant URL (https://<tenant>.<region>.qlikcloud.com) and that this "
                "server may connect out on 443 (firewall, outbound proxy).",
                target.tenant_url,
            )
            return
        self._add("cloud.tenant", OK, "the tenant answers over https", target=target.tenant_url)
        cloud = QlikCloud(
            target.tenant_url, verify=target.verify, timeout=self.timeout, rate_limit_retries=0
        )
        try:
            try:
                token = cloud.token(target.client)
            except QlikEndpointHTTPError as exc:
                if exc.status_code in (400, 401):
                    self._add(
                        "cloud.token",
                        FAIL,
                        f"the tenant refused the OAuth client's credentials ({exc.status_code}): "
                        f"{str(exc)[:200]}",
                        "Check the client id and secret (or private key and kid) of the OAuth "
                        "client (Administration > OAuth, type Web, machine-to-machine) and the "
                        "scope it may request.",
                        target.tenant_url,
                    )
                else:
                    self._add(
                        "cloud.token",
                        FAIL,
                        str(exc)[:300],
                        "See the tenant's answer above.",
                        target.tenant_url,
                    )
                return
            except QlikAuthError as exc:
                self._add(
                    "cloud.token",
                    FAIL,
                    str(exc)[:300],
                    "Check the tenant is reachable.",
                    target.tenant_url,
                )
                return
            self._add(
                "cloud.token", OK, "a client-credentials token was issued", target=target.tenant_url
            )
            self._revoke(cloud, target.client, token)
            self._check_tenant_config(cloud, target)
            if not target.subject:
                self._add(
                    "cloud.impersonation",
                    SKIP,
                    "give the subject of a user in the tenant to test impersonation",
                )
                return
            try:
                token = cloud.token(target.client, subject=target.subject)
            except QlikEndpointHTTPError as exc:
                text = str(exc).lower()
                if exc.status_code == 403 and "impersonation" in text:
                    self._add(
                        "cloud.impersonation",
                        FAIL,
                        "the OAuth client may not impersonate users (machine-to-machine "
                        "impersonation is off).",
                        "In the Management Console (Administration > OAuth) edit the client "
                        "and allow machine-to-machine user impersonation.",
                        target.tenant_url,
                    )
                elif exc.status_code == 400:
                    self._add(
                        "cloud.impersonation",
                        FAIL,
                        f"no user with subject {target.subject[:60]!r} exists in the tenant to "
                        "impersonate.",
                        "Give the subject of an existing user (portals create users first: "
                        "UserProvisioner), or sign that user in once.",
                        target.tenant_url,
                    )
                else:
                    self._add(
                        "cloud.impersonation",
                        FAIL,
                        str(exc)[:300],
                        "See the tenant's answer above.",
                        target.tenant_url,
                    )
                return
            except QlikAuthError as exc:
                self._add("cloud.impersonation", FAIL, str(exc)[:300], "", target.tenant_url)
                return
            self._add(
                "cloud.impersonation",
                OK,
                "an impersonation token was issued",
                target=target.tenant_url,
            )
            self._revoke(cloud, target.client, token)
        finally:
            cloud.close()

    def _check_tenant_config(self, cloud: Any, target: CloudTarget) -> None:
        """cloud.web-integration and cloud.jwt-idp, read with a token of scope admin_classic
        (Qlik's tenant-admin scope for machine-to-machine clients), revoked afterwards."""
        from .exceptions import QlikEndpointHTTPError

        checks = [
            c
            for c, given in (
                ("cloud.web-integration", target.web_integration_id),
                ("cloud.jwt-idp", target.jwt_issuer),
            )
            if given
        ]
        if not checks:
            return
        try:
            token = cloud.token(target.client, scope=ADMIN_SCOPE)
        except QlikEndpointHTTPError as exc:
            for check in checks:
                self._add(
                    check,
                    WARN,
                    f"the OAuth client may not request the scope {ADMIN_SCOPE} "
                    f"({exc.status_code}): the tenant's configuration cannot be read, "
                    "not checked.",
                    f"Allow the client the scope {ADMIN_SCOPE} (Administration > OAuth) to "
                    "let the doctor read it, or check it in the Management Console.",
                    target.tenant_url,
                )
            return
        except QlikAuthError as exc:
            for check in checks:
                self._add(
                    check, FAIL, str(exc)[:300], "Check the tenant is reachable.", target.tenant_url
                )
            return
        try:
            self._check_web_integration(cloud, token, target)
            self._check_jwt_idp(cloud, token, target)
        finally:
            self._revoke(cloud, target.client, token)

    def _read_config(
        self, check: str, what: str, target: CloudTarget, read: Callable[[], Any]
    ) -> Any:
        """``read()``, or None with ``check`` reported when the tenant does not answer it."""
        from .exceptions import QlikEndpointHTTPError

        try:
            return read()
        except QlikEndpointHTTPError as exc:
            if exc.status_code in (401, 403):
                self._add(
                    check,
                    WARN,
                    f"the OAuth client may not read {what} ({exc.status_code}): not checked.",
                    f"Give the client the scope {ADMIN_SCOPE} (Administration > OAuth) to "
                    "let the doctor read it, or check it in the Management Console.",
                    target.tenant_url,
                )
            elif exc.status_code == 404:
                return {}
            else:
                self._add(
                    check, FAIL, str(exc)[:300], "See the tenant's answer above.", target.tenant_url
                )
        except QlikAuthError as exc:
            self._add(
                check, FAIL, str(exc)[:300], "Check the tenant is reachable.", target.tenant_url
            )
        return None

    def _check_web_integration(self, cloud: Any, token: Any, target: CloudTarget) -> None:
        """cloud.web-integration: the portal's origin is allowed by the named web integration."""
        wid = target.web_integration_id
        if not wid:
            return
        if not self.portal_url:
            self._add(
                "cloud.web-integration",
                SKIP,
                "give the portal's URL to check its origin against the web integration",
                target=target.tenant_url,
            )
            return
        parts = urlsplit(self.portal_url)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        wi = self._read_config(
            "cloud.web-integration",
            "the web integration",
            target,
            lambda: cloud.web_integration(wid, access_token=token),
        )
        if wi is None:
            return
        if not wi:
            self._add(
                "cloud.web-integration",
                FAIL,
                f"the tenant has no web integration with id {wid[:40]!r}: every call the "
                "portal's pages make to the tenant is refused (403).",
                "Copy the id of the portal's web integration from the Management Console "
                "(Web) into the portal's settings, or create one allowing "
                f"{origin}.",
                target.tenant_url,
            )
            return
        name = str(wi.get("name") or wid)[:60]
        allowed = [str(o) for o in wi.get("validOrigins") or []]
        if origin not in (o.rstrip("/").lower() for o in allowed):
            shown = ", ".join(o[:60] for o in allowed[:5]) or "none"
            self._add(
                "cloud.web-integration",
                FAIL,
                f"the portal's origin {origin} is not an allowed origin of the web "
                f"integration {name!r} (it allows: {shown}): the tenant refuses the "
                "portal's pages (403 and no CORS answer).",
                f"Add {origin} to the allowed origins of {name!r} in the Management "
                "Console (Web); scheme, host and port must match exactly.",
                target.tenant_url,
            )
            return
        self._add(
            "cloud.web-integration",
            OK,
            f"the web integration {name!r} allows the portal's origin {origin}",
            target=target.tenant_url,
        )

    def _check_jwt_idp(self, cloud: Any, token: Any, target: CloudTarget) -> None:
        """cloud.jwt-idp: a JWT identity provider of the tenant has the portal's issuer, is
        active, and holds the public half of the portal's signing key under its ``kid``."""
        issuer = target.jwt_issuer
        if issuer is None:
            return
        from cryptography.hazmat.primitives import serialization

        from .certs import public_key_bytes

        idps = self._read_config(
            "cloud.jwt-idp",
            "the identity providers",
            target,
            lambda: cloud.identity_providers(access_token=token),
        )
        if idps is None:
            return
        jwt_idps = [i for i in idps or [] if str(i.get("protocol", "")).lower() == "jwtauth"]
        options = [
            (i, i.get("options") if isinstance(i.get("options"), dict) else {}) for i in jwt_idps
        ]
        match = [(i, o) for i, o in options if o.get("issuer") == issuer.issuer]
        fix_where = "Management Console > Identity provider > JWT"
        if not match:
            theirs = ", ".join(repr(str(o.get("issuer", ""))[:60]) for _, o in options[:5])
            self._add(
                "cloud.jwt-idp",
                FAIL,
                f"no JWT identity provider of the tenant has the issuer "
                f"{issuer.issuer[:80]!r} the portal signs with"
                + (f" (the tenant's: {theirs})" if theirs else " (the tenant has none)")
                + ": every JWT sign-in is refused (401).",
                f"Set the portal's issuer to the IdP's issuer exactly ({fix_where}), "
                "or create a JWT identity provider with it.",
                target.tenant_url,
            )
            return
        idp, opts = match[0]
        if idp.get("active") is False or opts.get("jwtLoginEnabled") is False:
            self._add(
                "cloud.jwt-idp",
                FAIL,
                f"the JWT identity provider with issuer {issuer.issuer[:80]!r} is not "
                "active: every JWT sign-in is refused.",
                f"Activate it ({fix_where}).",
                target.tenant_url,
            )
            return
        kid = issuer.signing_key.kid
        keys = [k for k in opts.get("staticKeys") or [] if isinstance(k, dict)]
        key = next((k for k in keys if k.get("kid") == kid), None)
        if key is None:
            kids = ", ".join(repr(str(k.get("kid", ""))[:40]) for k in keys[:5]) or "none"
            self._add(
                "cloud.jwt-idp",
                FAIL,
                f"the JWT identity provider {issuer.issuer[:80]!r} has no key with the "
                f"kid {kid[:40]!r} the portal signs with (its kids: {kids}): every JWT "
                "sign-in is refused (401).",
                f"Give the portal's signing key the IdP's kid, or set the IdP's key id "
                f"and public key to the portal's ({fix_where}).",
                target.tenant_url,
            )
            return
        try:
            from .jwtkeys import public_key_from_pem

            theirs_key = public_key_bytes(public_key_from_pem(str(key.get("pem", ""))))
        except (QlikAuthError, ValueError):
            theirs_key = None
        ours = issuer.signing_key.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if theirs_key != ours:
            self._add(
                "cloud.jwt-idp",
                FAIL,
                f"the key {kid[:40]!r} of the JWT identity provider "
                f"{issuer.issuer[:80]!r} is not the public half of the portal's signing "
                "key: every JWT sign-in is refused (401).",
                "Paste the portal's public key (or certificate) into the IdP "
                f"({fix_where}), or give the portal the private key of the IdP's.",
                target.tenant_url,
            )
            return
        self._add(
            "cloud.jwt-idp",
            OK,
            f"the tenant's JWT identity provider has the portal's issuer, kid {kid[:40]!r} "
            "and public key",
            target=target.tenant_url,
        )

    @staticmethod
    def _revoke(cloud: Any, client: Any, token: Any) -> None:
        try:
            cloud.revoke(client, token)
        except QlikAuthError:
            pass  # it expires by itself; the check has its answer

    def check_header_spoof(self) -> None:
        """header.spoof: a browser's own identity header must not sign it in at the hub."""
        import requests

        from .authenticators.header import HeaderAuthenticator

        name = getattr(self.config, "header_name", None)
        if not name:
            self._add("header.spoof", SKIP, "HEADER_NAME is not set: nothing to spoof")
            return
        auth = HeaderAuthenticator(
            name, self.config.header_user_directory, self.config.header_pattern
        )
        spoofed = QlikUser(
            self.config.header_user_directory or self.test_user.user_directory,
            "qlikauth-doctor-spoof",
        )
        headers = auth.headers(spoofed).as_dict()
        with self._hub_verify() as verify:
            for hub in self._hub_urls():
                try:
                    with self._session() as s:
                        resp = s.get(
                            hub,
                            headers=headers,
                            verify=verify,
                            timeout=self.timeout,
                            allow_redirects=False,
                        )
                except requests.RequestException as exc:
                    self._add(
                        "header.spoof",
                        FAIL,
                        f"cannot reach the hub {hub} ({type(exc).__name__}).",
                        "Check HUB_URL: for header authentication it is the address of "
                        "the nginx front, e.g. https://qlik.example.com/hdr/hub/.",
                        hub,
                    )
                    continue
                if resp.status_code == 200:
                    self._add(
                        "header.spoof",
                        FAIL,
                        f"the hub {hub} signed in a browser that sent its own {name} "
                        "header: anyone can be anyone in Qlik. Either HUB_URL reaches Qlik "
                        "without the nginx front, or the front passes the client's header.",
                        f"Let only the front reach the Qlik proxy (firewall the node's "
                        f"port for everything else) and generate the front with "
                        f"`qlikauth nginx-config`, which drops any client {name}.",
                        hub,
                    )
                    continue
                self._add(
                    "header.spoof",
                    OK,
                    f"a spoofed {name} header was refused ({resp.status_code})",
                    target=hub,
                )

    # -- nginx ------------------------------------------------------------------------------
    def check_nginx(self) -> None:
        """nginx.config: ``nginx -t`` on the generated configuration (header authentication)."""
        if self.nginx_conf is None:
            self._add(
                "nginx.config",
                SKIP,
                "header authentication: pass the generated nginx configuration (--nginx-conf) "
                "to have it tested",
            )
            return
        binary = shutil.which(self.nginx_binary)
        if binary is None:
            self._add(
                "nginx.config",
                FAIL,
                f"{self.nginx_binary!r} is not installed on this machine.",
                "Run the doctor where nginx runs, or install nginx.",
                str(self.nginx_conf),
            )
            return
        conf = self.nginx_conf.resolve()
        try:
            done = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
                [binary, "-t", "-q", "-c", str(conf), "-p", str(conf.parent)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._add(
                "nginx.config",
                FAIL,
                f"nginx -t could not run ({type(exc).__name__}).",
                "Run it by hand: nginx -t -c " + str(conf),
                str(conf),
            )
            return
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.splitlines() if "[emerg]" in ln or "[crit]" in ln]
            said = (lines or done.stderr.strip().splitlines() or ["no output"])[0]
            self._add(
                "nginx.config",
                FAIL,
                f"nginx -t refused the configuration: {said[:300]}",
                "Fix what nginx names (a missing certificate file, a wrong path) or generate "
                "the file again with `qlikauth nginx-config`.",
                str(conf),
            )
            return
        self._add("nginx.config", OK, "nginx -t accepts the configuration", target=str(conf))


def run_doctor(config: Any, **kwargs: Any) -> Report:
    """``Doctor(config, **kwargs).run()``."""
    return Doctor(config, **kwargs).run()


def echo_report(report: Report, as_json: bool, echo: Callable[[str], Any] = print) -> int:
    """Print ``report`` (text or JSON); returns the exit status (1 when a check failed)."""
    import json

    echo(json.dumps(report.as_dict(), indent=2) if as_json else report.text())
    return 0 if report.ok else 1
