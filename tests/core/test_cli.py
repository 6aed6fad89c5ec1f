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
    monkeypatch.delenv("QLIKAUTH_QPS_NODES", raising=False)
    assert main(["ticket", "--user", "ACME\\jdoe"]) == 2
    err = capsys.readouterr().err
    assert "--qps" in err and "QLIKAUTH_QPS_NODES" in err


def test_the_old_variable_name_is_named(monkeypatch, capsys):
    monkeypatch.delenv("QLIKAUTH_QPS_NODES", raising=False)
    monkeypatch.setenv("QLIKAUTH_QPS", "https://localhost:4243")
    assert main(["ticket", "--user", "ACME\\jdoe"]) == 2
    assert "QLIKAUTH_QPS_NODES" in capsys.readouterr().err


def test_cli_reads_the_integrations_variable_names(emulator, monkeypatch, capsys):
    """QLIKAUTH_QPS_NODES, QLIKAUTH_CERTS, QLIKAUTH_VIRTUAL_PROXY: one set of names for CLI and
    integrations."""
    from qlikauth.web.config import settings_from_environ

    env = {
        "QLIKAUTH_QPS_NODES": f"{emulator.qps_url}, ",
        "QLIKAUTH_CERTS": str(emulator.certs_dir),
        "QLIKAUTH_VIRTUAL_PROXY": "",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert {"QPS_NODES", "CERTS", "VIRTUAL_PROXY"} <= set(settings_from_environ())
    assert main(["ticket", "--user", "ACME\\jdoe", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["node"] == emulator.qps_url


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


def test_passphrase_file_that_is_not_utf8_is_one_clear_line(tmp_path):
    # Latin-1 "pässwörd": invalid UTF-8. The error must say so without a traceback that quotes
    # the bytes.
    secret = "pässwörd".encode("latin-1")
    pw_file = tmp_path / "pw"
    pw_file.write_bytes(secret + b"\n")
    out = run("certs", "check", str(tmp_path), "--passphrase-file", str(pw_file))
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("qlikauth: error: passphrase file ") and "not UTF-8" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert (
        "xe4" not in out.stderr
        and "w\\xf6rd" not in out.stderr
        and "rd" not in out.stderr.split("offset")[1]
    )


def test_passphrase_env_that_is_not_utf8_is_one_clear_line(tmp_path):
    import os

    env = {**os.environ, "MY_PW": "x"}
    env_bytes = {os.fsencode(k): os.fsencode(v) for k, v in env.items()}
    env_bytes[b"MY_PW"] = "pässwörd".encode("latin-1")
    out = subprocess.run(
        [*QLIKAUTH, "certs", "check", str(tmp_path), "--passphrase-env", "MY_PW"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env_bytes,
    )
    assert out.returncode == 2, out.stderr
    assert "$MY_PW is not UTF-8" in out.stderr and "Traceback" not in out.stderr


def _cli_options() -> set[str]:
    """Every --option of every qlikauth subcommand."""
    import argparse

    from qlikauth.cli import build_parser

    found: set[str] = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            found.update(o for o in action.option_strings if o.startswith("--"))
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)

    walk(build_parser())
    return found


def test_certificate_errors_name_only_options_that_exist(tmp_path, capsys, monkeypatch):
    import re

    monkeypatch.setenv("MY_PW", "pw123")
    assert main(["certs", "generate", str(tmp_path), "--passphrase-env", "MY_PW"]) == 0
    capsys.readouterr()
    monkeypatch.delenv("QLIKAUTH_CERT_PASSPHRASE", raising=False)
    assert main(["certs", "check", str(tmp_path)]) == 1  # encrypted, no passphrase
    encrypted = capsys.readouterr().err
    plain = tmp_path / "plain"
    assert main(["certs", "generate", str(plain)]) == 0
    capsys.readouterr()
    assert main(["certs", "check", str(plain), "--passphrase-env", "MY_PW"]) == 1  # not encrypted
    unencrypted = capsys.readouterr().err
    options = _cli_options()
    for message in (encrypted, unencrypted):
        named = set(re.findall(r"--[a-z][a-z-]*", message))
        assert named, message
        assert named <= options, f"{named - options} named in {message!r} do not exist"
        assert "--passphrase-env" in message and "--passphrase-file" in message


def test_a_command_without_its_extra_names_the_extra(monkeypatch, capsys):
    import importlib

    from qlikauth import cli

    real = importlib.import_module

    def without_uvicorn(name, package=None):
        if name in (".emulator.cli", ".emulator.cloud"):
            raise ModuleNotFoundError("No module named 'uvicorn'", name="uvicorn")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_uvicorn)
    for argv in (
        ["emulator", "--virtual-proxy", "portal:ticket", "--port", "4243"],
        ["cloud-emulator"],
    ):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert "unrecognized arguments" not in err
        assert "needs the emulator extra: pip install 'qlikauth[emulator]'" in err
