"""Child processes for the benchmarks: the emulator (its own process, so it never shares the
client's GIL) and a memory worker, both driven over a multiprocessing pipe; and what the web
benchmarks share: a portal on gunicorn, a sign-in storm (every user at once) and its figures."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(ROOT / "integrations")):
    if p not in sys.path:
        sys.path.insert(0, p)


def load_module(path: Path, name: str) -> Any:
    """The Python file at ``path`` imported as module ``name`` (the examples are files, not
    packages)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


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
    conn.send(
        {
            "qps_url": emu.qps_url,
            "hub_url": emu.hub_url,
            "certs_dir": str(emu.certs_dir),
            "hub_urls": {p["prefix"]: emu.hub_url_for(p["prefix"]) for p in proxies},
            "pid": os.getpid(),
        }
    )

    def stats() -> dict[str, Any]:
        st = emu.state
        return {
            "qps_requests": st.qps_requests,
            "connections_accepted": st.connections_accepted,
            "tickets_issued": st.tickets_issued,
            "tickets_redeemed": st.tickets_redeemed,
            "outstanding_tickets": _value(st, "outstanding_tickets"),
            **rss_kib(),
        }

    try:
        serve_commands(conn, stats)
    finally:
        emu.stop()
        try:
            conn.send("stopped")
        except OSError:
            pass


def serve_commands(conn: Any, stats: Callable[[], dict[str, Any]]) -> None:
    """The child's side of :class:`ChildProcess`: answer ``"stats"`` with ``stats()`` until the
    parent says ``"stop"`` or goes away."""
    while True:
        try:
            cmd = conn.recv()
        except EOFError:
            return
        if cmd == "stats":
            conn.send(stats())
        elif cmd == "stop":
            return


def _value(obj: Any, name: str) -> Any:
    v = getattr(obj, name)
    return v() if callable(v) else v


