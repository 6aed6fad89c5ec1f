"""End to end with Django: the example Django portal's ``/qlik/header-auth`` behind real nginx.

The same shape as ``test_e2e.py`` (which drives the Flask portal), with ``django_qlikauth``
deciding who: ``examples/django_portal/run.py`` runs as a real server process (Django auth,
``QLIKAUTH_HEADER_*`` from the environment, plain http on loopback), the generated nginx
config asks it on every request, and the emulator's header virtual proxy records which
identity each request carried (``emu.state.header_log_for``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from _support import free_port_number as free_port
from _support import wait_port

from qlikauth.emulator import Emulator, VirtualProxy

from .conftest import HEADER, PREFIX, front_block
from .helpers import raw_request, status_of

pytestmark = pytest.mark.nginx

ROOT = Path(__file__).resolve().parents[2]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@pytest.fixture(scope="module")
def stack(certs, start_nginx, tmp_path_factory):
    """(emulator, portal origin, nginx port): emulator -> nginx -> Django portal, all on 127.0.0.1."""
    emu = Emulator(certs_dir=certs, host="localhost", bind="127.0.0.1", virtual_proxies=[
        VirtualProxy(PREFIX, method="header-static", header_name=HEADER, header_user_directory="PORTAL")])
    emu.__enter__()
    portal_port, nginx_port = free_port(), free_port()
    portal = f"http://localhost:{portal_port}"
    log_path = tmp_path_factory.mktemp("django-header-portal") / "portal.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PORTAL_PORT": str(portal_port), "PORTAL_BIND": "127.0.0.1",
           "PORTAL_TLS": "0", "PORTAL_DB": str(log_path.parent / "db.sqlite3"),
           "QLIKAUTH_QPS_NODES": emu.qps_url, "QLIKAUTH_CERTS": str(certs), "QLIKAUTH_VIRTUAL_PROXY": PREFIX,
           "QLIKAUTH_HUB_URL": f"https://localhost:{nginx_port}/{PREFIX}/hub/",
           # header authentication only: no ticket or proxy session is ever asked for
           "QLIKAUTH_MODE": "ticket", "QLIKAUTH_HEADER_NAME": HEADER, "QLIKAUTH_HEADER_USER_DIRECTORY": "PORTAL"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "examples/django_portal/run.py"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_port(portal_port, proc, timeout=60)
        except Exception:
            raise RuntimeError(f"the Django portal did not start:\n{log_path.read_text()[-4000:]}") from None
        start_nginx(front_block(certs, portal_port, [emu.hub_url], nginx_port,
                                login_url=f"{portal}/accounts/login/"), nginx_port)
        yield emu, portal, nginx_port
    finally:
        _stop(proc)
        emu.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def _fresh_emulator(stack):
    stack[0].state.clear()


def _sign_in(stack, user: str) -> requests.Session:
    """Sign in with Django's LoginView, as a browser would (CSRF token from the form)."""
    _, portal, _ = stack
    s = requests.Session()
    s.trust_env = False  # REQUESTS_CA_BUNDLE would override s.verify
    s.verify = str(Path(stack[0].certs_dir) / "root.pem")
    page = s.get(f"{portal}/accounts/login/", timeout=5).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = s.post(f"{portal}/accounts/login/", data={"csrfmiddlewaretoken": token, "username": user,
                                                  "password": "demo"}, allow_redirects=False, timeout=5)
    assert r.status_code == 302, r.text[:300]
    return s


def _log(stack, mark: int = 0):
    return stack[0].state.header_log_for(PREFIX)[mark:]


def _cookie(session: requests.Session) -> str:
    return "; ".join(f"{c.name}={c.value}" for c in session.cookies if c.name == "portal_sessionid")


def _raw(stack, extra, cookie: str | None) -> bytes:
    port = stack[2]
    lines = [f"GET /{PREFIX}/hub/ HTTP/1.1", f"Host: localhost:{port}", "Connection: close"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    lines += [f"{k}: {v}" for k, v in extra]
    return raw_request(port, Path(stack[0].certs_dir) / "root.pem", ("\r\n".join(lines) + "\r\n\r\n").encode())


def test_signed_in_django_user_reaches_the_hub_as_exactly_that_user(stack):
    hub = f"https://localhost:{stack[2]}/{PREFIX}/hub/"
    for user in ("alice", "bob"):
        s = _sign_in(stack, user)
        m = len(_log(stack))
        r = s.get(hub, allow_redirects=False, timeout=5)
        assert r.status_code == 200 and f"PORTAL\\{user}" in r.text
        (rec,) = _log(stack, m)
        assert rec.values == (user,) and rec.identity == f"PORTAL\\{user}"


SPOOFS = {
    "same-name": [(HEADER, "carol")],
    "lower-case": [(HEADER.lower(), "carol")],
    "underscores": [(HEADER.replace("-", "_"), "carol")],
    "two-copies": [(HEADER, "carol"), (HEADER, "bob")],
}


@pytest.mark.parametrize("name", sorted(SPOOFS))
def test_spoofed_header_from_the_client_is_never_seen(stack, name):
    s = _sign_in(stack, "alice")
    m = len(_log(stack))
    resp = _raw(stack, SPOOFS[name], _cookie(s))
    recs = _log(stack, m)
    if status_of(resp) == 400:  # nginx refused the request outright
        assert recs == []
    else:
        assert status_of(resp) == 200, resp[:300]
        assert [(r.values, r.identity) for r in recs] == [(("alice",), "PORTAL\\alice")]
    # anonymous with the same spoof: to the login page, nothing reaches the emulator
    m = len(_log(stack))
    resp = _raw(stack, SPOOFS[name], None)
    assert status_of(resp) in (302, 400)
    assert _log(stack, m) == []


def test_anonymous_is_redirected_to_the_django_login(stack):
    _, portal, port = stack
    s = requests.Session()
    s.trust_env = False
    s.verify = str(Path(stack[0].certs_dir) / "root.pem")
    hub = f"https://localhost:{port}/{PREFIX}/hub/"
    r = s.get(hub, allow_redirects=False, timeout=5)
    assert r.status_code == 302
    assert r.headers["Location"] == f"{portal}/accounts/login/?next={hub}"
    assert _log(stack) == []
    # signing out of Django (LogoutView, POST with CSRF) stops the identity at once
    signed = _sign_in(stack, "carol")
    assert signed.get(hub, timeout=5).status_code == 200
    home = signed.get(f"{portal}/", timeout=5).text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', home).group(1)
    r = signed.post(f"{portal}/accounts/logout/", data={"csrfmiddlewaretoken": token}, allow_redirects=False,
                    timeout=5)
    assert r.status_code == 302
    m = len(_log(stack))
    assert signed.get(hub, allow_redirects=False, timeout=5).status_code == 302
    assert _log(stack, m) == []
