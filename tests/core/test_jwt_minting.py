"""Minted tokens (QSEoW JWT virtual proxy, Qlik Cloud JWT, private_key_jwt) verified with PyJWT.

PyJWT is an independent implementation: what qlikauth signs must verify there with an
explicit algorithm list, and carry every claim Qlik requires.
"""

from __future__ import annotations

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from qlikauth import QlikUser
from qlikauth.authenticators.jwt import JwtAuthenticator
from qlikauth.cloud import JWT_SESSION_AUDIENCE, CloudJwtIssuer, OAuthClient
from qlikauth.exceptions import ConfigurationError, JwtError
from qlikauth.jwtkeys import ASYMMETRIC_ALGORITHMS, SigningKey, public_key_from_pem, verify_jwt


class Person:
    """A Qlik Cloud identity (the shape qlikauth.mapping.CloudIdentity has)."""

    def __init__(self, sub, name, email, groups=(), email_verified=True):
        self.sub, self.name, self.email, self.groups, self.email_verified = (
            sub,
            name,
            email,
            tuple(groups),
            email_verified,
        )


ANN = Person("ann@example.com", "Ann Example", "ann@example.com", ["Sales", "Finance"])


@pytest.fixture(scope="module")
def rsa_key():
    return SigningKey.generate("RS256", kid="key-1")


@pytest.mark.parametrize("alg", ASYMMETRIC_ALGORITHMS)
def test_every_algorithm_verifies_in_pyjwt(alg):
    key = SigningKey.generate(alg, kid="k")
    token = key.sign({"sub": "x"})
    assert pyjwt.get_unverified_header(token) == {"alg": alg, "typ": "JWT", "kid": "k"}
    assert pyjwt.decode(token, key.public_key, algorithms=[alg]) == {"sub": "x"}
    assert verify_jwt(token, {"k": key.public_key}, [alg])[1] == {"sub": "x"}


def test_hmac_and_none_are_refused_as_algorithms():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for alg in ("HS256", "none", "RS1", ""):
        with pytest.raises(ConfigurationError):
            SigningKey(key, alg)


def test_key_checks_family_size_and_curve():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError, match="2048"):
        SigningKey(small, "RS256")
    with pytest.raises(ConfigurationError, match="RSA key"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), "RS256")
    with pytest.raises(ConfigurationError, match="P-384|secp384r1"):
        SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES384")


def test_pem_round_trip_with_passphrase(tmp_path, rsa_key):
    from cryptography.hazmat.primitives import serialization

    pem = rsa_key._key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    (tmp_path / "k.pem").write_bytes(pem)
    k = SigningKey.from_file(tmp_path / "k.pem", "RS384", kid="a", passphrase="s3cret")
    assert pyjwt.decode(k.sign({"a": 1}), rsa_key.public_key, algorithms=["RS384"]) == {"a": 1}
    with pytest.raises(ConfigurationError, match="passphrase"):
        SigningKey.from_file(tmp_path / "k.pem")
    with pytest.raises(ConfigurationError, match="passphrase"):
        SigningKey.from_file(tmp_path / "k.pem", passphrase="wrong")
    assert "PRIVATE" not in repr(k) and "s3cret" not in repr(k)


