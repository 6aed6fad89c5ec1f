"""Serve an ASGI app over TLS on a local port, in a background thread (uvicorn, httptools, wsproto).

The emulated Qlik services (the QPS node, its hub, an emulated Qlik Cloud tenant) are ASGI apps
served by a maintained HTTP/1.1 server and websocket implementation (uvicorn on uvloop, with
httptools parsing HTTP and wsproto speaking websocket); this module is the one place
that starts and stops them::

    from qlikauth.emulator.serving import BackgroundServer

    with BackgroundServer(app, ssl_context) as srv:      # binds a free port on 127.0.0.1
        url = f"https://localhost:{srv.port}/"

What it adds to uvicorn, and why:

- The given :class:`ssl.SSLContext` is used as is (uvicorn would build its own from file names),
  so mutual TLS is whatever the context says (``verify_mode = CERT_REQUIRED`` on the QPS port).
  :meth:`BackgroundServer.set_ssl_context` swaps the certificate or trust presented to *new*
  handshakes while running (through ``sni_callback``).
- :func:`strict_http` (on by default) refuses what a real proxy refuses and the parser lets through:
  ``Content-Length`` together with ``Transfer-Encoding`` (the request-smuggling shape behind
  CVE-2023-41265), HTTP/1.1 without ``Host`` or with two, a declared body over the limit. The
  protocol bounds the request head (16 KiB, 8 KiB per header line: Qlik's proxy defaults; 431);
  llhttp refuses malformed request lines, obsolete line folding and chunk sizes that are not hex.
- Cheaper requests, same behaviour (issue 11: the emulator must never be what a benchmark
  measures): decrypted bytes are read into one reusable buffer (:class:`_Buffered`) instead of a
  new 256 KiB ``bytes`` per read; a request whose body is declared and small reaches the app
  once it is complete, and the app runs in the protocol's own call rather than in a task started
  for the next loop turn (a task takes over only if the app suspends: a fault's delay); the
  answer's head and body leave as one write (one TLS record) the moment the answer is complete,
  so that uvicorn's bookkeeping for the request (its keep-alive timer, the request cycle
  unwinding) runs while the client reads the answer, as a server writing last would have it.
- Connection-level control for fault injection: :meth:`~BackgroundServer.refuse_connections`
  stops listening (clients get "connection refused") and resumes on the same port;
  :meth:`~BackgroundServer.drop` aborts the connection a request arrived on;
  ``on_connect`` is called once per accepted TLS connection (the emulator counts them to show
  that a client pools its connections).

Requires the ``emulator`` extra (``pip install 'qlikauth[emulator]'``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator, MutableMapping
from types import TracebackType
from typing import Any

try:
    import httptools
    import uvicorn
    import uvloop
    from uvicorn._types import ASGI3Application
    from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
    from uvicorn.protocols.utils import get_remote_addr
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
except ModuleNotFoundError as exc:  # pragma: no cover - exercised by tests/packaging
    raise ModuleNotFoundError(
        "qlikauth.emulator needs the 'emulator' extra: pip install 'qlikauth[emulator]' "
        f"(uvicorn, httptools, uvloop and wsproto; {exc})", name=exc.name) from exc

__all__ = ["BackgroundServer", "strict_http", "MAX_HEADER_BYTES", "MAX_HEADER_LINE", "MAX_BODY_BYTES",
           "KEEPALIVE_TIMEOUT"]

log = logging.getLogger("qlikauth.emulator")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Qlik's proxy defaults: 16 KiB of request head, 8 KiB per header line.
MAX_HEADER_BYTES = 16384
MAX_HEADER_LINE = 8192
#: Nothing the QPS API takes comes close; bigger declared bodies get 413.
MAX_BODY_BYTES = 64 * 1024
#: Decrypted bytes per read (a request head is at most 16 KiB; a bigger body takes several reads).
_READ_BUFFER = 64 * 1024
#: Qlik's proxy keep-alive timeout is 300 s.
KEEPALIVE_TIMEOUT = 300


class _Coalescing:
    """A transport that joins the writes of one event-loop turn into one.

    uvicorn writes an answer's head and body separately: two TLS records and two packets per
    answer, each costing a system call on both sides. Joining them makes every small answer one
    record, as a real server sends it. Writes made while the protocol handles received bytes
    (:meth:`hold`, then :meth:`flush`: an answer produced without suspending) go out when it is
    done; any other write is flushed at the end of the loop turn; a close flushes first.
    """

    __slots__ = ("_t", "_loop", "_buf", "_scheduled", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._buf: list[bytes] = []
        self._scheduled = False
        self._held = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._buf.append(bytes(data))
        if not self._scheduled and not self._held:
            self._scheduled = True
            self._loop.call_soon(self._flush_soon)

    def hold(self) -> None:
        """Keep writes until :meth:`flush` (the protocol is handling received bytes)."""
        self._held = True

    def flush(self) -> None:
        """Write what was kept, as one write."""
        self._held = False
        buf = self._buf
        if buf:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
            if not self._t.is_closing():
                self._t.write(data)

    def _flush_soon(self) -> None:
        self._scheduled = False
        if not self._held:
            self.flush()

    def is_closing(self) -> bool:
        # Asked on every answer: spelled out, not found through __getattr__ (a failed lookup first).
        return self._t.is_closing()

    def close(self) -> None:
        self.flush()
        self._t.close()

    def abort(self) -> None:
        self._buf.clear()
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


class _Buffered(asyncio.BufferedProtocol):
    """Hands uvloop a reusable buffer for decrypted bytes; the HTTP protocol gets them as before.

    For a plain :class:`asyncio.Protocol`, uvloop's TLS layer asks ``SSLObject.read`` for a new
    256 KiB ``bytes`` per read: above glibc's mmap threshold, so every request cost two
    ``mmap``/``mremap``/``munmap`` rounds (and the TLB shootdowns of unmapping in a threaded
    process), more than parsing it. A :class:`asyncio.BufferedProtocol` is read into a buffer it
    owns instead. uvloop only takes that path for protocols that are not ``asyncio.Protocol``
    subclasses (uvicorn's is), so this adapter owns the buffer and forwards everything else.
    The buffer is shared by the connections of one server (one event-loop thread): each read
    is copied out before ``buffer_updated`` returns.
    """

    __slots__ = ("protocol", "_view")

    def __init__(self, protocol: HttpToolsProtocol, view: memoryview) -> None:
        self.protocol = protocol
        self._view = view

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.protocol.connection_made(transport)  # type: ignore[arg-type]

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        self.protocol.data_received(self._view[:nbytes].tobytes())

    def eof_received(self) -> None:
        self.protocol.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self.protocol.pause_writing()

    def resume_writing(self) -> None:
        self.protocol.resume_writing()


class _Resumed:
    """Drives a coroutine that already ran its first step outside a task, from where it stopped.

    ``first`` is what that step yielded (a future it waits for, or None for a bare yield); the
    task awaiting this sees exactly that, then every later step of the coroutine, so waiting,
    results, exceptions and cancellation behave as if the task had run the coroutine from the
    start.
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, Any], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        out = self._first
        while True:
            try:
                value = yield out
            except BaseException as exc:  # noqa: BLE001 - thrown in by the task (cancellation): pass it on
                try:
                    out = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                out = coro.send(value)
            except StopIteration as stop:
                return stop.value


