"""Verifying JWS signatures and reading JWKs: the one path, on joserfc.

Everything in qlikauth that checks a signed JWT comes through here: the OpenID Connect
relying party (id_tokens, back-channel logout tokens, the provider's JWKS), and
:func:`verify_jwt`, used by the emulators (a Qlik Cloud tenant's JWT login and
``private_key_jwt`` assertions, a QSEoW JWT virtual proxy). joserfc (Authlib's JOSE library,
on ``cryptography``) checks the signature; minting stays on ``cryptography`` alone
(:mod:`qlikauth.jwtkeys`).

What is checked here, before joserfc sees the token, and why:

* **Size first**: a token longer than the caller's cap is refused before it is parsed.
* **Compact JWS only**: three base64url segments, header and payload JSON objects, a
  non-empty signature (an encrypted JWE has five segments).
* **Explicit algorithms**: the caller's allow-list intersected with RS/PS/ES; ``none`` and
  HMAC never verify, whatever a list says. joserfc is then given exactly one algorithm, the
  token's, and the key whose type the caller already matched to it.
* **No key from the token**: ``jwk``, ``jku``, ``x5u``, ``x5c`` are refused (keys come from
  configuration or the provider's JWKS), and ``crit`` too (no extension is implemented).
* **Keys by type and size**: RSA keys of at least 2048 bits for RS/PS, EC keys on the curve
  of the algorithm for ES (P-256 ES256, P-384 ES384, P-521 ES512); a JWK's ``alg``, ``use``
  and ``key_ops`` must allow the use; private members of a JWK are dropped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .exceptions import JwtError
from .jwtkeys import (
    ASYMMETRIC_ALGORITHMS,
    EC_ALGORITHMS,
    MAX_TOKEN_BYTES,
    MIN_RSA_BITS,
    PSS_ALGORITHMS,
    RSA_ALGORITHMS,
    PublicKey,
)

try:
    from joserfc import jws as _jws
    from joserfc.errors import BadSignatureError, JoseError
    from joserfc.jwk import ECKey, RSAKey
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ModuleNotFoundError(
        f"verifying JWTs needs joserfc ({exc.name} is missing): pip install 'qlikauth[jwt]' "
        "(or 'qlikauth[oidc]')",
        name=exc.name,
    ) from exc

__all__ = [
    "CompactJws",
    "VerifyingKey",
    "parse_compact",
    "check_header",
    "key_from_jwk",
    "key_from_public",
    "verify_signature",
    "verify_jwt",
    "algorithms_for_key",
    "reason_of",
    "EC_CURVES",
    "REFUSED_HEADERS",
]

#: The JWK curve each ES algorithm takes (RFC 7518 3.4).
EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_CURVE_TYPES: dict[str, type[ec.EllipticCurve]] = {
    "P-256": ec.SECP256R1,
    "P-384": ec.SECP384R1,
    "P-521": ec.SECP521R1,
}
#: Headers that would let a token pick its own verification key, or demand extensions.
REFUSED_HEADERS = ("jwk", "jku", "x5u", "x5c", "crit")
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth")
_B64URL = re.compile(r"[A-Za-z0-9_-]*\Z")

VerifyingKey = RSAKey | ECKey


def _refuse(reason: str, message: str) -> JwtError:
    return JwtError(message, code=reason)


def _unb64(segment: str, what: str) -> bytes:
    if not _B64URL.match(segment):
        raise _refuse("malformed", f"the {what} is not base64url; refused.")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise _refuse("malformed", f"the {what} is not base64url; refused.") from None


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS split and decoded, not yet verified: look, never trust."""

    header: dict[str, Any]
    claims: dict[str, Any]
    token: str = field(repr=False)
    signed: bool = True  # False: the signature segment is empty


def parse_compact(
    token: Any, *, max_bytes: int = MAX_TOKEN_BYTES, what: str = "token"
) -> CompactJws:
    """Split a compact JWS (size capped first).

    :class:`JwtError` reasons ``too_large``, ``malformed``."""
    if not isinstance(token, str) or not token:
        raise _refuse("malformed", f"the {what} is missing or not text.")
    if len(token) > max_bytes:
        raise _refuse(
            "too_large", f"the {what} is larger than {max_bytes} bytes; refused before parsing."
        )
    parts = token.split(".")
    if len(parts) != 3:
        raise _refuse(
            "malformed",
            f"the {what} is not a signed JWT (a compact JWS of three parts; "
            "encrypted tokens are not accepted).",
        )
    try:
        header = json.loads(_unb64(parts[0], f"{what} header"))
        claims = json.loads(_unb64(parts[1], f"{what} payload"))
    except ValueError:
        raise _refuse("malformed", f"the {what} header or payload is not JSON; refused.") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _refuse("malformed", f"the {what} header or payload is not a JSON object; refused.")
    signature = _unb64(parts[2], f"{what} signature")
    return CompactJws(header, claims, token, bool(signature))


