"""Signing and verifying the JWTs qlikauth mints: one key, loaded once, one algorithm family.

Qlik's JWT consumers take asymmetric signatures only: QSEoW's JWT virtual proxy RS256,
RS384, RS512; Qlik Cloud's JWT identity provider RS/ES (and PS) algorithms, never HS; a
Qlik Cloud OAuth client's ``private_key_jwt`` RS256, RS512 or ES384. So a
:class:`SigningKey` is an RSA or EC private key bound to one algorithm of its own family,
checked when it is built (RSA keys of at least 2048 bits, an EC curve that matches the
algorithm), and parsed exactly once: parsing and validating a PEM key costs far more than
a signature, which is why code that passes PEM text to ``jwt.encode`` on every call is
slow.

Signatures (RS, PS and ES) are made with ``cryptography`` directly (never the ``ecdsa``
package: CVE-2024-23342), over the JWS compact serialisation PyJWT writes:
a compact JSON header with sorted keys (``alg``, ``kid``, ``typ``; built once per key, since
it never changes), compact JSON claims, base64url without padding, and for ES the raw
``r || s`` signature of RFC 7518 section 3.4 (not DER). The algorithm is the key's own,
fixed when the key is built: a caller's extra headers can add fields but never change
``alg``. A general JOSE library's sign call does the same through more layers of dicts,
JSON and key wrappers, which cost more than the EC signature itself.

:func:`verify_jwt` is the other side, used by the emulators; it lives in
:mod:`qlikauth.jose` (joserfc), the one path every JWS verification takes: an explicit
algorithm list taken from the key's family, a size cap before any parsing, and refusal of
the headers that would let a token choose its own key (``jwk``, ``jku``, ``x5u``, ``x5c``)
or demand unknown processing (``crit``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from .exceptions import ConfigurationError, JwtError

__all__ = [
    "SigningKey",
    "verify_jwt",
    "public_key_from_pem",
    "RSA_ALGORITHMS",
    "PSS_ALGORITHMS",
    "EC_ALGORITHMS",
    "ASYMMETRIC_ALGORITHMS",
    "MAX_TOKEN_BYTES",
    "compact_json",
]

RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
PSS_ALGORITHMS = ("PS256", "PS384", "PS512")
EC_ALGORITHMS = ("ES256", "ES384", "ES512")
ASYMMETRIC_ALGORITHMS = RSA_ALGORITHMS + PSS_ALGORITHMS + EC_ALGORITHMS

#: Tokens longer than this are refused before they are parsed.
MAX_TOKEN_BYTES = 8192

#: The smallest RSA key accepted (NIST SP 800-131A; Qlik's private_key_jwt reference).
MIN_RSA_BITS = 2048

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}
_EC_SIZES = {"ES256": 32, "ES384": 48, "ES512": 66}
#: JSON as PyJWT writes it in a JWS: no spaces, ASCII only.
_SORTED_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _compact_json_encoder() -> Callable[[Any], str]:
    """``json.dumps(obj, separators=(",", ":"))`` as one prebuilt encoder.

    ``JSONEncoder.encode`` builds CPython's C encoder anew on every call, which costs more
    than encoding a claims set; this builds it once. Without a circular-reference check
    (``markers`` is None), which claims never need: a cyclic value ends in RecursionError.
    """
    plain = json.JSONEncoder(separators=(",", ":")).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # not CPython's C accelerator
        return plain
    try:
        # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
        # skipkeys, allow_nan)
        encode = make(
            None,
            _no_default,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            True,
        )
        if "".join(encode({"a": [1, "\u00e9"]}, 0)) != plain({"a": [1, "\u00e9"]}):
            return plain
    except TypeError:  # another signature in another Python: the plain encoder
        return plain

    def dumps(obj: Any) -> str:
        return "".join(encode(obj, 0))

    return dumps


def _no_default(obj: Any) -> Any:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


#: ``json.dumps(obj, separators=(",", ":"))``, the JSON of a JWS's claims (ASCII only).
compact_json = _compact_json_encoder()

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64(data: bytes) -> bytes:
    # base64.urlsafe_b64encode without its two wrapper calls (this runs three times a token).
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


def _family(algorithm: str) -> str:
    if algorithm in RSA_ALGORITHMS:
        return "RS"
    if algorithm in PSS_ALGORITHMS:
        return "PS"
    if algorithm in EC_ALGORITHMS:
        return "ES"
    raise ConfigurationError(
        f"JWT algorithm {algorithm!r} is not allowed: use one of "
        f"{', '.join(ASYMMETRIC_ALGORITHMS)} "
        "(Qlik never accepts HS*, and 'none' is never a signature)."
    )


def _check_key_for(algorithm: str, key: PrivateKey | PublicKey) -> None:
    family = _family(algorithm)
    if family in ("RS", "PS"):
        if not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
            raise ConfigurationError(
                f"{algorithm} needs an RSA key, but the key given is {type(key).__name__}."
            )
        if key.key_size < MIN_RSA_BITS:
            raise ConfigurationError(
                f"the RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required "
                "(generate one with: openssl genrsa -out privatekey.pem 4096)."
            )
    else:
        if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
            raise ConfigurationError(
                f"{algorithm} needs an EC key, but the key given is {type(key).__name__}."
            )
        want = _CURVES[algorithm]
        if not isinstance(key.curve, want):
            raise ConfigurationError(
                f"{algorithm} needs an EC key on curve {want.name}, but the key is on "
                f"{key.curve.name}."
            )


class SigningKey:
    """A private key bound to one JWT algorithm (and optionally a ``kid``), parsed once.

    Build it with :meth:`from_pem` / :meth:`from_file` (PEM, PKCS#8 or traditional,
    optionally encrypted) or from a ``cryptography`` key object. :meth:`sign` makes a
    compact JWS over a claims mapping. The key never appears in ``repr`` or messages.
    """

    __slots__ = (
        "_key",
        "algorithm",
        "kid",
        "_hash",
        "_family",
        "_scheme",
        "_digest",
        "_sign",
        "_raw_size",
        "_header",
    )

    def __init__(
        self, key: PrivateKey, algorithm: str = "RS256", *, kid: str | None = None
    ) -> None:
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ConfigurationError(
                "a JWT signing key must be an RSA or EC private key (PEM with 'PRIVATE KEY' in its "
                "first line)."
            )
        self._family = _family(algorithm)
        _check_key_for(algorithm, key)
        if kid is not None and (not isinstance(kid, str) or not kid.strip()):
            raise ConfigurationError(
                "kid must be a non-empty string (the key id configured at Qlik)."
            )
        self._key = key
        self.algorithm = algorithm
        self.kid = kid
        self._hash = _HASHES[algorithm[2:]]
        digest = self._hash()
        # What each signature needs is built once: these objects are immutable descriptions.
        self._scheme: Any
        if self._family == "ES":
            self._scheme = ec.ECDSA(digest)
        elif self._family == "PS":
            self._scheme = padding.PSS(
                mgf=padding.MGF1(self._hash()), salt_length=digest.digest_size
            )
        else:
            self._scheme = padding.PKCS1v15()
        self._digest = digest
        self._sign: Callable[..., bytes] = key.sign  # bound once: no isinstance checks per token
        self._raw_size = _EC_SIZES.get(algorithm, 0)
        self._header = self._encode_header(None)  # the same for every token of this key

    @classmethod
    def from_pem(
        cls,
        pem: bytes | str,
        algorithm: str = "RS256",
        *,
        kid: str | None = None,
        passphrase: str | bytes | None = None,
    ) -> SigningKey:
        """Load a PEM private key (PKCS#8 or traditional; encrypted when ``passphrase`` is
        given)."""
        data = pem.encode("ascii") if isinstance(pem, str) else pem
        pw = passphrase.encode("utf-8") if isinstance(passphrase, str) else passphrase
        try:
            key = serialization.load_pem_private_key(data, password=pw)
        except TypeError as exc:
            raise ConfigurationError(
                "the JWT signing key is encrypted and no passphrase was given (or one was given "
                "for an unencrypted key)."
            ) from exc
        except ValueError as exc:
            raise ConfigurationError(
                "the JWT signing key could not be read: it must be a PEM private key "
                "('-----BEGIN PRIVATE KEY-----' or '-----BEGIN RSA/EC PRIVATE KEY-----'), and the "
                "passphrase, if any, must be right."
            ) from exc
        if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
            raise ConfigurationError("the JWT signing key must be an RSA or EC key.")
        return cls(key, algorithm, kid=kid)

    @classmethod
    def from_file(
        cls,
        path: str | Path,
        algorithm: str = "RS256",
        *,
        kid: str | None = None,
        passphrase: str | bytes | None = None,
    ) -> SigningKey:
        """Load a PEM private key from a file (see :meth:`from_pem`)."""
        p = Path(path)
        try:
            data = p.read_bytes()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read the JWT signing key {str(p)!r}: {exc.strerror}.", path=str(p)
            ) from exc
        return cls.from_pem(data, algorithm, kid=kid, passphrase=passphrase)

    @classmethod
    def generate(
        cls, algorithm: str = "RS256", *, kid: str | None = None, bits: int = 2048
    ) -> SigningKey:
        """A fresh key for ``algorithm`` (for tests, the emulator and first setups)."""
        family = _family(algorithm)
        key: PrivateKey
        if family == "ES":
            key = ec.generate_private_key(_CURVES[algorithm]())
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        return cls(key, algorithm, kid=kid)

    @property
    def public_key(self) -> PublicKey:
        """The public half (for configuring Qlik, or verifying in tests)."""
        return self._key.public_key()

    def public_pem(self) -> str:
        """The public key as PEM text (``-----BEGIN PUBLIC KEY-----``)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (to write it to a protected file)."""
        return self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate_pem(self, common_name: str = "qlikauth JWT signer", days: int = 825) -> str:
        """A self-signed X.509 certificate for the public key (QSEoW's JWT virtual proxy
        wants one)."""
        import datetime as dt

        name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .sign(self._key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK (what a Qlik Cloud OAuth client's private_key_jwt takes)."""
        pub = self.public_key
        jwk: dict[str, str]
        if isinstance(pub, rsa.RSAPublicKey):
            n = pub.public_numbers()
            jwk = {
                "kty": "RSA",
                "n": _b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")).decode(),
                "e": _b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big")).decode(),
            }
        else:
            size = _EC_SIZES[self.algorithm]
            n2 = pub.public_numbers()
            jwk = {
                "kty": "EC",
                "crv": {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[self.algorithm],
                "x": _b64(n2.x.to_bytes(size, "big")).decode(),
                "y": _b64(n2.y.to_bytes(size, "big")).decode(),
            }
        jwk.update({"alg": self.algorithm, "use": "sig"})
        if self.kid:
            jwk["kid"] = self.kid
        return jwk

    def _encode_header(self, headers: Mapping[str, Any] | None) -> bytes:
        """The base64url header segment: ``typ``, the caller's fields, the ``kid``; ``alg`` always
        the key's."""
        header: dict[str, Any] = {"typ": "JWT"}
        if self.kid:
            header["kid"] = self.kid
        if headers:
            header.update(headers)
        header["alg"] = self.algorithm  # never the caller's: the key decides its algorithm
        try:
            return _b64(_SORTED_JSON.encode(header).encode("ascii"))
        except (TypeError, ValueError) as exc:
            raise JwtError(f"the JWT header cannot be written as JSON: {exc}.") from None

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """A compact JWS of ``claims``; the header carries ``alg``, ``typ`` and the ``kid``."""
        try:
            body = compact_json(claims if type(claims) is dict else dict(claims))
        except (TypeError, ValueError, RecursionError) as exc:
            raise JwtError(f"the JWT claims cannot be written as JSON: {exc}.") from None
        return self.sign_payload(body.encode("ascii"), headers)

    def sign_payload(self, payload: bytes, headers: Mapping[str, Any] | None = None) -> str:
        """A compact JWS of ``payload``, claims already written as JSON (an object, UTF-8).

        For issuers that write the same claims for many tokens and only the token's own
        fields (``jti``, times) change: see :meth:`qlikauth.cloud.CloudJwtIssuer.mint`.
        """
        head = self._header if not headers else self._encode_header(headers)
        signing_input = head + b"." + _b64(payload)
        try:
            size = self._raw_size
            if size:  # ES: RFC 7518 3.4 wants r || s, each the curve's size, not DER
                r, s = decode_dss_signature(self._sign(signing_input, self._scheme))
                signature = r.to_bytes(size, "big") + s.to_bytes(size, "big")
            else:
                signature = self._sign(signing_input, self._scheme, self._digest)
        except (ValueError, TypeError) as exc:
            raise JwtError(
                f"signing the JWT with {self.algorithm} failed: {type(exc).__name__}."
            ) from None
        return (signing_input + b"." + _b64(signature)).decode("ascii")

    def __repr__(self) -> str:
        return f"SigningKey(algorithm={self.algorithm!r}, kid={self.kid!r})"


def public_key_from_pem(pem: bytes | str) -> PublicKey:
    """A public key from PEM text: ``PUBLIC KEY`` or an X.509 ``CERTIFICATE`` (as the QMC takes)."""
    data = pem.encode("ascii") if isinstance(pem, str) else pem
    key: Any
    try:
        if b"CERTIFICATE" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ConfigurationError(
            "the JWT verification key is not a PEM public key or certificate."
        ) from exc
    if not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        raise ConfigurationError("the JWT verification key must be an RSA or EC key.")
    return key


def verify_jwt(
    token: str,
    keys: Mapping[Any, PublicKey] | PublicKey,
    algorithms: Iterable[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS and return ``(header, claims)``: :func:`qlikauth.jose.verify_jwt`.

    Kept here for the callers that import it from this module; verifying needs joserfc
    (``pip install 'qlikauth[jwt]'``), minting does not.
    """
    from .jose import verify_jwt as _verify

    return _verify(token, keys, algorithms)
