"""A real Debian ``redis-server`` for the tests: loopback only, no persistence, cleaned up.

Used by the ``redis_server`` / ``redis_url`` / ``redis_factory`` fixtures in ``tests/conftest.py``.
It speaks RESP over a plain socket, so the fixtures work without redis-py installed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from _support import free_port_number, stop_process

REDIS_SERVER = (
    os.environ.get("QLIKAUTH_REDIS_SERVER")
    or shutil.which("redis-server")
    or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
)


def resp_command(port: int, *args: str, timeout: float = 2.0) -> bytes:
    """Send one command to 127.0.0.1:port and return the raw first reply line."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


class RedisServer:
    """``redis-server`` on 127.0.0.1:port with its own temporary directory.

    No RDB snapshots, no AOF: nothing outlives ``stop()``. ``extra`` adds ``--name value``
    options (e.g. ``{"maxmemory": "1mb", "rename-command": ["GETDEL", ""]}``).
    """

    def __init__(
        self, port: int | None = None, extra: dict[str, str | list[str]] | None = None
    ) -> None:
        if REDIS_SERVER is None:
            raise FileNotFoundError("redis-server is not installed (Debian package 'redis-server')")
        self.port = port or free_port_number()
        self.extra = dict(extra or {})
        self.dir = Path(tempfile.mkdtemp(prefix="qlikauth-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            REDIS_SERVER,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.dir),
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--loglevel",
            "warning",
            "--logfile",
            str(self.dir / "redis.log"),
        ]
        for name, value in self.extra.items():
            args += [f"--{name}", *([value] if isinstance(value, str) else value)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.proc.returncode}: {self.log()[-2000:]}"
                )
            try:
                if resp_command(self.port, "PING", timeout=0.5).startswith(b"+PONG"):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"redis-server did not answer on 127.0.0.1:{self.port}")

    def log(self) -> str:
        p = self.dir / "redis.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def flush(self) -> None:
        assert resp_command(self.port, "FLUSHALL").startswith(b"+OK")

    def stop(self) -> None:
        """Stop the server (the directory stays until :meth:`cleanup`, so it can start again)."""
        stop_process(self.proc)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
