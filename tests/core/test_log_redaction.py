"""RedactQuery: the access logs of real servers (Werkzeug, gunicorn) write no code, state,
SAMLRequest or ticket from a query string once it is installed, and do without it (the control)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from _support import free_port_number, stop_process

from qlikauth.logging import RedactQuery, redact_query

CODE = "Zq8mW2xT4kLpR7vN"
STATE = "st4te-Vk2Jd9Qw"
SAML = "fZJNb4MwDIb%2FCsq9JAgu4zTt"
QUERY = f"/oidc/callback?code={CODE}&state={STATE}&iss=https%3A%2F%2Fidp&SAMLRequest={SAML}"


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"GET {QUERY} HTTP/1.1", ["/oidc/callback?code=[redacted]", "iss=https%3A%2F%2Fidp"]),
        ("/qlik/login?target=https%3A%2F%2Fhub%2F%3FqlikTicket%3DAbCdEfGh12345678", ["target="]),
        ("https://hub/portal/hub/?QLIKTICKET=AbCdEfGh12345678", ["?QLIKTICKET=[redacted]"]),
        ("/slo?SAMLResponse=PHNhbWw&RelayState=xyz;Signature=abc", ["SAMLResponse=[redacted]"]),
    ],
)
def test_redact_query_takes_out_the_values(text, kept):
    out = redact_query(text)
    for secret in (CODE, STATE, SAML, "AbCdEfGh12345678", "PHNhbWw", "xyz"):
        assert secret not in out
    for part in kept:
        assert part in out
    assert redact_query("/qlik/login?next=/home&codec=h264") == "/qlik/login?next=/home&codec=h264"


def _werkzeug_log(caplog, install: bool) -> str:
    from werkzeug.serving import make_server

    flt = RedactQuery.install("werkzeug") if install else None
    server = make_server("127.0.0.1", 0, _app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.INFO, logger="werkzeug"):
            r = requests.get(f"http://127.0.0.1:{server.server_port}{QUERY}", timeout=10)
            assert r.status_code == 200
            deadline = time.monotonic() + 5
            while (
                not any(rec.name == "werkzeug" for rec in caplog.records)
                and time.monotonic() < deadline
            ):
                time.sleep(0.02)
    finally:
        server.shutdown()
        if flt is not None:
            logging.getLogger("werkzeug").removeFilter(flt)
    return "\n".join(rec.getMessage() for rec in caplog.records if rec.name == "werkzeug")


def test_werkzeug_access_log(caplog):
    leaked = _werkzeug_log(caplog, install=False)
    assert CODE in leaked and STATE in leaked  # the control: the test finds what leaks
    caplog.clear()
    text = _werkzeug_log(caplog, install=True)
    assert "/oidc/callback?code=[redacted]&state=[redacted]" in text
    assert CODE not in text and STATE not in text and SAML not in text


def _gunicorn_access_log(tmp_path: Path, install: bool) -> str:
    app = tmp_path / "tiny_app.py"
    app.write_text(
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'ok']\n"
    )
    access = tmp_path / f"access-{install}.log"
    conf = tmp_path / f"gunicorn-{install}.conf.py"
    # What docs/security.md tells integrators to put in gunicorn.conf.py.
    conf.write_text(
        f"accesslog = {str(access)!r}\n"
        + (
            "from qlikauth.logging import RedactQuery\nRedactQuery.install('gunicorn.access')\n"
            if install
            else ""
        )
    )
    port = free_port_number()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(conf),
            "-w",
            "1",
            "-b",
            f"127.0.0.1:{port}",
            "tiny_app:app",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = requests.get(f"http://127.0.0.1:{port}{QUERY}", timeout=5)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and proc.poll() is None, "gunicorn did not start"
                time.sleep(0.1)
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while not (access.exists() and "callback" in access.read_text()):
            assert time.monotonic() < deadline, "no access log line"
            time.sleep(0.1)
    finally:
        stop_process(proc)
    return access.read_text()


def test_gunicorn_access_log(tmp_path):
    leaked = _gunicorn_access_log(tmp_path, install=False)
    assert CODE in leaked  # the control
    text = _gunicorn_access_log(tmp_path, install=True)
    assert "code=[redacted]&state=[redacted]" in text
    assert CODE not in text and STATE not in text and SAML not in text


def test_mapping_arguments_are_redacted_too():
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, __file__, 1, "%(r)s %(s)s", None, None
    )
    record.args = {"r": f"GET {QUERY} HTTP/1.1", "s": 200, "U": "/oidc/callback"}
    assert RedactQuery().filter(record) is True
    assert CODE not in record.getMessage() and "[redacted]" in record.getMessage()
    extra = RedactQuery(extra=["apikey"])
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET %s", ("/a?apikey=k3y&code=1",), None
    )
    extra.filter(record)
    assert record.getMessage() == "GET /a?apikey=[redacted]&code=[redacted]"
