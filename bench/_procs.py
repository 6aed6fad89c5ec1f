"""Child processes for the benchmarks: the emulator (its own process, so it never shares the
client's GIL) and a memory worker, both driven over a multiprocessing pipe."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "integrations")):
    if p not in sys.path:
        sys.path.insert(0, p)


def rss_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc."""
    out = {"rss_kib": 0, "hwm_kib": 0}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    out["rss_kib"] = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    out["hwm_kib"] = int(line.split()[1])
    except OSError:
        pass
    return out


def emulator_main(conn: Any, kwargs: dict[str, Any], proxies: list[dict[str, Any]]) -> None:
    """Run an Emulator until told to stop; answer 'stats' requests with its counters and RSS."""
    import logging

    logging.disable(logging.CRITICAL)  # the hub logs every redemption at INFO
    from qlikauth.emulator import Emulator, VirtualProxy

    emu = Emulator(virtual_proxies=[VirtualProxy(**p) for p in proxies], **kwargs)
    try:
        emu.start()
    except BaseException as exc:  # report instead of hanging the parent
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        return
    conn.send({"qps_url": emu.qps_url, "hub_url": emu.hub_url, "certs_dir": str(emu.certs_dir),
               "hub_urls": {p["prefix"]: emu.hub_url_for(p["prefix"]) for p in proxies},
               "pid": os.getpid()})
    try:
        while True:
            try:
                cmd = conn.recv()
            except EOFError:
                break
            if cmd == "stats":
                st = emu.state
                conn.send({"qps_requests": st.qps_requests, "connections_accepted": st.connections_accepted,
                           "tickets_issued": st.tickets_issued, "tickets_redeemed": st.tickets_redeemed,
                           "outstanding_tickets": _value(st, "outstanding_tickets"), **rss_kib()})
            elif cmd == "stop":
                break
    finally:
        emu.stop()
        try:
            conn.send("stopped")
        except OSError:
            pass


def _value(obj: Any, name: str) -> Any:
    v = getattr(obj, name)
    return v() if callable(v) else v


class EmulatorProcess:
    """An Emulator in a spawned child process (``with EmulatorProcess(...) as emu``)."""

    def __init__(self, proxies: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        import multiprocessing as mp

        self._ctx = mp.get_context("spawn")
        self._parent, child = self._ctx.Pipe()
        kwargs.setdefault("host", "localhost")
        kwargs.setdefault("bind", "127.0.0.1")
        self.proxies = proxies or []
        self.proc = self._ctx.Process(target=emulator_main, args=(child, kwargs, self.proxies), daemon=True)
        self.proc.start()
        child.close()
        if not self._parent.poll(60):
            self.close()
            raise RuntimeError("the emulator process did not start within 60 s")
        info = self._parent.recv()
        if "error" in info:
            self.close()
            raise RuntimeError(f"the emulator process failed: {info['error']}")
        self.qps_url: str = info["qps_url"]
        self.hub_url: str = info["hub_url"]
        self.hub_urls: dict[str, str] = info["hub_urls"]
        self.certs_dir = Path(info["certs_dir"])
        self.pid: int = info["pid"]

    def stats(self) -> dict[str, int]:
        self._parent.send("stats")
        return self._parent.recv()

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self._parent.send("stop")
                self._parent.poll(10)
            except OSError:
                pass
            self.proc.join(10)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self._parent.close()

    def __enter__(self) -> EmulatorProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def memory_worker(conn: Any, qps_url: str, certs_dir: str, checkpoints: list[int], threads: int) -> None:
    """Request tickets with one QpsClient from ``threads`` threads; report RSS at each checkpoint."""
    import threading

    from qlikauth import QlikUser, QpsClient

    client = QpsClient(qps_url, certs_dir, pool_maxsize=threads)
    users = [QlikUser("BENCH", f"user{i:03d}", [("group", "Sales")]) for i in range(100)]
    done = 0
    lock = threading.Lock()
    for target in checkpoints:
        started = time.perf_counter()
        todo = target - done
        per = [todo // threads + (1 if i < todo % threads else 0) for i in range(threads)]

        def work(n: int, offset: int) -> None:
            for i in range(n):
                client.request_ticket(users[(offset + i) % 100])

        ts = [threading.Thread(target=work, args=(n, i * 7)) for i, n in enumerate(per)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        with lock:
            done = target
        conn.send({"tickets": done, "seconds": time.perf_counter() - started, **rss_kib()})
    client.close()
    conn.send("done")


def canned_main(conn: Any, certs_dir: str) -> None:
    """A trivial mutual-TLS server answering every request with one canned ticket (the bench's yardstick).

    One thread per connection, blocking sockets, one ``sendall`` per answer: what any server
    costs at least. ``bench_tickets`` divides the floor's tickets/s against the emulator by its
    tickets/s against this, in the same run (the emulator must not be what a benchmark measures).
    """
    import socket
    import ssl
    import threading

    d = Path(certs_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(d / "root.pem"))
    body = (b'{"UserDirectory":"BENCH","UserId":"jdoe","Attributes":[],'
            b'"Ticket":"cannedticket0000","TargetUri":null}')
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)

    def serve(raw: socket.socket) -> None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                buf = b""
                while True:
                    while b"\r\n\r\n" not in buf:
                        data = tls.recv(65536)
                        if not data:
                            return
                        buf += data
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buf) < length:
                        data = tls.recv(65536)
                        if not data:
                            return
                        buf += data
                    buf = buf[length:]
                    tls.sendall(answer)
        except (OSError, ValueError):
            return

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    conn.send({"port": listener.getsockname()[1], "pid": os.getpid()})
    try:
        conn.recv()
    except EOFError:
        pass
    listener.close()


class CannedProcess:
    """:func:`canned_main` in a spawned child process (``with CannedProcess(certs_dir) as c: c.port``)."""

    def __init__(self, certs_dir: str | Path) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=canned_main, args=(child, str(certs_dir)), daemon=True)
        self.proc.start()
        child.close()
        if not self._parent.poll(60):
            self.close()
            raise RuntimeError("the canned-ticket server did not start within 60 s")
        self.port: int = self._parent.recv()["port"]

    def close(self) -> None:
        if self.proc.is_alive():
            try:
                self._parent.send("stop")
            except OSError:
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self._parent.close()

    def __enter__(self) -> CannedProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