class ChildProcess:
    """``target(conn, *args)`` in a spawned child process, driven over a pipe (``with ... as p``).

    The child sends one dict when it is ready (``{"error": ...}`` when it could not start), kept
    as ``info``; then it answers ``"stats"`` (:meth:`stats`) until it gets ``"stop"``
    (:func:`serve_commands`). :meth:`close` stops it, terminated if it does not go.
    """

    def __init__(self, what: str, target: Callable[..., None], *args: Any) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._parent, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()
        if not self._parent.poll(60):
            self.close()
            raise RuntimeError(f"{what} did not start within 60 s")
        self.info: dict[str, Any] = self._parent.recv()
        if "error" in self.info:
            self.close()
            raise RuntimeError(f"{what} failed: {self.info['error']}")

    def stats(self) -> dict[str, Any]:
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

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class EmulatorProcess(ChildProcess):
    """An Emulator in a spawned child process (``with EmulatorProcess(...) as emu``)."""

    def __init__(self, proxies: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("host", "localhost")
        kwargs.setdefault("bind", "127.0.0.1")
        self.proxies = proxies or []
        super().__init__("the emulator process", emulator_main, kwargs, self.proxies)
        info = self.info
        self.qps_url: str = info["qps_url"]
        self.hub_url: str = info["hub_url"]
        self.hub_urls: dict[str, str] = info["hub_urls"]
        self.certs_dir = Path(info["certs_dir"])
        self.pid: int = info["pid"]


def memory_worker(
    conn: Any, qps_url: str, certs_dir: str, checkpoints: list[int], threads: int
) -> None:
    """Request tickets with one QpsClient from ``threads`` threads; report RSS at each
    checkpoint."""
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


#: The answer body of both canned-ticket servers.
CANNED_TICKET = (
    b'{"UserDirectory":"BENCH","UserId":"jdoe","Attributes":[],'
    b'"Ticket":"cannedticket0000","TargetUri":null}'
)


def _site_server_context(certs_dir: str) -> Any:
    """The QPS port's TLS settings from the site's certificates: server.pem, a client certificate
    required against root.pem, TLS >= 1.2 (what the emulator's QPS port uses)."""
    import ssl

    d = Path(certs_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(d / "server.pem", d / "server_key.pem")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(d / "root.pem"))
    return ctx


def canned_main(conn: Any, certs_dir: str) -> None:
    """A trivial mutual-TLS server answering every request with one canned ticket (the bench's
    yardstick).

    One thread per connection, blocking sockets, one ``sendall`` per answer: what any server
    costs at least. ``bench_tickets`` divides the floor's tickets/s against the emulator by its
    tickets/s against this, in the same run (the emulator must not be what a benchmark measures).
    """
    import socket

    ctx = _site_server_context(certs_dir)
    body = CANNED_TICKET
    answer = (
        b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
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
        serve_commands(conn, rss_kib)
    finally:
        listener.close()


class CannedProcess(ChildProcess):
    """:func:`canned_main` (``stack=False``) or :func:`stack_canned_main` in a spawned child process
    (``with CannedProcess(certs_dir) as c: c.port``)."""

    def __init__(self, certs_dir: str | Path, *, stack: bool = False) -> None:
        what = (
            "the canned-ticket ASGI app on the emulator's server"
            if stack
            else "the canned-ticket server"
        )
        super().__init__(what, stack_canned_main if stack else canned_main, str(certs_dir))
        self.port: int = self.info["port"]


def stack_canned_main(conn: Any, certs_dir: str) -> None:
    """The emulator's own server stack (``BackgroundServer``: uvicorn, httptools, uvloop, mutual
    TLS)
    serving an ASGI app that answers every request with the canned ticket: what the maintained
    server costs by itself, without any of the emulator's Qlik behaviour (reported beside the
    emulator, in the same run)."""
    import logging

    logging.disable(logging.CRITICAL)
    from qlikauth.emulator.serving import BackgroundServer

    ctx = _site_server_context(certs_dir)
    body = CANNED_TICKET
    headers = [
        (b"content-type", b"application/json; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await receive()
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with BackgroundServer(app, ctx, name="canned") as srv:
        conn.send({"port": srv.port, "pid": os.getpid()})
        serve_commands(conn, rss_kib)


def run_standalone(
    description: str,
    section: Callable[[Any], dict[str, Any]],
    rows: Callable[[dict[str, Any]], list[str]],
    argv: list[str] | None = None,
    head: tuple[str, ...] = (),
) -> int:
    """``main()`` of a benchmark file run on its own: ``--quick`` (bench/run.py's quick counts) and
    ``--json FILE``; runs ``section`` and prints ``head`` and its table ``rows``."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--storm-users", type=int, default=None, metavar="N")
    args = ap.parse_args(argv)
    args.rounds, args.slice = (2, 0.15) if args.quick else (9, 0.6)
    args.storm_users = args.storm_users or (20 if args.quick else 200)
    result = section(args)
    print("\n".join([*head, *rows(result)]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# -- the web benchmarks' portal on gunicorn, and their sign-in storms -----------------------
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """``gunicorn -w W --threads T`` serving ``app`` (``module:attr`` in bench/) on 127.0.0.1:port.

    ``with Gunicorn(...) as g`` starts it and waits until ``GET <url><ready_path>`` answers 200
    (within ``ready_within`` seconds, else RuntimeError with the end of gunicorn's stderr);
    leaving the block terminates it (killed if it is not gone within 15 s).

    ``keepalive`` is gunicorn's ``--keep-alive``: 0 (what docs/troubleshooting.md recommends)
    answers every request with ``Connection: close``, so no client ever sends on a
    connection gunicorn is closing for idleness (with gunicorn's default, 2 s, a storm lost a few
    sign-ins that way: ``RemoteDisconnected`` or a reset at the OIDC callback).
    """

    def __init__(
        self,
        app: str,
        port: int,
        *,
        workers: int,
        threads: int,
        env: dict[str, str],
        ready_path: str,
        timeout: int = 60,
        ready_within: float = 60.0,
        keepalive: int = 0,
    ) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "--timeout",
            str(timeout),
            "--keep-alive",
            str(keepalive),
            app,
        ]
        self.env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), str(ROOT / "integrations")]),
        }
        self.ready_path = ready_path
        self.ready_within = ready_within
        self.proc: Any = None

    def __enter__(self) -> Gunicorn:
        self.start()
        return self.wait_ready()

    def start(self) -> Gunicorn:
        """Start gunicorn without waiting (several portals boot side by side); then
        :meth:`wait_ready`, and :meth:`close` in any case."""
        import subprocess
        import tempfile

        # A file, not a pipe: nobody reads a pipe while the benchmark runs, and once its 64 KiB
        # buffer is full every worker blocks in its next log write (a storm of warnings hangs
        # the portal; the harness must not be the thing that hangs).
        self.stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=str(HERE), stdout=subprocess.DEVNULL, stderr=self.stderr
        )
        self._started = time.monotonic()
        return self

    def wait_ready(self) -> Gunicorn:
        """Wait until it answers 200 at ``ready_path`` (``ready_within`` seconds from start)."""
        import requests

        try:
            deadline = self._started + self.ready_within
            while True:
                try:
                    if requests.get(self.url + self.ready_path, timeout=5).status_code == 200:
                        return self
                except requests.RequestException:
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.log_tail()
                    raise RuntimeError(f"gunicorn did not start: {err}")
                time.sleep(0.2)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        import subprocess

        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.stderr.close()
        self.proc = None

    def log_tail(self, chars: int = 2000) -> str:
        """The end of gunicorn's stderr (its workers' log) so far."""
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-chars:]

    def __exit__(self, *exc: Any) -> None:
        self.close()


def storm(
    users: int, sign_in: Callable[[int, threading.Barrier], None], join_within: float
) -> float:
    """``sign_in(i, barrier)`` for every user at once, each in its own thread; the wall seconds.

    Each ``sign_in`` does what may come before the storm, then ``barrier.wait()``, then the
    timed part (it must wait on the barrier exactly once, also when its preparation failed).
    The clock starts when every thread has reached the barrier; each thread is joined for at
    most ``join_within`` seconds.
    """
    barrier = threading.Barrier(users + 1)
    ts = [threading.Thread(target=sign_in, args=(i, barrier), daemon=True) for i in range(users)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join(join_within)
    return time.perf_counter() - t0


def storm_figures(users: int, results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    """The figures every storm reports from its per-user results (``ok``, ``seconds``,
    ``error``)."""
    import statistics

    from run import pct

    done = [r for r in results if r.get("ok")]
    # a user whose thread was still running when its join timed out has no error of its own
    errors = [r.get("error") or "not finished in time" for r in results if not r.get("ok")]
    lat = [r["seconds"] for r in done]
    return {
        "users": users,
        "completed": len(done),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 3),
        "sign_ins_per_s": round(len(done) / wall, 1) if wall else 0.0,
        "p50_ms": round(pct(lat, 50) * 1000, 1),
        "p99_ms": round(pct(lat, 99) * 1000, 1),
        "mean_ms": round(statistics.mean(lat) * 1000, 1) if lat else 0.0,
    }


def hub_with_ticket(s: Any, hub: str, root: str, timeout: float, step: list[str]) -> Any:
    """A browser at the hub URL the portal redirected it to (``...?qlikTicket=...``): Qlik answers
    the resource itself with the proxy session cookie (200, no redirect), then the hub page
    without the ticket, as JSON with that cookie (200): that response, whose body says who the
    hub thinks the browser is. ``step[0]`` names the step under way (for the error report)."""
    step[0] = "hub redeems the ticket"
    r = s.get(hub, verify=root, allow_redirects=False, timeout=timeout)
    assert r.status_code == 200 and r.cookies, f"hub redeem {r.status_code}"
    step[0] = "hub page"
    r = s.get(
        hub.split("?", 1)[0],
        verify=root,
        headers={"Accept": "application/json"},
        allow_redirects=False,
        timeout=timeout,
    )
    assert r.status_code == 200, f"hub {r.status_code}"
    return r
