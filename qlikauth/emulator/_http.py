"""A small threaded HTTP/1.1 server over TLS for the emulator: strict parsing, keep-alive, one write per answer.

Why not :mod:`http.server`: it writes the status line, the headers and the body in
separate calls, which with Nagle's algorithm and delayed ACKs stalls every keep-alive
request by ~40 ms (23 requests/s against >1200 with a single write), it reads headers
with no total limit and it answers some malformed requests with a traceback-shaped
page. This server parses strictly (CVE-2023-41265-style requests carrying both
``Content-Length`` and ``Transfer-Encoding`` are refused), bounds header and body
sizes, sets ``TCP_NODELAY`` and answers each request with exactly one ``sendall``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

log = logging.getLogger("qlikauth.emulator")

#: Qlik's proxy defaults: 16 KiB of headers, 8 KiB per header line.
MAX_HEADER_BYTES = 16384
MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
#: Nothing the QPS API takes comes close; bigger bodies get 413.
MAX_BODY_BYTES = 64 * 1024
#: Qlik's proxy keep-alive timeout is 300 s.
KEEPALIVE_TIMEOUT = 300.0
HANDSHAKE_TIMEOUT = 10.0

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_TARGET = re.compile(rb"(?:/[\x21-\x7e]*|\*)\Z")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class HttpError(Exception):
    """A request that cannot be served; the connection is closed after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    """One parsed request. ``headers`` keeps the wire order and the original names."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    peer: tuple[Any, ...] | None = None

    @property
    def path(self) -> str:
        """The target without its query string (still percent-encoded)."""
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        """The raw query string (without ``?``)."""
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        lname = name.lower()
        for n, v in self.headers:
            if n.lower() == lname:
                return v
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        lname = name.lower()
        return [v for n, v in self.headers if n.lower() == lname]

    def tokens(self, name: str) -> set[str]:
        """The comma-separated, lower-cased tokens of a header such as ``Connection``."""
        return {t.strip().lower() for v in self.header_values(name) for t in v.split(",") if t.strip()}


@dataclass
class Response:
    """An answer: written with one ``sendall``. ``upgrade`` takes over the socket after a 101."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "text/plain; charset=utf-8"
    close: bool = False
    upgrade: Callable[[Connection], None] | None = None

    @classmethod
    def text(cls, status: int, text: str, **kw: Any) -> Response:
        """A plain-text answer."""
        return cls(status, text.encode("utf-8"), **kw)

    @classmethod
    def html(cls, status: int, html: str, **kw: Any) -> Response:
        """An HTML answer."""
        return cls(status, html.encode("utf-8"), content_type="text/html; charset=utf-8", **kw)

    @classmethod
    def json(cls, status: int, data: Any, **kw: Any) -> Response:
        """A JSON answer."""
        import json

        body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return cls(status, body, content_type="application/json; charset=utf-8", **kw)


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    # formatdate costs more than the rest of a small answer; once per second is enough.
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


