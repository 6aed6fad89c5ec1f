"""Generating a root CA, a server and a client certificate laid out as Qlik's QMC exports them.

For the emulator, the demo and tests: a real site's certificates come from its QMC.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .exceptions import CertificateError

__all__ = [
    "generate_certificates",
    "issue_server_certificate",
    "subject_alt_name",
    "temporary_server_certificate",
]

FILES = ("root.pem", "root_key.pem", "server.pem", "server_key.pem", "client.pem", "client_key.pem")


#: What a certificate authority's key may do (sign certificates and CRLs), as Qlik's root has it.
CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_encipherment=False,
    content_commitment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "qlikauth"),
        ]
    )


def subject_alt_name(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    """The subjectAltName for ``hosts``: IP addresses as IP entries, everything else as DNS
    names."""
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    return x509.SubjectAlternativeName(names)


def _write(path: Path, data: bytes, private: bool) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if private:
        os.chmod(path, 0o600)


def _pem_key(key: rsa.RSAPrivateKey, passphrase: str | bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption
    if passphrase:
        pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
        enc = serialization.BestAvailableEncryption(pw)
    else:
        enc = serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def _issue(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Certificate,
    issuer_key: rsa.RSAPrivateKey,
    days: int,
    *,
    eku: x509.ObjectIdentifier,
    hosts: Sequence[str] = (),
) -> x509.Certificate:
    now = _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=True,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if hosts:
        b = b.add_extension(subject_alt_name(hosts), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def generate_certificates(
    directory: str | os.PathLike[str],
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    passphrase: str | bytes | None = None,
    days: int = 825,
    overwrite: bool = False,
    pfx_password: str | bytes | None = None,
) -> dict[str, Path]:
    """Write ``root.pem``, ``root_key.pem``, ``server.pem``, ``server_key.pem``, ``client.pem``,
    ``client_key.pem`` (and ``client.pfx`` when ``pfx_password`` is given) into ``directory``.

    The server certificate names every entry of ``hosts`` (DNS names or IP addresses);
    the client certificate's CN is ``QlikClient`` as in QMC exports. ``client_key.pem`` is
    encrypted when ``passphrase`` is given. Existing files are kept unless ``overwrite``.
    """
    d = Path(directory)
    hosts = list(hosts)
    if not hosts:
        raise CertificateError("give at least one host name for the server certificate.")
    d.mkdir(parents=True, exist_ok=True)
    names = list(FILES) + (["client.pfx"] if pfx_password is not None else [])
    if not overwrite:
        for n in names:
            if (d / n).exists():
                raise CertificateError(
                    f"{d / n} already exists; pass overwrite=True (--force on the command line) to "
                    "replace the certificates in this directory.",
                    path=str(d / n),
                )
    root_key = _key()
    now = _dt.datetime.now(_dt.UTC) - _dt.timedelta(minutes=5)
    root = (
        x509.CertificateBuilder()
        .subject_name(_name("qlikauth local CA"))
        .issuer_name(_name("qlikauth local CA"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _dt.timedelta(days=days + 30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            CA_KEY_USAGE,
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    server_key, client_key = _key(), _key()
    server = _issue(
        hosts[0], server_key, root, root_key, days, eku=ExtendedKeyUsageOID.SERVER_AUTH, hosts=hosts
    )
    client = _issue(
        "QlikClient", client_key, root, root_key, days, eku=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    pem = serialization.Encoding.PEM
    out: dict[str, Path] = {}
    for fname, data, private in (
        ("root.pem", root.public_bytes(pem), False),
        ("root_key.pem", _pem_key(root_key), True),
        ("server.pem", server.public_bytes(pem), False),
        ("server_key.pem", _pem_key(server_key), True),
        ("client.pem", client.public_bytes(pem), False),
        ("client_key.pem", _pem_key(client_key, passphrase), True),
    ):
        _write(d / fname, data, private)
        out[fname.removesuffix(".pem")] = d / fname
    if pfx_password is not None:
        pw = pfx_password.encode() if isinstance(pfx_password, str) else pfx_password
        enc = serialization.BestAvailableEncryption(pw) if pw else serialization.NoEncryption()
        blob = pkcs12.serialize_key_and_certificates(b"QlikClient", client_key, client, [root], enc)
        _write(d / "client.pfx", blob, True)
        out["client_pfx"] = d / "client.pfx"
    return out


def issue_server_certificate(
    root_dir: str | os.PathLike[str],
    hosts: Sequence[str],
    out_cert: str | os.PathLike[str],
    out_key: str | os.PathLike[str],
    *,
    days: int = 825,
) -> None:
    """Issue another server certificate (e.g. for nginx) from ``root_dir``'s CA."""
    rd = Path(root_dir)
    try:
        root = x509.load_pem_x509_certificate((rd / "root.pem").read_bytes())
        root_key = serialization.load_pem_private_key(
            (rd / "root_key.pem").read_bytes(), password=None
        )
    except (OSError, ValueError) as exc:
        raise CertificateError(f"cannot load the CA from {rd}: {exc}", path=str(rd)) from None
    key = _key()
    cert = _issue(
        list(hosts)[0],
        key,
        root,
        root_key,  # type: ignore[arg-type]
        days,
        eku=ExtendedKeyUsageOID.SERVER_AUTH,
        hosts=list(hosts),
    )
    _write(Path(out_cert), cert.public_bytes(serialization.Encoding.PEM), False)
    _write(Path(out_key), _pem_key(key), True)


def temporary_server_certificate(
    root_dir: str | os.PathLike[str],
    hosts: Sequence[str] = ("localhost", "127.0.0.1"),
    *,
    prefix: str = "qlikauth-tls-",
) -> tuple[str, str]:
    """A server certificate and key from ``root_dir``'s CA in a fresh private directory, removed at
    exit.

    For local development and examples (a portal served over https beside the emulator): the
    paths of ``portal.pem`` and ``portal_key.pem``. Production portals use their own certificate.
    """
    import atexit
    import shutil
    import tempfile

    out = Path(tempfile.mkdtemp(prefix=prefix))  # 0700: the key is readable by this user only
    atexit.register(shutil.rmtree, out, True)
    issue_server_certificate(root_dir, hosts, out / "portal.pem", out / "portal_key.pem")
    return str(out / "portal.pem"), str(out / "portal_key.pem")
