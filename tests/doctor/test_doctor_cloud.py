"""The doctor's Qlik Cloud checks against the emulated tenant (qlikauth.emulator.cloud)."""

from __future__ import annotations

import pytest

from qlikauth.cloud import CloudJwtIssuer, OAuthClient
from qlikauth.doctor import CloudTarget, Doctor
from qlikauth.emulator.cloud import (
    CloudTenant,
    JwtIdentityProvider,
    OAuthClientConfig,
    WebIntegration,
)
from qlikauth.jwtkeys import SigningKey

SECRET = "portal-client-secret-value"
PORTAL = "https://portal.example.com"
JWT_KEY = SigningKey.generate("RS256", kid="portal-2026")


@pytest.fixture(scope="module")
def tenant(tmp_path_factory):
    from qlikauth.certgen import generate_certificates

    certs = tmp_path_factory.mktemp("cloud-certs")
    generate_certificates(certs, ["localhost", "127.0.0.1"])
    clients = [
        OAuthClientConfig("portal", client_secret=SECRET),
        OAuthClientConfig("no-m2m", client_secret=SECRET, impersonation=False),
        OAuthClientConfig("no-admin", client_secret=SECRET, scopes=("user_default",)),
    ]
    with CloudTenant(
        certs,
        oauth_clients=clients,
        web_integrations=[WebIntegration("wi-portal", (PORTAL,), "Portal pages")],
        jwt_idps=[JwtIdentityProvider(PORTAL, {JWT_KEY.kid: JWT_KEY.public_key})],
    ) as t:
        t.state.upsert_user(
            "auth0|alice", "Alice", "alice@example.com", True, None, created_by="test"
        )
        t.certs = certs
        yield t


def check(
    tenant,
    client_id="portal",
    secret=SECRET,
    subject="auth0|alice",
    url=None,
    portal_url=None,
    **more,
):
    target = CloudTarget(
        url or tenant.url,
        OAuthClient(client_id, client_secret=secret),
        subject,
        verify=str(tenant.certs / "root.pem"),
        **more,
    )
    return Doctor(None, cloud=target, portal_url=portal_url, timeout=3).run()


def only_failure(report, check):
    fails = report.failed()
    assert [f.check for f in fails] == [check], report.text()
    assert fails[0].fix
    return fails[0]