def test_verify_refuses_confusion_and_key_bearing_headers(rsa_key):
    import base64
    import hashlib
    import hmac
    import json

    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

    pub_pem = rsa_key.public_pem().encode()
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "key-1"}).encode())
    body = b64(json.dumps({"sub": "evil"}).encode())
    sig = b64(hmac.new(pub_pem, f"{head}.{body}".encode(), hashlib.sha256).digest())
    forged = f"{head}.{body}.{sig}"
    with pytest.raises(JwtError) as exc:
        verify_jwt(forged, {"key-1": rsa_key.public_key}, ["RS256", "HS256"])
    assert exc.value.code == "algorithm"
    with pytest.raises(pyjwt.exceptions.PyJWTError):  # PyJWT agrees
        pyjwt.decode(forged, rsa_key.public_key, algorithms=["RS256"])
    for header in (
        {"alg": "RS256", "jwk": {}},
        {"alg": "RS256", "jku": "https://x"},
        {"alg": "RS256", "crit": ["x"]},
    ):
        tok = rsa_key.sign({"a": 1}, headers={k: v for k, v in header.items() if k != "alg"})
        with pytest.raises(JwtError) as exc:
            verify_jwt(tok, {"key-1": rsa_key.public_key}, ["RS256"])
        assert exc.value.code == "header"
    none_tok = f"{b64(json.dumps({'alg': 'none'}).encode())}.{body}."
    with pytest.raises(JwtError):
        verify_jwt(none_tok, {None: rsa_key.public_key, "key-1": rsa_key.public_key}, ["RS256"])
    other = SigningKey.generate("RS256", kid="key-1")
    with pytest.raises(JwtError) as exc:
        verify_jwt(other.sign({"a": 1}), {"key-1": rsa_key.public_key}, ["RS256"])
    assert exc.value.code == "signature"
    with pytest.raises(JwtError) as exc:
        verify_jwt(rsa_key.sign({"a": 1}), {"other": rsa_key.public_key}, ["RS256"])
    assert exc.value.code == "kid"
    with pytest.raises(JwtError) as exc:
        verify_jwt("a" * 9000, rsa_key.public_key, ["RS256"])
    assert exc.value.code == "malformed"


def test_certificate_pem_carries_the_public_key(rsa_key):
    pub = public_key_from_pem(rsa_key.certificate_pem())
    assert pyjwt.decode(rsa_key.sign({"a": 1}), pub, algorithms=["RS256"]) == {"a": 1}


# -- QSEoW JWT virtual proxy ---------------------------------------------------------


def test_qseow_claims_use_the_configured_names_and_attribute_map(rsa_key):
    auth = JwtAuthenticator(
        rsa_key,
        "https://qlik.example.com/jwt/",
        user_id_claim="uid",
        user_directory_claim="dir",
        attribute_claims={"group": "groups", "email": "mail"},
        audience="qlik-jwt",
        lifetime=60,
    )
    user = QlikUser(
        "ACME",
        "jdoe",
        [("group", "Sales"), ("group", "Finance"), ("email", "j@x.com"), ("secret", "not-mapped")],
    )
    token = auth.mint(user, now=1_700_000_000)
    claims = pyjwt.decode(
        token,
        rsa_key.public_key,
        algorithms=["RS256"],
        audience="qlik-jwt",
        options={"verify_exp": False},
    )
    assert claims == {
        "uid": "jdoe",
        "dir": "ACME",
        "groups": ["Sales", "Finance"],
        "mail": "j@x.com",
        "aud": "qlik-jwt",
        "iat": 1_700_000_000,
        "exp": 1_700_000_060,
    }
    one_group = auth.claims(QlikUser("ACME", "x", [("group", "Only")]))
    assert one_group["groups"] == ["Only"]  # the group claim is always a list
    assert auth.headers(user).as_dict()["Authorization"].startswith("Bearer ey")


def test_qseow_refuses_non_rsa_and_bad_config(rsa_key):
    with pytest.raises(ConfigurationError, match="RS256, RS384 or RS512"):
        JwtAuthenticator(SigningKey.generate("ES256"), "https://q/jwt/")
    with pytest.raises(ConfigurationError, match="https"):
        JwtAuthenticator(rsa_key, "http://q/jwt/")
    with pytest.raises(ConfigurationError):
        JwtAuthenticator(rsa_key, "https://q/jwt/", user_id_claim="exp")
    with pytest.raises(ConfigurationError, match="already used"):
        JwtAuthenticator(rsa_key, "https://q/jwt/", attribute_claims={"group": "userId"})
    with pytest.raises(ConfigurationError, match="verify=False"):
        JwtAuthenticator(rsa_key, "https://q/jwt/", verify=False)
    auth = JwtAuthenticator(rsa_key, "https://q.example.com/jwt")
    assert auth.cookie_name == "X-Qlik-Session-jwt"
    assert (
        auth.engine_url("a b", "t/k") == "wss://q.example.com/jwt/app/a%20b?qlik-csrf-token=t%2Fk"
    )
    assert "Authorization" not in auth.websocket_headers("sid")
    assert auth.websocket_headers("sid") == {
        "Cookie": "X-Qlik-Session-jwt=sid",
        "Origin": "https://q.example.com",
    }