def check_header(jws: CompactJws, algorithms: Iterable[str], *, what: str = "token") -> str:
    """The token's ``alg`` when allowed (see the module docstring), else :class:`JwtError`.

    Reasons: ``alg_none``, ``algorithm`` (not in ``algorithms``, or not asymmetric), ``header``.
    """
    alg = jws.header.get("alg")
    allowed = [a for a in algorithms if a in ASYMMETRIC_ALGORITHMS]
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _refuse("alg_none", f"the {what} is unsigned (alg 'none' or no alg); refused.")
    if alg not in allowed:
        raise _refuse(
            "algorithm",
            f"the {what} is signed with {alg[:20]!r}, which is not allowed "
            f"(allowed: {', '.join(allowed) or 'none'}); refused.",
        )
    carried = [h for h in REFUSED_HEADERS if h in jws.header]
    if "crit" in carried:
        raise _refuse(
            "header",
            f"the {what} has critical header extensions (crit) that "
            "qlikauth does not implement; refused.",
        )
    if carried:
        raise _refuse(
            "header",
            f"the {what} names its own key ({', '.join(carried)} header); keys "
            "come only from configuration or the provider's JWKS; refused.",
        )
    return alg


def _family_kty(alg: str) -> str:
    return "EC" if alg in EC_ALGORITHMS else "RSA"


def check_public_key(key: Any, alg: str, *, what: str = "the key") -> None:
    """Is ``key`` (a ``cryptography`` public key) one ``alg`` may use?

    :class:`JwtError` ``key_type`` when not."""
    if alg in EC_ALGORITHMS:
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise _refuse(
                "key_type",
                f"{alg} needs an EC key, but {what} is not one; refused "
                "(a token must not choose how a key is used).",
            )
        want = _CURVE_TYPES[EC_CURVES[alg]]
        if not isinstance(key.curve, want):
            raise _refuse(
                "key_type",
                f"{alg} needs an EC key on {EC_CURVES[alg]}, but {what} "
                f"is on {key.curve.name}; refused.",
            )
    elif alg in RSA_ALGORITHMS or alg in PSS_ALGORITHMS:
        if not isinstance(key, rsa.RSAPublicKey):
            raise _refuse(
                "key_type",
                f"{alg} needs an RSA key, but {what} is not one; refused "
                "(a token must not choose how a key is used).",
            )
        if key.key_size < MIN_RSA_BITS:
            raise _refuse(
                "key_type",
                f"{what} is an RSA key of {key.key_size} bits; at least "
                f"{MIN_RSA_BITS} are required; refused.",
            )
    else:
        raise _refuse("algorithm", f"{alg[:20]!r} is not an asymmetric JWS algorithm; refused.")


def key_from_jwk(jwk: Mapping[str, Any], alg: str) -> VerifyingKey:
    """A verifying key from a provider's JWK, for ``alg`` only (checks in the module docstring).

    :class:`JwtError` reasons: ``key_type`` (the key is not one ``alg`` may use), ``key``
    (the JWK cannot be read).
    """
    name = str(jwk.get("kid"))[:40]
    kty = jwk.get("kty")
    want = _family_kty(alg)
    if kty != want:
        raise _refuse(
            "key_type",
            f"the token says {alg} but the key {name!r} is "
            f"{str(kty)[:10]!r}, not {want}; refused (a token must not "
            "choose how a key is used).",
        )
    if jwk.get("alg") not in (None, alg):
        raise _refuse(
            "key_type",
            f"the key {name!r} is for {str(jwk.get('alg'))[:20]}, the token says {alg}; refused.",
        )
    if jwk.get("use") not in (None, "sig"):
        raise _refuse("key_type", f"the key {name!r} is not a signature key (use); refused.")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise _refuse(
            "key_type", f"the key {name!r} is not for verifying signatures (key_ops); refused."
        )
    if want == "EC" and jwk.get("crv") != EC_CURVES[alg]:
        raise _refuse(
            "key_type",
            f"{alg} needs a {EC_CURVES[alg]} key, the key {name!r} is "
            f"{str(jwk.get('crv'))[:10]!r}; refused.",
        )
    if want == "RSA":
        # Measured before the import, so a short key is refused, not imported with a warning.
        n = jwk.get("n")
        modulus = _unb64(n, "key modulus") if isinstance(n, str) else b""
        bits = int.from_bytes(modulus, "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise _refuse(
                "key_type",
                f"the key {name!r} is an RSA key of {bits} bits; at least "
                f"{MIN_RSA_BITS} are required; refused.",
            )
    public = {
        k: v
        for k, v in jwk.items()
        if k not in _PRIVATE_MEMBERS and k not in ("key_ops", "use", "alg")
    }
    try:
        key: VerifyingKey = (ECKey if want == "EC" else RSAKey).import_key(public)
    except (JoseError, ValueError, TypeError) as exc:
        raise _refuse(
            "key", f"the key {name!r} cannot be read: {type(exc).__name__}; refused."
        ) from None
    check_public_key(key.raw_value, alg, what=f"the key {name!r}")
    return key


