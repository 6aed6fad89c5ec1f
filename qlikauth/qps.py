"""The mutual-TLS client for the Qlik Proxy Service (QPS) API: tickets, proxy sessions, users.

One :class:`QpsClient` holds one pooled :class:`requests.Session` whose only transport
is :class:`QpsAdapter`, built around the one :class:`ssl.SSLContext` that
:meth:`Certificates.client_ssl_context` makes (``root.pem`` the only trust anchor, host
names checked, client certificate presented). ``trust_env`` is off: proxies and
``.netrc`` from the environment have no business on a channel that can sign in anyone.

Calls go through :class:`qlikauth._transport.DirectTransport`: a LIFO of keep-alive
:mod:`http.client` connections per node over that same context, each request sent as
one TLS record, answers read with a size cap. requests' adapter and urllib3's pool do
more per call than the QPS API needs, and under threads that work caps throughput
(``bench/run.py`` measures both against a bare connection). When a test double has
replaced requests' ``HTTPAdapter.send`` (as :mod:`responses` does), calls go through the
mounted :class:`QpsAdapter` instead, so request-shape tests work unchanged; that path
also skips :meth:`requests.Session.request` (cookies, hooks, environment, redirects).

Several nodes: ticket and session creation go to the first healthy node and move on
after connection errors and timeouts; a :class:`Ticket` remembers its node because it
can only be redeemed there. Reads and logouts visit every node.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.models import PreparedRequest, Response
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.util.retry import Retry

from ._transport import DirectResponse, DirectTransport
from ._version import __version__
from .certs import Certificates, load_certificates
from .exceptions import (
    ConfigurationError,
    IdentityError,
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
from .urls import origin_of
from .xrf import new_xrfkey

__all__ = ["QpsClient", "QpsAdapter", "Ticket", "ProxySession", "new_session_id"]

log = logging.getLogger("qlikauth.qps")

#: requests' own adapter send; when something else stands there, a test double is installed.
_REQUESTS_SEND = HTTPAdapter.send

_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9._~-]*\Z")
_SESSION_ID_RE = re.compile(r"[A-Za-z0-9._~-]{22,128}\Z")
#: What a ``targetId`` from Qlik may look like (a GUID; we allow a little more, nothing unsafe).
TARGET_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,128}\Z")
_USER_AGENT = f"qlikauth/{__version__}"


def new_session_id() -> str:
    """A proxy session id: 256 random bits from :mod:`secrets`, URL- and cookie-safe."""
    return secrets.token_urlsafe(32)


def _mask(secret: str | None) -> str:
    """At most a short prefix of a secret, for logs and reprs."""
    if not secret:
        return "''"
    return f"{secret[:4]}…({len(secret)} chars)"


@dataclass(frozen=True)
class Ticket:
    """A one-time, one-minute QPS ticket; redeem it at :attr:`node`'s proxy."""

    ticket: str = field(repr=False)
    target_uri: str | None
    node: str
    user: QlikUser

    def __repr__(self) -> str:
        return f"Ticket(ticket={_mask(self.ticket)}, node={self.node!r}, user={self.user.qualified_name!r})"


@dataclass(frozen=True)
class ProxySession:
    """A proxy session on one QPS node; the browser carries :attr:`session_id` as a cookie."""

    session_id: str = field(repr=False)
    user: QlikUser
    node: str

    def __repr__(self) -> str:
        return f"ProxySession(session_id={_mask(self.session_id)}, node={self.node!r}, user={self.user.qualified_name!r})"


class _OneWriteHTTPSConnection(HTTPSConnection):
    """Sends request line, headers and a bytes body with one ``sendall`` (one TLS record).

    urllib3 (like :mod:`http.client`) writes the headers, then the body: two records,
    two packets and two wake-ups of the server for every small JSON call.
    """

    _parts: list[bytes] | None = None

    def request(self, method: str, url: str, body: Any = None, headers: Any = None, **kw: Any) -> None:  # type: ignore[override]
        if not isinstance(body, bytes | None):
            super().request(method, url, body=body, headers=headers, **kw)
            return
        self._parts = []
        try:
            super().request(method, url, body=body, headers=headers, **kw)
            data = b"".join(self._parts)
        finally:
            self._parts = None
        super().send(data)

    def send(self, data: Any) -> None:
        if self._parts is not None:
            self._parts.append(bytes(data))
        else:
            super().send(data)


