"""A minimal RFC 6455 websocket endpoint for the emulated engine URL ``/{prefix}/app/{appid}``.

Enough of the protocol to show that a signed-in session (or the identity header)
reaches the engine: the handshake, one greeting, echoing text and binary messages,
fragments, ping/pong and the closing handshake. No extensions, no dependency.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import socket
import ssl
import struct
from typing import Any

from ._http import Connection, Request, Response

log = logging.getLogger("qlikauth.emulator")

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Larger messages are refused with close code 1009.
MAX_MESSAGE = 1 << 20

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def is_upgrade(req: Request) -> bool:
    """True when ``req`` asks for a websocket."""
    return (req.header("Upgrade") or "").lower() == "websocket"


def handshake_problem(req: Request) -> Response | None:
    """None when the opening handshake is well formed, else the answer to give."""
    if req.method != "GET" or "upgrade" not in req.tokens("Connection"):
        return Response.text(400, "A websocket handshake is a GET with 'Connection: Upgrade'.\n", close=True)
    if req.header("Sec-WebSocket-Version") != "13":
        return Response.text(426, "Only websocket version 13 is supported.\n",
                             headers=[("Sec-WebSocket-Version", "13")], close=True)
    key = req.header("Sec-WebSocket-Key") or ""
    try:
        ok = len(base64.b64decode(key, validate=True)) == 16
    except (ValueError, TypeError):
        ok = False
    if not ok:
        return Response.text(400, "Sec-WebSocket-Key must be 16 bytes, base64-encoded.\n", close=True)
    return None


def accept_value(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` value for ``key``."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")  # noqa: S324 - RFC 6455


def frame(opcode: int, payload: bytes) -> bytes:
    """One unmasked, final server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


class WebSocketSession:
    """One open websocket; :meth:`run` serves it until it closes."""

    def __init__(self, conn: Connection, greeting: dict[str, Any]) -> None:
        self.conn = conn
        self.greeting = greeting
        self.closed = False

    def send(self, opcode: int, payload: bytes) -> None:
        """Send one frame (thread-safe)."""
        with self.conn.write_lock:
            self.conn.sock.sendall(frame(opcode, payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake (used when the proxy session ends: Qlik tears it down)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError, ssl.SSLError):
            self.send(OP_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:120])
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.conn.sock, socket.SHUT_RDWR)

    def _read_frame(self) -> tuple[bool, int, bytes] | None:
        head = self.conn.read_exact(2)
        if head is None:
            return None
        b0, b1 = head
        if b0 & 0x70:
            raise _Protocol(1002, "reserved bits set")
        if not b1 & 0x80:
            raise _Protocol(1002, "client frames must be masked")
        n = b1 & 0x7F
        if n == 126:
            ext = self.conn.read_exact(2)
            if ext is None:
                return None
            n = struct.unpack("!H", ext)[0]
        elif n == 127:
            ext = self.conn.read_exact(8)
            if ext is None:
                return None
            n = struct.unpack("!Q", ext)[0]
        if n > MAX_MESSAGE:
            raise _Protocol(1009, "message too big")
        mask = self.conn.read_exact(4)
        data = self.conn.read_exact(n) if n else b""
        if mask is None or data is None:
            return None
        if n:
            # XOR through big integers: fast enough without numpy.
            m = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
        return bool(b0 & 0x80), b0 & 0x0F, data

    def run(self) -> None:
        """Greet, then echo until the client closes or the session ends."""
        try:
            self.send(OP_TEXT, json.dumps(self.greeting, ensure_ascii=False).encode("utf-8"))
            message: bytearray | None = None
            message_op = OP_TEXT
            while not self.closed:
                got = self._read_frame()
                if got is None:
                    return
                fin, op, data = got
                if op >= 0x8:
                    if not fin or len(data) > 125:
                        raise _Protocol(1002, "bad control frame")
                    if op == OP_PING:
                        self.send(OP_PONG, data)
                    elif op == OP_CLOSE:
                        code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1000
                        self.closed = True
                        with contextlib.suppress(OSError, ssl.SSLError):
                            self.send(OP_CLOSE, struct.pack("!H", code) if len(data) >= 2 else b"")
                        return
                    elif op != OP_PONG:
                        raise _Protocol(1002, "unknown control opcode")
                    continue
                if op == OP_CONT:
                    if message is None:
                        raise _Protocol(1002, "continuation without a message")
                    message += data
                elif op in (OP_TEXT, OP_BINARY):
                    if message is not None:
                        raise _Protocol(1002, "new message inside a fragmented one")
                    message, message_op = bytearray(data), op
                else:
                    raise _Protocol(1002, "unknown opcode")
                if len(message) > MAX_MESSAGE:
                    raise _Protocol(1009, "message too big")
                if fin:
                    payload = bytes(message)
                    message = None
                    if message_op == OP_TEXT:
                        try:
                            payload.decode("utf-8")
                        except UnicodeDecodeError:
                            raise _Protocol(1007, "text message is not UTF-8") from None
                    self.send(message_op, payload)
        except _Protocol as exc:
            log.debug("websocket protocol error: %s", exc.reason)
            self.close(exc.code, exc.reason)
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.closed = True


class _Protocol(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
