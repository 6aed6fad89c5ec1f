"""The qlikauth command offline: certificates, clear one-line errors, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys

from qlikauth.cli import main

QLIKAUTH = [sys.executable, "-m", "qlikauth.cli"]


def run(*args, env=None):
    return subprocess.run([*QLIKAUTH, *args], capture_output=True, text=True, timeout=60, env=env)


def test_certs_generate_and_check(tmp_path, capsys):
    assert main(["certs", "generate", str(tmp_path), "--host", "localhost", "--json"]) == 0
    files = json.loads(capsys.readouterr().out)
    assert {"root", "client", "client_key", "server"} <= set(files)
    assert main(["certs", "check", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["certificates"][0]["role"] == "client"
    assert report["certificates"][0]["days_left"] > 700
    # a second generate refuses to overwrite, as one clear line
    assert main(["certs", "generate", str(tmp_path)]) == 1
    assert "--force" in capsys.readouterr().err


def test_errors_are_one_line_without_traceback(tmp_path):
    out = run("certs", "check", str(tmp_path / "missing"))
    assert out.returncode == 1
    assert out.stderr.startswith("qlikauth: error: ") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_ticket_needs_configuration(monkeypatch, capsys):
    monkeypatch.delenv("QLIKAUTH_QPS", raising=False)
    assert main(["ticket", "--user", "ACME\\jdoe"]) == 2
    assert "--qps" in capsys.readouterr().err


def test_bad_user_and_attribute(tmp_path, capsys):
    common = ["ticket", "--qps", "https://localhost:1", "--certs", str(tmp_path)]
    assert main([*common, "--user", "nobackslash"]) == 2
    assert "DIRECTORY\\userid" in capsys.readouterr().err
    assert main([*common, "--user", "ACME\\jdoe", "--attr", "novalue"]) == 2
    assert "NAME=VALUE" in capsys.readouterr().err


def test_passphrase_from_env(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MY_PW", "pw123")
    assert main(["certs", "generate", str(tmp_path), "--passphrase-env", "MY_PW"]) == 0
    capsys.readouterr()
    assert main(["certs", "check", str(tmp_path)]) == 1
    assert "encrypted" in capsys.readouterr().err
    assert main(["certs", "check", str(tmp_path), "--passphrase-env", "MY_PW"]) == 0