async def _resume(coro: Coroutine[Any, Any, Any], first: Any) -> Any:
    return await _Resumed(coro, first)


class _HeadTooLarge(Exception):
    """The request head is over the limit (answered 431)."""


class _AlertingSSLObject(ssl.SSLObject):
    """An :class:`ssl.SSLObject` whose failed handshake lets the event loop send the TLS alert first.

    uvloop's TLS layer (like asyncio's) closes the socket on a failed handshake without writing
    the alert OpenSSL has prepared, so a client whose certificate was refused would see a bare
    end of stream. Real servers (Qlik's included) send the alert (``unknown ca``, ``certificate
    required``), and clients report it. So the first failure is reported as "want read": the
    loop then writes what OpenSSL has queued (the alert) and waits; the next handshake step
    (the client's next bytes, or its close) raises the real error and the connection ends.
    Installed through :attr:`ssl.SSLContext.sslobject_class` (the documented hook).

    ``read``, ``write`` and ``pending`` are the C methods themselves: :class:`ssl.SSLObject`'s
    are one-line wrappers around them, and the event loop calls them several times a request.
    """

    @classmethod
    def _create(cls, *args: Any, **kwargs: Any) -> _AlertingSSLObject:  # type: ignore[override]
        # What SSLContext.wrap_bio calls; uvloop keeps these three bound methods at once.
        obj: _AlertingSSLObject = super()._create(*args, **kwargs)  # type: ignore[misc]
        native = obj._sslobj  # type: ignore[attr-defined]
        obj.__dict__.update(read=native.read, write=native.write, pending=native.pending)
        return obj

    def do_handshake(self) -> None:
        failed = self.__dict__.get("_failed")
        if failed is not None:
            raise failed
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            self.__dict__["_failed"] = exc
            raise ssl.SSLWantReadError("handshake failed; the alert goes out first") from exc


