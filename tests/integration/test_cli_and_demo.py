"""The qlikauth command against the emulator, and `qlikauth demo` booted as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from qlikauth.cli import main
from qlikauth.emulator import Emulator, VirtualProxy


@pytest.fixture(scope="module")
def emu():
    with Emulator(virtual_proxies=[VirtualProxy("portal")]) as e:
        yield e


def _args(emu):
    return ["--qps", emu.qps_url, "-p", "portal", "--certs", str(emu.certs_dir), "--json"]


def test_ticket_command(emu, capsys):
    assert (
        main(
            [
                "ticket",
                *_args(emu),
                "--user",
                "ACME\\jdoe",
                "--attr",
                "group=Sales",
                "--attr",
                "group=Finance",
                "--attr",
                "email=",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["node"] == emu.qps_url and len(out["ticket"]) >= 16
    assert out["user_id"] == "jdoe"


def test_session_commands(emu, capsys):
    user = ["--user", "ACME\\cli-user", "--attr", "group=X"]
    assert main(["session", "add", *_args(emu), *user]) == 0
    sid = json.loads(capsys.readouterr().out)["session_id"]
    assert main(["session", "get", *_args(emu), sid]) == 0
    assert json.loads(capsys.readouterr().out)["attributes"] == [{"group": "X"}]
    assert main(["session", "list", *_args(emu), *user]) == 0
    assert [s["session_id"] for s in json.loads(capsys.readouterr().out)] == [sid]
    assert main(["session", "logout", *_args(emu), *user]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 1
    assert main(["session", "delete", *_args(emu), sid]) == 1
    assert json.loads(capsys.readouterr().out) == {"deleted": False}


def test_wrong_prefix_is_one_clear_line(emu, capsys):
    assert (
        main(
            [
                "ticket",
                "--qps",
                emu.qps_url,
                "-p",
                "nope",
                "--certs",
                str(emu.certs_dir),
                "--user",
                "ACME\\jdoe",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "virtual proxy prefix" in err and len(err.strip().splitlines()) == 1


def test_demo_signs_the_demo_user_into_the_hub(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "qlikauth.cli", "demo", "--port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        link = re.search(r"sign in:\s+(\S+)", text)
        assert link, text
        browser = requests.Session()
        browser.trust_env = False
        browser.verify = str(tmp_path / "certs" / "root.pem")
        r = browser.get(link.group(1), headers={"Accept": "application/json"})
        assert r.status_code == 200, r.text[:200]
        seen = r.json()
        assert (seen["userDirectory"], seen["userId"]) == ("ACME", "demo")
        assert seen["attributes"] == [{"group": "Sales"}, {"group": "Finance"}]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_demo_landing_page_says_what_to_do_and_what_the_hub_shows():
    from qlikauth.demo import DEMO_USERS, DemoPortal

    portal = DemoPortal(None, port=0)
    try:
        page = portal.page({})
        assert "one-time ticket" in page and "shows who Qlik thinks you are" in page
        for key, user in DEMO_USERS.items():
            assert f'id="login-{key}"' in page
            assert f"<code>{user.qualified_name}</code>" in page
        assert "<code>group=Sales, group=Finance</code>" in page
        assert 'id="module"' not in page
        from_qlik = portal.page(
            {"targetId": "t-1", "proxyRestUri": "https://localhost:4243/qps/portal/"}
        )
        assert 'id="module"' in from_qlik and "targetId=t-1" in from_qlik
    finally:
        portal.server.server_close()