def test_cloud_healthy(tenant):
    report = check(tenant)
    assert report.ok, report.text()
    assert [f.check for f in report.findings] == [
        "cloud.tenant",
        "cloud.token",
        "cloud.impersonation",
    ]
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
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{root}:{root / 'integrations'}",
        "QLIKAUTH_CLOUD_CLIENT_SECRET": SECRET,
    }
    cmd = [
        sys.executable,
        "-m",
        "qlikauth.cli",
        "doctor",
        "--cloud-tenant",
        tenant.url,
        "--cloud-client-id",
        "no-m2m",
        "--cloud-subject",
        "auth0|alice",
        "--cloud-ca",
        str(tenant.certs / "root.pem"),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    data = json.loads(done.stdout)
    assert [f["check"] for f in data["findings"] if f["status"] == "fail"] == [
        "cloud.impersonation"
    ]
    assert SECRET not in done.stdout + done.stderr


# -- the web integration and the JWT identity provider, as the tenant has them ----------------
def test_web_integration_and_jwt_idp_healthy(tenant):
    report = check(
        tenant,
        portal_url=PORTAL + "/",
        web_integration_id="wi-portal",
        jwt_issuer=CloudJwtIssuer(JWT_KEY, PORTAL),
    )
    assert report.ok, report.text()
    assert [f.check for f in report.findings] == [
        "cloud.tenant",
        "cloud.token",
        "cloud.web-integration",
        "cloud.jwt-idp",
        "cloud.impersonation",
    ]
    assert (
        "'Portal pages' allows the portal's origin https://portal.example.com"
        in report.get("cloud.web-integration").message
    )
    assert tenant.state.live_tokens() == []


def test_portal_origin_not_on_the_web_integration(tenant):
    f = only_failure(
        check(tenant, portal_url="https://portal.example.com:8443", web_integration_id="wi-portal"),
        "cloud.web-integration",
    )
    assert (
        "the portal's origin https://portal.example.com:8443 is not an allowed origin of the "
        "web integration 'Portal pages' (it allows: https://portal.example.com)"
    ) in f.message
    assert "Add https://portal.example.com:8443 to the allowed origins" in f.fix


def test_unknown_web_integration(tenant):
    f = only_failure(
        check(tenant, portal_url=PORTAL, web_integration_id="wi-typo"), "cloud.web-integration"
    )
    assert "no web integration with id 'wi-typo'" in f.message


def test_web_integration_without_portal_url_is_skipped(tenant):
    report = check(tenant, web_integration_id="wi-portal")
    assert report.ok and report.get("cloud.web-integration").status == "skip", report.text()


def test_jwt_issuer_not_the_tenants(tenant):
    f = only_failure(
        check(tenant, jwt_issuer=CloudJwtIssuer(JWT_KEY, PORTAL + "/")), "cloud.jwt-idp"
    )
    assert (
        "no JWT identity provider of the tenant has the issuer 'https://portal.example.com/'"
        " the portal signs with (the tenant's: 'https://portal.example.com')"
    ) in f.message


def test_jwt_kid_not_the_tenants(tenant):
    key = SigningKey.from_pem(JWT_KEY.private_pem(), "RS256", kid="portal-2025")
    f = only_failure(check(tenant, jwt_issuer=CloudJwtIssuer(key, PORTAL)), "cloud.jwt-idp")
    assert "has no key with the kid 'portal-2025'" in f.message
    assert "(its kids: 'portal-2026')" in f.message


def test_jwt_key_not_the_tenants(tenant):
    other = SigningKey.generate("RS256", kid=JWT_KEY.kid)
    f = only_failure(check(tenant, jwt_issuer=CloudJwtIssuer(other, PORTAL)), "cloud.jwt-idp")
    assert "is not the public half of the portal's signing key" in f.message


def test_client_without_admin_scope_warns_it_cannot_read(tenant):
    report = check(
        tenant,
        client_id="no-admin",
        subject=None,
        portal_url=PORTAL,
        web_integration_id="wi-portal",
        jwt_issuer=CloudJwtIssuer(JWT_KEY, PORTAL),
    )
    assert report.ok, report.text()
    for name in ("cloud.web-integration", "cloud.jwt-idp"):
        f = report.get(name)
        assert (
            f.status == "warn"
            and "may not request the scope admin_classic (400)" in f.message
            and "not checked" in f.message
            and "admin_classic" in f.fix
        )


def test_command_checks_the_web_integration_and_the_jwt_idp(tenant, tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    key = tmp_path / "jwt_key.pem"
    key.write_bytes(JWT_KEY.private_pem())
    key.chmod(0o600)
    root = Path(__file__).resolve().parents[2]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{root}:{root / 'integrations'}",
        "QLIKAUTH_CLOUD_CLIENT_SECRET": SECRET,
    }
    cmd = [
        sys.executable,
        "-m",
        "qlikauth.cli",
        "doctor",
        "--cloud-tenant",
        tenant.url,
        "--cloud-client-id",
        "portal",
        "--cloud-ca",
        str(tenant.certs / "root.pem"),
        "--portal-url",
        "https://elsewhere.example.com",
        "--cloud-web-integration",
        "wi-portal",
        "--cloud-jwt-issuer",
        PORTAL,
        "--cloud-jwt-key",
        str(key),
        "--cloud-jwt-kid",
        JWT_KEY.kid,
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    status = {f["check"]: f["status"] for f in json.loads(done.stdout)["findings"]}
    assert status["cloud.web-integration"] == "fail" and status["cloud.jwt-idp"] == "ok", status
    assert "PRIVATE KEY" not in done.stdout + done.stderr