def key_from_public(key: PublicKey, alg: str) -> VerifyingKey:
    """A verifying key from a ``cryptography`` public key, checked for ``alg``."""
    check_public_key(key, alg)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return ECKey.import_key(key)
    return RSAKey.import_key(key)


def _rename(exc: JwtError, reason: str) -> None:
    # verify_jwt's callers (the emulators) know fewer reasons than the OIDC relying party.
    exc.code = reason


def reason_of(exc: JwtError) -> str:
    """The check a :class:`JwtError` from this module names (its ``code``)."""
    return str(getattr(exc, "code", "") or "")


#: joserfc's own size limits; the caller's (smaller) cap was applied by :func:`parse_compact`.
_JOSERFC_LIMIT = 256 * 1024
_REGISTRIES: dict[str, Any] = {}


def _registry(alg: str) -> Any:
    # One algorithm only: joserfc never picks another from the token. Header names other
    # than the registered ones are allowed (providers add their own); the ones that matter
    # were refused by check_header.
    found = _REGISTRIES.get(alg)
    if found is None:
        found = _jws.JWSRegistry(algorithms=[alg], strict_check_header=False)
        found.max_header_length = found.max_payload_length = _JOSERFC_LIMIT
        found.max_signature_length = _JOSERFC_LIMIT
        _REGISTRIES[alg] = found
    return found


def verify_signature(jws: CompactJws, key: VerifyingKey, alg: str, *, what: str = "token") -> None:
    """Check ``jws``'s signature with ``key`` under ``alg`` (both already checked).

    :class:`JwtError` reason ``signature`` when it does not verify."""
    if not jws.signed:
        raise _refuse("signature", f"the {what} has an empty signature; refused.")
    try:
        _jws.deserialize_compact(jws.token, key, registry=_registry(alg))
    except BadSignatureError:
        raise _refuse("signature", f"the {what}'s signature does not verify; refused.") from None
    except (JoseError, ValueError, TypeError) as exc:
        raise _refuse(
            "signature", f"the {what} cannot be verified ({type(exc).__name__}); refused."
        ) from None


def algorithms_for_key(key: PublicKey, allowed: Iterable[str]) -> list[str]:
    """The algorithms of ``allowed`` that ``key`` can verify (its family, curve and size)."""
    out = []
    for a in allowed:
        if a in ASYMMETRIC_ALGORITHMS:
            try:
                check_public_key(key, a)
            except JwtError:
                continue
            out.append(a)
    return out


def verify_jwt(
    token: str,
    keys: Mapping[Any, PublicKey] | PublicKey,
    algorithms: Iterable[str],
    *,
    max_bytes: int = MAX_TOKEN_BYTES,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify a compact JWS and return ``(header, claims)``; claims are not checked here.

    :param keys: one public key, or ``kid -> key`` (the header's ``kid`` picks the key; a
        token without a ``kid`` only matches the ``None`` entry).
    :param algorithms: the allow list; it is narrowed further to what the chosen key can
        verify, so an RSA key never meets an EC or HMAC algorithm.
    :raises JwtError: with ``reason`` set to ``"malformed"``, ``"algorithm"``, ``"header"``,
        ``"kid"`` or ``"signature"``.
    """
    try:
        jws = parse_compact(token, max_bytes=max_bytes)
    except JwtError as exc:
        if reason_of(exc) == "too_large":
            _rename(exc, "malformed")
        raise
    refused = [h for h in REFUSED_HEADERS if h in jws.header]
    if refused:
        raise _refuse(
            "header",
            f"the token carries header(s) {', '.join(refused)}, which are "
            "refused: keys come from configuration only.",
        )
    if isinstance(keys, Mapping):
        kid = jws.header.get("kid")
        key = keys.get(kid if isinstance(kid, str) else None)
        if key is None:
            raise _refuse("kid", "the token's kid matches no configured key.")
    else:
        key = keys
    try:
        alg = check_header(jws, algorithms_for_key(key, algorithms))
    except JwtError as exc:
        if reason_of(exc) == "alg_none":
            _rename(exc, "algorithm")
        raise
    verify_signature(jws, key_from_public(key, alg), alg)
    return jws.header, jws.claims
