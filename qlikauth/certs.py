"""Loading and checking the certificates Qlik's QMC exports, and the one SSLContext built from them.

The QMC exports ``client.pem``, ``client_key.pem`` (optionally protected by a password
chosen at export) and ``root.pem`` (the site's CA, which signed every node's server
certificate), or the same as a PFX file. Whoever holds these files can sign in as any
user, so we check them carefully and say exactly what is wrong, but never print a key
or passphrase.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import secrets
import ssl
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .exceptions import CertificateError

__all__ = ["Certificates", "CertificateInfo", "CertificateExpiryWarning", "EXPIRY_WARNING_DAYS"]

log = logging.getLogger("qlikauth.certs")

#: Warn when the client certificate expires within this many days.
EXPIRY_WARNING_DAYS = 30

#: Every place a key passphrase can come from, by the names that really exist (a test
#: checks each ``--option`` named here against the ``qlikauth`` command's parser).
_KEY_UNLOCK_OPTIONS = (
    "passphrase=... in Python; CERT_PASSPHRASE in Django's QLIKAUTH setting, "
    "QLIKAUTH_CERT_PASSPHRASE in Flask's app.config; for the qlikauth command "
    "$QLIKAUTH_CERT_PASSPHRASE, --passphrase-env VAR or --passphrase-file FILE"
)

_EXPORT_HINT = (
    "Export the certificates again from the QMC (Certificates > Export, format "
    "'Platform independent PEM-format', include the secret key) and copy client.pem, "
    "client_key.pem and root.pem to this directory."
)


class CertificateExpiryWarning(UserWarning):
    """The client certificate expires soon: renew it before QPS starts refusing it."""


@dataclass(frozen=True)
class CertificateInfo:
    """What a certificate says about itself, for ``qlikauth certs check`` and the doctor."""

    role: str
    path: str | None
    subject: str
    issuer: str
    not_before: _dt.datetime
    not_after: _dt.datetime
    is_ca: bool
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()
    fingerprint_sha256: str = ""

    @property
    def days_left(self) -> int:
        """Whole days until the certificate expires (negative once expired)."""
        return (self.not_after - _dt.datetime.now(_dt.UTC)).days

    def as_dict(self) -> dict[str, object]:
        """A JSON-friendly view."""
        return {
            "role": self.role,
            "path": self.path,
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": self.days_left,
            "is_ca": self.is_ca,
            "dns_names": list(self.dns_names),
            "ip_addresses": list(self.ip_addresses),
            "fingerprint_sha256": self.fingerprint_sha256,
        }


def _info(role: str, cert: x509.Certificate, path: str | None) -> CertificateInfo:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = bool(bc.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = tuple(san.get_values_for_type(x509.DNSName))
        ips = tuple(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        pass
    from cryptography.hazmat.primitives import hashes

    return CertificateInfo(
        role=role,
        path=path,
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
        dns_names=dns,
        ip_addresses=ips,
        fingerprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
    )


def _read(path: Path, role: str) -> bytes:
    if not path.exists():
        raise CertificateError(
            f"{role} file {str(path)!r} does not exist. {_EXPORT_HINT}", path=str(path)
        )
    if not path.is_file():
        raise CertificateError(f"{role} path {str(path)!r} is not a file.", path=str(path))
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CertificateError(
            f"cannot read {role} file {str(path)!r}: {exc.strerror}. Check its permissions "
            "(the portal's service account must be able to read it).",
            path=str(path),
        ) from exc


def _load_cert(data: bytes, path: str | None, role: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(
            f"{role} file {path!r} is not a PEM or DER certificate ({exc}). {_EXPORT_HINT}",
            path=path,
        ) from None


def _load_key(data: bytes, path: str | None, passphrase: str | bytes | None):  # noqa: ANN202
    pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, password=pw)
        return serialization.load_der_private_key(data, password=pw)
    except TypeError:
        # cryptography raises TypeError for "password given but key not encrypted" and
        # for "key encrypted but no password given".
        if pw is None:
            raise CertificateError(
                f"private key {path!r} is encrypted: pass the passphrase chosen when the "
                f"certificates were exported ({_KEY_UNLOCK_OPTIONS}).",
                path=path,
            ) from None
        raise CertificateError(
            f"private key {path!r} is not encrypted, but a passphrase was given: remove it "
            f"({_KEY_UNLOCK_OPTIONS}).",
            path=path,
        ) from None
    except ValueError:
        if pw is not None:
            raise CertificateError(
                f"cannot decrypt private key {path!r}: the passphrase is wrong (or the file is "
                "damaged). Use the password chosen when exporting from the QMC.",
                path=path,
            ) from None
        raise CertificateError(
            f"{path!r} is not a PEM or DER private key. {_EXPORT_HINT}", path=path
        ) from None
    except Exception as exc:  # unsupported algorithms and the like
        raise CertificateError(
            f"cannot load private key {path!r}: {type(exc).__name__}.", path=path
        ) from None


def issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):  # InvalidSignature and unsupported key types
        return False
    return True


def public_key_bytes(key) -> bytes:  # noqa: ANN001
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True, repr=False)
class Certificates:
    """The client certificate, its private key and the site's root CA, checked.

    Build with :meth:`from_dir`, :meth:`from_files` or :meth:`from_pfx`. The instance
    makes the one :class:`ssl.SSLContext` qlikauth uses towards QPS
    (:meth:`client_ssl_context`): ``root.pem`` as the only trust anchor, host names
    verified, TLS 1.2 or newer, the client certificate presented.
    """

    client_cert: x509.Certificate
    root_certs: tuple[x509.Certificate, ...]
    _key: object = field(repr=False)
    client_path: str | None = None
    key_path: str | None = None
    root_path: str | None = None
    warnings: tuple[str, ...] = ()

    # -- constructors ---------------------------------------------------------------
    @classmethod
    def from_dir(
        cls,
        directory: str | os.PathLike[str],
        passphrase: str | bytes | None = None,
        *,
        client_cert: str = "client.pem",
        client_key: str = "client_key.pem",
        root: str = "root.pem",
    ) -> Certificates:
        """Load ``client.pem``, ``client_key.pem`` and ``root.pem`` from a directory."""
        d = Path(directory)
        if not d.is_dir():
            raise CertificateError(
                f"certificate directory {str(d)!r} does not exist or is not a directory. "
                f"{_EXPORT_HINT}",
                path=str(d),
            )
        return cls.from_files(d / client_cert, d / client_key, d / root, passphrase=passphrase)

    @classmethod
    def from_files(
        cls,
        client_cert: str | os.PathLike[str],
        client_key: str | os.PathLike[str],
        root: str | os.PathLike[str],
        passphrase: str | bytes | None = None,
    ) -> Certificates:
        """Load the three PEM (or DER) files by path."""
        cp, kp, rp = Path(client_cert), Path(client_key), Path(root)
        cert = _load_cert(_read(cp, "client certificate"), str(cp), "client certificate")
        key = _load_key(_read(kp, "client key"), str(kp), passphrase)
        roots = cls._load_roots(_read(rp, "root certificate"), str(rp))
        return cls._checked(cert, key, roots, str(cp), str(kp), str(rp))

    @classmethod
    def from_pfx(
        cls,
        path: str | os.PathLike[str],
        passphrase: str | bytes | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
    ) -> Certificates:
        """Load a PFX/PKCS#12 file as the QMC exports it.

        The root CA is taken from ``root`` when given, else from the PFX's extra
        certificates, else from ``root.pem`` next to the PFX file.
        """
        p = Path(path)
        data = _read(p, "PFX")
        pw = passphrase.encode() if isinstance(passphrase, str) else passphrase
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, pw)
        except ValueError:
            raise CertificateError(
                f"cannot open PFX {str(p)!r}: wrong password, or not a PKCS#12 file. Use the "
                "password chosen when exporting from the QMC.",
                path=str(p),
            ) from None
        if cert is None or key is None:
            raise CertificateError(
                f"PFX {str(p)!r} holds no certificate with its private key: export it again "
                "with 'Include secret key' checked.",
                path=str(p),
            )
        roots: tuple[x509.Certificate, ...]
        root_path: str | None
        if root is not None:
            rp = Path(root)
            roots, root_path = cls._load_roots(_read(rp, "root certificate"), str(rp)), str(rp)
        elif extra:
            cas = tuple(c for c in extra if _info("root", c, None).is_ca)
            roots, root_path = (cas or tuple(extra)), str(p)
        else:
            rp = p.with_name("root.pem")
            if not rp.exists():
                raise CertificateError(
                    f"PFX {str(p)!r} carries no root CA and there is no root.pem beside it: "
                    "pass root='path/to/root.pem' (export it from the QMC too).",
                    path=str(p),
                )
            roots, root_path = cls._load_roots(_read(rp, "root certificate"), str(rp)), str(rp)
        return cls._checked(cert, key, roots, str(p), str(p), root_path)

    @staticmethod
    def _load_roots(data: bytes, path: str) -> tuple[x509.Certificate, ...]:
        if b"-----BEGIN" in data:
            try:
                roots = tuple(x509.load_pem_x509_certificates(data))
            except ValueError:
                roots = ()
            if not roots:
                raise CertificateError(
                    f"root certificate file {path!r} holds no PEM certificate. {_EXPORT_HINT}",
                    path=path,
                )
            return roots
        return (_load_cert(data, path, "root certificate"),)

    @classmethod
    def _checked(
        cls,
        cert: x509.Certificate,
        key: object,
        roots: tuple[x509.Certificate, ...],
        cert_path: str | None,
        key_path: str | None,
        root_path: str | None,
    ) -> Certificates:
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise CertificateError(
                f"private key {key_path!r} is a {type(key).__name__}; QPS client "
                "certificates use RSA (or EC) keys.",
                path=key_path,
            )
        if public_key_bytes(cert.public_key()) != public_key_bytes(key.public_key()):
            raise CertificateError(
                f"private key {key_path!r} does not belong to client certificate {cert_path!r}: "
                "both files must come from the same QMC export.",
                path=key_path,
            )
        now = _dt.datetime.now(_dt.UTC)
        found: list[str] = []
        if cert.not_valid_after_utc <= now:
            raise CertificateError(
                f"client certificate {cert_path!r} expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d}: QPS will refuse it. Export a new one from "
                "the QMC (after renewing the site's certificates if they expired too).",
                path=cert_path,
            )
        if cert.not_valid_before_utc > now + _dt.timedelta(minutes=5):
            raise CertificateError(
                f"client certificate {cert_path!r} is not valid before "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC: check this machine's clock.",
                path=cert_path,
            )
        days = (cert.not_valid_after_utc - now).days
        if days < EXPIRY_WARNING_DAYS:
            msg = (
                f"client certificate {cert_path!r} expires in {days} days "
                f"({cert.not_valid_after_utc:%Y-%m-%d}): renew it in the QMC."
            )
            found.append(msg)
            warnings.warn(msg, CertificateExpiryWarning, stacklevel=3)
            log.warning("%s", msg)
        for r in roots:
            if r.not_valid_after_utc <= now:
                raise CertificateError(
                    f"root certificate {root_path!r} expired on {r.not_valid_after_utc:%Y-%m-%d}: "
                    "no server certificate it signed can be trusted. Renew the site's "
                    "certificates.",
                    path=root_path,
                )
        if not any(_info("root", r, None).is_ca for r in roots):
            found.append(
                f"root certificate {root_path!r} is not marked as a CA; server verification "
                "will probably fail. Make sure it is root.pem from the QMC export, not server.pem."
            )
        if not any(issued_by(cert, r) for r in roots):
            found.append(
                f"client certificate {cert_path!r} was not issued by root.pem; the files may come "
                "from different sites' exports."
            )
        for msg in found[1 if days < EXPIRY_WARNING_DAYS else 0 :]:
            log.warning("%s", msg)
        return cls(
            client_cert=cert,
            root_certs=roots,
            _key=key,
            client_path=cert_path,
            key_path=key_path,
            root_path=root_path,
            warnings=tuple(found),
        )

    # -- views --------------------------------------------------------------------
    def info(self) -> list[CertificateInfo]:
        """Facts about the client and root certificates (no key material)."""
        out = [_info("client", self.client_cert, self.client_path)]
        out.extend(_info("root", r, self.root_path) for r in self.root_certs)
        return out

    @property
    def client_common_name(self) -> str:
        """The client certificate's CN (``QlikClient`` for QMC exports)."""
        attrs = self.client_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    @property
    def has_client_auth_usage(self) -> bool:
        """False when the certificate's extended key usage excludes client authentication."""
        try:
            eku = self.client_cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return True
        return ExtendedKeyUsageOID.CLIENT_AUTH in eku

    def root_pem(self) -> bytes:
        """The trusted root certificate(s) as PEM."""
        return b"".join(r.public_bytes(serialization.Encoding.PEM) for r in self.root_certs)

    def client_ssl_context(
        self, *, minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    ) -> ssl.SSLContext:
        """The mutual-TLS context towards QPS: the only place qlikauth builds one.

        ``root.pem`` is the only trust anchor (no system CAs), host names are checked
        against the server certificate's subjectAltName only (OpenSSL's fallback to the
        Common Name is off: RFC 6125 deprecates it, and a CN is not constrained the way
        SAN entries are), and the client certificate is presented. The private key never touches the
        disk unencrypted: :mod:`ssl` only loads keys from files, so it is written to a
        private temporary file encrypted under a one-time random password and removed
        at once.
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = minimum_version
        ctx.check_hostname = True
        ctx.hostname_checks_common_name = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self.root_pem().decode("ascii"))
        one_time = secrets.token_urlsafe(32).encode()
        key_pem = self._key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(one_time),
        )
        cert_pem = self.client_cert.public_bytes(serialization.Encoding.PEM)
        fd, tmp = tempfile.mkstemp(prefix="qlikauth-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(cert_pem + key_pem)
            ctx.load_cert_chain(tmp, password=one_time)
        finally:
            os.unlink(tmp)
        return ctx

    def __repr__(self) -> str:
        return (
            f"Certificates(client={self.client_common_name!r}, "
            f"expires={self.client_cert.not_valid_after_utc:%Y-%m-%d}, root={self.root_path!r})"
        )


def load_certificates(
    source: str | os.PathLike[str] | Certificates, passphrase: str | bytes | None = None
) -> Certificates:
    """Certificates from a directory, a ``.pfx``/``.p12`` file, or an existing instance."""
    if isinstance(source, Certificates):
        return source
    p = Path(source)
    if p.suffix.lower() in (".pfx", ".p12"):
        return Certificates.from_pfx(p, passphrase)
    return Certificates.from_dir(p, passphrase)


def describe(certs: Certificates, hosts: Sequence[str] = ()) -> list[str]:
    """Human-readable lines about ``certs`` for the CLI (no secrets)."""
    lines = []
    for i in certs.info():
        lines.append(
            f"{i.role}: {i.subject} (issuer {i.issuer}), valid until {i.not_after:%Y-%m-%d} "
            f"({i.days_left} days left){' [CA]' if i.is_ca else ''}"
        )
    lines.extend(f"warning: {w}" for w in certs.warnings)
    return lines
