"""The doctor's header-authentication checks against the generated nginx in front of the emulator
(examples/header_proxy): nginx -t, and a spoofed identity header refused at the front but not
when Qlik is reached around it."""

from __future__ import annotations

from pathlib import Path

import pytest
from _support import free_port_number, load_example

from qlikauth.doctor import Doctor
from qlikauth.web.config import QlikAuthConfig

pytestmark = pytest.mark.nginx

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "header_proxy"


@pytest.fixture(scope="module")
def stack():
    import shutil

    if shutil.which("nginx") is None and shutil.which("/usr/sbin/nginx") is None:
        pytest.skip("nginx is not installed")
    mod = load_example(EXAMPLE, "run.py", "header_proxy_run_doctor")
    s = mod.HeaderProxyStack(portal_port=free_port_number(), nginx_port=free_port_number())
    with s:
        yield s


def report_for(stack, hub_url):
    emu = stack.emulator
    config = QlikAuthConfig.from_mapping(
        {
            "QPS_NODES": emu.qps_url,
            "CERTS": str(emu.certs_dir),
            "HUB_URL": hub_url,
            "VIRTUAL_PROXY": "hdr",
            "HEADER_NAME": "X-Portal-User",
            "HEADER_USER_DIRECTORY": "PORTAL",
        }
    )
    return Doctor(config, nginx_conf=stack.runtime_dir / "nginx.conf", timeout=5).run()


def test_the_generated_front_passes(stack):
    report = report_for(stack, stack.hub_url)
    assert report.ok, report.text()
    assert report.get("nginx.config").status == "ok"
    spoof = report.get("header.spoof")
    assert spoof.status == "ok" and "refused" in spoof.message


def test_qlik_reached_around_the_front_fails_the_spoof_check(stack):
    report = report_for(stack, stack.emulator.hub_url_for("hdr"))
    fails = report.failed()
    assert [f.check for f in fails] == ["header.spoof"], report.text()
    assert "anyone can be anyone" in fails[0].message and "firewall" in fails[0].fix
    stack.emulator.state.clear()
