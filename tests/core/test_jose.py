"""qlikauth.jose: every JWS verification on joserfc, cross-checked with PyJWT (an independent
library)."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from qlikauth.exceptions import JwtError
from qlikauth.jose import key_from_jwk, parse_compact, verify_jwt
from qlikauth.jwtkeys import ASYMMETRIC_ALGORITHMS, SigningKey

ROOT = Path(__file__).resolve().parents[2]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGORITHMS)
def test_every_asymmetric_algorithm_verifies_both_ways(alg: str) -> None:
    """qlikauth mints, joserfc verifies; PyJWT mints, joserfc verifies; PyJWT agrees on both."""
    key = SigningKey.generate(alg, kid="k1")
    ours = key.sign({"sub": "ann"})
    assert verify_jwt(ours, {"k1": key.public_key}, [alg])[1] == {"sub": "ann"}
    assert pyjwt.decode(ours, key.public_key, algorithms=[alg])["sub"] == "ann"
    theirs = pyjwt.encode({"sub": "bob"}, key._key, algorithm=alg, headers={"kid": "k1"})
    assert verify_jwt(theirs, {"k1": key.public_key}, [alg])[1]["sub"] == "bob"
    # one bit of the signature changed: refused by both
    head, body, sig = theirs.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[-1] ^= 1
    forged = f"{head}.{body}.{b64(bytes(raw))}"
    with pytest.raises(JwtError) as info:
        verify_jwt(forged, {"k1": key.public_key}, [alg])
    assert info.value.code == "signature"
    with pytest.raises(pyjwt.PyJWTError):
        pyjwt.decode(forged, key.public_key, algorithms=[alg])


def test_pss_is_not_accepted_where_only_pkcs1_is_allowed() -> None:
    key = SigningKey.generate("PS256", kid="k1")
    with pytest.raises(JwtError) as info:
        verify_jwt(key.sign({"a": 1}), {"k1": key.public_key}, ["RS256"])
    assert info.value.code == "algorithm"


def test_padded_or_non_base64url_segments_are_refused() -> None:
    key = SigningKey.generate("RS256", kid="k1")
    head, body, sig = key.sign({"sub": "ann"}).split(".")
    assert verify_jwt(f"{head}.{body}.{sig}", {"k1": key.public_key}, ["RS256"])
    # the same bytes with padding or another alphabet: one token, one spelling
    for token in (
        f"{head}=.{body}.{sig}",
        f"{head}.{body}=.{sig}",
        f"{head}.{body}.{sig}==",
        f"{head}.{body}+.{sig}",
    ):
        with pytest.raises(JwtError) as info:
            verify_jwt(token, {"k1": key.public_key}, ["RS256"])
        assert info.value.code == "malformed"


def test_size_cap_applies_before_parsing() -> None:
    with pytest.raises(JwtError) as info:
        parse_compact("x" * 5000, max_bytes=4096)
    assert info.value.code == info.value.code == "too_large"  # .code: every bridge error's name
    with pytest.raises(JwtError) as info:
        verify_jwt("x" * 9000, SigningKey.generate("ES256").public_key, ["ES256"])
    assert info.value.code == info.value.code == "malformed"


def _jwk(key: object, **extra: object) -> dict[str, object]:
    alg = RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else ECAlgorithm
    return {**alg.to_jwk(key, as_dict=True), **extra}  # type: ignore[attr-defined]


def test_jwks_keys_are_checked_by_type_curve_size_and_use() -> None:
    rsa_pub = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert key_from_jwk(_jwk(rsa_pub, kid="r"), "PS256")
    assert key_from_jwk(_jwk(p384, kid="e"), "ES384")
    refused = [
        (_jwk(weak, kid="w"), "RS256"),  # under 2048 bits
        (_jwk(rsa_pub, kid="r"), "ES256"),  # RSA key, EC algorithm
        (_jwk(p256, kid="e"), "RS256"),  # EC key, RSA algorithm
        (_jwk(p256, kid="e"), "ES384"),  # P-256 under ES384
        (_jwk(rsa_pub, kid="r", alg="RS256"), "PS256"),
        (_jwk(rsa_pub, kid="r", use="enc"), "RS256"),
        (_jwk(rsa_pub, kid="r", key_ops=["encrypt"]), "RS256"),
    ]
    for jwk, alg in refused:
        with pytest.raises(JwtError) as info:
            key_from_jwk(jwk, alg)
        assert info.value.code == "key_type", (jwk.get("kid"), alg)
    with pytest.raises(JwtError) as info:
        key_from_jwk({"kty": "RSA", "n": "AQAB"}, "RS256")
    assert info.value.code in ("key", "key_type")


def test_no_install_needs_python_jose() -> None:
    """Verifying (verify_jwt, the OIDC relying party, the emulator) works with python-jose
    absent."""
    code = (
        "import sys\n"
        "sys.modules['jose'] = None  # as if python-jose were not installed\n"
        "import qlikauth.jose, qlikauth.bridges.oidc, qlikauth.emulator.cloud\n"
        "from qlikauth.jwtkeys import SigningKey, verify_jwt\n"
        "k = SigningKey.generate('ES256', kid='k')\n"
        "assert verify_jwt(k.sign({'a': 1}), {'k': k.public_key}, ['ES256'])[1] == {'a': 1}\n"
    )
    env_path = f"{ROOT}:{ROOT / 'integrations'}"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    extras = (ROOT / "pyproject.toml").read_text()
    assert "python-jose" not in extras and '"joserfc>=' in extras


def test_every_jws_verification_goes_through_qlikauth_jose() -> None:
    """No module but qlikauth/jose.py imports a JOSE library for verifying."""
    offenders = []
    for path in (ROOT / "qlikauth").rglob("*.py"):
        text = path.read_text()
        if path.name == "jose.py":
            continue
        for needle in (
            "from jose",
            "import jose\n",
            "from joserfc",
            "import joserfc",
            "import jwt\n",
        ):
            if needle in text:
                offenders.append(f"{path.relative_to(ROOT)}: {needle.strip()}")
    assert not offenders, offenders
