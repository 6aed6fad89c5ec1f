"""The emulator's HTTP layer, certificates, state bounds, CLI and pytest plugin."""

from __future__ import annotations

import argparse
import socket
import ssl
import stat
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from emu_helpers import xrf

from qlikauth.certgen import generate_certificates
from qlikauth.emulator import Emulator, EmulatorCluster, VirtualProxy
from qlikauth.emulator.cli import add_arguments, parse_virtual_proxy, run
from qlikauth.emulator.state import EmulatorState
from qlikauth.exceptions import CertificateError, ConfigurationError
from qlikauth.identity import QlikUser
from qlikauth.pytest_plugin import qlik_emulator, qlik_emulator_certs  # noqa: F401 - fixtures


@pytest.fixture
def emu(certs):
    with Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")]) as e:
        yield e


def _exchange(emu, certs, data: bytes, *, port=None, client_cert=True) -> bytes:
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    if client_cert:
        ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    with (
        socket.create_connection(("127.0.0.1", port or emu.qps_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        tls.sendall(data)
        out = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                return out
            out += chunk


H = b"Host: localhost\r\n"


@pytest.mark.parametrize(
    "raw,status",
    [
        (b"NONSENSE\r\n\r\n", (b"400",)),
        (b"GET /qps/alive HTTP/9.9\r\n" + H + b"\r\n", (b"400", b"505")),
        (b"GET /qps/alive HTTP/1.1\r\n" + H + b"Bad Header\r\n\r\n", (b"400",)),
        (b"GET /qps/alive HTTP/1.1\r\n" + H + b"X: a\r\n folded\r\n\r\n", (b"400",)),
        (
            b"POST /qps/ticket HTTP/1.1\r\n"
            + H
            + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            (b"400",),
        ),
        (b"POST /qps/ticket HTTP/1.1\r\n" + H + b"Content-Length: 99999999\r\n\r\n", (b"413",)),
        (b"POST /qps/ticket HTTP/1.1\r\n" + H + b"Content-Length: x\r\n\r\n", (b"400",)),
        (b"GET /qps/alive HTTP/1.1\r\n" + H + b"X: " + b"a" * 20000 + b"\r\n\r\n", (b"431",)),
        (
            b"GET /qps/alive HTTP/1.1\r\n"
            + H
            + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 4000) for i in range(5))
            + b"\r\n",
            (b"431",),
        ),
        # HTTP/1.1 without Host, or with two (RFC 9112 3.2)
        (b"GET /qps/alive HTTP/1.1\r\n\r\n", (b"400",)),
        (b"GET /qps/alive HTTP/1.1\r\n" + H + H + b"\r\n", (b"400",)),
        # chunk sizes are hex digits only
        (
            b"POST /qps/ticket HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n0x2\r\n{}\r\n0\r\n\r\n",
            (b"400",),
        ),
        (
            b"POST /qps/ticket HTTP/1.1\r\n"
            + H
            + b"Transfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n",
            (b"400",),
        ),
    ],
)
def test_malformed_requests_get_a_clean_error_and_close(emu, certs, raw, status):
    out = _exchange(emu, certs, raw)
    assert out[9:12] in status, out[:80]
    assert b"connection: close" in out.lower() and b"Traceback" not in out


def test_chunked_body_is_accepted(emu, certs):
    key = xrf()
    body = b'{"UserDirectory":"ACME","UserId":"chunky"}'
    req = (
        (
            f"POST /qps/portal/ticket?xrfkey={key} HTTP/1.1\r\nHost: localhost\r\nX-Qlik-Xrfkey: "
            f"{key}\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len(body):x}\r\n"
        ).encode()
        + body
        + b"\r\n0\r\n\r\n"
    )
    out = _exchange(emu, certs, req)
    assert out.startswith(b"HTTP/1.1 201") and b'"UserId":"chunky"' in out


def test_keep_alive_answers_pipelined_requests_each_in_one_piece(emu, certs):
    key = xrf()
    one = (
        f"GET /qps/alive?xrfkey={key} HTTP/1.1\r\nHost: localhost\r\nX-Qlik-Xrfkey: {key}\r\n\r\n"
    ).encode()
    last = one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    out = _exchange(emu, certs, one * 4 + last)
    assert out.count(b"HTTP/1.1 200 OK") == 5
    assert out.count(b"\r\n\r\ntrue") == 5
    assert emu.state.connections_accepted == 1


def test_stop_is_idempotent_and_ends_idle_connections(certs):
    emu = Emulator(certs_dir=certs).start()
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    raw = socket.create_connection(("127.0.0.1", emu.qps_port), timeout=5)
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    try:
        start = time.monotonic()
        emu.stop()
        emu.stop()
        assert time.monotonic() - start < 3
        assert tls.recv(10) == b""  # the idle keep-alive connection was closed
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        tls.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", emu.qps_port), timeout=1).close()
    assert not [t for t in threading.enumerate() if t.name.startswith("emulator-") and t.is_alive()]


def test_generated_certificates_in_a_temp_dir_are_removed(tmp_path):
    with Emulator() as emu:
        d = emu.certs_dir
        assert (d / "root.pem").exists() and (d / "client_key.pem").exists()
    assert not d.exists()
    given = tmp_path / "new"
    with Emulator(certs_dir=given, host="localhost"):
        pass
    assert (given / "server.pem").exists()  # generated there and kept


def test_cluster_shares_certificates_and_keeps_state_per_node(tmp_path):
    with EmulatorCluster(2, certs_dir=tmp_path, virtual_proxies=[VirtualProxy("portal")]) as c:
        assert len(c) == 2 and c[0].certs_dir == c[1].certs_dir == tmp_path
        assert c.qps_urls[0] != c.qps_urls[1]
        c[0].state.add_session(QlikUser("A", "b"), "portal", "api")
        assert c[1].state.sessions() == []


def test_ticket_memory_stays_flat():
    now = [0.0]
    st = EmulatorState(ticket_ttl=1.0, clock=lambda: now[0])
    user = QlikUser("ACME", "bench")
    for i in range(100_000):
        now[0] = i * 0.001  # 1000 tickets/s
        st.add_ticket(user, "portal", None)
    assert st.tickets_issued == 100_000
    assert st.outstanding_tickets <= 1001


def test_sessions_time_out():
    now = [0.0]
    st = EmulatorState(session_timeout=10, clock=lambda: now[0])
    rec, new = st.add_session(QlikUser("A", "b"), "p", "api")
    assert new and st.session(rec.session_id) is not None
    now[0] = 9
    assert st.session(rec.session_id, touch=True) is not None
    now[0] = 18
    assert st.session(rec.session_id) is not None  # touched at 9
    now[0] = 30
    assert st.session(rec.session_id) is None and st.sessions() == []


# -- certgen ----------------------------------------------------------------------------------
def test_certificates_as_the_qmc_exports_them(tmp_path):
    files = generate_certificates(
        tmp_path, ["localhost", "127.0.0.1", "qs.example"], passphrase="s3cret", pfx_password="pfx"
    )
    for name in (
        "root.pem",
        "root_key.pem",
        "server.pem",
        "server_key.pem",
        "client.pem",
        "client_key.pem",
        "client.pfx",
    ):
        assert (tmp_path / name).exists()
    for name in ("root_key.pem", "server_key.pem", "client_key.pem", "client.pfx"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert files["client"] == tmp_path / "client.pem"
    root = x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes())
    server = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    client = x509.load_pem_x509_certificate((tmp_path / "client.pem").read_bytes())
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert root.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "qs.example"]
    assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert server.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage
    ).value == x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    from cryptography.x509.oid import NameOID

    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "QlikClient"
    assert (
        ExtendedKeyUsageOID.CLIENT_AUTH
        in client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    )
    server.verify_directly_issued_by(root)
    client.verify_directly_issued_by(root)
    key_pem = (tmp_path / "client_key.pem").read_bytes()
    assert key_pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    key = serialization.load_pem_private_key(key_pem, password=b"s3cret")
    assert key.key_size == 2048
    with pytest.raises(CertificateError, match="overwrite") as info:
        generate_certificates(tmp_path)
    assert "--force" in str(info.value)
    generate_certificates(tmp_path, overwrite=True)
    assert (tmp_path / "client_key.pem").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