class _QpsHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _OneWriteHTTPSConnection


class _QpsPreparedRequest(PreparedRequest):
    """A prepared request that knows its path (requests re-parses the URL for it)."""

    path_url: str = ""  # type: ignore[assignment]


class QpsAdapter(HTTPAdapter):
    """A requests transport that speaks mutual TLS with exactly one SSL context.

    Pool keys carry only our context (no ``ca_certs``, so requests' certifi bundle can
    never be added as a trust anchor), verification cannot be switched off per
    request, no retries are made behind the caller's back, and responses skip the
    cookie jar (the QPS API sets no cookies).
    """

    def __init__(self, ssl_context: Any, *, pool_maxsize: int = 10, pool_connections: int = 4) -> None:
        self._ssl_context = ssl_context
        self._pools: dict[str, Any] = {}
        super().__init__(
            pool_connections=pool_connections, pool_maxsize=pool_maxsize,
            max_retries=Retry(0, read=False, redirect=False),
        )

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False, **kw: Any) -> None:
        kw["ssl_context"] = self._ssl_context
        super().init_poolmanager(connections, maxsize, block=block, **kw)
        self.poolmanager.pool_classes_by_scheme = {
            **self.poolmanager.pool_classes_by_scheme, "https": _QpsHTTPSConnectionPool,
        }
        self._pools = {}

    def get_connection_with_tls_context(self, request: PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        # One pool per node, looked up by the URL's origin instead of parsing it each call.
        # (The pool manager holds at least as many pools as the client has nodes, so a
        # remembered pool is never evicted and closed under us.)
        url = request.url or ""
        end = url.find("/", 8)
        origin = url if end < 0 else url[:end]
        pool = self._pools.get(origin)
        if pool is None or pool.pool is None:
            pool = super().get_connection_with_tls_context(request, verify, proxies=proxies, cert=cert)
            self._pools[origin] = pool
        return pool

    def request_url(self, request: PreparedRequest, proxies: Any) -> str:
        return request.path_url

    def close(self) -> None:
        self._pools = {}
        super().close()

    def build_connection_pool_key_attributes(self, request: PreparedRequest, verify: Any, cert: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, _ = super().build_connection_pool_key_attributes(request, True, None)
        return host_params, {"ssl_context": self._ssl_context, "cert_reqs": "CERT_REQUIRED"}

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        # Whatever a caller passes as verify=/cert=, the context decides.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = None
        conn.ca_cert_dir = None

    def build_response(self, req: PreparedRequest, resp: Any) -> Response:
        response = Response()
        response.status_code = resp.status
        response.headers = resp.headers  # urllib3's HTTPHeaderDict: already case-insensitive
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url  # type: ignore[assignment]
        response.request = req
        response.connection = self
        return response


def _walk(exc: BaseException | None) -> Iterable[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        nxt = getattr(exc, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = exc.__cause__ or exc.__context__
            if nxt is None and exc.args and isinstance(exc.args[0], BaseException):
                nxt = exc.args[0]
        exc = nxt


def _tls_problem(exc: BaseException, node: str) -> str | None:
    """Explain a TLS failure in the integrator's terms, or None if it is not one."""
    text = " ".join(f"{type(e).__name__}: {e}" for e in _walk(exc)).lower()
    host = urlsplit(node).hostname
    if "hostname mismatch" in text or "ip address mismatch" in text or "doesn't match" in text:
        return (
            f"the server certificate of {node} is not issued to {host!r}. Connect with the host "
            "name the node's certificate was issued to (the node's name in the QMC), not an alias "
            "or IP address."
        )
    if "certificate_verify_failed" in text or "certificate verify failed" in text:
        if "expired" in text:
            return f"the server certificate of {node} has expired; renew the site's certificates."
        return (
            f"the server certificate of {node} is not signed by root.pem. Use root.pem from this "
            "site's QMC export (the same export as client.pem), and check nothing in between "
            "re-signs the traffic."
        )
    for marker in ("certificate required", "bad certificate", "unknown ca", "certificate unknown",
                   "certificate revoked", "certificate expired", "access denied", "handshake failure"):
        if marker in text and ("alert" in text or "sslv3" in text or "tlsv1" in text):
            return (
                f"{node} refused our client certificate ({marker}). Use client.pem/client_key.pem "
                "exported from this site's QMC; a certificate from another site or one re-issued "
                "since is not trusted."
            )
    if "eof occurred in violation of protocol" in text or "unexpected eof" in text:
        # TLS 1.3 servers that reject a client certificate often just close the connection.
        return (
            f"{node} closed the connection during the TLS handshake: it most likely refused our "
            "client certificate. Use client.pem/client_key.pem exported from this site's QMC (or "
            "check the URL is the QPS API port, 4243)."
        )
    if any(isinstance(e, requests.exceptions.SSLError) for e in _walk(exc)) or "ssl" in text and "wrong version" in text:
        return f"the TLS handshake with {node} failed; check the URL points at the QPS API port (4243) over https."
    return None


class QpsClient:
    """A pooled mutual-TLS client for one virtual proxy on one or more QPS nodes.

    :param nodes: base URL(s) of the QPS API, e.g. ``"https://qs1.example.com:4243"``;
        order matters: creation calls go to the first healthy node.
    :param certificates: a :class:`Certificates`, or a directory / PFX path.
    :param virtual_proxy: the virtual proxy prefix (``""`` for the default one).
    :param timeout: read timeout in seconds; ``connect_timeout`` defaults to it.
    :param pool_maxsize: connections kept per node; match it to your concurrency.
    :param unhealthy_for: seconds a node that failed to connect is tried last.
    """

    def __init__(
        self,
        nodes: str | Sequence[str],
        certificates: Certificates | str | Any,
        virtual_proxy: str = "",
        timeout: float = 5.0,
        *,
        connect_timeout: float | None = None,
        passphrase: str | bytes | None = None,
        pool_maxsize: int = 10,
        max_response_bytes: int = 1 << 20,
        unhealthy_for: float = 30.0,
    ) -> None:
        if isinstance(nodes, str):
            nodes = [nodes]
        self.nodes: tuple[str, ...] = tuple(self._normalise_node(n) for n in nodes)
        if not self.nodes:
            raise ConfigurationError("no QPS node given: pass at least one URL such as https://qlik.example.com:4243.")
        if len(set(self.nodes)) != len(self.nodes):
            raise ConfigurationError(f"QPS nodes are listed twice: {list(nodes)}.")
        self.virtual_proxy = self._check_prefix(virtual_proxy)
        if timeout is None or timeout <= 0:
            raise ConfigurationError("timeout must be a positive number of seconds (QPS calls must not hang).")
        self.timeout = (float(connect_timeout or timeout), float(timeout))
        self.max_response_bytes = max_response_bytes
        self.unhealthy_for = unhealthy_for
        self.certificates = load_certificates(certificates, passphrase)
        self._session = requests.Session()
        self._session.trust_env = False
        self._session.max_redirects = 0
        self.adapter = QpsAdapter(self.certificates.client_ssl_context(), pool_maxsize=pool_maxsize,
                                  pool_connections=max(4, len(self.nodes)))
        self._session.mount("https://", self.adapter)
        self._session.mount("http://", self.adapter)
        self._direct = DirectTransport(
            self.adapter._ssl_context,
            {n: (urlsplit(n).hostname or "", urlsplit(n).port or 443) for n in self.nodes},
            maxsize=pool_maxsize,
        )
        base_path = f"/qps/{self.virtual_proxy}/" if self.virtual_proxy else "/qps/"
        self._base = {n: n + base_path for n in self.nodes}
        self._down_until: dict[str, float] = {}
        self._lock = threading.Lock()

    # -- configuration helpers --------------------------------------------------------
    @staticmethod
    def _normalise_node(url: str) -> str:
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError("a QPS node URL is empty: use https://host:4243.")
        parts = urlsplit(url.strip())
        if parts.scheme.lower() != "https":
            raise ConfigurationError(
                f"QPS node {url!r} must use https: the QPS API (port 4243) only speaks mutual TLS."
            )
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigurationError(
                f"QPS node {url!r} must be a base URL like https://host:4243 (no path: the "
                "virtual proxy prefix is a separate setting)."
            )
        try:
            origin = origin_of(url.strip())
        except RedirectError as exc:
            raise ConfigurationError(f"QPS node {url!r} is not usable: {exc}") from None
        return str(origin) if origin.port != 443 else f"https://{origin.host}:443"

    @staticmethod
    def _check_prefix(prefix: str | None) -> str:
        prefix = (prefix or "").strip().strip("/")
        if prefix and not _PREFIX_RE.match(prefix):
            raise ConfigurationError(
                f"virtual proxy prefix {prefix!r} is not valid: Qlik prefixes are lowercase "
                "letters, digits, '.', '_', '~' or '-' (as in the QMC's 'Prefix' field)."
            )
        return prefix

    def rest_uri(self, node: str) -> str:
        """``https://node:4243/qps/{prefix}/``: what QPS sends as ``proxyRestUri``."""
        return self._base[node]

    def node_for_rest_uri(self, proxy_rest_uri: str) -> str:
        """The configured node a ``proxyRestUri`` names, or :class:`RedirectError`.

        ``proxyRestUri`` comes from the browser's query string: calling whatever it
        names would send our client certificate handshake and the user's identity to
        an attacker. Only a configured node *and* this client's virtual proxy match.
        """
        if not isinstance(proxy_rest_uri, str) or not proxy_rest_uri:
            raise RedirectError("proxyRestUri is missing: the request did not come from a Qlik virtual proxy.")
        try:
            origin = origin_of(proxy_rest_uri)
        except RedirectError as exc:
            raise RedirectError(f"proxyRestUri refused: {exc}") from None
        parts = urlsplit(proxy_rest_uri)
        node = str(origin) if origin.port != 443 else f"https://{origin.host}:443"
        want = self._base.get(node)
        path = parts.path if parts.path.endswith("/") else parts.path + "/"
        if want is None or origin.scheme != "https" or parts.query or parts.fragment or path.lower() != urlsplit(want).path:
            configured = ", ".join(self._base.values())
            raise RedirectError(
                f"proxyRestUri {origin}{parts.path} is not a configured QPS node and virtual proxy "
                f"({configured}); refused. If that node is yours, add it to the QPS nodes setting."
            )
        return node

    # -- health ---------------------------------------------------------------------
    def _ordered_nodes(self) -> list[str]:
        if not self._down_until:  # the usual case: every node healthy, no lock needed
            return list(self.nodes)
        now = time.monotonic()
        with self._lock:
            healthy = [n for n in self.nodes if self._down_until.get(n, 0) <= now]
            sick = [n for n in self.nodes if self._down_until.get(n, 0) > now]
        return healthy + sick

    def _mark(self, node: str, ok: bool) -> None:
        if ok and node not in self._down_until:
            return
        with self._lock:
            if ok:
                self._down_until.pop(node, None)
            else:
                self._down_until[node] = time.monotonic() + self.unhealthy_for

    # -- the one place requests are sent ------------------------------------------------
    def _call(
        self,
        node: str,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        *,
        what: str,
        timeout: tuple[float, float] | None = None,
        secret_in_path: bool = False,
    ) -> tuple[int, Any]:
        """Send one API call to ``node``; return (status, parsed JSON) for 2xx and 404.

        Raises typed :class:`QpsError` subclasses with ``sent`` telling whether the
        request may have reached QPS (decides what may be retried).
        """
        xrf = new_xrfkey()
        base = self._base[node] if not path.startswith("/") else node
        query = f"{'&' if '?' in path else '?'}xrfkey={xrf}"
        url = f"{base}{path}{query}"
        # A plain dict (names spelled once, as sent): urllib3 and responses take it as is.
        headers: dict[str, str] = {"X-Qlik-Xrfkey": xrf, "Accept": "application/json", "User-Agent": _USER_AGENT}
        data: bytes | None = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
            headers["Content-Length"] = str(len(data))
        elif method in ("POST", "PUT"):
            headers["Content-Length"] = "0"
        prep = _QpsPreparedRequest()
        prep.method = method
        prep.url = url
        prep.path_url = url[len(node):]
        prep.headers = headers  # type: ignore[assignment]
        prep.body = data
        shown = "…" if secret_in_path else path
        started = time.perf_counter()
        resp: Response | DirectResponse
        try:
            if HTTPAdapter.send is _REQUESTS_SEND:
                resp = self._direct.send(node, method, prep.path_url, data, headers, timeout or self.timeout)
            else:  # a test double (responses) replaced requests' transport: go through it
                resp = self.adapter.send(prep, stream=True, timeout=timeout or self.timeout)
        except requests.exceptions.ConnectTimeout:
            self._mark(node, False)
            raise QpsTimeout(
                f"{what}: connecting to {node} timed out after {self.timeout[0]:g}s. Check the node "
                "is up and port 4243 is open from this machine.",
                node=node, sent=False,
            ) from None
        except requests.exceptions.ReadTimeout:
            raise QpsTimeout(
                f"{what}: {node} did not answer within {self.timeout[1]:g}s.", node=node, sent=True
            ) from None
        except requests.exceptions.RequestException as exc:
            problem = _tls_problem(exc, node)
            connect_failed = any(
                type(e).__name__ in ("NewConnectionError", "ConnectionRefusedError", "NameResolutionError", "gaierror")
                for e in _walk(exc)
            )
            self._mark(node, False)
            if problem:
                raise QpsTLSError(f"{what}: {problem}", node=node, sent=False) from None
            reason = "connection refused or host unreachable" if connect_failed else "the connection broke"
            raise QpsConnectionError(
                f"{what}: cannot reach {node} ({reason}). Check the node URL, that the Qlik Proxy "
                "Service is running and that port 4243 is open from this machine.",
                node=node, sent=not connect_failed, stale=not connect_failed,
            ) from None
        try:
            payload = self._read_body(resp, node, what)
        finally:
            resp.raw.release_conn()
        status = resp.status_code
        log.debug("QPS %s %s on %s -> %s in %.1f ms", method, shown, node, status,
                  (time.perf_counter() - started) * 1000)
        self._mark(node, True)
        if 200 <= status < 300 or status == 404:
            if status == 404:
                return status, payload
            if not payload:
                return status, None
            try:
                return status, json.loads(payload)
            except ValueError:
                raise QpsResponseError(
                    f"{what}: {node} answered {status} with a body that is not JSON; is this URL the "
                    "QPS API (port 4243)?",
                    node=node,
                ) from None
        raise self._http_error(status, payload, node, what)

    def _read_body(self, resp: Response | DirectResponse, node: str, what: str) -> bytes:
        cap = self.max_response_bytes
        length = resp.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > cap:
            resp.raw.close()
            raise QpsResponseError(f"{what}: {node} sent {length} bytes, over the {cap}-byte limit.", node=node)
        try:
            data = resp.raw.read(cap + 1, decode_content=True)
        except Exception:
            resp.raw.close()
            raise QpsConnectionError(
                f"{what}: the connection to {node} broke while reading the answer.", node=node, sent=True
            ) from None
        if len(data) > cap:
            resp.raw.close()
            raise QpsResponseError(f"{what}: {node} sent more than {cap} bytes, over the limit; refused.", node=node)
        return data

    def _http_error(self, status: int, payload: bytes, node: str, what: str) -> QpsHTTPError:
        text = payload[:300].decode("utf-8", "replace")
        text = "".join(c if c.isprintable() else " " for c in text).strip()
        if status == 403:
            return QpsForbidden(
                f"{what}: {node} answered 403 Forbidden: client certificate not trusted or xrfkey "
                "rejected. Check that client.pem comes from this site's QMC export"
                + (f" (QPS said: {text[:120]})" if text else "") + ".",
                status_code=status, node=node,
            )
        if status == 404:  # only reached for creation calls, see _call
            return QpsNotFound(
                f"{what}: {node} answered 404: check the virtual proxy prefix "
                f"{self.virtual_proxy or '(default)'!r} exists and is linked to this proxy.",
                status_code=status, node=node,
            )
        if "too many sessions" in text.lower() or status == 409:
            return QpsTooManySessions(
                f"{what}: {node} refused: the user has too many sessions active in parallel "
                "(Qlik allows 5). End an old session (logout) or wait for it to time out.",
                status_code=status, node=node,
            )
        if status == 400:
            return QpsHTTPError(
                f"{what}: {node} refused the request as invalid (400){': ' + text if text else ''}.",
                status_code=status, node=node,
            )
        return QpsHTTPError(
            f"{what}: {node} answered {status}{': ' + text[:120] if text else ''}.",
            status_code=status, node=node,
        )

    # -- tickets ----------------------------------------------------------------------
    def request_ticket(
        self, user: QlikUser, target_id: str | None = None, *, node: str | None = None
    ) -> Ticket:
        """Request a one-time ticket for ``user``.

        With ``node`` (as the authentication-module flow needs: the ticket must come
        from the node that sent the user), only that node is asked. Otherwise nodes
        are tried in order: a node that cannot be reached, times out or answers 5xx
        is skipped (an unused ticket simply expires, so asking another node is safe).
        """
        body: dict[str, Any] = user.to_qps()
        if target_id is not None:
            if not isinstance(target_id, str) or not TARGET_ID_RE.match(target_id):
                raise RedirectError("targetId is malformed: Qlik sends a GUID; refused.")
            body["TargetId"] = target_id
        nodes = [node] if node is not None else self._ordered_nodes()
        if node is not None and node not in self._base:
            raise ConfigurationError(f"{node!r} is not one of this client's QPS nodes.")
        errors: list[QpsError] = []
        for n in nodes:
            for attempt in (1, 2):
                try:
                    status, data = self._call(n, "POST", "ticket", body, what="ticket request")
                except QpsConnectionError as exc:
                    # A broken pooled connection is worth one more try on the same node
                    # (the server may have closed it idle); anything else moves on.
                    if attempt == 1 and getattr(exc, "stale", False):
                        continue
                    errors.append(exc)
                    break
                except QpsHTTPError as exc:
                    if exc.status_code in (502, 503, 504) and node is None:
                        errors.append(exc)
                        break
                    raise
                if status == 404:
                    raise self._http_error(404, b"", n, "ticket request")
                return self._ticket_from(data, n, user)
        raise self._all_failed("ticket request", errors)

    def _ticket_from(self, data: Any, node: str, user: QlikUser) -> Ticket:
        if not isinstance(data, dict):
            raise QpsResponseError(f"ticket request: {node} answered without a JSON object.", node=node)
        ticket = data.get("Ticket") or data.get("ticket")
        if not isinstance(ticket, str) or not ticket:
            raise QpsResponseError(f"ticket request: {node}'s answer has no Ticket field.", node=node)
        target = data.get("TargetUri", data.get("targetUri"))
        return Ticket(ticket=ticket, target_uri=target if isinstance(target, str) and target else None,
                      node=node, user=user)

    @staticmethod
    def _all_failed(what: str, errors: list[QpsError]) -> QpsError:
        if len(errors) == 1:
            return errors[0]
        detail = "; ".join(str(e) for e in errors)
        cls = QpsTLSError if all(isinstance(e, QpsTLSError) for e in errors) else (
            QpsTimeout if all(isinstance(e, QpsTimeout) for e in errors) else QpsConnectionError)
        return cls(f"{what} failed on every QPS node: {detail}", node=None, errors=errors)

    # -- sessions ---------------------------------------------------------------------
    @staticmethod
    def _check_session_id(session_id: str) -> bool:
        return isinstance(session_id, str) and bool(_SESSION_ID_RE.match(session_id))

    def add_session(self, user: QlikUser, session_id: str | None = None) -> ProxySession:
        """Create a proxy session for ``user``; set its id as the virtual proxy's cookie.

        The id is generated here (256 bits from :mod:`secrets`) unless given. After a
        read timeout the node is asked whether the session exists before anything is
        tried again, and a retry reuses the same id, so one sign-in never leaves two
        sessions.
        """
        if session_id is None:
            session_id = new_session_id()
        elif not self._check_session_id(session_id):
            raise IdentityError(
                "session_id must be 22-128 URL-safe characters with at least 128 random bits; "
                "let qlikauth generate it (session_id=None).",
                field="session_id",
            )
        body = user.to_qps()
        body["SessionId"] = session_id
        errors: list[QpsError] = []
        for node in self._ordered_nodes():
            try:
                status, data = self._call(node, "POST", "session", body, what="session request")
            except QpsConnectionError as exc:
                if not getattr(exc, "sent", True):
                    errors.append(exc)
                    continue
                # The POST may have landed: ask before trying again.
                try:
                    found = self._get_session_on(node, session_id)
                except QpsError:
                    raise exc from None  # cannot tell; never risk a second session
                if found is not None:
                    return found
                try:
                    status, data = self._call(node, "POST", "session", body, what="session request")
                except QpsConnectionError as exc2:
                    if getattr(exc2, "sent", True):
                        raise
                    errors.append(exc2)
                    continue
            if status == 404:
                raise self._http_error(404, b"", node, "session request")
            created = self._session_from(data, node, fallback_user=user)
            if created.session_id != session_id:
                raise QpsResponseError(
                    f"session request: {node} answered with another SessionId than the one sent; "
                    "refusing to hand the browser a cookie QPS may not know.",
                    node=node,
                )
            return created
        raise self._all_failed("session request", errors)

    def _session_from(self, data: Any, node: str, fallback_user: QlikUser | None = None) -> ProxySession:
        if not isinstance(data, dict):
            raise QpsResponseError(f"session call: {node} answered without a JSON object.", node=node)
        sid = data.get("SessionId", data.get("sessionId"))
        if not isinstance(sid, str) or not sid:
            raise QpsResponseError(f"session call: {node}'s answer has no SessionId.", node=node)
        try:
            user = QlikUser.from_qps(data)
        except IdentityError:
            if fallback_user is None:
                raise QpsResponseError(f"session call: {node}'s answer has no valid user.", node=node) from None
            user = fallback_user
        return ProxySession(session_id=sid, user=user, node=node)

    def _get_session_on(self, node: str, session_id: str) -> ProxySession | None:
        status, data = self._call(node, "GET", f"session/{quote(session_id, safe='')}",
                                  what="session lookup", secret_in_path=True)
        if status == 404:
            return None
        return self._session_from(data, node)

    def get_session(self, session_id: str, *, node: str | None = None) -> ProxySession | None:
        """The proxy session with this id (looked for on every node), or None.

        Ids that cannot be ours (a cookie value a browser made up) answer None without
        a call. If the session is not found and some node could not be asked, the
        error is raised rather than a wrong None.
        """
        if not self._check_session_id(session_id):
            return None
        nodes = [node] if node else self._ordered_nodes()
        errors: list[QpsError] = []
        for n in nodes:
            try:
                found = self._get_session_on(n, session_id)
            except QpsConnectionError as exc:
                errors.append(exc)
                continue
            if found is not None:
                return found
        if errors:
            raise self._all_failed("session lookup", errors)
        return None

    def delete_session(self, session_id: str) -> bool:
        """End the proxy session on every node that has it; True if one existed."""
        if not self._check_session_id(session_id):
            return False
        existed = False
        errors: list[QpsError] = []
        for n in self.nodes:
            try:
                status, _ = self._call(n, "DELETE", f"session/{quote(session_id, safe='')}",
                                       what="session delete", secret_in_path=True)
            except QpsConnectionError as exc:
                errors.append(exc)
                continue
            existed = existed or status != 404
        if errors and not existed:
            raise self._all_failed("session delete", errors)
        return existed

    def _user_path(self, user: QlikUser) -> str:
        return f"user/{quote(user.user_directory, safe='')}/{quote(user.user_id, safe='')}"

    def _sessions_from(self, data: Any, node: str) -> list[ProxySession]:
        if data is None:
            return []
        if not isinstance(data, list):
            raise QpsResponseError(f"user sessions: {node} answered without a JSON list.", node=node)
        return [self._session_from(item, node) for item in data]

    def _each_node(self, method: str, path: str, what: str) -> list[ProxySession]:
        out: list[ProxySession] = []
        errors: list[QpsError] = []
        for n in self.nodes:
            try:
                status, data = self._call(n, method, path, what=what)
            except QpsConnectionError as exc:
                errors.append(exc)
                continue
            if status != 404:
                out.extend(self._sessions_from(data, n))
        if errors:
            failed = ", ".join(e.node or "?" for e in errors)
            raise QpsConnectionError(
                f"{what}: could not reach {failed}; the result from the other nodes is in "
                "the error's .partial attribute. Sessions on an unreachable node end when they "
                "time out.",
                node=errors[0].node, errors=errors, partial=out,
            )
        return out

    def user_sessions(self, user: QlikUser) -> list[ProxySession]:
        """The user's proxy sessions on every node."""
        return self._each_node("GET", self._user_path(user), "user sessions")

    def logout_user(self, user: QlikUser) -> list[ProxySession]:
        """End the user's proxy sessions on every node; returns the sessions ended."""
        return self._each_node("DELETE", self._user_path(user), "user logout")

    def alive(self) -> dict[str, bool]:
        """``{node: True/False}`` from each node's ``/qps/alive``."""
        out = {}
        for n in self.nodes:
            try:
                status, data = self._call(n, "GET", "/qps/alive", what="alive check",
                                          timeout=(min(self.timeout[0], 3.0), min(self.timeout[1], 3.0)))
                out[n] = status == 200 and data is not False
            except QpsError:
                out[n] = False
        return out

    # -- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        """Close pooled connections."""
        self._direct.close()
        self._session.close()

    def __enter__(self) -> QpsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QpsClient(nodes={list(self.nodes)!r}, virtual_proxy={self.virtual_proxy!r})"
