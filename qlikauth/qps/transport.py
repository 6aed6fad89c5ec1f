"""The QPS client's one transport: a requests adapter over pooled keep-alive connections per node.

:class:`QpsAdapter` is a :class:`requests.adapters.HTTPAdapter` that keeps requests'
own ``send`` (so :mod:`responses` and any other requests tooling intercept it at the
standard seam, and unit tests drive the code production runs) but replaces what
``send`` calls: instead of urllib3's pool manager, one :class:`NodePool` per QPS node
of :mod:`http.client` connections over the one :class:`ssl.SSLContext`
:meth:`Certificates.client_ssl_context` builds. The QPS API is one small JSON request
and one small JSON answer per call, so a pool keeps only what that needs: a LIFO of
idle connections, a hard bound on connections per node (a caller past the bound waits
up to the connect timeout), each request written as one TLS record, idle sockets the
server closed noticed before reuse. Nothing else is consulted: no proxies, no CA
bundle, no ``.netrc`` from the environment, no redirects, no retries.

Failures are raised as this module's own types, decided where they happen:
:class:`ConnectFailed` (nothing was sent: the name did not resolve, the node refused or
was unreachable, the connect timed out, the TLS handshake failed) and
:class:`SendFailed` (the request was written, so QPS may have acted on it). They are
not :class:`OSError` subclasses, so requests' ``send`` passes them through unchanged.
"""

from __future__ import annotations

import http.client
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any

from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from requests.models import PreparedRequest
from urllib3.util.retry import Retry
from urllib3.util.timeout import Timeout as _Urllib3Timeout
from urllib3.util.wait import wait_for_read

__all__ = [
    "QpsAdapter",
    "NodePool",
    "QpsRequest",
    "QpsAnswer",
    "Timeout",
    "TransportError",
    "ConnectFailed",
    "PoolExhausted",
    "SendFailed",
]

#: TLS alerts a server sends when it refuses the handshake (``ssl.SSLError.reason``). With
#: TLS 1.3 the client's side of the handshake is already finished when the server judges
#: our certificate, so these arrive on the first read; the server has processed nothing.
HANDSHAKE_ALERTS = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_REVOKED",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_ACCESS_DENIED",
        "TLSV1_ALERT_DECRYPT_ERROR",
        "SSLV3_ALERT_HANDSHAKE_FAILURE",
    }
)


# -- the transport's failures ----------------------------------------------------------------
class TransportError(Exception):
    """A call failed below HTTP. ``cause`` is the original error; ``timeout`` says it timed out.

    ``tls`` is the :class:`ssl.SSLError` when TLS failed, for the diagnosis.
    """

    sent = True

    def __init__(
        self,
        cause: BaseException | None = None,
        *,
        timeout: bool = False,
        tls: ssl.SSLError | None = None,
    ) -> None:
        super().__init__(cause)
        self.cause = cause
        self.timeout = timeout
        self.tls = tls if tls is not None else (cause if isinstance(cause, ssl.SSLError) else None)


class ConnectFailed(TransportError):
    """Nothing was sent: resolving, connecting or the TLS handshake failed."""

    sent = False


class PoolExhausted(ConnectFailed):
    """Every pooled connection to the node stayed busy for the connect timeout; nothing was sent."""

    def __init__(self, maxsize: int, waited: float) -> None:
        super().__init__(None, timeout=True)
        self.maxsize = maxsize
        self.waited = waited


class SendFailed(TransportError):
    """The request was written (perhaps partly): QPS may have acted on it.

    ``reused`` is True when the connection had served earlier calls (a kept-alive
    connection the server dropped: worth one more try where a repeat is harmless);
    ``reading`` when the answer had started to arrive.
    """

    def __init__(
        self,
        cause: BaseException | None = None,
        *,
        timeout: bool = False,
        tls: ssl.SSLError | None = None,
        reused: bool = False,
        reading: bool = False,
    ) -> None:
        super().__init__(cause, timeout=timeout, tls=tls)
        self.reused = reused
        self.reading = reading


# -- what goes in and comes out -----------------------------------------------------------
class Timeout(_Urllib3Timeout):
    """requests' timeout type, with the two numbers kept ready for the pool."""

    def __init__(self, connect: float, read: float) -> None:
        super().__init__(connect=connect, read=read)
        self.pair = (connect, read)