class Connection:
    """One accepted TLS connection: buffered reads, request parsing, one-write answers."""

    def __init__(self, sock: ssl.SSLSocket, peer: Any, server: TLSServer) -> None:
        self.sock = sock
        self.peer = peer
        self.server = server
        self.buffer = bytearray()
        #: Serialises writes when another thread must write too (websocket close on logout).
        self.write_lock = threading.Lock()

    # -- reading ----------------------------------------------------------------------
    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def read_exact(self, n: int) -> bytes | None:
        """``n`` bytes from the buffer and the socket, or None at end of stream."""
        while len(self.buffer) < n:
            if not self._fill():
                return None
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def read_request(self) -> Request | None:
        """The next request, None on a clean end of stream; HttpError when malformed."""
        while True:
            # Tolerate the empty lines some clients send between requests (RFC 9112 2.2).
            while self.buffer[:2] == b"\r\n" or self.buffer[:1] == b"\n":
                del self.buffer[: 2 if self.buffer[:1] == b"\r" else 1]
            m = _HEAD_END.search(self.buffer, 0, MAX_HEADER_BYTES + 4)
            if m:
                break
            if len(self.buffer) > MAX_HEADER_BYTES:
                raise HttpError(431, "Request header fields too large.")
            if not self._fill():
                if self.buffer.strip():
                    raise HttpError(400, "Incomplete request.")
                return None
        head = bytes(self.buffer[: m.start()])
        del self.buffer[: m.end()]
        lines = _LINE_SPLIT.split(head)
        parts = lines[0].split(b" ")
        if len(parts) != 3:
            raise HttpError(400, "Malformed request line.")
        method, target, version = parts
        if not _TOKEN.match(method) or not _TARGET.match(target):
            raise HttpError(400, "Malformed request line.")
        if version not in (b"HTTP/1.1", b"HTTP/1.0"):
            if version.startswith(b"HTTP/"):
                raise HttpError(505, "HTTP version not supported.")
            raise HttpError(400, "Malformed request line.")
        if len(lines) - 1 > MAX_HEADERS:
            raise HttpError(431, "Too many header fields.")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if len(line) > MAX_HEADER_LINE:
                raise HttpError(431, "A header line is too long.")
            if line[:1] in (b" ", b"\t"):
                raise HttpError(400, "Obsolete header line folding is not accepted.")
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                raise HttpError(400, "Malformed header line.")
            value = value.strip(b" \t")
            if _CONTROL.search(value):
                raise HttpError(400, "Control character in a header value.")
            headers.append((name.decode("ascii"), value.decode("latin-1")))
        req = Request(method.decode("ascii"), target.decode("ascii"), version.decode("ascii"),
                      headers, b"", self.peer)
        req.body = self._read_body(req)
        return req

    def _read_body(self, req: Request) -> bytes:
        te = req.header_values("Transfer-Encoding")
        cl = req.header_values("Content-Length")
        if te and cl:
            # The request-smuggling shape behind CVE-2023-41265/48365: never guess.
            raise HttpError(400, "Content-Length and Transfer-Encoding together are not accepted.")
        if te:
            if [t.strip().lower() for t in ",".join(te).split(",")] != ["chunked"]:
                raise HttpError(400, "Only 'Transfer-Encoding: chunked' is accepted.")
            self._continue(req)
            return self._read_chunked()
        if not cl:
            return b""
        if len({v.strip() for v in cl}) != 1 or not cl[0].strip().isdigit():
            raise HttpError(400, "Invalid Content-Length.")
        length = int(cl[0].strip())
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"Request body too large (limit {MAX_BODY_BYTES} bytes).")
        if length and len(self.buffer) < length:
            self._continue(req)
        body = self.read_exact(length)
        if body is None:
            raise HttpError(400, "Incomplete request body.")
        return body

    def _continue(self, req: Request) -> None:
        if "100-continue" in req.tokens("Expect") and req.version == "HTTP/1.1":
            self.sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def _read_line(self, limit: int = 1024) -> bytes:
        while True:
            idx = self.buffer.find(b"\n")
            if idx >= 0:
                line = bytes(self.buffer[:idx]).rstrip(b"\r")
                del self.buffer[: idx + 1]
                return line
            if len(self.buffer) > limit:
                raise HttpError(400, "Malformed chunked body.")
            if not self._fill():
                raise HttpError(400, "Incomplete chunked body.")

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            size_text = self._read_line().split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(400, "Malformed chunk size.") from None
            if size < 0:
                raise HttpError(400, "Malformed chunk size.")
            if size == 0:
                while self._read_line(MAX_HEADER_LINE):  # trailers, ignored
                    pass
                return bytes(out)
            if len(out) + size > MAX_BODY_BYTES:
                raise HttpError(413, f"Request body too large (limit {MAX_BODY_BYTES} bytes).")
            chunk = self.read_exact(size)
            if chunk is None or self.read_exact(2) not in (b"\r\n",):
                raise HttpError(400, "Malformed chunked body.")
            out += chunk

    # -- writing ----------------------------------------------------------------------
    def send(self, resp: Response, *, head_only: bool = False, keep_alive: bool = True,
             http10: bool = False) -> None:
        """Write ``resp`` with a single ``sendall`` (see the module docstring for why)."""
        lines = [f"HTTP/1.1 {resp.status} {_reason(resp.status)}",
                 f"Date: {_http_date()}", "Server: qlikauth-emulator"]
        if resp.status != 101:
            if resp.content_type and resp.status not in (204, 304):
                lines.append(f"Content-Type: {resp.content_type}")
            if resp.status not in (204, 304):
                lines.append(f"Content-Length: {len(resp.body)}")
            if not keep_alive:
                lines.append("Connection: close")
            elif http10:
                lines.append("Connection: keep-alive")
        for name, value in resp.headers:
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ValueError(f"header {name!r} carries CR or LF")  # never on the wire
            lines.append(f"{name}: {value}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only and resp.status not in (101, 204, 304):
            data += resp.body
        with self.write_lock:
            self.sock.sendall(data)

    # -- the loop -----------------------------------------------------------------------
    def serve(self) -> None:
        """Serve requests until the client closes, an error, a timeout or the server stops."""
        app = self.server.app
        while not self.server.stopping:
            try:
                req = self.read_request()
            except HttpError as exc:
                self._send_error(exc)
                return
            except (OSError, ssl.SSLError):
                return
            if req is None:
                return
            conn_tokens = req.tokens("Connection")
            http10 = req.version == "HTTP/1.0"
            keep_alive = ("keep-alive" in conn_tokens) if http10 else ("close" not in conn_tokens)
            try:
                resp = app(req, self)
            except HttpError as exc:
                resp = Response.text(exc.status, exc.message + "\n", close=True)
            except Exception:  # a bug in a handler: log it, never send a traceback
                log.exception("emulator handler failed for %s %s", req.method, req.path)
                resp = Response.text(500, "Internal error in the qlikauth emulator.\n", close=True)
            keep_alive = keep_alive and not resp.close and not self.server.stopping
            try:
                self.send(resp, head_only=req.method == "HEAD", keep_alive=keep_alive, http10=http10)
            except (OSError, ssl.SSLError):
                return
            if resp.upgrade is not None:
                resp.upgrade(self)
                return
            if not keep_alive:
                return

    def _send_error(self, exc: HttpError) -> None:
        log.debug("malformed request from %s: %s", self.peer, exc.message)
        with contextlib.suppress(OSError, ssl.SSLError):
            self.send(Response.text(exc.status, exc.message + "\n"), keep_alive=False)


class TLSServer:
    """Accepts TLS connections on one port; one thread per connection.

    ``app(request, connection) -> Response``. ``on_accept`` is called once per
    connection whose TLS handshake succeeded (the QPS counts them to show pooling).
    """

    def __init__(self, name: str, bind: str, port: int, context: ssl.SSLContext,
                 app: Callable[[Request, Connection], Response],
                 on_accept: Callable[[], None] | None = None,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        self.name = name
        self.context = context
        self.app = app
        self.on_accept = on_accept
        self.keepalive_timeout = keepalive_timeout
        self.stopping = False
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((bind, port))
        except OSError:
            self.listener.close()
            raise
        self.listener.listen(1024)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"emulator-{name}-accept",
                                          daemon=True)

    def start(self) -> None:
        """Start accepting."""
        self._acceptor.start()

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self.stopping:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r:
                        return
                    while True:
                        try:
                            raw, peer = self.listener.accept()
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            if self.stopping:
                                return
                            time.sleep(0.01)  # EMFILE and friends: do not spin
                            break
                        self._spawn(raw, peer)
        finally:
            sel.close()

    def _spawn(self, raw: socket.socket, peer: Any) -> None:
        raw.setblocking(True)
        # One write per answer is only half of it: without NODELAY the kernel may still hold
        # a small answer back waiting for the ACK of the previous one.
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t = threading.Thread(target=self._serve, args=(raw, peer), daemon=True,
                             name=f"emulator-{self.name}-conn")
        with self._lock:
            self._socks.add(raw)
            self._threads.add(t)
        t.start()

    def _serve(self, raw: socket.socket, peer: Any) -> None:
        sock: socket.socket = raw
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self._socks.discard(raw)
                self._socks.add(tls)
            sock = tls
            if self.stopping:
                return
            try:
                tls.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.debug("%s: TLS handshake with %s failed: %s", self.name, peer, exc)
                return
            if self.on_accept is not None:
                self.on_accept()
            tls.settimeout(self.keepalive_timeout)
            Connection(tls, peer, self).serve()
        except Exception:  # never let a connection thread die noisily
            log.exception("%s: connection from %s failed", self.name, peer)
        finally:
            with self._lock:
                self._socks.discard(sock)
                self._threads.discard(threading.current_thread())
            with contextlib.suppress(OSError):
                sock.close()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end every connection and join the threads. Idempotent."""
        if self.stopping:
            return
        self.stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        with contextlib.suppress(OSError):
            self.listener.close()
        with self._lock:
            socks = list(self._socks)
            threads = list(self._threads)
        for s in socks:
            # socket.socket.shutdown, not SSLSocket.shutdown: wake the reader at the OS level
            # without tearing the SSL object from under the thread that uses it.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(s, socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()
