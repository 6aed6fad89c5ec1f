"""The QPS client's direct transport: pooled keep-alive :mod:`http.client` connections per node.

requests' adapter and urllib3's pool spend more Python work per call than the QPS API
needs (retry bookkeeping, timeout objects, header dictionaries, response wrappers),
and under threads that work is what caps throughput. The QPS API is one JSON request
and one small JSON answer per call, so this transport keeps only what that needs:
one :class:`ssl.SSLContext` (the one :meth:`Certificates.client_ssl_context` builds),
a LIFO of idle connections per node, each request written as one TLS record, and the
answer read with a size cap. Failures are raised as requests' exception types so the
client maps them to qlikauth's errors in one place.

:class:`~qlikauth.qps.QpsClient` uses it unless a test double has replaced requests'
``HTTPAdapter.send`` (as :mod:`responses` does); then calls go through the mounted
requests adapter, so request-shape tests keep working unchanged.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from typing import Any

import requests
from urllib3.util.wait import wait_for_read

__all__ = ["DirectTransport", "DirectResponse"]


class _Connection(http.client.HTTPSConnection):
    """An HTTPS connection that sends request line, headers and body with one ``sendall``."""

    _parts: list[bytes] | None = None

    def send(self, data: Any) -> None:
        if self._parts is not None:
            self._parts.append(bytes(data))
        else:
            super().send(data)

    def request_one_write(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> None:
        self._parts = []
        try:
            self.request(method, path, body=body, headers=headers)
            data = b"".join(self._parts)
        finally:
            self._parts = None
        self.sock.sendall(data)  # type: ignore[union-attr]


class DirectResponse:
    """Just what the client reads of an answer: status, headers, a capped body."""

    __slots__ = ("status_code", "headers", "raw")

    def __init__(self, status: int, headers: Any, raw: _Raw) -> None:
        self.status_code = status
        self.headers = headers
        self.raw = raw


class _Raw:
    __slots__ = ("_resp", "_conn", "_pool")

    def __init__(self, resp: http.client.HTTPResponse, conn: _Connection, pool: _NodePool) -> None:
        self._resp, self._conn, self._pool = resp, conn, pool

    def read(self, amt: int, decode_content: bool = True) -> bytes:
        try:
            return self._resp.read(amt)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise requests.exceptions.ConnectionError(exc) from exc

    def release_conn(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is None:
            return
        if self._resp.isclosed() and not self._resp.will_close:
            self._pool.put(conn)
        else:
            conn.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None  # type: ignore[assignment]
        if conn is not None:
            conn.close()


class _NodePool:
    def __init__(self, host: str, port: int, context: ssl.SSLContext, maxsize: int) -> None:
        self.host, self.port, self.context, self.maxsize = host, port, context, maxsize
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()

    def get(self) -> tuple[_Connection, bool]:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                # An idle keep-alive socket that is readable was closed by the server.
                if conn.sock is not None and not wait_for_read(conn.sock, timeout=0.0):
                    return conn, True
                conn.close()
        return _Connection(self.host, self.port, context=self.context), False

    def put(self, conn: _Connection) -> None:
        with self._lock:
            if len(self._idle) < self.maxsize:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class DirectTransport:
    """Pooled mutual-TLS connections to each QPS node, one request at a time per connection."""

    def __init__(self, context: ssl.SSLContext, nodes: dict[str, tuple[str, int]], maxsize: int) -> None:
        self._pools = {node: _NodePool(host, port, context, maxsize) for node, (host, port) in nodes.items()}

    def send(self, node: str, method: str, path: str, body: bytes | None, headers: dict[str, str],
             timeout: tuple[float, float]) -> DirectResponse:
        """Send one request; raise requests' exception types on failure."""
        pool = self._pools[node]
        conn, reused = pool.get()
        try:
            if conn.sock is None:
                conn.timeout = timeout[0]
                try:
                    conn.connect()
                except TimeoutError as exc:
                    raise requests.exceptions.ConnectTimeout(exc) from exc
                except ssl.SSLError as exc:
                    raise requests.exceptions.SSLError(exc) from exc
                except OSError as exc:
                    raise requests.exceptions.ConnectionError(exc) from exc
            conn.sock.settimeout(timeout[1])  # type: ignore[union-attr]
            headers["Host"] = f"{pool.host}:{pool.port}"
            try:
                conn.request_one_write(method, path, body, headers)
                resp = conn.getresponse()
            except TimeoutError as exc:
                raise requests.exceptions.ReadTimeout(exc) from exc
            except ssl.SSLError as exc:
                raise requests.exceptions.SSLError(exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                # A reused connection the server had closed: requests' word for it.
                err = requests.exceptions.ConnectionError(exc)
                err.reused = reused  # type: ignore[attr-defined]
                raise err from exc
        except BaseException:
            conn.close()
            raise
        return DirectResponse(resp.status, resp.headers, _Raw(resp, conn, pool))

    def close(self) -> None:
        """Close every idle connection."""
        for pool in self._pools.values():
            pool.close()