# -- Qlik Cloud ------------------------------------------------------------------------


def test_cloud_jwt_has_every_required_claim(rsa_key):
    issuer = CloudJwtIssuer(rsa_key, "https://portal.example.com", lifetime=300)
    token = issuer.mint(ANN)
    header = pyjwt.get_unverified_header(token)
    assert header["kid"] == "key-1" and header["alg"] == "RS256"
    claims = pyjwt.decode(
        token,
        rsa_key.public_key,
        algorithms=["RS256"],
        audience=JWT_SESSION_AUDIENCE,
        issuer="https://portal.example.com",
        options={"require": ["iss", "aud", "sub", "jti", "iat", "nbf", "exp"]},
    )
    assert claims["sub"] == "ann@example.com" and claims["subType"] == "user"
    assert claims["name"] == "Ann Example" and claims["email"] == "ann@example.com"
    assert claims["email_verified"] is True and claims["groups"] == ["Sales", "Finance"]
    assert 0 < claims["exp"] - claims["nbf"] <= 3600
    assert claims["nbf"] <= claims["iat"] < claims["exp"]
    assert len(claims["jti"]) >= 32
    second = pyjwt.decode(
        issuer.mint(ANN), rsa_key.public_key, algorithms=["RS256"], audience=JWT_SESSION_AUDIENCE
    )
    assert second["jti"] != claims["jti"]


def test_cloud_issuer_refuses_what_qlik_refuses(rsa_key):
    with pytest.raises(ConfigurationError, match="kid"):
        CloudJwtIssuer(SigningKey.generate("RS256"), "iss")
    with pytest.raises(ConfigurationError, match="3600"):
        CloudJwtIssuer(rsa_key, "iss", lifetime=3600)
    with pytest.raises(ConfigurationError, match="email"):
        CloudJwtIssuer(rsa_key, "iss").mint(Person("s", "n", ""))
    no_groups = CloudJwtIssuer(rsa_key, "iss").claims(Person("s", "n", "e@x"))
    assert "groups" not in no_groups


