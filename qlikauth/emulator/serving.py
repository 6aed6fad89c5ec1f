"""Serve an ASGI app over TLS on a local port, in a background thread (uvicorn, httptools, wsproto).

The emulated Qlik services (the QPS node, its hub, an emulated Qlik Cloud tenant) are ASGI apps
served by a maintained HTTP/1.1 server and websocket implementation (uvicorn, with httptools
parsing HTTP and wsproto speaking websocket; on uvloop where it is installed, else on asyncio's
own loop); this module is the one place that starts and stops them::

    from qlikauth.emulator.serving import BackgroundServer

    with BackgroundServer(app, ssl_context) as srv:      # binds a free port on 127.0.0.1
        url = f"https://localhost:{srv.port}/"

It uses uvicorn's public settings and hooks only (``uvicorn.Config``, ``uvicorn.Server.serve``,
``should_exit``/``force_exit``, the ``http=``/``ws=`` protocol classes and their
``asyncio.Protocol`` connection callbacks, ``ssl_context_factory``). What it adds, and why:

- The given :class:`ssl.SSLContext` is used as is (through ``ssl_context_factory``), so mutual
  TLS is whatever the context says (``verify_mode = CERT_REQUIRED`` on the QPS port).
  :meth:`BackgroundServer.set_ssl_context` swaps the certificate or trust presented to *new*
  handshakes while running (through ``sni_callback``). A refused handshake sends its TLS alert
  (:class:`_AlertingSSLObject`, installed through the documented ``sslobject_class`` hook).
- :func:`strict_http` (on by default) refuses what a real proxy refuses and the parser lets
  through: ``Content-Length`` together with ``Transfer-Encoding`` (the request-smuggling shape
  behind CVE-2023-41265), HTTP/1.1 without ``Host`` or with two, a declared body over the
  limit, a request head over 16 KiB or a header line over 8 KiB (Qlik's proxy defaults; 431).
  llhttp refuses malformed request lines, obsolete line folding and chunk sizes that are not hex.
- Connection-level control for fault injection: :meth:`~BackgroundServer.refuse_connections`
  stops listening (clients get "connection refused") and resumes on the same port;
  :meth:`~BackgroundServer.drop` aborts the connection a request arrived on;
  ``on_connect`` is called once per accepted TLS connection (the emulator counts them to show
  that a client pools its connections).

Requires the ``emulator`` extra (``pip install 'qlikauth[emulator]'``; uvloop is optional).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import Any

try:
    # what uvicorn's HttpToolsProtocol parses with: named first when it is missing
    import httptools  # noqa: F401
    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
except ModuleNotFoundError as exc:  # pragma: no cover - exercised by tests/packaging
    raise ModuleNotFoundError(
        "qlikauth.emulator needs the 'emulator' extra: pip install 'qlikauth[emulator]' "
        f"(uvicorn, httptools and wsproto; {exc})",
        name=exc.name,
    ) from exc

try:  # optional: faster where it exists (not on Windows), asyncio's loop otherwise
    import uvloop
except ModuleNotFoundError:  # pragma: no cover - depends on the platform
    uvloop = None  # type: ignore[assignment]

__all__ = [
    "BackgroundServer",
    "strict_http",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_LINE",
    "MAX_BODY_BYTES",
    "KEEPALIVE_TIMEOUT",
    "LOOPS",
]

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
#: Qlik's proxy keep-alive timeout is 300 s.
KEEPALIVE_TIMEOUT = 300
#: The event loops a BackgroundServer can run on ("auto": uvloop when installed, else asyncio).
LOOPS = ("auto", "asyncio", "uvloop")


class _AlertingSSLObject(ssl.SSLObject):
    """An :class:`ssl.SSLObject` whose failed handshake lets the event loop send the TLS alert
    first.

    The event loops' TLS layers close the socket on a failed handshake without writing the
    alert OpenSSL has prepared, so a client whose certificate was refused would see a bare end
    of stream. Real servers (Qlik's included) send the alert (``unknown ca``, ``certificate
    required``), and clients report it. So the first failure is reported as "want read": the
    loop then writes what OpenSSL has queued (the alert) and waits; the next handshake step
    (the client's next bytes, or its close) raises the real error and the connection ends.
    Installed through :attr:`ssl.SSLContext.sslobject_class` (the documented hook).
    """

    def do_handshake(self) -> None:
        failed = self.__dict__.get("handshake_error")
        if failed is not None:
            raise failed
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as exc:
            self.__dict__["handshake_error"] = exc
            raise ssl.SSLWantReadError("handshake failed; the alert goes out first") from exc


async def _refuse(send: Send, status: int, message: str) -> None:
    body = (message + "\n").encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def strict_http(
    app: ASGIApp,
    *,
    max_body: int = MAX_BODY_BYTES,
    max_header_line: int = MAX_HEADER_LINE,
    max_header_bytes: int = MAX_HEADER_BYTES,
) -> ASGIApp:
    """Wrap ``app``: refuse requests a strict proxy refuses, before ``app`` sees them.

    Answers 400 to ``Content-Length`` with ``Transfer-Encoding`` and to two ``Host`` headers (or
    none on HTTP/1.1), 431 to a header line longer than ``max_header_line`` bytes or a request
    head over ``max_header_bytes``, 413 to a declared ``Content-Length`` over ``max_body``; each
    with ``Connection: close``. Websocket handshakes get the header checks too (refused before
    the upgrade).
    """

    async def strict(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await app(scope, receive, send)
            return
        problem: tuple[int, str] | None = None
        hosts = cl = te = 0
        http11 = scope.get("http_version") == "1.1"
        declared = 0
        head = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
        for name, value in scope["headers"]:
            line = len(name) + len(value) + 2
            head += line + 2
            if line > max_header_line:
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
            if head > max_header_bytes:
                problem = (431, "Request header fields too large.")
            elif cl and te:
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
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": problem[0],
                    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                }
            )
            await send(
                {"type": "websocket.http.response.body", "body": problem[1].encode() + b"\n"}
            )

    return strict


class _Coalescing:
    """The transport handed to uvicorn's protocol: the writes of one event-loop turn go out as one.

    uvicorn writes an answer's head and body separately: two TLS records and two packets per
    answer, each costing a system call on both sides. Joined, every small answer is one record,
    as a real server sends it. A close or abort flushes (or drops) what is kept first; every
    other transport method is the real transport's.
    """

    __slots__ = ("_t", "_loop", "_buf")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._t = transport
        self._loop = loop
        self._buf: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._buf:
            self._loop.call_soon(self.flush)
        self._buf.append(bytes(data))

    def flush(self) -> None:
        buf = self._buf
        if buf:
            data = buf[0] if len(buf) == 1 else b"".join(buf)
            buf.clear()
            if not self._t.is_closing():
                self._t.write(data)

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def close(self) -> None:
        self.flush()
        self._t.close()

    def abort(self) -> None:
        self._buf.clear()
        self._t.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def _peer(transport: asyncio.BaseTransport) -> tuple[Any, ...]:
    """The (host, port) an ASGI scope's ``client`` holds for this connection."""
    peer = transport.get_extra_info("peername")
    return tuple(peer[:2]) if isinstance(peer, tuple) else ()


class BackgroundServer:
    """An ASGI app served over TLS by uvicorn in a background thread with its own event loop.

    ``port=0`` picks a free port (read :attr:`port` after :meth:`start`). ``on_connect`` is
    called (in the server thread) once per connection whose TLS handshake succeeded.
    ``strict`` wraps the app in :func:`strict_http`. ``loop`` is ``"auto"`` (uvloop when it is
    installed, else asyncio's loop), ``"asyncio"`` or ``"uvloop"``. :meth:`stop` closes the
    port, ends every connection and joins the thread; it is idempotent.
    """

    def __init__(
        self,
        app: ASGIApp,
        ssl_context: ssl.SSLContext,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        name: str = "emulator",
        on_connect: Callable[[], None] | None = None,
        strict: bool = True,
        keepalive_timeout: int = KEEPALIVE_TIMEOUT,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_body: int = MAX_BODY_BYTES,
        loop: str = "auto",
    ) -> None:
        if loop not in LOOPS:
            raise ValueError(f"loop must be one of {', '.join(LOOPS)}, not {loop!r}.")
        if loop == "uvloop" and uvloop is None:
            raise ModuleNotFoundError(
                "loop='uvloop' needs uvloop installed (it is optional; not available on Windows).",
                name="uvloop",
            )
        #: What uvicorn calls: the app, behind strict_http with ``strict``.
        self.app = (
            strict_http(app, max_body=max_body, max_header_bytes=max_header_bytes)
            if strict
            else app
        )
        self.name = name
        self.bind = bind
        self._want_port = int(port)
        self._port: int | None = None
        self._base_context = ssl_context
        self._presented: ssl.SSLContext | None = None
        self.on_connect = on_connect
        self._keepalive = keepalive_timeout
        on_uvloop = loop == "uvloop" or (loop == "auto" and uvloop is not None)
        self.loop_name = "uvloop" if on_uvloop else "asyncio"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._serving: asyncio.Future[Any] | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._transports: dict[tuple[Any, ...], asyncio.Transport] = {}
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
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=f"emulator-{self.name}", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._error
        return self

    def _protocols(self) -> tuple[type[HttpToolsProtocol], type[WSProtocol]]:
        """uvicorn's httptools and wsproto protocols, told about connections through the
        ``asyncio.Protocol`` callbacks (the registry behind :meth:`drop` and ``on_connect``)."""
        owner = self

        class Protocol(HttpToolsProtocol):
            qlikauth_peer: tuple[Any, ...] = ()

            def connection_made(  # type: ignore[override]
                self, transport: asyncio.Transport
            ) -> None:
                # asyncio calls this once the TLS handshake has completed; the protocol writes
                # through _Coalescing (one write per answer).
                self.qlikauth_peer = _peer(transport)
                owner._transports[self.qlikauth_peer] = transport
                joined = _Coalescing(transport, asyncio.get_running_loop())
                super().connection_made(joined)  # type: ignore[arg-type]
                if owner.on_connect is not None:
                    owner.on_connect()

            def connection_lost(self, exc: Exception | None) -> None:
                owner._transports.pop(self.qlikauth_peer, None)
                super().connection_lost(exc)

        class WebSocketProtocol(WSProtocol):
            qlikauth_peer: tuple[Any, ...] = ()

            def connection_made(  # type: ignore[override]
                self, transport: asyncio.Transport
            ) -> None:
                # After an upgrade: the connection stays registered under its peer.
                self.qlikauth_peer = _peer(transport)
                super().connection_made(transport)

            def connection_lost(self, exc: Exception | None) -> None:
                owner._transports.pop(self.qlikauth_peer, None)
                super().connection_lost(exc)

        return Protocol, WebSocketProtocol

    def _ssl_context(
        self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        # uvicorn's ssl_context_factory hook: the given context as is, alerting on refusal.
        self._base_context.sslobject_class = _AlertingSSLObject
        return self._base_context

    def _config(self) -> uvicorn.Config:
        http, ws = self._protocols()
        return uvicorn.Config(
            self.app,
            http=http,
            ws=ws,
            loop="none",
            lifespan="off",
            log_config=None,
            proxy_headers=False,
            access_log=False,
            server_header=False,
            date_header=True,
            timeout_keep_alive=self._keepalive,
            timeout_graceful_shutdown=1,
            ws_ping_interval=None,
            ws_ping_timeout=None,
            ws_per_message_deflate=False,
            ws_max_size=1 << 20,
            headers=[("Server", "qlikauth-emulator")],
            ssl_context_factory=self._ssl_context,
        )

    def _run(self) -> None:
        on_uvloop = self.loop_name == "uvloop" and uvloop is not None
        factory = uvloop.new_event_loop if on_uvloop else None
        try:
            with asyncio.Runner(loop_factory=factory) as runner:
                runner.run(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start() or logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("%s: server thread failed", self.name)
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        config = self._config()
        while not self._stopping:
            if not self._refusing and self._sock is not None:
                # A uvicorn Server per listening period: refuse_connections ends one, listening
                # again starts the next on the same port (same config, app and TLS context).
                server = uvicorn.Server(config)
                self._server = server
                serving = asyncio.ensure_future(server.serve(sockets=[self._sock]))
                self._serving = serving
                while not server.started and not serving.done():
                    await asyncio.sleep(0.005)
                if serving.done() and not server.started:
                    serving.result()  # raise why it could not start
                    raise RuntimeError(f"{self.name}: uvicorn did not start")
                self._ready.set()
                await serving
                self._sock = None  # uvicorn closed it on shutdown
                self._abort_all()
                continue
            self._wake.clear()
            await self._wake.wait()
        self._abort_all()

    def _abort_all(self) -> None:
        for t in list(self._transports.values()):
            t.abort()

    def _end_server(self) -> None:
        """In the loop thread: make the current uvicorn Server close its port now."""
        server = self._server
        if server is not None:
            # A stopped node: no graceful wait for idle keep-alive clients (their TLS
            # close_notify may never come); open connections are aborted.
            server.should_exit = True
            server.force_exit = True
        self._abort_all()

    def stop(self) -> None:
        """Close the port, end every connection and join the thread. Idempotent."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        self._thread = None

        def _exit() -> None:
            self._stopping = True
            self._end_server()
            if self._wake is not None:
                self._wake.set()

        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_exit)
        thread.join(10)
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
        self._ready.clear()

    def __enter__(self) -> BackgroundServer:
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

    def set_ssl_context(
        self, context: ssl.SSLContext | None, *, drop_connections: bool = True
    ) -> None:
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
        loop = self._loop
        if loop is None or self._thread is None or loop.is_closed():
            raise RuntimeError(f"{self.name}: not running")
        if refuse:

            async def close() -> None:
                self._refusing = True
                serving = self._serving
                self._end_server()
                if serving is not None:
                    with contextlib.suppress(Exception):
                        await serving
                self._abort_all()

            asyncio.run_coroutine_threadsafe(close(), loop).result(10)
            return
        sock = self._bind(self.port)

        async def reopen() -> None:
            self._sock = sock
            self._refusing = False
            assert self._wake is not None
            self._wake.set()
            while (
                self._server is None
                or not self._server.started
                or self._serving is None
                or self._serving.done()
            ):
                await asyncio.sleep(0.005)

        asyncio.run_coroutine_threadsafe(reopen(), loop).result(10)

    def __repr__(self) -> str:
        return (
            f"<BackgroundServer {self.name} {self.bind}:{self._port} "
            f"{'running' if self.running else 'stopped'}>"
        )
