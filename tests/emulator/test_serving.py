"""The serving helper (uvicorn over a given SSLContext, in a thread) and the emulator extra."""

from __future__ import annotations

import socket
import ssl

import pytest

from qlikauth.emulator.serving import BackgroundServer


async def _hello(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"hello {scope['path']}".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _server_context(certs, *, require_client: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs / "server.pem", certs / "server_key.pem")
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=str(certs / "root.pem"))
    return ctx


def _get(port, certs, path="/x", *, client_cert=True) -> bytes:
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    if client_cert:
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        out = b""
        while chunk := tls.recv(65536):
            out += chunk
        return out


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_serves_an_asgi_app_over_the_given_context_and_stops_cleanly(certs, loop):
    connects = []
    srv = BackgroundServer(
        _hello,
        _server_context(certs, require_client=True),
        name="t",
        on_connect=lambda: connects.append(1),
        loop=loop,
    )
    if loop == "asyncio":
        assert srv.loop_name == "asyncio"  # asyncio's own loop: what runs where uvloop does not
    with srv:
        out = _get(srv.port, certs, "/a/b")
        assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"hello /a/b")
        assert connects == [1]
        # mutual TLS as the context says: no client certificate, an alert (not a bare close)
        with pytest.raises(ssl.SSLError, match="certificate required|CERTIFICATE_REQUIRED"):
            _get(srv.port, certs, client_cert=False)
        assert connects == [1]
    assert not srv.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()
    srv.stop()  # idempotent


@pytest.mark.parametrize("loop", ["asyncio", "auto"])
def test_refuse_connections_and_listen_again_on_the_same_port(certs, loop):
    with BackgroundServer(
        _hello, _server_context(certs, require_client=False), name="t", loop=loop
    ) as srv:
        port = srv.port
        srv.refuse_connections()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        srv.refuse_connections(False)
        assert _get(port, certs, client_cert=False).startswith(b"HTTP/1.1 200")
        srv.refuse_connections()  # and again: each listening period is its own uvicorn Server
        srv.refuse_connections(False)
        assert _get(port, certs, client_cert=False).startswith(b"HTTP/1.1 200")


# -- how requests reach the app: once complete, in the protocol's own call; a task only if it
# waits --
async def _echo(scope, receive, send):
    """Answers with the body it read (and how many receive() calls that took)."""
    if scope["type"] != "http":
        return
    body, calls = b"", 0
    while True:
        msg = await receive()
        calls += 1
        if msg["type"] == "http.disconnect":
            _LEFT.append(scope["path"])
            return
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    out = f"{len(body)} {calls} ".encode() + body[:32]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(out)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": out})


_LEFT: list[str] = []


def _tls(port, certs):
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


