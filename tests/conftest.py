"""Shared fixtures: free ports, QMC-style certificates, the QPS emulator, server processes,
Chromium.

Kept generic so every layer's tests can use them:

* the ``free_port`` fixture (``free_port_number()``, ``skip_or_fail()``, ``stop_process()``:
tests/_support.py);
* ``certs_dir`` (session): one generated QMC-style certificate set;
* ``emulator_factory`` / ``emulator``: a running :class:`qlikauth.emulator.Emulator`;
* ``server_process``: start a command that serves HTTP on 127.0.0.1:PORT, wait until it
  answers, terminate it in teardown;
* ``portal_tls`` (session): a certificate + key for an https portal, from the same CA;
* ``chromium`` (session): a Playwright browser running Debian's ``/usr/bin/chromium``
  that trusts the emulator's and the portal's server certificates by SPKI pin (no
  ``ignore_https_errors``);
* ``redis_url``: ``redis://127.0.0.1:PORT/0`` of a real Debian ``redis-server`` (one per test
  run, emptied before each test, no persistence); ``redis_factory(extra=None)`` starts servers
  of a test's own (to stop mid-test, or with options such as ``maxmemory``).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _support import free_port_number, skip_or_fail, stop_process
from hypothesis import settings as _hypothesis_settings

# Property tests check what is generated, not how fast: on a shared 2-core machine one example can
# take longer than hypothesis' default 200 ms deadline, which would fail a correct test. Speed is
# measured in bench/, never asserted in tests.
_hypothesis_settings.register_profile("qlikauth", deadline=None)
_hypothesis_settings.load_profile("qlikauth")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("QLIKAUTH_CHROMIUM", "/usr/bin/chromium")

# Portals that keep state in a shared store (Redis) seal bearer values with STORE_KEYS and refuse
# to start without them; every portal a test starts (in this process or as a subprocess) gets
# one key for the run, as a deployment sets QLIKAUTH_STORE_KEYS from its secret store.
if "QLIKAUTH_STORE_KEYS" not in os.environ:
    import secrets as _secrets

    os.environ["QLIKAUTH_STORE_KEYS"] = "test-run:" + base64.urlsafe_b64encode(
        _secrets.token_bytes(32)
    ).decode().rstrip("=")

# The integrations live in integrations/; make them importable even without an editable install.
for extra in (ROOT / "integrations", ROOT):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))


@pytest.fixture
def free_port() -> int:
    """A free port on 127.0.0.1."""
    return free_port_number()


@pytest.fixture(scope="session")
def certs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One QMC-style certificate set (root, server for localhost/127.0.0.1, client) per test run."""
    from qlikauth.certgen import generate_certificates

    directory = tmp_path_factory.mktemp("certs")
    generate_certificates(directory, hosts=("localhost", "127.0.0.1"))
    return directory


def spki_sha256(cert_path: Path | str) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a PEM certificate, for Chromium's SPKI allow-list."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@pytest.fixture
def emulator_factory(certs_dir: Path) -> Iterator[Callable[..., Any]]:
    """``make(**kwargs)`` starts an Emulator (shared certificates unless given); all stop at
    teardown."""
    from qlikauth.emulator import Emulator

    started: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("certs_dir", certs_dir)
        kwargs.setdefault("host", "localhost")
        kwargs.setdefault("bind", "127.0.0.1")
        emu = Emulator(**kwargs)
        emu.__enter__()
        started.append(emu)
        return emu

    yield make
    for emu in reversed(started):
        emu.__exit__(None, None, None)


