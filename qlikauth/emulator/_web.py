"""Requests, answers and websockets of the emulated services, and the ASGI app that carries them.

The emulator's handlers (the QPS API, the hub) are plain functions ``Request -> Response``: Qlik's
behaviour and nothing else. :func:`asgi_app` turns one into an ASGI application for
:class:`~qlikauth.emulator.serving.BackgroundServer` (uvicorn parses HTTP, wsproto speaks
websocket). A handler that accepts a websocket answers ``Response(101, websocket=run)``; ``run``
gets a :class:`WebSocket` once the handshake is done.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .serving import MAX_BODY_BYTES, ASGIApp, Message, Receive, Scope, Send

__all__ = ["Request", "Response", "WebSocket", "HttpError", "asgi_app", "json_bytes", "JSON_TYPE"]

log = logging.getLogger("qlikauth.emulator")


JSON_TYPE = "application/json; charset=utf-8"


def json_bytes(data: Any) -> bytes:
    """``data`` as the emulator's JSON answers carry it: compact, UTF-8, non-ASCII as is."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class HttpError(Exception):
    """A request that cannot be served; the connection is closed after the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One request. ``headers`` keeps the wire order, names in lower case; ``websocket`` is True for
    an upgrade; ``scope`` is the ASGI scope it came in (None when built by hand).

    ``path`` is the target without its query string (still percent-encoded), ``query`` the raw
    query string without ``?``. A request made from an ASGI scope decodes its headers (latin-1)
    only when asked: the QPS API reads two of them.
    """

    __slots__ = (
        "method",
        "path",
        "query",
        "version",
        "body",
        "peer",
        "websocket",
        "scope",
        "_raw",
        "_headers",
    )

    def __init__(
        self,
        method: str,
        target: str,
        version: str,
        headers: list[tuple[str, str]],
        body: bytes,
        peer: tuple[Any, ...] | None = None,
        websocket: bool = False,
        scope: Scope | None = None,
    ) -> None:
        self.method = method
        self.path, _, self.query = target.partition("?")
        self.version = version
        self._headers: list[tuple[str, str]] | None = [(n.lower(), v) for n, v in headers]
        self._raw: list[tuple[bytes, bytes]] | None = None
        self.body = body
        self.peer = peer
        self.websocket = websocket
        self.scope = scope

    @classmethod
    def from_scope(cls, scope: Scope, body: bytes) -> Request:
        """The request an ASGI ``http`` or ``websocket`` scope describes, with its body."""
        req = cls.__new__(cls)
        ws = scope["type"] == "websocket"
        req.method = "GET" if ws else scope["method"]
        req.path = (scope.get("raw_path") or scope["path"].encode("utf-8")).decode("latin-1")
        qs = scope.get("query_string")
        req.query = qs.decode("latin-1") if qs else ""
        req.version = "HTTP/" + scope.get("http_version", "1.1")
        req._raw = scope["headers"]  # ASGI: names in lower case
        req._headers = None
        req.body = body
        req.peer = tuple(scope.get("client") or ())
        req.websocket = ws
        req.scope = scope
        return req

    @property
    def target(self) -> str:
        """The request target: path and query string, as sent."""
        return self.path + "?" + self.query if self.query else self.path

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Every header as (lower-case name, value), in wire order."""
        if self._headers is None:
            self._headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw or ()]
        return self._headers

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        raw = self._raw
        if raw is not None:
            lname = name.lower().encode("latin-1")
            for n, v in raw:
                if n == lname:
                    return v.decode("latin-1")
            return None
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        raw = self._raw
        if raw is not None:
            lname = name.lower().encode("latin-1")
            out = []
            for n, v in raw:  # a loop, not a comprehension: this runs on every QPS request
                if n == lname:
                    out.append(v.decode("latin-1"))
            return out
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    def tokens(self, name: str) -> set[str]:
        """The comma-separated, lower-cased tokens of a header such as ``Connection``."""
        return {
            t.strip().lower() for v in self.header_values(name) for t in v.split(",") if t.strip()
        }

    def __repr__(self) -> str:
        return f"Request({self.method!r}, {self.target!r}, {self.version!r})"


@dataclass
class Response:
    """An answer. ``websocket`` (with status 101) takes over once the handshake is accepted."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str | None = "text/plain; charset=utf-8"
    close: bool = False
    websocket: Callable[[WebSocket], Awaitable[None]] | None = None

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
        return cls(status, json_bytes(data), content_type=JSON_TYPE, **kw)

    def wire_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers as ASGI wants them (Content-Type and Content-Length first)."""
        out: list[tuple[bytes, bytes]] = []
        if self.content_type and self.status not in (101, 204, 304):
            out.append((b"content-type", self.content_type.encode("latin-1")))
        if self.status not in (101, 204, 304):
            out.append((b"content-length", str(len(self.body)).encode()))
        if self.close:
            out.append((b"connection", b"close"))
        for name, value in self.headers:
            if any(c in name or c in value for c in "\r\n"):
                raise ValueError(f"header {name!r} carries CR or LF")  # never on the wire
            out.append((name.encode("latin-1"), value.encode("latin-1")))
        return out


class WebSocket:
    """An accepted websocket: receive and send text/binary messages, close it (also from another
    thread)."""

    def __init__(self, receive: Receive, send: Send) -> None:
        self._receive = receive
        self._send = send
        self._loop = asyncio.get_running_loop()
        self.closed = False

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the websocket is closed."""
        while not self.closed:
            msg = await self._receive()
            if msg["type"] == "websocket.disconnect":
                self.closed = True
                return None
            if msg["type"] == "websocket.receive":
                text = msg.get("text")
                return text if text is not None else msg.get("bytes") or b""
        return None

    async def send(self, data: str | bytes) -> None:
        """Send one message (text for ``str``)."""
        if self.closed:
            return
        key = "text" if isinstance(data, str) else "bytes"
        await self._send({"type": "websocket.send", key: data})

    async def send_json(self, data: Any) -> None:
        """Send ``data`` as one JSON text message."""
        await self.send(json.dumps(data, ensure_ascii=False))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake."""
        if self.closed:
            return
        self.closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason[:120]})
        except Exception:  # noqa: BLE001 - the peer is gone already
            log.debug("websocket close after disconnect")

    def close_soon(
        self,
        code: int = 1000,
        reason: str = "",
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Close from any thread (a logout on the QPS API ends the engine websocket).

        ``before`` (a coroutine function) runs first in the websocket's loop: the notice Qlik
        sends before it closes.
        """

        async def run() -> None:
            if before is not None and not self.closed:
                try:
                    await before()
                except Exception:  # noqa: BLE001
                    log.debug("websocket notice not sent")
            await self.close(code, reason)

        def schedule() -> None:
            asyncio.ensure_future(run())

        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(schedule)
            except RuntimeError:
                pass


