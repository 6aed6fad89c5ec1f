"""``qlikauth doctor`` against the emulator: a healthy site passes, and each fault fails its own
check.

Every check is failed here by the fault it names (an emulator fault, a gateway in between, a
virtual proxy set up wrong, or broken certificate files), and the message says what and the fix.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from gateway import Gateway

from qlikauth.certgen import generate_certificates
from qlikauth.doctor import Doctor
from qlikauth.emulator import Emulator, EmulatorCluster, VirtualProxy
from qlikauth.web.config import QlikAuthConfig

PORTAL = "https://portal.test"
MODULE = f"{PORTAL}/qlik/module"
ROOT = Path(__file__).resolve().parents[2]
#: With a gateway (or the hub port) in QPS_NODES, the hub's proxyRestUri names the real node,
#: which is then rightly reported as missing from QPS_NODES too.
NOT_LISTED = ("hub.module",)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    certs = tmp_path_factory.mktemp("doctor-certs")
    generate_certificates(certs, ["localhost", "127.0.0.1"])
    proxies = [
        VirtualProxy("portal", module_uri=MODULE, host_allow_list=("localhost", "portal.test")),
        VirtualProxy("nomodule"),
        VirtualProxy("elsewhere", module_uri="https://other.test/login"),
        VirtualProxy(
            "cookie",
            module_uri=MODULE,
            session_cookie_name="X-Site-Cookie",
            host_allow_list=("localhost", "portal.test"),
        ),
        VirtualProxy("strict", module_uri=MODULE, host_allow_list=("localhost",)),
    ]
    with Emulator(certs_dir=certs, virtual_proxies=proxies) as e:
        yield e


@pytest.fixture(autouse=True)
def _clear(emu):
    yield
    emu.clear_faults()


def settings(emu, prefix="portal", **extra):
    mapping = {
        "QPS_NODES": emu.qps_url,
        "CERTS": str(emu.certs_dir),
        "HUB_URL": emu.hub_url_for(prefix),
        "VIRTUAL_PROXY": prefix,
    }
    mapping.update(extra)
    return mapping


def run(emu, prefix="portal", doctor_kwargs=None, **extra):
    config = QlikAuthConfig.from_mapping(settings(emu, prefix, **extra))
    kwargs = {"portal_url": PORTAL, "session_checks": True, "timeout": 3.0}
    kwargs.update(doctor_kwargs or {})
    return Doctor(config, **kwargs).run()


def failed(report, check, also=()):
    """The failed finding of ``check``; no other check may fail but those in ``also``."""
    f = report.get(check)
    assert f is not None, f"no {check} finding in:\n{report.text()}"
    assert f.status == "fail", report.text()
    assert f.fix, f"{check} names no fix"
    others = [g.check for g in report.failed() if g.check != check and g.check not in also]
    assert not others, f"only {check} should fail:\n{report.text()}"
    return f


def copy_certs(emu, tmp_path):
    d = tmp_path / "certs"
    shutil.copytree(emu.certs_dir, d)
    return d


def test_a_healthy_site_passes_every_check(emu):
    report = run(emu)
    assert report.ok, report.text()
    checks = {f.check for f in report.findings if f.status == "ok"}
    assert {
        "certificates.files",
        "certificates.key",
        "certificates.expiry",
        "certificates.chain",
        "node.tls",
        "node.server-name",
        "node.xrfkey",
        "node.clock",
        "ticket",
        "hub.module",
        "session.cookie",
        "engine.websocket",
    } <= checks
    # the doctor's proxy session was ended
    assert emu.state.sessions("portal") == []
    assert "all checks passed" in report.text()


# -- certificates --------------------------------------------------------------------------
def test_missing_root_pem(emu, tmp_path):
    d = copy_certs(emu, tmp_path)
    (d / "root.pem").unlink()
    f = failed(run(emu, CERTS=str(d)), "certificates.files")
    assert "root.pem" in f.message and "QMC export" in f.fix


def test_wrong_passphrase(emu, tmp_path):
    d = tmp_path / "locked"
    generate_certificates(d, ["localhost"], passphrase="right one")
    f = failed(run(emu, CERTS=str(d), CERT_PASSPHRASE="wrong one"), "certificates.key")
    assert "passphrase is wrong" in f.message
    assert "wrong one" not in f.message + f.fix
    f = failed(run(emu, CERTS=str(d)), "certificates.key")
    assert "encrypted" in f.message and "CERT_PASSPHRASE" in f.fix


def test_key_from_another_export(emu, tmp_path):
    d = copy_certs(emu, tmp_path)
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    shutil.copy(other / "client_key.pem", d / "client_key.pem")
    f = failed(run(emu, CERTS=str(d)), "certificates.key")
    assert "does not belong to client.pem" in f.message


def _issue_client(d: Path, *, days_ago: int) -> None:
    root = x509.load_pem_x509_certificate((d / "root.pem").read_bytes())
    root_key = serialization.load_pem_private_key((d / "root_key.pem").read_bytes(), None)
    key = serialization.load_pem_private_key((d / "client_key.pem").read_bytes(), None)
    now = _dt.datetime.now(_dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "QlikClient")]))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(days=days_ago + 30))
        .not_valid_after(now - _dt.timedelta(days=days_ago))
        .sign(root_key, hashes.SHA256())
    )
    (d / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_expired_client_certificate(emu, tmp_path):
    d = copy_certs(emu, tmp_path)
    _issue_client(d, days_ago=2)
    f = failed(run(emu, CERTS=str(d)), "certificates.expiry")
    assert "client.pem expired on" in f.message


def test_client_certificate_from_another_site(emu, tmp_path):
    d = copy_certs(emu, tmp_path)
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    for name in ("client.pem", "client_key.pem"):
        shutil.copy(other / name, d / name)
    report = run(emu, CERTS=str(d))
    f = failed(report, "certificates.chain")
    assert "not issued by root.pem" in f.message
    assert report.get("node.tls").status == "skip"


# -- nodes ---------------------------------------------------------------------------------
def test_node_refusing_connections(emu):
    emu.inject("refuse")
    f = failed(run(emu), "node.tls")
    assert "cannot connect" in f.message and "4243" in f.fix
    assert run(emu).get("ticket").status == "skip"


def test_server_certificate_from_another_ca(emu):
    emu.inject("untrusted-cert")
    f = failed(run(emu), "node.tls")
    assert "not signed by root.pem" in f.message


def test_expired_server_certificate(emu):
    emu.inject("expired-cert")
    f = failed(run(emu), "node.tls")
    assert "has expired" in f.message


def test_client_certificate_not_trusted_by_the_node(emu):
    emu.inject("client-ca")
    f = failed(run(emu), "node.tls")
    assert "client certificate" in f.message and "QMC" in f.fix


def test_node_name_not_in_server_certificate(emu):
    emu.inject("wrong-host")
    f = failed(run(emu), "node.server-name")
    assert "does not name 'localhost'" in f.message and "wrong-host.invalid" in f.message


def test_node_that_hangs(emu):
    emu.inject("hang", seconds=10)
    f = failed(run(emu, doctor_kwargs={"timeout": 1.0}), "node.tls")
    assert "did not answer" in f.message


def test_gateway_stripping_the_xrfkey_header(emu):
    def strip(headers):
        headers.pop("X-Qlik-Xrfkey", None)

    with Gateway(emu.qps_port, emu.certs_dir, request_hook=strip) as gw:
        f = failed(run(emu, QPS_NODES=gw.url), "node.xrfkey", also=NOT_LISTED)
    assert "refused the xrfkey" in f.message and "X-Qlik-Xrfkey" in f.fix


def test_node_clock_ahead(emu):
    late = email.utils.format_datetime(
        _dt.datetime.now(_dt.UTC) + _dt.timedelta(minutes=5), usegmt=True
    )

    def skew(headers):
        return [(k, late if k.lower() == "date" else v) for k, v in headers]

    with Gateway(emu.qps_port, emu.certs_dir, response_hook=skew) as gw:
        f = failed(
            run(emu, QPS_NODES=gw.url, doctor_kwargs={"session_checks": False}),
            "node.clock",
            also=NOT_LISTED,
        )
    assert "ahead of this machine" in f.message and "NTP" in f.fix


def test_hub_port_given_as_the_qps_port(emu):
    f = failed(run(emu, QPS_NODES=emu.hub_url), "node.xrfkey", also=NOT_LISTED)
    assert "hub (browser) port" in f.message and ":4243" in f.fix


# -- ticket --------------------------------------------------------------------------------
def test_no_virtual_proxy_with_that_prefix(emu):
    report = run(emu, "portal", VIRTUAL_PROXY="nosuch")
    f = report.get("ticket")
    assert f.status == "fail" and "404" in f.message and "'nosuch'" in f.fix


def test_ticket_refused_with_403(emu):
    # A node that refuses the certificate at the HTTP layer rather than in the handshake: the
    # gateway answers the ticket path 403 as such a node does (the emulator refuses in TLS).
    with Gateway(emu.qps_port, emu.certs_dir) as gw:
        orig = gw.server.RequestHandlerClass._forward

        def forward(self):
            if "/ticket" in self.path:
                self.send_response(403)
                self.send_header("Content-Length", "9")
                self.end_headers()
                self.wfile.write(b"Forbidden")
                return
            orig(self)

        gw.server.RequestHandlerClass.do_POST = forward
        f = failed(
            run(emu, QPS_NODES=gw.url, doctor_kwargs={"session_checks": False}),
            "ticket",
            also=NOT_LISTED,
        )
    assert "client certificate is not trusted" in f.message


# -- hub -----------------------------------------------------------------------------------
def test_virtual_proxy_without_module(emu):
    f = failed(run(emu, "nomodule", doctor_kwargs={"session_checks": False}), "hub.module")
    assert "Qlik's own Windows/form login" in f.message and MODULE in f.fix


def test_module_pointing_elsewhere(emu):
    f = failed(run(emu, "elsewhere", doctor_kwargs={"session_checks": False}), "hub.module")
    assert "https://other.test/login" in f.message and MODULE in f.fix


def test_hub_of_a_node_not_in_qps_nodes(tmp_path):
    vp = VirtualProxy("portal", module_uri=MODULE)
    with EmulatorCluster(2, certs_dir=tmp_path, virtual_proxies=[vp]) as cluster:
        config = QlikAuthConfig.from_mapping(
            {
                "QPS_NODES": cluster[0].qps_url,
                "CERTS": str(tmp_path),
                "HUB_URL": cluster[1].hub_url_for("portal"),
                "VIRTUAL_PROXY": "portal",
            }
        )
        report = Doctor(config, portal_url=PORTAL, timeout=3).run()
    f = failed(report, "hub.module")
    assert "not in QPS_NODES" in f.message and cluster_port(f.message)


def cluster_port(message: str) -> bool:
    return "https://localhost:" in message


# -- session cookie and websocket ----------------------------------------------------------
def test_session_cookie_name_differs(emu):
    f = failed(run(emu, "cookie"), "session.cookie")
    assert "X-Site-Cookie" in f.message and "COOKIE_NAME" in f.fix
    assert emu.state.sessions("cookie") == []


def test_portal_host_not_on_the_host_allow_list(emu):
    f = failed(run(emu, "strict"), "engine.websocket")
    assert "host allow list" in f.message and "portal.test" in f.fix


def test_cookie_domain_not_covering_the_hub(emu):
    f = failed(
        run(emu, COOKIE_DOMAIN="example.com", doctor_kwargs={"session_checks": False}),
        "session.cookie-domain",
    )
    assert "'localhost'" in f.message


# -- nginx ---------------------------------------------------------------------------------
@pytest.mark.nginx
def test_nginx_config_refused_by_nginx_t(emu, tmp_path):
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    from qlikauth.nginx import generate_nginx_conf, generate_server_block

    block = generate_server_block(
        server_name=["localhost"],
        tls_cert=str(tmp_path / "missing.pem"),
        tls_key=str(tmp_path / "missing_key.pem"),
        portal_url="http://127.0.0.1:5000",
        login_url="https://localhost/login",
        header_name="X-Portal-User",
        qps_nodes=[emu.hub_url],
        root_pem=str(emu.certs_dir / "root.pem"),
        prefix="hdr",
        listen_host="127.0.0.1",
        listen_port=8443,
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(generate_nginx_conf(block, str(tmp_path / "run")))
    config = QlikAuthConfig.from_mapping(
        settings(emu, HEADER_NAME="X-Portal-User", HEADER_USER_DIRECTORY="CORP")
    )
    report = Doctor(config, nginx_conf=conf, timeout=3).run()
    f = failed(report, "nginx.config")
    assert "missing.pem" in f.message


# -- the command ---------------------------------------------------------------------------
def test_command_json_and_exit_status(emu):
    base = [
        sys.executable,
        "-m",
        "qlikauth.cli",
        "doctor",
        "--certs",
        str(emu.certs_dir),
        "--qps",
        emu.qps_url,
        "--hub-url",
        emu.hub_url_for("portal"),
        "-p",
        "portal",
        "--portal-url",
        PORTAL,
        "--session-checks",
        "--json",
        "--timeout",
        "3",
    ]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{ROOT / 'integrations'}"}
    ok = subprocess.run(base, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    bad = subprocess.run(
        [*base[:-2], "--timeout", "3", "-p", "nosuch"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 1
    data = json.loads(bad.stdout)
    assert data["ok"] is False
    assert any(
        f["check"] == "ticket" and f["status"] == "fail" and f["fix"] for f in data["findings"]
    )
    text = subprocess.run(
        [*base[:-3], "-p", "nosuch"], capture_output=True, text=True, env=env, timeout=120
    )
    assert text.returncode == 1 and "FAIL ticket" in text.stdout and "fix:" in text.stdout


def test_gateway_refusing_websocket_upgrades(emu):
    with Gateway(emu.hub_port, emu.certs_dir, client_ca=False, refuse_upgrades=True) as gw:
        report = run(emu, HUB_URL=f"{gw.url}/portal/hub/")
    f = failed(report, "engine.websocket")
    assert "does not pass websockets" in f.message and "Upgrade" in f.fix


# -- the framework commands ----------------------------------------------------------------
def test_flask_qlikauth_doctor(emu):
    from flask import Flask
    from flask_qlikauth import QlikAuth

    app = Flask(__name__)
    app.config.update(SECRET_KEY="test", **{f"QLIKAUTH_{k}": v for k, v in settings(emu).items()})
    QlikAuth(app, user_loader=lambda: None)
    runner = app.test_cli_runner()
    ok = runner.invoke(
        args=["qlikauth", "doctor", "--portal-url", PORTAL, "--session-checks", "--timeout", "3"]
    )
    assert ok.exit_code == 0, ok.output
    assert "OK   engine.websocket" in ok.output and "all checks passed" in ok.output
    app.config["QLIKAUTH_VIRTUAL_PROXY"] = "nomodule"
    app.config["QLIKAUTH_HUB_URL"] = emu.hub_url_for("nomodule")
    broken = Flask(__name__)
    broken.config.update(app.config)
    QlikAuth(broken, user_loader=lambda: None)
    bad = broken.test_cli_runner().invoke(args=["qlikauth", "doctor", "--json", "--timeout", "3"])
    assert bad.exit_code == 1, bad.output
    data = json.loads(bad.output)
    assert [f["check"] for f in data["findings"] if f["status"] == "fail"] == ["hub.module"]


def test_django_qlikauth_doctor(emu):
    from _django_setup import configure_django

    configure_django()
    import io

    from django.core.management import call_command
    from django.core.management.base import CommandError
    from django.test import override_settings

    out = io.StringIO()
    with override_settings(QLIKAUTH=settings(emu)):
        call_command("qlikauth_doctor", "--portal-url", PORTAL, "--timeout", "3", stdout=out)
    assert "all checks passed" in out.getvalue()
    out = io.StringIO()
    with (
        override_settings(QLIKAUTH=settings(emu, VIRTUAL_PROXY="nosuch")),
        pytest.raises(CommandError) as info,
    ):
        call_command("qlikauth_doctor", "--timeout", "3", "--json", stdout=out)
    assert info.value.returncode == 1
    data = json.loads(out.getvalue())
    assert any(f["check"] == "ticket" and f["status"] == "fail" for f in data["findings"])


def test_client_certificate_expiring_soon_warns(emu, tmp_path):
    d = copy_certs(emu, tmp_path)
    _issue_client(d, days_ago=-10)  # valid for ten more days
    report = run(emu, CERTS=str(d), doctor_kwargs={"session_checks": False})
    assert report.ok, report.text()
    f = report.get("certificates.expiry")
    assert f.status == "warn" and "expires in" in f.message and "Renew" in f.fix
