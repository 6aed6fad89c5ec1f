"""One SIGTERM stops the emulator CLIs cleanly: right after start, and with a request held by a
fault."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import sys
import time

import pytest


def _start(args: list[str], until: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [sys.executable, *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    while not lines or until not in lines[-1]:
        line = proc.stdout.readline()
        if not line:
            proc.kill()
            pytest.fail("the CLI ended before it was ready:\n" + "".join(lines))
        lines.append(line)
    return proc, lines


def _stops_on_one_sigterm(proc: subprocess.Popen[str]) -> str:
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("one SIGTERM did not stop the CLI within 15 s")
    assert proc.returncode == 0, out
    assert time.monotonic() - start < 8, "stopping took too long"
    assert "Traceback" not in out and " ERROR " not in out, out
    return out


def test_one_sigterm_stops_the_qseow_emulator_cli(certs):
    proc, _ = _start(
        [
            "-m",
            "qlikauth.emulator",
            "--certs",
            str(certs),
            "--qps-port",
            "0",
            "--hub-port",
            "0",
            "--virtual-proxy",
            "prefix=portal",
            "--log-level",
            "WARNING",
        ],
        "Press Ctrl-C",
    )
    assert "qlikauth emulator stopped." in _stops_on_one_sigterm(proc)


def test_one_sigterm_stops_the_cli_while_a_hang_holds_a_request(certs):
    proc, lines = _start(
        [
            "-m",
            "qlikauth.emulator",
            "--certs",
            str(certs),
            "--qps-port",
            "0",
            "--hub-port",
            "0",
            "--fault",
            "qps:hang",
            "--log-level",
            "WARNING",
        ],
        "Press Ctrl-C",
    )
    url = next(x.split("QPS API:")[1].split()[0] for x in lines if "QPS API:" in x)
    port = int(url.rsplit(":", 1)[1])
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(
            b"GET /qps/alive?xrfkey=abcdefghijklmnop HTTP/1.1\r\nHost: localhost\r\n"
            b"X-Qlik-Xrfkey: abcdefghijklmnop\r\n\r\n"
        )
        time.sleep(0.3)  # held by the hang
        _stops_on_one_sigterm(proc)


def test_one_sigterm_stops_the_cloud_emulator_cli(tmp_path):
    proc, _ = _start(
        [
            "-m",
            "qlikauth.emulator.cloud",
            "--certs",
            str(tmp_path),
            "--port",
            "0",
            "--log-level",
            "WARNING",
        ],
        "CA (verify=)",
    )
    _stops_on_one_sigterm(proc)