#: A request hook: None lets the request through, else an awaitable giving the answer (None:
#: let it through after all). Plain (not async) so that the usual "nothing to do" costs no await.
Before = Callable[[Request], Awaitable[Response | None] | None]


async def _read_body(receive: Receive, limit: int, msg: Message | None = None) -> bytes:
    """The request body (``msg``: the first message, already received)."""
    if msg is None:
        msg = await receive()
    out = bytearray()
    while True:
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client went away")
        out += msg.get("body", b"")
        if len(out) > limit:
            raise HttpError(413, f"Request body too large (limit {limit} bytes).")
        if not msg.get("more_body"):
            return bytes(out)
        msg = await receive()


def asgi_app(
    handler: Callable[[Request], Response],
    *,
    before: Before | None = None,
    max_body: int = MAX_BODY_BYTES,
    name: str = "emulator",
) -> ASGIApp:
    """An ASGI app calling ``handler`` for every HTTP request and websocket handshake.

    ``before`` (optional, see :data:`Before`) sees each request first and may answer it instead
    (the fault switch does: delays, 5xx, dropped connections).
    """

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return
        try:
            if kind == "http":
                msg = await receive()
                if msg["type"] == "http.request" and not msg.get(
                    "more_body"
                ):  # the whole body at once
                    body: bytes = msg.get("body", b"")
                    if len(body) > max_body:
                        raise HttpError(413, f"Request body too large (limit {max_body} bytes).")
                else:
                    body = await _read_body(receive, max_body, msg)
            else:
                body = b""
            req = Request.from_scope(scope, body)
            hooked = before(req) if before is not None else None
            try:
                resp = await hooked if hooked is not None else None
            except asyncio.CancelledError:
                # The server is stopping while a fault holds the request (a hang, a slow
                # answer) whose client may long have given up: nothing to answer, nothing wrong.
                return
            if resp is not None and resp.status == 0:
                return  # the connection was reset instead of answered (a fault)
            if resp is None:
                resp = handler(req)
        except ConnectionError:
            return
        except HttpError as exc:
            resp = Response.text(exc.status, exc.message + "\n", close=True)
        except Exception:  # a bug in a handler: log it, never send a traceback
            log.exception(
                "%s handler failed for %s %s", name, scope.get("method", "GET"), scope.get("path")
            )
            resp = Response.text(500, "Internal error in the qlikauth emulator.\n", close=True)
        if kind == "http":
            if resp.websocket is not None:
                resp = Response.text(
                    400, "A websocket handshake is a GET with 'Connection: Upgrade'.\n", close=True
                )
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status,
                    "headers": resp.wire_headers(),
                }
            )
            await send(
                {
                    "type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else resp.body,
                }
            )
            return
        if resp.websocket is None or resp.status != 101:
            # Refused before the upgrade: an ordinary HTTP answer (the ASGI
            # websocket.http.response extension).
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": resp.status,
                    "headers": resp.wire_headers(),
                }
            )
            await send({"type": "websocket.http.response.body", "body": resp.body})
            return
        msg = await receive()
        if msg["type"] != "websocket.connect":
            return
        await send(
            {
                "type": "websocket.accept",
                "headers": [(n.encode("latin-1"), v.encode("latin-1")) for n, v in resp.headers],
            }
        )
        ws = WebSocket(receive, send)
        try:
            await resp.websocket(ws)
        finally:
            await ws.close(1000)

    return app
