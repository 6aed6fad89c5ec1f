"""``qlikauth cloud-emulator`` serves a tenant a portal can sign users into, and stops cleanly on
SIGTERM."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from qlikauth.cloud import CloudJwtIssuer, OAuthClient, QlikCloud
from qlikauth.emulator.cloud import parse_oauth_client
from qlikauth.exceptions import ConfigurationError
from qlikauth.jwtkeys import SigningKey

from .conftest import Person


def test_cli_tenant_end_to_end(tmp_path, free_port):
    key = SigningKey.generate("RS256", kid="cli-key")
    (tmp_path / "idp.pem").write_text(key.public_pem())
    exe = shutil.which("qlikauth", path=str(Path(sys.executable).parent))
    assert exe is not None
    proc = subprocess.Popen(
        [
            exe,
            "cloud-emulator",
            "--port",
            str(free_port),
            "--certs",
            str(tmp_path / "certs"),
            "--jwt-idp",
            f"issuer=https://cli-portal,kid=cli-key,key={tmp_path / 'idp.pem'}",
            "--oauth-client",
            "id=cli-client,secret=cli-secret",
            "--web-integration",
            "id=wi,origins=https://cli-portal",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url_line = proc.stdout.readline()
        ca_line = proc.stdout.readline()
        assert url_line.startswith("Qlik Cloud tenant"), url_line + proc.stderr.read()
        url, ca = url_line.split()[-1], ca_line.split()[-1]
        assert url == f"https://localhost:{free_port}"
        cloud = QlikCloud(url, verify=ca)
        ann = Person("ann@example.com", "Ann", "ann@example.com", True, ("Sales",))
        cloud.jwt_session(CloudJwtIssuer(key, "https://cli-portal").mint(ann))
        token = cloud.token(OAuthClient("cli-client", client_secret="cli-secret"), subject=ann.sub)
        assert cloud.me(access_token=token)["subject"] == ann.sub
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    assert rc == 0


def test_cli_refuses_bad_specs(tmp_path):
    exe = shutil.which("qlikauth", path=str(Path(sys.executable).parent))
    out = subprocess.run(
        [exe, "cloud-emulator", "--oauth-client", "id=x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "secret= or jwk=" in out.stderr
    out = subprocess.run(
        [exe, "cloud-emulator", "--jwt-idp", "issuer=a,color=blue"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and "color=blue" in out.stderr


def test_oauth_client_impersonation_reads_the_boolean_words():
    assert parse_oauth_client("id=c,secret=s").impersonation is True
    assert parse_oauth_client("id=c,secret=s,impersonation=Off").impersonation is False
    assert parse_oauth_client("id=c,secret=s,impersonation= yes").impersonation is True
    # "flase" once read as False silently; now the typo is named.
    with pytest.raises(ConfigurationError, match=r"impersonation='flase' is not a boolean"):
        parse_oauth_client("id=c,secret=s,impersonation=flase")