async def _refuse(send: Send, status: int, message: str) -> None:
    body = (message + "\n").encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


async def _refuse_app(status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
    await _refuse(send, status, message)


def strict_http(app: ASGIApp, *, max_body: int = MAX_BODY_BYTES,
                max_header_line: int = MAX_HEADER_LINE) -> ASGIApp:
    """Wrap ``app``: refuse requests a strict proxy refuses, before ``app`` sees them.

    Answers 400 to ``Content-Length`` with ``Transfer-Encoding`` and to two ``Host`` headers,
    431 to a header line longer than ``max_header_line`` bytes, 413 to a declared
    ``Content-Length`` over ``max_body``; each with ``Connection: close``. Websocket
    handshakes get the header checks too (refused before the upgrade).
    """

    async def strict(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        problem: tuple[int, str] | None = None
        hosts = cl = te = 0
        http11 = scope.get("http_version") == "1.1"
        declared = 0
        for name, value in scope["headers"]:
            if len(name) + len(value) + 2 > max_header_line:
                problem = (431, "A header line is too long.")
                break
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                cl += 1
                with contextlib.suppress(ValueError):
                    declared = max(declared, int(value))
            elif name == b"transfer-encoding":
                te += 1
        if problem is None:
            if cl and te:
                # The request-smuggling shape behind CVE-2023-41265/48365: never guess.
                problem = (400, "Content-Length and Transfer-Encoding together are not accepted.")
            elif hosts > 1 or (http11 and not hosts):
                problem = (400, "An HTTP/1.1 request carries exactly one Host header.")
            elif declared > max_body:
                problem = (413, f"Request body too large (limit {max_body} bytes).")
        if problem is None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse(send, *problem)
        else:
            await send({"type": "websocket.http.response.start", "status": problem[0],
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "websocket.http.response.body", "body": problem[1].encode() + b"\n"})

    return strict


class BackgroundServer:
    """An ASGI app served over TLS by uvicorn in a background thread with its own event loop.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). ``on_connect`` is
    called (in the server thread) once per connection whose TLS handshake succeeded.
    ``strict`` applies :func:`strict_http`'s checks: the HTTP protocol makes them while it parses
    the headers (no second pass over them per request), websocket handshakes go through
    :func:`strict_http` itself. :meth:`stop` closes the port, ends every
    connection (open websockets get close code 1012) and joins the thread; it is idempotent.
    """

    def __init__(self, app: ASGIApp, ssl_context: ssl.SSLContext, *, bind: str = "127.0.0.1",
                 port: int = 0, name: str = "emulator", on_connect: Callable[[], None] | None = None,
                 strict: bool = True, keepalive_timeout: int = KEEPALIVE_TIMEOUT,
                 max_header_bytes: int = MAX_HEADER_BYTES, max_body: int = MAX_BODY_BYTES) -> None:
        #: What uvicorn calls; with ``strict``, the HTTP protocol checks each request's headers as it
        #: parses them (the same checks as :func:`strict_http`, without a second pass over them)
        #: and websocket handshakes go through :func:`strict_http`.
        self.app = app
        self._strict = strict
        self._ws_app = strict_http(app, max_body=max_body) if strict else app
        self._max_body = max_body
        self.name = name
        self.bind = bind
        self._want_port = int(port)
        self._port: int | None = None
        self._base_context = ssl_context
        self._presented: ssl.SSLContext | None = None
        self.on_connect = on_connect
        self._keepalive = keepalive_timeout
        self._max_head = max_header_bytes
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._transports: dict[Any, asyncio.Transport] = {}
        self._refusing = False
        self._sock: socket.socket | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every keep-alive answer (headers and body are two writes) waits ~40 ms
        # for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.bind, port))
        except OSError:
            sock.close()
            raise
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def start(self) -> BackgroundServer:
        """Bind the port and start serving (returns once it accepts connections)."""
        if self._thread is not None:
            return self
        self._sock = self._bind(self._want_port)
        self._port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, name=f"emulator-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._error
        return self

    def _protocol_factory(self) -> Callable[..., asyncio.BaseProtocol]:
        """What uvicorn calls per accepted connection: the HTTP protocol behind its read buffer."""
        protocol_class = self._protocol_class()
        view = memoryview(bytearray(_READ_BUFFER))

        def factory(**kwargs: Any) -> asyncio.BaseProtocol:
            return _Buffered(protocol_class(**kwargs), view)

        return factory

    def _protocol_class(self) -> type[HttpToolsProtocol]:
        owner = self
        limit = self._max_head
        line_limit = MAX_HEADER_LINE
        strict = self._strict
        max_body = self._max_body
        short_length = len(str(max_body))  # a Content-Length with fewer digits is under max_body

        class Protocol(HttpToolsProtocol):
            """uvicorn's httptools protocol: bounds the request head, tells its owner about connections."""

            _head = 0
            _length: bytes | None = None  # the request's Content-Length, as sent
            _hosts = 0
            _chunked = False

            def on_message_begin(self) -> None:
                self._head = 0
                self._length = None
                self._hosts = 0
                self._chunked = False
                super().on_message_begin()

            def on_url(self, url: bytes) -> None:
                # uvicorn's on_url (self.url += url) with the head bound, inlined like on_header
                # (llhttp has no limit of its own; Qlik's proxy takes 16 KiB of request head).
                self._head += len(url)
                if self._head > limit:
                    raise _HeadTooLarge("Request header fields too large.")
                self.url += url

            def on_header(self, name: bytes, value: bytes) -> None:
                size = len(name) + len(value)
                if size + 2 > line_limit:
                    raise _HeadTooLarge("A header line is too long.")
                self._head += size + 4
                if self._head > limit:
                    raise _HeadTooLarge("Request header fields too large.")
                # uvicorn's on_header, inlined (called once per header of every request).
                name = name.lower()
                if name == b"host":
                    self._hosts += 1
                elif name == b"content-length":
                    self._length = value if self._length is None else b"twice"
                elif name == b"transfer-encoding":
                    self._chunked = True
                elif name == b"expect" and value.lower() == b"100-continue":
                    self.expect_100_continue = True
                self.headers.append((name, value))

            def on_headers_complete(self) -> None:
                # The usual request (one Host, no Transfer-Encoding, a small or no Content-Length)
                # passes _problem's checks without calling it.
                length = self._length
                usual = self._hosts == 1 and not self._chunked and (
                    length is None or (len(length) < short_length and length.isdigit()))
                problem = self._problem() if strict and not usual else None
                if problem is None:
                    super().on_headers_complete()
                    return
                # uvicorn starts (or queues, behind a pipelined request) self.app for this request.
                app, self.app = self.app, functools.partial(_refuse_app, *problem)
                try:
                    super().on_headers_complete()
                finally:
                    self.app = app

            def _problem(self) -> tuple[int, str] | None:
                """strict_http's checks, from what on_header counted (websockets: strict_http itself)."""
                if self._length is not None and self._chunked:
                    # The request-smuggling shape behind CVE-2023-41265/48365: never guess.
                    return 400, "Content-Length and Transfer-Encoding together are not accepted."
                if self._hosts > 1 or (not self._hosts and self.parser.get_http_version() == "1.1"):
                    return 400, "An HTTP/1.1 request carries exactly one Host header."
                length = self._length
                if length is not None and length.isdigit() and int(length) > max_body:
                    return 413, f"Request body too large (limit {max_body} bytes)."
                return None

            _eager: list[tuple[RequestResponseCycle, ASGI3Application, bool]] | None = None
            _waiting: tuple[RequestResponseCycle, ASGI3Application, bool] | None = None

            def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
                if self._eager is not None:
                    # Within data_received: run the app once the bytes at hand are parsed (below).
                    # It may wait for the rest of the body only if that is declared and small
                    # (a chunked or big body streams to the app as uvicorn does, and a declared
                    # length over the limit is refused before any body comes).
                    length = self._length
                    small = (cycle is self.cycle and length is not None and length.isdigit()
                             and int(length) < HIGH_WATER_LIMIT)
                    self._eager.append((cycle, app, small))
                else:
                    super()._start_asgi_task(cycle, app)

            def _run_eager(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
                """Run one request cycle now, as Python 3.12's eager tasks do; a task only if it suspends."""
                coro = cycle.run_asgi(app)
                context = contextvars.copy_context()
                try:
                    first = context.run(coro.send, None)
                except StopIteration:
                    return
                task = self.loop.create_task(_resume(coro, first), context=context)
                task.add_done_callback(self.tasks.discard)
                self.tasks.add(task)

            def data_received(self, data: bytes) -> None:
                # uvicorn starts a task per request when its head is parsed; the task runs in the
                # next loop turn and its answer is written in the one after. Here the app runs
                # once the request is here (head and body: a client often sends them as two TLS
                # records), in this call, and its answer goes out in one write when it is done.
                # An app that suspends (a fault's delay) continues in a task, as before.
                self._unset_keepalive_if_required()
                transport = self.transport
                held = type(transport) is _Coalescing
                if held:
                    transport.hold()  # type: ignore[attr-defined]
                eager: list[tuple[RequestResponseCycle, ASGI3Application, bool]] = []
                if self._waiting is not None:
                    eager.append(self._waiting)
                    self._waiting = None
                self._eager = eager
                try:
                    self._feed(data)
                    while eager:
                        cycle, app, small = eager.pop(0)
                        if (small and cycle.more_body and not cycle.disconnected
                                and not cycle.waiting_for_100_continue and not self.flow.read_paused):
                            # The body is still on its way: the app starts when it is here.
                            self._waiting = (cycle, app, small)
                        else:
                            self._run_eager(cycle, app)
                finally:
                    self._eager = None
                    for cycle, app, _ in eager:  # only if something above raised: as uvicorn would
                        super()._start_asgi_task(cycle, app)
                    if held:
                        transport.flush()  # type: ignore[attr-defined]

            def _feed(self, data: bytes) -> None:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    if self._should_upgrade():
                        self.handle_websocket_upgrade()
                    else:
                        self._unsupported_upgrade_warning()
                except httptools.HttpParserError as exc:
                    cause = exc.__cause__ or exc.__context__
                    if isinstance(cause, _HeadTooLarge):
                        self._refuse(431, str(cause))
                    else:
                        self._refuse(400, "Invalid HTTP request received.")

            def _refuse(self, status: int, message: str) -> None:
                body = (message + "\n").encode("ascii")
                reason = b"Bad Request" if status == 400 else b"Request Header Fields Too Large"
                self.transport.write(
                    b"HTTP/1.1 " + str(status).encode() + b" " + reason + b"\r\n"
                    b"content-type: text/plain; charset=utf-8\r\ncontent-length: " + str(len(body)).encode()
                    + b"\r\nconnection: close\r\n\r\n" + body)
                self.transport.close()

            def on_response_complete(self) -> None:
                # The answer is whole: it leaves now, and uvicorn's bookkeeping (the keep-alive
                # timer, the request cycle unwinding) happens while the client reads it. Writes
                # of a pipelined request parsed in the same call are kept again for one write.
                transport = self.transport
                if type(transport) is _Coalescing:
                    transport.flush()  # type: ignore[attr-defined]
                    if self._eager is not None:
                        transport.hold()  # type: ignore[attr-defined]
                super().on_response_complete()

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                # asyncio calls this once the TLS handshake has completed.
                super().connection_made(transport)
                self.transport = _Coalescing(transport, asyncio.get_running_loop())  # type: ignore[assignment]
                owner._transports[get_remote_addr(transport)] = transport
                if owner.on_connect is not None:
                    owner.on_connect()

            def connection_lost(self, exc: Exception | None) -> None:
                owner._transports.pop(self.client, None)
                super().connection_lost(exc)
                waiting, self._waiting = self._waiting, None
                if waiting is not None:  # the client left before its body was complete: the app sees it
                    self._run_eager(waiting[0], waiting[1])

        return Protocol

    def _ws_protocol_class(self) -> type[WSProtocol]:
        owner = self

        class WebSocketProtocol(WSProtocol):
            """uvicorn's wsproto protocol: the app behind strict_http; forgets the connection when it ends."""

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.app = owner._ws_app  # type: ignore[assignment]

            def connection_lost(self, exc: Exception | None) -> None:
                owner._transports.pop(self.client, None)
                super().connection_lost(exc)

        return WebSocketProtocol

    def _run(self) -> None:
        try:
            # uvloop: the event loop uvicorn runs on by default where it is installed.
            uvloop.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("%s: server thread failed", self.name)
        finally:
            self._ready.set()

    def _config(self) -> uvicorn.Config:
        config = uvicorn.Config(
            self.app, http=self._protocol_factory(),  # type: ignore[arg-type]
            ws=self._ws_protocol_class(), loop="none", lifespan="off", log_config=None,
            proxy_headers=False,
            access_log=False, server_header=False, date_header=True,
            timeout_keep_alive=self._keepalive, timeout_graceful_shutdown=1,
            ws_ping_interval=None, ws_ping_timeout=None, ws_per_message_deflate=False,
            ws_max_size=1 << 20, headers=[("Server", "qlikauth-emulator")])
        config.load()
        # The given context as is (uvicorn would build its own from file names); uvloop's TLS
        # layer (Cython) carries it, with the handshake alert sent (see _AlertingSSLObject).
        self._base_context.sslobject_class = _AlertingSSLObject
        config.ssl = self._base_context
        return config

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        config = self._config()
        server = uvicorn.Server(config)
        self._server = server
        assert self._sock is not None
        serving = asyncio.ensure_future(server.serve(sockets=[self._sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        self._ready.set()
        await serving
        for t in list(self._transports.values()):
            t.abort()

    def stop(self) -> None:
        """Close the port, end every connection and join the thread. Idempotent."""
        thread, loop, server = self._thread, self._loop, self._server
        if thread is None:
            return
        self._thread = None
        if loop is not None and server is not None and not loop.is_closed():
            def _exit() -> None:
                # A stopped node: no graceful wait for idle keep-alive clients (their TLS
                # close_notify may never come); open connections are aborted below.
                server.should_exit = True
                server.force_exit = True
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_exit)
        thread.join(10)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._thread is not None

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._port

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server thread's event loop (None before :meth:`start`)."""
        return self._loop

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` in the server thread (thread-safe; ignored once stopped)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    def _in_loop(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        loop = self._loop
        if loop is None or loop.is_closed() or self._thread is None:
            raise RuntimeError(f"{self.name}: not running")
        done = threading.Event()
        out: list[Any] = []

        def run() -> None:
            try:
                out.append(fn())
            finally:
                done.set()

        loop.call_soon_threadsafe(run)
        if not done.wait(timeout):
            raise TimeoutError(f"{self.name}: the server thread did not answer")
        return out[0] if out else None

    # -- TLS -----------------------------------------------------------------------------
    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The context new handshakes get (the one given, unless swapped)."""
        return self._presented or self._base_context

    def set_ssl_context(self, context: ssl.SSLContext | None, *, drop_connections: bool = True) -> None:
        """Present ``context`` (its certificate, its client-certificate trust) to new handshakes.

        ``None`` goes back to the context given at construction. Open connections keep the TLS
        session they have; ``drop_connections`` ends them, as a node restarted with a new
        certificate would, so pooled clients handshake again.
        """
        self._presented = None if context is None or context is self._base_context else context

        def pick(sslobj: Any, server_name: str | None, base: ssl.SSLContext) -> None:
            chosen = self._presented
            if chosen is not None:
                # OpenSSL switches the certificate, key and verification store for this handshake.
                sslobj.context = chosen

        self._base_context.sni_callback = pick if self._presented is not None else None
        if drop_connections and self._thread is not None:
            self.drop_all()

    # -- connections ---------------------------------------------------------------------
    def drop(self, scope: Scope) -> bool:
        """Abort (TCP reset, no answer) the connection that ``scope``'s request arrived on."""
        transport = self._transports.get(tuple(scope.get("client") or ()))
        if transport is None:
            return False
        transport.abort()
        return True

    def drop_all(self) -> None:
        """Abort every open connection (keep-alive and websocket alike)."""
        def run() -> None:
            for t in list(self._transports.values()):
                t.abort()
        self._in_loop(run)

    @property
    def open_connections(self) -> int:
        """How many TLS connections are open now."""
        return len(self._transports)

    @property
    def refusing(self) -> bool:
        """True while :meth:`refuse_connections` keeps the port closed."""
        return self._refusing

    def refuse_connections(self, refuse: bool = True) -> None:
        """Stop listening (new connections are refused, open ones are reset), or listen again.

        The port stays the same: listening resumes on it with the same app and TLS context.
        """
        if refuse == self._refusing:
            return
        server = self._server
        if server is None or self._thread is None:
            raise RuntimeError(f"{self.name}: not running")
        if refuse:
            def close() -> None:
                for s in server.servers:
                    s.close()
                server.servers.clear()
                for t in list(self._transports.values()):
                    t.abort()
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
            self._in_loop(close)
            self._refusing = True
            return
        sock = self._bind(self.port)
        self._sock = sock
        config = server.config

        def create_protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=server.server_state, app_state=server.lifespan.state)

        async def reopen() -> None:
            s = await asyncio.get_running_loop().create_server(create_protocol, sock=sock, ssl=config.ssl,
                                                               backlog=1024)
            server.servers.append(s)

        loop = self._loop
        assert loop is not None
        asyncio.run_coroutine_threadsafe(reopen(), loop).result(10)
        self._refusing = False

    def __repr__(self) -> str:
        return f"<BackgroundServer {self.name} {self.bind}:{self._port} {'running' if self.running else 'stopped'}>"
