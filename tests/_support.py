"""What many test modules share: skip-or-fail, a free port, waiting until something listens,
stopping a process a test started.

Imported as ``_support`` (tests/ is on sys.path: tests/conftest.py lives there); the
fixtures in tests/conftest.py, tests/_redis_server.py, tests/nginx/helpers.py and the
directory conftests build on it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def skip_or_fail(reason: str) -> None:
    """Skip, unless QLIKAUTH_REQUIRE_ALL is set (CI): then fail, so nothing is silently left out."""
    import pytest  # here, not above: bench/ imports this module through tests/_redis_server.py

    if os.environ.get("QLIKAUTH_REQUIRE_ALL"):
        pytest.fail(f"{reason} (QLIKAUTH_REQUIRE_ALL is set, so this fails instead of skipping)")
    pytest.skip(reason)


def free_port_number() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port (RuntimeError if ``proc``
    exits first)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


def stop_process(
    proc: subprocess.Popen | None, *, group: bool = False, grace: float = 10.0
) -> None:
    """Terminate a process we started if it still runs, and kill it when it is not gone within
    ``grace`` seconds. ``group=True``: its whole process group (started with
    ``start_new_session=True``), so its children go too."""
    if proc is None or proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    except ProcessLookupError:
        return
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(5)


def load_example(directory: Path, filename: str, name: str) -> Any:
    """``directory/filename`` (an example: a file, not a package) imported as module ``name``,
    with ``directory`` on sys.path while it loads (its own imports are its neighbours)."""
    import importlib.util

    sys.path.insert(0, str(directory))
    try:
        spec = importlib.util.spec_from_file_location(name, directory / filename)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(directory))


def concurrent_takes(store: Any, key: str, threads: int) -> int:
    """How many of ``threads`` threads, released at once, got ``key`` from ``store.take``: a
    one-time value (OIDC state, a SAML request id) must give exactly 1."""
    won: list[int] = []
    barrier = threading.Barrier(threads)

    def grab() -> None:
        barrier.wait()
        if store.take(key) is not None:
            won.append(1)

    ts = [threading.Thread(target=grab) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return len(won)


def sleep_past_identity_cache(cached_at: float, seconds: int) -> None:
    """Sleep until nginx's identity cache entry made no earlier than ``cached_at`` (monotonic)
    has expired.

    nginx stamps a cache entry with its whole-second clock: an entry kept ``seconds`` is served
    while that clock reads at most ``floor(made) + seconds``, so for up to ``seconds + 1`` real
    seconds. Waiting only ``seconds`` makes a test fail whenever the entry was made early in a
    second.
    """
    left = cached_at + seconds + 1.25 - time.monotonic()
    if left > 0:
        time.sleep(left)