@pytest.fixture
def qps_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every QPS API call made in this process, as (method, first path segment).

    Wraps ``QpsClient._call``, the one place API calls are sent, so nothing escapes.
    """
    from qlikauth.qps import QpsClient

    calls: list[tuple[str, str]] = []
    original = QpsClient._call

    def counting(self: Any, node: str, method: str, path: str, *a: Any, **kw: Any) -> Any:
        calls.append((method, path.lstrip("/").split("/", 1)[0]))
        return original(self, node, method, path, *a, **kw)

    monkeypatch.setattr(QpsClient, "_call", counting)
    return calls


@pytest.fixture
def emulator(emulator_factory: Callable[..., Any]) -> Any:
    """A running emulator with only the default virtual proxy."""
    return emulator_factory()


def wait_for_http(
    url: str,
    timeout: float = 20.0,
    proc: subprocess.Popen | None = None,
    cafile: Path | str | None = None,
) -> None:
    """Wait until ``url`` answers (any HTTP status) or fail.

    For an https ``url`` the server certificate is verified against ``cafile``; without one
    the probe only checks that the server answers (liveness), the test verifies afterwards.
    """
    import ssl

    context = None
    if url.startswith("https:"):
        if cafile is not None:
            context = ssl.create_default_context(cafile=str(cafile))
        else:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"server process exited with {proc.returncode} before answering {url}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2, context=context):  # noqa: S310 - local test server
                return
        except urllib.error.HTTPError:
            return
        except OSError as exc:
            last = exc
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """``start(cmd, port, env=None, ready_path="/", scheme="http", cafile=None)``: run a server
    until teardown.

    The server listens on 127.0.0.1:port; with ``scheme="https"`` readiness is probed over TLS
    (verified against ``cafile`` when given).

    The process gets its own process group (so its children go too); its output is in
    ``tmp_path/server-<port>.log`` and printed when the test fails to start it.
    """
    procs: list[subprocess.Popen] = []

    def start(
        cmd: list[str],
        port: int,
        env: dict[str, str] | None = None,
        ready_path: str = "/",
        timeout: float = 30.0,
        cwd: Path | None = None,
        scheme: str = "http",
        cafile: Path | str | None = None,
    ) -> subprocess.Popen:
        log_path = tmp_path / f"server-{port}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=str(cwd or ROOT),
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        procs.append(proc)
        proc.log_path = log_path  # type: ignore[attr-defined]
        try:
            wait_for_http(f"{scheme}://127.0.0.1:{port}{ready_path}", timeout, proc, cafile)
        except Exception:
            stop_process(proc, group=True, grace=5)
            raise RuntimeError(
                f"{cmd} did not start:\n{log_path.read_text(errors='replace')[-4000:]}"
            ) from None
        return proc

    yield start
    for proc in reversed(procs):
        stop_process(proc, group=True, grace=5)


# -- Chromium -----------------------------------------------------------------------
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def portal_tls(certs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) for an https portal on localhost/127.0.0.1, issued from the emulator's CA."""
    from qlikauth.certgen import issue_server_certificate

    directory = tmp_path_factory.mktemp("portal-tls")
    cert, key = directory / "portal.pem", directory / "portal_key.pem"
    issue_server_certificate(certs_dir, ["localhost", "127.0.0.1"], cert, key)
    return cert, key


@pytest.fixture(
    scope="module"
)  # not session: a live Playwright loop trips Django's async-safety checks in later modules
def chromium(certs_dir: Path, portal_tls: tuple[Path, Path]) -> Iterator[Any]:
    """Debian's Chromium driven by Playwright, trusting the emulator's and the portal's server
    certificates by SPKI pin (``portal_tls``; no ``ignore_https_errors``).

    Playwright runs Chromium with a fresh temporary profile (``--user-data-dir``), which
    Chromium requires before it honours ``--ignore-certificate-errors-spki-list``.
    """
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        skip_or_fail(f"Chromium not found at {CHROMIUM}; install Debian's 'chromium' package")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail(
            "the playwright Python package is not installed (pip install 'qlikauth[test]')"
        )
    ARTIFACTS.mkdir(exist_ok=True)
    pins = ",".join(spki_sha256(c) for c in (certs_dir / "server.pem", portal_tls[0]))
    with tempfile.TemporaryDirectory(prefix="qlikauth-chromium-") as home:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pins}"],
                env={**os.environ, "HOME": home},
                headless=True,
            )
            try:
                yield browser
            finally:
                browser.close()


