"""Certificates: loading Qlik's exports and failing with a message that names the file and
the fix."""

from __future__ import annotations

import datetime as dt
import shutil
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from qlikauth import CertificateError, Certificates
from qlikauth.certgen import generate_certificates
from qlikauth.certs import CertificateExpiryWarning


def _reissue_client(cert_dir, days_valid: float, start_offset_days: float = -1):
    """Re-sign client.pem from the CA with another validity window."""
    root = x509.load_pem_x509_certificate((cert_dir / "root.pem").read_bytes())
    root_key = serialization.load_pem_private_key((cert_dir / "root_key.pem").read_bytes(), None)
    old = x509.load_pem_x509_certificate((cert_dir / "client.pem").read_bytes())
    start = dt.datetime.now(dt.UTC) + dt.timedelta(days=start_offset_days)
    cert = (
        x509.CertificateBuilder()
        .subject_name(old.subject)
        .issuer_name(root.subject)
        .public_key(old.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days_valid))
        .sign(root_key, hashes.SHA256())
    )
    (cert_dir / "client.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


@pytest.fixture
def fresh(tmp_path, cert_dir):
    d = tmp_path / "export"
    shutil.copytree(cert_dir, d)
    return d


def test_from_dir_builds_a_strict_context(cert_dir):
    certs = Certificates.from_dir(cert_dir)
    assert certs.client_common_name == "QlikClient" and certs.has_client_auth_usage
    ctx = certs.client_ssl_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.hostname_checks_common_name is False  # subjectAltName only
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert [c["subject"] for c in ctx.get_ca_certs()] == [
        ((("commonName", "qlikauth local CA"),), (("organizationName", "qlikauth"),))
    ]
    assert "BEGIN" not in repr(certs)


def test_encrypted_key_needs_the_passphrase(tmp_path):
    generate_certificates(tmp_path, ["localhost"], passphrase="s3cret")
    with pytest.raises(CertificateError, match="encrypted: pass the passphrase") as info:
        Certificates.from_dir(tmp_path)
    assert info.value.path.endswith("client_key.pem")
    with pytest.raises(CertificateError, match="passphrase is wrong"):
        Certificates.from_dir(tmp_path, passphrase="nope")
    certs = Certificates.from_dir(tmp_path, passphrase="s3cret")
    certs.client_ssl_context()  # loads the key without writing it unencrypted
    assert "s3cret" not in repr(certs)


def test_passphrase_for_plain_key_is_reported(cert_dir):
    with pytest.raises(CertificateError, match="not encrypted"):
        Certificates.from_dir(cert_dir, passphrase="x")


def test_pfx_export(tmp_path):
    generate_certificates(tmp_path, ["localhost"], pfx_password="pfxpw")
    certs = Certificates.from_pfx(tmp_path / "client.pfx", passphrase="pfxpw")
    assert certs.client_common_name == "QlikClient"
    assert any(i.is_ca for i in certs.info())
    with pytest.raises(CertificateError, match="wrong password"):
        Certificates.from_pfx(tmp_path / "client.pfx", passphrase="bad")


@pytest.mark.parametrize("missing", ["client.pem", "client_key.pem", "root.pem"])
def test_missing_file_named_with_the_fix(fresh, missing):
    (fresh / missing).unlink()
    with pytest.raises(CertificateError, match="QMC") as info:
        Certificates.from_dir(fresh)
    assert info.value.path.endswith(missing) and missing in str(info.value)


def test_missing_directory(tmp_path):
    with pytest.raises(CertificateError, match="does not exist"):
        Certificates.from_dir(tmp_path / "nope")


def test_garbage_files(fresh):
    (fresh / "client.pem").write_text("hello")
    with pytest.raises(CertificateError, match="not a PEM or DER certificate"):
        Certificates.from_dir(fresh)


def test_key_from_another_export(fresh, tmp_path):
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    shutil.copy(other / "client_key.pem", fresh / "client_key.pem")
    with pytest.raises(CertificateError, match="does not belong to client certificate"):
        Certificates.from_dir(fresh)


def test_root_from_another_site_is_a_warning(fresh, tmp_path):
    other = tmp_path / "other"
    generate_certificates(other, ["localhost"])
    shutil.copy(other / "root.pem", fresh / "root.pem")
    certs = Certificates.from_dir(fresh)
    assert any("not issued by root.pem" in w for w in certs.warnings)


def test_expired_client_certificate(fresh):
    _reissue_client(fresh, days_valid=1, start_offset_days=-3)
    with pytest.raises(CertificateError, match="expired on"):
        Certificates.from_dir(fresh)


def test_expiring_soon_warns(fresh):
    _reissue_client(fresh, days_valid=10)
    with pytest.warns(CertificateExpiryWarning, match="expires in"):
        certs = Certificates.from_dir(fresh)
    assert certs.warnings and "renew" in certs.warnings[0]


def test_not_yet_valid(fresh):
    _reissue_client(fresh, days_valid=100, start_offset_days=2)
    with pytest.raises(CertificateError, match="clock"):
        Certificates.from_dir(fresh)


def test_generate_refuses_to_overwrite(cert_dir):
    with pytest.raises(CertificateError, match="overwrite"):
        generate_certificates(cert_dir, ["localhost"])


def test_temporary_server_certificate_is_issued_by_the_ca_in_a_private_directory(tmp_path):
    from qlikauth.certgen import temporary_server_certificate

    generate_certificates(tmp_path, ["localhost"])
    cert_path, key_path = temporary_server_certificate(tmp_path, prefix="qlikauth-test-tls-")
    out = Path(cert_path).parent
    assert out.name.startswith("qlikauth-test-tls-") and (out.stat().st_mode & 0o777) == 0o700
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    root = x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes())
    assert cert.issuer == root.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    ctx = ssl.create_default_context(cafile=str(tmp_path / "root.pem"))
    ctx.load_cert_chain(cert_path, key_path)  # the key matches the certificate
    shutil.rmtree(out)