def test_private_key_jwt_assertion(rsa_key):
    client = OAuthClient("client-1", private_key=rsa_key)
    creds = client.credentials("https://t.example.com/oauth/token", now=1_700_000_000)
    assert (
        creds["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )
    assert "client_secret" not in creds and creds["client_id"] == "client-1"
    claims = pyjwt.decode(
        creds["client_assertion"],
        rsa_key.public_key,
        algorithms=["RS256"],
        audience="https://t.example.com/oauth/token",
        options={"verify_exp": False},
    )
    assert claims["iss"] == claims["sub"] == "client-1"
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    with pytest.raises(ConfigurationError, match="RS256, RS512, ES384"):
        OAuthClient("c", private_key=SigningKey.generate("RS384", kid="k"))
    with pytest.raises(ConfigurationError, match="either"):
        OAuthClient("c", client_secret="s", private_key=rsa_key)
    assert "s3cr" not in repr(OAuthClient("c", client_secret="s3cr"))


# -- the mint path written directly over cryptography -----------------------------------


def _payload(token):
    import base64

    seg = token.split(".")[1]
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)).decode("ascii")


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "RS256", "PS256"])
def test_cloud_mint_writes_exactly_the_claims_json(alg):
    """mint() writes the identity's claims once and the per-token ones into that text: the
    payload must be byte for byte what claims() gives, encoded as python-jose and PyJWT do."""
    import json

    key = SigningKey.generate(alg, kid="k-" + alg)
    issuer = CloudJwtIssuer(key, "https://portal.example.com", lifetime=300)
    for person in (
        ANN,
        ANN,
        Person("bo@example.com", 'Bö "Quote"', "bo@example.com"),
        Person("cy@example.com", "Cy", "cy@example.com", ["Ünïcode", "a,b"], email_verified=False),
    ):
        token = issuer.mint(person, now=1_700_000_000.75)
        payload = _payload(token)
        expected = issuer.claims(person, now=1_700_000_000.75)
        expected["jti"] = json.loads(payload)["jti"]
        assert payload == json.dumps(expected, separators=(",", ":"))
        assert (
            pyjwt.decode(
                token,
                key.public_key,
                algorithms=[alg],
                audience=JWT_SESSION_AUDIENCE,
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
            == expected
        )


def test_cloud_mint_follows_a_changed_identity(rsa_key):
    """The encoded claims are keyed by every value they come from: a removed group, a new name
    or an unverified e-mail shows in the next token at once."""
    issuer = CloudJwtIssuer(rsa_key, "https://portal.example.com")

    def claims(person):
        return pyjwt.decode(
            issuer.mint(person),
            rsa_key.public_key,
            algorithms=["RS256"],
            audience=JWT_SESSION_AUDIENCE,
        )

    assert claims(Person("d@x.com", "D", "d@x.com", ["Sales", "Finance"]))["groups"] == [
        "Sales",
        "Finance",
    ]
    assert claims(Person("d@x.com", "D", "d@x.com", ["Sales"]))["groups"] == ["Sales"]
    assert "groups" not in claims(Person("d@x.com", "D", "d@x.com", []))
    assert claims(Person("d@x.com", "D. Two", "d@x.com", ["Sales"]))["name"] == "D. Two"
    assert (
        claims(Person("d@x.com", "D", "d@x.com", ["Sales"], email_verified=False))["email_verified"]
        is False
    )
    with pytest.raises(
        ConfigurationError, match="name"
    ):  # the rules hold on every call, cached or not
        issuer.mint(Person("d@x.com", " ", "d@x.com", ["Sales"]))


def test_cloud_mint_uses_a_subclass_claims(rsa_key):
    class WithTenantClaim(CloudJwtIssuer):
        def claims(self, user, *, now=None):
            return {**super().claims(user, now=now), "tenant": "eu"}

    token = WithTenantClaim(rsa_key, "https://portal.example.com").mint(ANN)
    assert (
        pyjwt.decode(
            token, rsa_key.public_key, algorithms=["RS256"], audience=JWT_SESSION_AUDIENCE
        )["tenant"]
        == "eu"
    )


def test_cloud_mint_reads_groups_given_as_an_iterator_once(rsa_key):
    class Lazy(Person):
        @property
        def groups(self):
            return iter(["Sales", "Ops"])

        @groups.setter
        def groups(self, value):
            pass

    token = CloudJwtIssuer(rsa_key, "iss").mint(Lazy("e@x.com", "E", "e@x.com"))
    assert pyjwt.decode(
        token, rsa_key.public_key, algorithms=["RS256"], audience=JWT_SESSION_AUDIENCE
    )["groups"] == ["Sales", "Ops"]


def test_headers_cannot_change_the_algorithm(rsa_key):
    token = rsa_key.sign({"a": 1}, headers={"alg": "none", "x-extra": "1"})
    header = pyjwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["x-extra"] == "1" and header["kid"] == "key-1"
    assert pyjwt.decode(token, rsa_key.public_key, algorithms=["RS256"]) == {"a": 1}


def test_es_signature_is_raw_r_and_s(rsa_key):
    """RFC 7518 3.4: an ES signature is r || s, each as long as the curve's order, not DER."""
    import base64

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    for alg, size in (("ES256", 32), ("ES384", 48), ("ES512", 66)):
        key = SigningKey.generate(alg)
        head, body, sig = key.sign({"n": 1}).split(".")
        raw = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
        assert len(raw) == 2 * size
        der = encode_dss_signature(
            int.from_bytes(raw[:size], "big"), int.from_bytes(raw[size:], "big")
        )
        key.public_key.verify(
            der,
            f"{head}.{body}".encode(),
            ec.ECDSA(
                {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[alg]
            ),
        )


def test_claims_that_are_not_json_are_a_jwt_error(rsa_key):
    with pytest.raises(JwtError, match="JSON"):
        rsa_key.sign({"a": object()})
    cyclic: dict = {}
    cyclic["self"] = cyclic
    with pytest.raises(JwtError, match="JSON"):
        rsa_key.sign(cyclic)


def test_compact_json_is_json_dumps_compact():
    import json

    from qlikauth.jwtkeys import compact_json

    for value in (
        {"a": 1, "b": [1, 2.5, None, True, False], "c": 'é"\n\u2028', "d": {"e": []}},
        {},
        [],
        "x",
        3,
    ):
        assert compact_json(value) == json.dumps(value, separators=(",", ":"))