class QpsRequest(PreparedRequest):
    """A prepared request that carries its path (requests would re-parse the URL for it)."""

    path_url: str = ""  # type: ignore[assignment]


class QpsAnswer:
    """What the client reads of an answer: status, headers, the raw body stream.

    ``raw`` is a :class:`PooledResponse` in production and urllib3's response under
    :mod:`responses`; both offer ``read(amt)``, ``release_conn()`` and ``close()``.
    """

    __slots__ = ("status_code", "headers", "raw", "request", "url", "reason")

    def __init__(self, request: PreparedRequest, raw: Any) -> None:
        self.status_code: int = raw.status
        self.headers = raw.headers
        self.raw = raw
        self.reason = getattr(raw, "reason", None)
        self.request = request
        self.url = request.url


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection that sends request line, headers and body with one ``sendall``.

    :mod:`http.client` (like urllib3) writes the headers, then the body: two TLS records,
    two packets and two wake-ups of the server for every small JSON call.
    """

    _parts: list[bytes] | None = None
    served = 0

    def send(self, data: Any) -> None:
        if self._parts is not None:
            self._parts.append(bytes(data))
        else:
            super().send(data)

    def request_one_write(
        self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]
    ) -> None:
        self._parts = []
        try:
            self.request(method, path, body=body, headers=headers)
            data = b"".join(self._parts)
        finally:
            self._parts = None
        self.sock.sendall(data)  # type: ignore[union-attr]


class PooledResponse:
    """An answer on a pooled connection; the connection goes back to its pool when released."""

    __slots__ = ("status", "headers", "reason", "_resp", "_conn", "_pool")

    def __init__(self, resp: http.client.HTTPResponse, conn: _Connection, pool: NodePool) -> None:
        self.status = resp.status
        self.headers = resp.headers
        self.reason = resp.reason
        self._resp = resp
        self._conn: _Connection | None = conn
        self._pool = pool

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        """Up to ``amt`` bytes of the body; :class:`SendFailed` if the connection breaks."""
        left = self._resp.length  # what Content-Length says is still to come (None: chunked/none)
        try:
            data = self._resp.read(amt)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise SendFailed(exc, timeout=isinstance(exc, TimeoutError), reading=True) from exc
        if left is not None and len(data) < (left if amt is None else min(amt, left)):
            # http.client hands back a short read at EOF as if it were the body.
            self.close()
            raise SendFailed(http.client.IncompleteRead(data, left - len(data)), reading=True)
        return data

    def release_conn(self) -> None:
        """Give the connection back (kept alive if the body was read to the end), or close it."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._pool.put(conn)
        else:
            self._pool.discard(conn)

    def close(self) -> None:
        """Close the connection (an answer not read to the end cannot share it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.discard(conn)


class NodePool:
    """At most ``maxsize`` mutual-TLS connections to one node; idle ones kept, newest first."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("pool_maxsize must be at least 1")
        self.host, self.port, self.context, self.maxsize = host, port, context, maxsize
        self._host_header = f"{host}:{port}"
        self._idle: list[_Connection] = []
        self._in_use = 0
        self._waiting = 0
        # One plain lock guards the counts and the idle list (a Semaphore would add a
        # Condition round trip to every call); callers past the bound wait on ``_freed``.
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def _checkout(self, wait: float) -> _Connection:
        with self._lock:
            if self._in_use >= self.maxsize:
                deadline = time.monotonic() + wait
                self._waiting += 1
                try:
                    while self._in_use >= self.maxsize:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise PoolExhausted(self.maxsize, wait)
                        self._freed.wait(left)
                finally:
                    self._waiting -= 1
            self._in_use += 1
            while self._idle:
                conn = self._idle.pop()
                # An idle keep-alive socket that is readable was closed (or
                # written to) by the server.
                if conn.sock is not None and not wait_for_read(conn.sock, timeout=0.0):
                    return conn
                conn.close()
        return _Connection(self.host, self.port, context=self.context)

    def _release(self) -> None:
        # Called with the lock held.
        self._in_use -= 1
        if self._waiting:
            self._freed.notify()

    def put(self, conn: _Connection) -> None:
        """Keep ``conn`` for the next call and free its place."""
        with self._lock:
            self._idle.append(conn)
            self._release()

    def discard(self, conn: _Connection) -> None:
        """Close ``conn`` and free its place."""
        conn.close()
        with self._lock:
            self._release()

    def urlopen(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: Any = None,
        timeout: Any = None,
        **_ignored: Any,
    ) -> PooledResponse:
        """Send one request on a pooled connection (the signature requests' ``send`` calls).

        ``redirect``, ``retries`` and the rest are ignored on purpose: a 3xx is handed
        back as it is and nothing is sent twice here.
        """
        connect_timeout, read_timeout = getattr(timeout, "pair", None) or (
            timeout.connect_timeout,
            timeout.read_timeout,
        )
        conn = self._checkout(connect_timeout)
        try:
            reused = conn.sock is not None
            if not reused:
                conn.timeout = connect_timeout
                try:
                    conn.connect()
                except TimeoutError as exc:
                    raise ConnectFailed(exc, timeout=True) from exc
                except OSError as exc:  # ssl.SSLError included: the handshake is part of connecting
                    raise ConnectFailed(exc) from exc
            conn.sock.settimeout(read_timeout)  # type: ignore[union-attr]
            headers["Host"] = self._host_header  # the client's own dict, made for this call
            try:
                conn.request_one_write(method, url, body, headers)
                resp = conn.getresponse()
            except TimeoutError as exc:
                raise SendFailed(exc, timeout=True, reused=reused) from exc
            except ssl.SSLError as exc:
                if not reused and exc.reason in HANDSHAKE_ALERTS:
                    raise ConnectFailed(exc) from exc
                raise SendFailed(exc, reused=reused) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise SendFailed(exc, reused=reused) from exc
        except BaseException:
            self.discard(conn)
            raise
        return PooledResponse(resp, conn, self)

    def close(self) -> None:
        """Close every idle connection (connections in use close when released)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class QpsAdapter(HTTPAdapter):
    """requests' adapter with one :class:`NodePool` per QPS node instead of urllib3's pools.

    ``send`` is requests' own. What it consults is ours: the pool for the request's
    node (any other host is refused), no certificate settings per request (the one
    context decides), no retries, and an answer the cookie jar never sees (the QPS API
    sets no cookies). Proxies are never looked up: the client calls ``send`` directly,
    not through :meth:`requests.Session.request`, and the pools ignore ``proxies``.
    """

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        nodes: Mapping[str, tuple[str, int]],
        *,
        pool_maxsize: int = 10,
    ) -> None:
        self._ssl_context = ssl_context
        self.pools = {
            node: NodePool(host, port, ssl_context, pool_maxsize)
            for node, (host, port) in nodes.items()
        }
        super().__init__(
            pool_connections=max(1, len(self.pools)),
            pool_maxsize=pool_maxsize,
            max_retries=Retry(0, read=False, redirect=False),
        )

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **kw: Any
    ) -> None:
        # No urllib3 pool manager: the node pools above are the only pools.
        self.poolmanager = None  # type: ignore[assignment]

    def get_connection_with_tls_context(
        self, request: PreparedRequest, verify: Any, proxies: Any = None, cert: Any = None
    ) -> Any:
        url = request.url or ""
        end = url.find("/", 8)
        pool = self.pools.get(url if end < 0 else url[:end])
        if pool is None:
            raise InvalidURL(f"{url[:80]!r} is not on one of this client's QPS nodes; refused.")
        return pool

    def get_connection(
        self, url: str, proxies: Any = None
    ) -> Any:  # requests < 2.32.2 compatibility
        raise InvalidURL("QpsAdapter only sends through get_connection_with_tls_context.")

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        """Whatever a caller passes as ``verify=``/``cert=``, the one SSL context decides."""

    def request_url(self, request: PreparedRequest, proxies: Any) -> str:
        return request.path_url

    def build_response(  # type: ignore[override]
        self, req: PreparedRequest, resp: Any
    ) -> QpsAnswer:
        return QpsAnswer(req, resp)

    def close(self) -> None:
        """Close the idle connections of every node."""
        for pool in self.pools.values():
            pool.close()
