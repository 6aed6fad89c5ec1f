"""The doctor's Qlik Cloud checks against the emulated tenant (qlikauth.emulator.cloud)."""

from __future__ import annotations

import pytest

from qlikauth.cloud import OAuthClient
from qlikauth.doctor import CloudTarget, Doctor
from qlikauth.emulator.cloud import CloudTenant, OAuthClientConfig

SECRET = "portal-client-secret-value"


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    from qlikauth.certgen import generate_certificates

    certs = tmp_path_factory.mktemp("cloud-certs")
    generate_certificates(certs, ["localhost", "127.0.0.1"])
    clients = [OAuthClientConfig("portal", client_secret=SECRET),
               OAuthClientConfig("no-m2m", client_secret=SECRET, impersonation=False)]
    with CloudTenant(certs, oauth_clients=clients) as t:
        t.state.upsert_user("auth0|alice", "Alice", "alice@example.com", True, None, created_by="test")
        t.certs = certs
        yield t


def check(tenant, client_id="portal", secret=SECRET, subject="auth0|alice", url=None):
    target = CloudTarget(url or tenant.url, OAuthClient(client_id, client_secret=secret), subject,
                         verify=str(tenant.certs / "root.pem"))
    return Doctor(None, cloud=target, timeout=3).run()


def only_failure(report, check):
    fails = report.failed()
    assert [f.check for f in fails] == [check], report.text()
    assert fails[0].fix
    return fails[0]


def test_cloud_healthy(tenant):
    report = check(tenant)
    assert report.ok, report.text()
    assert [f.check for f in report.findings] == ["cloud.tenant", "cloud.token", "cloud.impersonation"]
    assert tenant.state.live_tokens() == []  # the doctor's tokens were revoked


def test_tenant_unreachable(tenant):
    from _support import free_port_number

    f = only_failure(check(tenant, url=f"https://localhost:{free_port_number()}"), "cloud.tenant")
    assert "cannot be reached" in f.message


def test_tenant_certificate_not_trusted(tenant):
    target = CloudTarget(tenant.url, OAuthClient("portal", client_secret=SECRET), "auth0|alice")
    f = only_failure(Doctor(None, cloud=target, timeout=3).run(), "cloud.tenant")
    assert "does not trust" in f.message


def test_wrong_client_secret(tenant):
    f = only_failure(check(tenant, secret="not-the-secret"), "cloud.token")
    assert "refused the OAuth client's credentials (401)" in f.message
    assert "not-the-secret" not in f.message + f.fix


def test_impersonation_off(tenant):
    f = only_failure(check(tenant, client_id="no-m2m"), "cloud.impersonation")
    assert "may not impersonate" in f.message and "impersonation" in f.fix


def test_unknown_user_to_impersonate(tenant):
    f = only_failure(check(tenant, subject="auth0|nobody"), "cloud.impersonation")
    assert "auth0|nobody" in f.message


def test_command_checks_a_cloud_only_portal(tenant):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{root}:{root / 'integrations'}",
           "QLIKAUTH_CLOUD_CLIENT_SECRET": SECRET}
    cmd = [sys.executable, "-m", "qlikauth.cli", "doctor", "--cloud-tenant", tenant.url,
           "--cloud-client-id", "no-m2m", "--cloud-subject", "auth0|alice",
           "--cloud-ca", str(tenant.certs / "root.pem"), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert [f["check"] for f in data["findings"] if f["status"] == "fail"] == ["cloud.impersonation"]
    assert SECRET not in done.stdout + done.stderr