@pytest.fixture
def artifacts_dir() -> Path:
    """``test-artifacts/`` (gitignored): screenshots and other evidence tests leave behind."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


# -- open-redirect probes -----------------------------------------------------------
#: Django's list of unsafe redirect targets (tests/utils_tests/test_http.py, test_bad_urls),
#: plus the forms security.md names; ``{allowed}`` is replaced by an allowed origin's host:port.
UNSAFE_REDIRECTS = (
    "http://example.com",
    "http:///example.com",
    "https://example.com",
    "ftp://example.com",
    r"\\example.com",
    r"\\\example.com",
    r"/\\/example.com",
    r"\\//example.com",
    r"/\/example.com",
    r"\/example.com",
    r"/\example.com",
    r"http:/\//example.com",
    r"http:\/example.com",
    r"http:/\example.com",
    'javascript:alert("XSS")',
    "\njavascript:alert(x)",
    "java\nscript:alert(x)",
    "\x08//example.com",
    r"http://otherserver\@example.com",
    r"http:\\testserver\@example.com",
    r"http://testserver\me:pass@example.com",
    r"http://testserver\@example.com",
    r"http:\\testserver\confirm\me@example.com",
    "http:999999999",
    "ftp:9999999999",
    "\n",
    "http://[2001:cdba:0000:0000:0000:0000:3257:9652/",
    "http://2001:cdba:0000:0000:0000:0000:3257:9652]/",
    # from the brief and security.md
    "http://evil.com",
    "//evil.com",
    "/\\evil.com",
    "\\\\evil.com",
    "http:///evil.com",
    "https://user:pass@{allowed}/",
    "https://{allowed}@evil.com/",
    "javascript:alert(1)",
    "/ok\r\nSet-Cookie: x=1",
    "/ok\x00",
    "////evil.com",
    "https:evil.com",
    "https:///evil.com",
    "data:text/html,<script>alert(1)</script>",
    "http://{allowed}/",
)


@pytest.fixture(scope="session")
def unsafe_redirects() -> tuple[str, ...]:
    """The open-redirect probes (see UNSAFE_REDIRECTS); format ``{allowed}`` yourself."""
    return UNSAFE_REDIRECTS


@pytest.fixture(scope="session")
def offsite() -> Callable[[str | None, tuple[str, ...]], bool]:
    """``offsite(location, allowed_origins)``: does a redirect leave for a place not allowed?"""
    return is_offsite


def is_offsite(location: str | None, allowed_origins: tuple[str, ...]) -> bool:
    """True when a redirect ``location`` leaves for somewhere not in ``allowed_origins``."""
    from urllib.parse import urlsplit

    if not location:
        return False
    if location.startswith("/") and not location.startswith("//") and "\\" not in location:
        return False
    parts = urlsplit(location)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin not in allowed_origins or "@" in parts.netloc


# -- the example portals as real server processes (tests/examples, tests/e2e) ------------
def start_flask_portal(server_process: Any, emu: Any, port: int) -> Any:
    env = {
        "PORTAL_PORT": str(port),
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("portal"),
        "QLIKAUTH_VIRTUAL_PROXY": "portal",
    }
    return server_process(
        [sys.executable, "examples/flask_portal/app.py"], port, env, ready_path="/login"
    )


def start_django_portal(
    server_process: Any, emu: Any, port: int, tmp_path: Path, tls: tuple[Path, Path]
) -> Any:
    """The Django portal over https (PORTAL_TLS=1) with ``tls`` = (cert, key) from the emulator's
    CA."""
    env = {
        "PORTAL_PORT": str(port),
        "QLIKAUTH_QPS_NODES": emu.qps_url,
        "QLIKAUTH_CERTS": str(emu.certs_dir),
        "QLIKAUTH_HUB_URL": emu.hub_url_for("mashup"),
        "QLIKAUTH_VIRTUAL_PROXY": "mashup",
        "PORTAL_DB": str(tmp_path / "portal.sqlite3"),
        "PORTAL_TLS": "1",
        "PORTAL_TLS_CERT": str(tls[0]),
        "PORTAL_TLS_KEY": str(tls[1]),
    }
    return server_process(
        [sys.executable, "examples/django_portal/run.py"],
        port,
        env,
        ready_path="/accounts/login/",
        timeout=60,
        scheme="https",
        cafile=Path(emu.certs_dir) / "root.pem",
    )


@pytest.fixture
def flask_portal(emulator_factory: Any, server_process: Any, free_port: int) -> tuple[Any, str]:
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(
        virtual_proxies=[
            VirtualProxy(
                prefix="portal",
                method="ticket",
                module_uri=f"http://localhost:{free_port}/qlik/module",
            )
        ]
    )
    start_flask_portal(server_process, emu, free_port)
    return emu, f"http://localhost:{free_port}"


@pytest.fixture
def django_portal(
    emulator_factory: Any,
    server_process: Any,
    free_port: int,
    tmp_path: Path,
    portal_tls: tuple[Path, Path],
) -> tuple[Any, str]:
    """The emulator and the Django portal's https base URL (same site as the hub)."""
    from qlikauth.emulator import VirtualProxy

    emu = emulator_factory(virtual_proxies=[VirtualProxy(prefix="mashup", method="session")])
    start_django_portal(server_process, emu, free_port, tmp_path, portal_tls)
    return emu, f"https://localhost:{free_port}"


# -- Redis --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def redis_server() -> Iterator[Any]:
    """One real ``redis-server`` on a free loopback port for the whole run (no persistence)."""
    from _redis_server import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        skip_or_fail("redis-server not found; install Debian's 'redis-server' package")
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: Any) -> str:
    """``redis://127.0.0.1:PORT/0`` of the run's Redis, emptied (FLUSHALL) before the test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()  # a test stopped it: start it again on the same port
    redis_server.flush()
    return redis_server.url


@pytest.fixture
def redis_factory() -> Iterator[Callable[..., Any]]:
    """``start(extra=None)`` -> a started RedisServer of this test's own (``.url``, ``.stop()``,
    ``.start()``); all are stopped and removed at teardown."""
    from _redis_server import REDIS_SERVER, RedisServer

    if REDIS_SERVER is None:
        skip_or_fail("redis-server not found; install Debian's 'redis-server' package")
    started: list[Any] = []

    def start(extra: dict[str, str] | None = None) -> Any:
        server = RedisServer(extra=extra)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.cleanup()