# -- CLI --------------------------------------------------------------------------------------
def test_virtual_proxy_spec_parsing():
    vp = parse_virtual_proxy(
        "prefix=portal,method=ticket,module=http://127.0.0.1:5000/qlik/module?a=1,2"
    )
    assert vp.prefix == "portal" and vp.module_uri == "http://127.0.0.1:5000/qlik/module?a=1,2"
    hv = parse_virtual_proxy("prefix=hdr,method=header-dynamic,header=X-Portal-User")
    assert hv.header_name == "X-Portal-User" and hv.method == "header-dynamic"


@pytest.mark.parametrize(
    ("word", "secure"), [("true", True), (" Yes", True), ("1", True), ("off", False), ("0", False)]
)
def test_virtual_proxy_secure_reads_the_boolean_words(word, secure):
    # (SameSite=None, the default, needs Secure: Lax lets secure=false stand.)
    assert parse_virtual_proxy(f"prefix=portal,samesite=Lax,secure={word}").secure is secure


def test_virtual_proxy_secure_refuses_a_word_that_is_not_a_boolean():
    # "ture" once read as False: a typo turned Secure cookies off without a word.
    with pytest.raises(
        ConfigurationError, match=r"secure='ture' is not a boolean; use one of 0, 1, false"
    ):
        parse_virtual_proxy("prefix=portal,secure=ture")


def test_cli_runs_until_stopped(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--certs",
            str(tmp_path),
            "--qps-port",
            "0",
            "--hub-port",
            "0",
            "--virtual-proxy",
            "prefix=portal,method=ticket,module=http://127.0.0.1:5000/m",
            "--virtual-proxy",
            "prefix=hdr,method=header-dynamic,header=X-Portal-User",
        ]
    )
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(run(args, stop=stop)))
    t.start()
    deadline = time.monotonic() + 10
    while "Press Ctrl-C" not in capsys.readouterr().out and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(10)
    assert result == [0]
    assert (tmp_path / "root.pem").exists()


# -- pytest plugin ----------------------------------------------------------------------------
def test_plugin_fixture(qlik_emulator):  # noqa: F811
    assert qlik_emulator.running
    assert "portal" in qlik_emulator.virtual_proxies
    assert qlik_emulator.hub_url_for("portal").endswith("/portal/hub/")
    assert (qlik_emulator.certs_dir / "client.pem").exists()