def _answer(tls) -> bytes:
    """One answer with a Content-Length body, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            v
            for n, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
            if n.strip().lower() == b"content-length"
        )
    )
    while len(body) < length:
        body += tls.recv(65536)
    return head.split(b"\r\n")[0] + b" | " + body


def test_a_body_sent_after_its_head_reaches_the_app_whole(certs):
    import time

    with (
        BackgroundServer(_echo, _server_context(certs, require_client=False), name="t") as srv,
        _tls(srv.port, certs) as tls,
    ):
        for i in range(3):  # kept alive: each request starts from a clean state
            body = f"body number {i}".encode()
            tls.sendall(
                b"POST /late HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
            )
            time.sleep(0.1)  # the head alone first: its own TLS record, its own read
            tls.sendall(body[:4])
            time.sleep(0.05)
            tls.sendall(body[4:])
            out = _answer(tls)  # the whole body, in however many receive() messages it came
            assert out.startswith(
                b"HTTP/1.1 200 OK | " + f"{len(body)} ".encode()
            ) and out.endswith(body)


def test_a_chunked_body_and_one_over_the_read_buffer_stream_to_the_app(certs):
    big = (
        bytes(range(256)) * 800
    )  # 200 KiB: several reads of the 64 KiB buffer, flow control on the way
    with (
        BackgroundServer(
            _echo, _server_context(certs, require_client=False), name="t", max_body=1 << 20
        ) as srv,
        _tls(srv.port, certs) as tls,
    ):
        tls.sendall(
            b"POST /big HTTP/1.1\r\nHost: localhost\r\nContent-Length: "
            + str(len(big)).encode()
            + b"\r\n\r\n"
            + big
        )
        out = _answer(tls)
        assert out.startswith(
            b"HTTP/1.1 200 OK | " + str(len(big)).encode() + b" "
        ) and out.endswith(big[:32])
        tls.sendall(
            b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        import time

        time.sleep(0.1)
        tls.sendall(b"6\r\n world\r\n0\r\n\r\n")
        out = _answer(tls)
        assert out.startswith(b"HTTP/1.1 200 OK | 11 ") and out.endswith(b"hello world")


def test_expect_100_continue_gets_its_interim_answer_before_the_body(certs):
    with (
        BackgroundServer(_echo, _server_context(certs, require_client=False), name="t") as srv,
        _tls(srv.port, certs) as tls,
    ):
        tls.sendall(
            b"POST /ask HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: "
            b"100-continue\r\n\r\n"
        )
        assert tls.recv(65536).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")  # no body sent yet
        tls.sendall(b"hello")
        assert _answer(tls) == b"HTTP/1.1 200 OK | 5 1 hello"


def test_a_client_leaving_before_its_body_is_complete_is_seen_by_the_app(certs):
    import time

    _LEFT.clear()
    with BackgroundServer(_echo, _server_context(certs, require_client=False), name="t") as srv:
        with _tls(srv.port, certs) as tls:
            tls.sendall(b"POST /gone HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nhal")
            time.sleep(0.1)
        for _ in range(50):
            if _LEFT:
                break
            time.sleep(0.05)
        assert _LEFT == ["/gone"]


async def _waits(scope, receive, send):
    """Suspends on a future (result, exception or a bare yield) before it answers: a task finishes
    it."""
    import asyncio

    if scope["type"] != "http":
        return
    await receive()
    loop = asyncio.get_running_loop()
    how = scope["path"]
    await asyncio.sleep(0)  # a bare yield first
    fut = loop.create_future()
    if how == "/fails":
        loop.call_later(0.02, fut.set_exception, LookupError("from the future"))
    else:
        loop.call_later(0.02, fut.set_result, "in time")
    try:
        text = await fut
    except LookupError as exc:
        if how == "/fails":
            raise RuntimeError("the app fails after waiting") from exc
        text = str(exc)
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def test_an_app_that_waits_is_finished_by_a_task(certs):
    with (
        BackgroundServer(_waits, _server_context(certs, require_client=False), name="t") as srv,
        _tls(srv.port, certs) as tls,
    ):
        tls.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert _answer(tls) == b"HTTP/1.1 200 OK | in time"
        tls.sendall(b"GET /ok HTTP/1.1\r\nHost: localhost\r\n\r\n")  # the same connection, again
        assert _answer(tls) == b"HTTP/1.1 200 OK | in time"
        # an exception thrown into the waiting app reaches it; what it raises is uvicorn's 500
        tls.sendall(b"GET /fails HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert _answer(tls) == b"HTTP/1.1 500 Internal Server Error | Internal Server Error"


async def _ws_or_http(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})
        return
    await _hello(scope, receive, send)


@pytest.mark.parametrize(
    "extra,status",
    [
        (b"", b"101"),
        (b"Host: evil.example\r\n", b"400"),  # two Host headers
        (b"Content-Length: 0\r\nTransfer-Encoding: chunked\r\n", b"400"),  # the smuggling shape
    ],
)
def test_strict_checks_hold_for_requests_and_websocket_handshakes(certs, extra, status):
    with BackgroundServer(
        _ws_or_http, _server_context(certs, require_client=False), name="t"
    ) as srv:
        with _tls(srv.port, certs) as tls:  # websocket handshake: refused before the upgrade
            tls.sendall(
                b"GET /ws HTTP/1.1\r\nHost: localhost\r\n" + extra + b"Upgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            assert tls.recv(65536).startswith(b"HTTP/1.1 " + status)
        with _tls(srv.port, certs) as tls:  # the same headers on a plain request
            tls.sendall(b"GET /plain HTTP/1.1\r\nHost: localhost\r\n" + extra + b"\r\n")
            answer = _answer(tls)
            assert answer.startswith(b"HTTP/1.1 " + (b"200" if status == b"101" else status))
