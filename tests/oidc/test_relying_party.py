"""The OpenID Connect relying party against a real OpenID provider (oidc-provider on node).

Every refusal starts from a real token or callback the provider issued, then alters or replays
it; each is refused with its own reason. Accepted and refused tokens are cross-checked with
PyJWT, an independent implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt as pyjwt
import pytest
import requests
from op_peer import OpenIDProvider, new_ec_jwk, new_rsa_jwk, public_jwk  # noqa: E402

from qlikauth.bridges.oidc import OidcRelyingParty
from qlikauth.exceptions import OidcError, RedirectError

from .conftest import REDIRECT_URI, RP_BASE, clients_for, start_op


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def begin_and_authorize(
    rp: OidcRelyingParty,
    op: OpenIDProvider,
    user: str = "alice",
    browser: str | None = None,
    session: requests.Session | None = None,
) -> tuple[str, dict[str, str], str]:
    """(browser cookie value, the callback parameters the provider sent, the nonce asked for)."""
    req = rp.begin(browser, "/after")
    nonce = parse_qs(urlsplit(req.url).query)["nonce"][0]
    answer = op.sign_in(req.url, user, session=session)
    assert answer["url"].split("?")[0] == REDIRECT_URI
    return req.cookie.value, answer["params"], nonce


def real_tokens(
    rp: OidcRelyingParty, op: OpenIDProvider, user: str = "alice"
) -> tuple[str, str, str]:
    """A real (id_token, access_token, nonce) from the provider, not yet checked by the RP."""
    browser, params, nonce = begin_and_authorize(rp, op, user)
    record = json.loads(
        rp.store.take("oidc:state:" + hashlib.sha256(params["state"].encode()).hexdigest())
    )
    tokens = rp._token_request(rp.metadata(), params["code"], record["v"])
    return tokens["id_token"], tokens["access_token"], nonce


def claims_of(token: str) -> dict[str, Any]:
    return pyjwt.decode(token, options={"verify_signature": False})


def resign(op: OpenIDProvider, token: str, **changes: Any) -> str:
    """The same claims with ``changes`` (None deletes), signed again with the provider's own key."""
    claims = claims_of(token)
    for k, v in changes.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return op.sign(claims)


def pyjwt_accepts(op: OpenIDProvider, token: str, client_id: str = "portal-basic") -> bool:
    """Does PyJWT, given the provider's published keys, accept ``token`` as an id_token?"""
    keys = requests.get(f"{op.issuer}/jwks", verify=op.ca_bundle, timeout=10).json()["keys"]
    jwks = pyjwt.PyJWKSet.from_dict({"keys": keys})
    try:
        kid = pyjwt.get_unverified_header(token).get("kid")
        key = next(k for k in jwks.keys if k.key_id == kid)
        pyjwt.decode(
            token,
            key.key,
            algorithms=["RS256"],
            audience=client_id,
            issuer=op.issuer,
            leeway=60,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except (pyjwt.PyJWTError, StopIteration):
        return False
    return True


# -- sign-in that works ----------------------------------------------------------------------
@pytest.mark.parametrize("client_id", ["portal-basic", "portal-post", "portal-pkjwt"])
def test_sign_in_with_each_client_authentication(
    rp_factory: Any, op: OpenIDProvider, client_id: str
) -> None:
    rp = rp_factory(client_id=client_id)
    browser, params, _ = begin_and_authorize(rp, op)
    login = rp.complete(browser, params)
    assert login.subject == "a1b2c3-alice" and login.issuer == op.issuer
    assert login.claims["email"] == "alice@example.com" and login.claims["groups"] == [
        "Finance",
        "Clinicians",
    ]
    assert login.sid and login.next_url == "/after"
    assert login.clear_cookie is not None and login.clear_cookie.deletes
    # the independent implementation agrees the provider's token is good
    assert pyjwt_accepts(op, login.id_token, client_id)
    assert "id_token" not in repr(login) and login.id_token not in repr(login)


def test_authorization_request_shape(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    req = rp.begin(None)
    q = {k: v[0] for k, v in parse_qs(urlsplit(req.url).query).items()}
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert q["redirect_uri"] == REDIRECT_URI and q["response_type"] == "code"
    assert len(q["state"]) >= 43 and len(q["nonce"]) >= 43 and q["state"] != q["nonce"]
    c = req.cookie
    assert c.name == "__Host-qlikauth-oidc" and c.secure and c.http_only and c.samesite == "None"
    assert c.max_age is None and c.domain is None and c.path == "/"  # browser-session, host-only
    # a second tab of the same browser keeps the binding; each sign-in gets its own state
    again = rp.begin(c.value)
    assert again.cookie.value == c.value and again.state != req.state


def test_form_post_response_mode(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory(response_mode="form_post")
    req = rp.begin(None)
    answer = op.sign_in(req.url, "bob")
    assert answer.get("form_post") and answer["url"] == REDIRECT_URI
    login = rp.complete(req.cookie.value, answer["params"])
    assert login.subject == "d4e5f6-bob"


def test_userinfo_is_merged_and_must_be_about_the_same_subject(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    rp = rp_factory(userinfo=True)
    browser, params, _ = begin_and_authorize(rp, op, "bob")
    before = rp.http.requests
    login = rp.complete(browser, params)
    assert (
        rp.http.requests - before == 3
    )  # token, JWKS (first token), userinfo; metadata was cached
    assert rp.jwks.fetches == 1
    assert login.claims["preferred_username"] == "bob"


def test_environment_cannot_redirect_provider_calls(
    rp_factory: Any, op: OpenIDProvider, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / HTTPS_PROXY in the environment change nothing."""
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate\n")
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(bogus))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    rp = rp_factory()
    browser, params, _ = begin_and_authorize(rp, op)
    assert rp.complete(browser, params).subject == "a1b2c3-alice"


def test_without_the_ca_bundle_the_private_provider_is_not_trusted(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    rp = rp_factory(ca_bundle=None)
    with pytest.raises(OidcError) as info:
        rp.begin(None)
    assert info.value.code == "provider_tls" and "ca_bundle" in str(info.value)


# -- refusals: each a real token or callback, altered or replayed ---------------------------------
def test_wrong_signature(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    head, body, sig = token.split(".")
    claims = claims_of(token) | {"sub": "someone-else"}
    forged = f"{head}.{b64(json.dumps(claims).encode())}.{sig}"
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "signature"
    assert not pyjwt_accepts(op, forged)
    # the unaltered token passes: the refusal is about the change
    assert rp.validate_id_token(token, nonce=nonce)["sub"] == "a1b2c3-alice"


def test_alg_none(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    header = pyjwt.get_unverified_header(token) | {"alg": "none"}
    forged = f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}."
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "alg_none"
    assert not pyjwt_accepts(op, forged)


def test_hs256_signed_with_the_providers_public_key(rp_factory: Any, op: OpenIDProvider) -> None:
    from cryptography.hazmat.primitives import serialization
    from op_peer import private_key_of

    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    public_pem = (
        private_key_of(op.signing_jwk)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    header = pyjwt.get_unverified_header(token) | {"alg": "HS256"}
    signing_input = f"{b64(json.dumps(header).encode())}.{token.split('.')[1]}"
    for secret in (public_pem, public_pem.strip(), json.dumps(public_jwk(op.signing_jwk)).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        forged = f"{signing_input}.{b64(mac)}"
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(forged, nonce=nonce)
        assert info.value.code == "alg_not_allowed"
        assert not pyjwt_accepts(op, forged)


def test_unknown_kid_refetches_once_then_refuses(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    rp.validate_id_token(token, nonce=nonce)
    assert rp.jwks.fetches == 1
    stranger = new_rsa_jwk("kid-the-provider-never-had")
    forged = op.sign(claims_of(token), jwk=stranger)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "unknown_kid" and rp.jwks.fetches == 2
    # a stream of forged kids: no more fetches inside the refetch interval
    for i in range(20):
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(
                op.sign(claims_of(token), jwk=new_rsa_jwk(f"forged-{i}")), nonce=nonce
            )
        assert info.value.code == "unknown_kid"
    assert rp.jwks.fetches == 2
    assert not pyjwt_accepts(op, forged)


def test_expired(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    now = int(time.time())
    forged = resign(op, token, iat=now - 7200, exp=now - 3600)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "expired"
    assert not pyjwt_accepts(op, forged)
    # within the leeway it still passes (clock skew), beyond it not
    assert rp.validate_id_token(resign(op, token, exp=now - 30), nonce=nonce)


def test_iat_in_the_future_beyond_leeway(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory(leeway=30)
    token, _, nonce = real_tokens(rp, op)
    now = int(time.time())
    forged = resign(op, token, iat=now + 600, exp=now + 1200)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "iat_future"
    assert rp.validate_id_token(resign(op, token, iat=now + 10), nonce=nonce)


@pytest.mark.parametrize(
    "wrong", ["{issuer}/", "{issuer}x", "https://localhos:{port}", "http://localhost:{port}"]
)
def test_wrong_issuer(rp_factory: Any, op: OpenIDProvider, wrong: str) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    forged = resign(op, token, iss=wrong.format(issuer=op.issuer, port=op.port))
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "issuer"
    assert not pyjwt_accepts(op, forged)


@pytest.mark.parametrize(
    "aud", ["another-client", ["another-client"], ["portal-basic", "another-client"]]
)
def test_wrong_audience(rp_factory: Any, op: OpenIDProvider, aud: Any) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    forged = resign(op, token, aud=aud)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(forged, nonce=nonce)
    assert info.value.code == "audience"
    # several audiences are fine once azp names this client
    if isinstance(aud, list) and "portal-basic" in aud:
        assert rp.validate_id_token(resign(op, token, aud=aud, azp="portal-basic"), nonce=nonce)
        with pytest.raises(OidcError):
            rp.validate_id_token(resign(op, token, aud=aud, azp="another-client"), nonce=nonce)
    else:
        assert not pyjwt_accepts(op, forged)


def test_missing_nonce(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(resign(op, token, nonce=None), nonce=nonce)
    assert info.value.code == "nonce_missing"


def test_nonce_of_another_browser(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token_a, _, nonce_a = real_tokens(rp, op, "alice")
    _, _, nonce_b = real_tokens(rp, op, "alice")
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(token_a, nonce=nonce_b)
    assert info.value.code == "nonce_mismatch"
    assert rp.validate_id_token(token_a, nonce=nonce_a)


def test_callback_in_another_browser(rp_factory: Any, op: OpenIDProvider) -> None:
    """The victim's callback URL replayed in the attacker's browser (or the reverse: login CSRF)."""
    rp = rp_factory()
    _, params, _ = begin_and_authorize(rp, op)
    other = rp.begin(None).cookie.value
    with pytest.raises(OidcError) as info:
        rp.complete(other, params)
    assert info.value.code == "state_browser"
    with pytest.raises(OidcError) as info:
        rp.complete(None, params)
    assert info.value.code in ("state_browser", "state_unknown")


def test_replayed_state(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    browser, params, _ = begin_and_authorize(rp, op)
    assert rp.complete(browser, params).subject
    with pytest.raises(OidcError) as info:
        rp.complete(browser, params)
    assert info.value.code == "state_unknown"


def test_replayed_state_on_another_portal_process(rp_factory: Any, op: OpenIDProvider) -> None:
    """Two relying-party instances on one shared store: the second sees the state used up."""
    from qlikauth.store import MemoryStore

    shared = MemoryStore()
    a, b = rp_factory(store=shared), rp_factory(store=shared)
    browser, params, _ = begin_and_authorize(a, op)
    assert b.complete(browser, params).subject == "a1b2c3-alice"  # callback lands on the other one
    with pytest.raises(OidcError) as info:
        a.complete(browser, params)
    assert info.value.code == "state_unknown"


def test_pkce_verifier_mismatch(rp_factory: Any, op: OpenIDProvider) -> None:
    """An authorization code from one sign-in injected into another's callback (code injection)."""
    rp = rp_factory()
    session = requests.Session()
    browser, params_a, _ = begin_and_authorize(rp, op, session=session)
    _, params_b, _ = begin_and_authorize(rp, op, browser=browser, session=session)
    injected = {**params_b, "code": params_a["code"]}
    with pytest.raises(OidcError) as info:
        rp.complete(browser, injected)
    assert info.value.code == "token_request" and "invalid_grant" in str(info.value)
    assert "PKCE" in str(info.value)


def test_provider_error_and_missing_code(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    req = rp.begin(None)
    with pytest.raises(OidcError) as info:
        rp.complete(
            req.cookie.value,
            {
                "state": req.state,
                "error": "access_denied",
                "error_description": "<script>x</script> user said no",
                "iss": op.issuer,
            },
        )
    assert info.value.code == "provider_error" and "access_denied" in str(info.value)
    assert "<script>" not in str(info.value)
    with pytest.raises(OidcError) as info:
        rp.complete(req.cookie.value, {"state": req.state, "iss": op.issuer})
    assert info.value.code == "state_unknown"  # the state was used by the error answer


def test_iss_parameter_of_another_provider(rp_factory: Any, op: OpenIDProvider) -> None:
    """RFC 9207: the provider sends iss; a response carrying another one (mix-up) is refused."""
    rp = rp_factory()
    browser, params, _ = begin_and_authorize(rp, op)
    with pytest.raises(OidcError) as info:
        rp.complete(browser, {**params, "iss": "https://evil.example"})
    assert info.value.code == "issuer"
    _, params, _ = begin_and_authorize(rp, op, browser=browser)
    with pytest.raises(OidcError) as info:
        rp.complete(browser, {k: v for k, v in params.items() if k != "iss"})
    assert info.value.code == "issuer"


def test_at_hash_must_match_the_access_token(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    token, access, nonce = real_tokens(rp, op)
    good = b64(hashlib.sha256(access.encode()).digest()[:16])
    assert rp.validate_id_token(resign(op, token, at_hash=good), nonce=nonce, access_token=access)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(
            resign(op, token, at_hash=good), nonce=nonce, access_token=access + "x"
        )
    assert info.value.code == "at_hash"


@pytest.mark.parametrize(
    "header",
    [
        {"jku": "https://evil.example/jwks"},
        {"jwk": {"kty": "RSA"}},
        {"x5u": "https://evil.example/c.pem"},
        {"crit": ["exp"]},
    ],
)
def test_keys_named_by_the_token_are_refused(
    rp_factory: Any, op: OpenIDProvider, header: dict[str, Any]
) -> None:
    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(op.sign(claims_of(token), headers=header), nonce=nonce)
    assert info.value.code == "header"


def test_oversized_and_encrypted_tokens(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory(max_token_bytes=4096)
    token, _, nonce = real_tokens(rp, op)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(resign(op, token, padding="x" * 5000), nonce=nonce)
    assert info.value.code == "too_large"
    with pytest.raises(OidcError) as info:
        rp.validate_id_token("a.b.c.d.e", nonce=nonce)
    assert info.value.code == "malformed"


def test_es256_key_with_rs256_token_and_wrong_family(
    rp_factory: Any, certs_dir: Any, logout_sink: Any, client_key: Any
) -> None:
    """An EC provider: ES256 tokens verify; an RS256 header pointing at the EC key is refused."""
    ec = new_ec_jwk("ec-1")
    clients = [
        c | {"id_token_signed_response_alg": "ES256"}
        for c in clients_for(logout_sink.url, client_key)
    ]
    provider = start_op(certs_dir, clients)
    try:
        provider.rotate_keys(ec, keep_old=False)
        rp = rp_factory(provider=provider, algorithms=("ES256", "RS256"))
        browser, params, nonce = begin_and_authorize(rp, provider)
        login = rp.complete(browser, params)
        assert pyjwt.get_unverified_header(login.id_token)["alg"] == "ES256"
        # RS256 signed by some RSA key but naming the EC kid: the key type decides, not the token
        forged = provider.sign(
            claims_of(login.id_token) | {"nonce": nonce}, jwk=new_rsa_jwk("ec-1")
        )
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(forged, nonce=nonce)
        assert info.value.code == "key_type"
    finally:
        provider.stop()


# -- key rotation ---------------------------------------------------------------------------------
def test_key_rotation_costs_exactly_one_jwks_refetch(
    rp_factory: Any, certs_dir: Any, logout_sink: Any, client_key: Any
) -> None:
    provider = start_op(certs_dir, clients_for(logout_sink.url, client_key))
    try:
        rp = rp_factory(provider=provider)
        browser, params, _ = begin_and_authorize(rp, provider)
        first = rp.complete(browser, params)
        assert rp.jwks.fetches == 1
        old_kid = pyjwt.get_unverified_header(first.id_token)["kid"]
        new = provider.rotate_keys()
        for user in ("alice", "bob", "alice"):
            browser, params, _ = begin_and_authorize(rp, provider, user)
            login = rp.complete(browser, params)
            assert pyjwt.get_unverified_header(login.id_token)["kid"] == new["kid"] != old_kid
        assert rp.jwks.fetches == 2  # one refetch for the new kid, none after
    finally:
        provider.stop()


def test_warm_cache_makes_no_jwks_or_discovery_fetch(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory()
    browser, params, _ = begin_and_authorize(rp, op)
    rp.complete(browser, params)
    fetches, requests_made = rp.jwks.fetches, rp.http.requests
    for _ in range(3):
        browser, params, _ = begin_and_authorize(rp, op, browser=browser)
        rp.complete(browser, params)
    assert rp.jwks.fetches == fetches
    assert rp.http.requests - requests_made == 3  # the three token requests, nothing else


# -- logout ---------------------------------------------------------------------------------------
def real_logout_token(rp: OidcRelyingParty, op: OpenIDProvider, sink: Any) -> tuple[str, Any]:
    browser, params, _ = begin_and_authorize(rp, op, "bob")
    login = rp.complete(browser, params)
    before = len(sink.received)
    op.backchannel_logout(rp.settings.client_id, login.subject, login.sid)
    assert len(sink.received) == before + 1
    return sink.received[-1]["logout_token"], login


def test_backchannel_logout_token_is_accepted_once(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    rp = rp_factory()
    token, login = real_logout_token(rp, op, logout_sink)
    assert pyjwt.get_unverified_header(token)["typ"] == "logout+jwt"
    event = rp.validate_logout_token(token)
    assert event.sid == login.sid and event.subject == login.subject and event.issuer == op.issuer
    with pytest.raises(OidcError) as info:
        rp.validate_logout_token(token)
    assert info.value.code == "logout_replay" and info.value.status == 400


def test_logout_token_replayed_to_another_portal_process(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    from qlikauth.store import MemoryStore

    shared, replay = MemoryStore(), MemoryStore(when_full="refuse")
    made = rp_factory(store=shared)
    a = OidcRelyingParty(made.settings, shared, replay_cache=replay)
    b = OidcRelyingParty(made.settings, shared, replay_cache=replay)
    token, _ = real_logout_token(made, op, logout_sink)
    assert a.validate_logout_token(token).sid
    with pytest.raises(OidcError) as info:
        b.validate_logout_token(token)
    assert info.value.code == "logout_replay"


def test_logout_token_with_nonce_or_without_events(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    rp = rp_factory()
    token, _ = real_logout_token(rp, op, logout_sink)
    claims = claims_of(token)
    cases = {
        "logout_nonce": claims | {"nonce": "n-1", "jti": "j-1"},
        "logout_events": {k: v for k, v in claims.items() if k != "events"} | {"jti": "j-2"},
        "logout_subject": {k: v for k, v in claims.items() if k not in ("sub", "sid")}
        | {"jti": "j-3"},
        "logout_jti": {k: v for k, v in claims.items() if k != "jti"},
    }
    for reason, altered in cases.items():
        with pytest.raises(OidcError) as info:
            rp.validate_logout_token(op.sign(altered, headers={"typ": "logout+jwt"}))
        assert info.value.code == reason, reason
    # an id_token is not a logout token (and the reverse)
    id_token, _, nonce = real_tokens(rp, op)
    with pytest.raises(OidcError) as info:
        rp.validate_logout_token(id_token)
    assert info.value.code in ("logout_nonce", "logout_events")
    with pytest.raises(OidcError):
        rp.validate_id_token(token, nonce=None)
    # and the logout token's signature is checked like any other
    head, body, sig = token.split(".")
    with pytest.raises(OidcError) as info:
        rp.validate_logout_token(
            f"{head}.{b64(json.dumps(claims | {'sid': 'other'}).encode())}.{sig}"
        )
    assert info.value.code == "signature"


def test_rp_initiated_logout_url(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory(post_logout_redirect_uri=f"{RP_BASE}/signed-out")
    browser, params, _ = begin_and_authorize(rp, op)
    login = rp.complete(browser, params)
    url = rp.logout_url(login.id_token)
    assert url is not None and url.startswith(op.issuer + "/session/end?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert (
        q["post_logout_redirect_uri"] == f"{RP_BASE}/signed-out"
        and q["id_token_hint"] == login.id_token
    )
    # the provider accepts it: it asks the user to confirm the sign-out
    page = requests.get(url, verify=op.ca_bundle, timeout=10, allow_redirects=False)
    assert page.status_code == 200 and "logout" in page.text.lower()
    assert rp.logout_url(login.id_token, "/").endswith("") and "%2F" in rp.logout_url(
        login.id_token, "/"
    )  # type: ignore[operator]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "https://localhost:8444/",
        "javascript:alert(1)",
        "https://localhost:8443@evil.example/",
    ],
)
def test_post_logout_redirect_to_another_host(
    rp_factory: Any, op: OpenIDProvider, target: str
) -> None:
    rp = rp_factory(post_logout_redirect_uri=f"{RP_BASE}/signed-out")
    with pytest.raises(RedirectError):
        rp.logout_url("hint", target)


def test_entra_groups_overage_in_an_id_token_is_refused_by_the_mapping(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    """Over 200 groups, Entra sends `_claim_names`/`_claim_sources` instead of `groups` in the JWT:
    the verified token still maps through qlikauth.mapping, which refuses it naming the Entra
    setting."""
    from qlikauth.exceptions import ClaimsError
    from qlikauth.web.oidc import OidcWebSettings

    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    overage = resign(
        op,
        token,
        groups=None,
        _claim_names={"groups": "src1"},
        _claim_sources={
            "src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}
        },
    )
    claims = rp.validate_id_token(overage, nonce=nonce)
    mapping = OidcWebSettings.from_mapping(
        {
            "ISSUER": op.issuer,
            "CLIENT_ID": "portal-basic",
            "CLIENT_SECRET": "x",
            "REDIRECT_URI": REDIRECT_URI,
        }
    ).mapping
    with pytest.raises(ClaimsError) as info:
        mapping.to_user(claims, subject=claims["sub"])
    assert "overage" in str(info.value).lower()
    # the same token with its groups maps fine
    user = mapping.to_user(rp.validate_id_token(token, nonce=nonce), subject="a1b2c3-alice")
    assert user.qualified_name == "OIDC\\alice@example.com" and user.groups == [
        "Finance",
        "Clinicians",
    ]


# -- JOSE on joserfc: RSASSA-PSS ------------------------------------------------------------------
def test_ps256_id_tokens_from_the_provider_verify(
    rp_factory: Any, certs_dir: Any, logout_sink: Any, client_key: Any
) -> None:
    """The provider signs id_tokens with PS256: the relying party verifies them, and so
    does PyJWT."""
    ps = new_rsa_jwk("ps-1", alg="PS256")
    clients = [
        c | {"id_token_signed_response_alg": "PS256"}
        for c in clients_for(logout_sink.url, client_key)
    ]
    provider = start_op(certs_dir, clients)
    try:
        provider.rotate_keys(ps, keep_old=False)
        rp = rp_factory(provider=provider, algorithms=("PS256",))
        browser, params, nonce = begin_and_authorize(rp, provider)
        login = rp.complete(browser, params)
        assert pyjwt.get_unverified_header(login.id_token)["alg"] == "PS256"
        keys = requests.get(
            f"{provider.issuer}/jwks", verify=provider.ca_bundle, timeout=10
        ).json()["keys"]
        key = pyjwt.PyJWK.from_dict(keys[0]).key
        assert (
            pyjwt.decode(login.id_token, key, algorithms=["PS256"], audience="portal-basic")["sub"]
            == login.subject
        )
        # the same token altered is refused by both
        forged = f"{login.id_token.rsplit('.', 1)[0][:-2]}AA.{login.id_token.rsplit('.', 1)[1]}"
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(forged, nonce=nonce)
        assert info.value.code in ("signature", "malformed")
        # an RS256 token naming the PS key is refused: only PS256 is allowed here
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(
                provider.sign(claims_of(login.id_token), jwk=ps, algorithm="RS256"), nonce=nonce
            )
        assert info.value.code == "alg_not_allowed"
    finally:
        provider.stop()


# -- RP-initiated logout: only the registered URI; next in the state ------------------------------
def confirm_logout_at_provider(op: OpenIDProvider, url: str) -> str:
    """Open the provider's logout URL, confirm the sign-out as a person would; where it sends us."""
    from op_peer import _attr, _hidden_fields

    s = requests.Session()
    s.trust_env = False
    s.verify = op.ca_bundle
    page = s.get(url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.text[:300]
    fields = _hidden_fields(page.text) | {"logout": "yes"}
    answer = s.post(
        urljoin(url, _attr(page.text, "form", "action")),
        data=fields,
        allow_redirects=False,
        timeout=10,
    )
    for _ in range(5):
        assert answer.is_redirect, answer.text[:300]
        location = urljoin(answer.url, answer.headers["location"])
        if location.startswith(RP_BASE):
            return location
        answer = s.get(location, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never sent the browser back")


def test_logout_sends_only_the_registered_uri_and_carries_next_in_the_state(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    rp = rp_factory(post_logout_redirect_uri=f"{RP_BASE}/signed-out")
    browser, params, _ = begin_and_authorize(rp, op)
    login = rp.complete(browser, params)
    url = rp.logout_url(login.id_token, "/reports/q1?tab=2")
    assert url is not None
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    # never "https://localhost:8443/reports/q1...": the provider registered only /signed-out
    assert q["post_logout_redirect_uri"] == f"{RP_BASE}/signed-out" and "reports" not in url
    assert q["state"] and q["id_token_hint"] == login.id_token
    back = confirm_logout_at_provider(op, url)
    assert back.split("?")[0] == f"{RP_BASE}/signed-out"
    returned = {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}
    assert returned["state"] == q["state"]
    assert rp.logout_return(returned) == "/reports/q1?tab=2"
    assert rp.logout_return(returned) is None  # used once
    assert rp.logout_return({"state": "made-up"}) is None and rp.logout_return({}) is None
    # no next: the state still goes along, and reads back as None
    plain = rp.logout_url(login.id_token)
    assert plain is not None
    assert rp.logout_return({"state": parse_qs(urlsplit(plain).query)["state"][0]}) is None


# -- an unverified e-mail never decides who signs in ----------------------------------------------
@pytest.fixture(scope="module")
def unverified_op(certs_dir: Any, logout_sink: Any, client_key: Any) -> Any:
    from _support import skip_or_fail
    from op_peer import DEFAULT_ACCOUNTS, node_available

    why = node_available()
    if why:
        skip_or_fail(why)
    accounts = dict(DEFAULT_ACCOUNTS)
    # nOAuth: an account at the provider that claims alice's address without proving it
    accounts["mallory"] = {
        "password": "m-pw",
        "claims": {
            "sub": "m-666",
            "email": "alice@example.com",
            "email_verified": False,
            "groups": [],
        },
    }
    accounts["eve"] = {
        "password": "e-pw",
        "claims": {"sub": "e-777", "email": "alice@example.com", "groups": []},
    }
    provider = OpenIDProvider(
        certs_dir, clients=clients_for(logout_sink.url, client_key), accounts=accounts
    ).start()
    yield provider
    provider.stop()


@pytest.mark.parametrize("user", ["mallory", "eve"])
def test_unverified_email_is_refused_as_the_user_id(
    rp_factory: Any, unverified_op: Any, user: str
) -> None:
    from qlikauth.exceptions import ClaimsError
    from qlikauth.mapping import ClaimsMapping
    from qlikauth.web.oidc import OidcWebSettings

    rp = rp_factory(provider=unverified_op)
    browser, params, _ = begin_and_authorize(rp, unverified_op, user)
    login = rp.complete(browser, params)
    assert login.claims["email"] == "alice@example.com" and login.unverified == {"email"}
    # the documented default mapping (USER_ID email), called as the web layer calls it today
    default = OidcWebSettings.from_mapping(
        {
            "ISSUER": unverified_op.issuer,
            "CLIENT_ID": "portal-basic",
            "CLIENT_SECRET": "x",
            "REDIRECT_URI": REDIRECT_URI,
        }
    ).mapping
    with pytest.raises(ClaimsError) as info:
        default.to_user(dict(login.claims), subject=login.subject)
    assert info.value.code == "unverified_claim" and info.value.claim == "email"
    with pytest.raises(ClaimsError):
        rp.map_user(login, default)
    # the stable subject still maps; the cloud identity then says the e-mail is not verified
    by_sub = ClaimsMapping(
        user_id="$subject", user_directory="OIDC", cloud_email_verified="email_verified"
    )
    mapped = rp.map_user(login, by_sub)
    assert mapped.user.user_id == login.subject and mapped.cloud.email_verified is False
    # a provider the integrator trusts for e-mail: allowed per provider
    trusting = rp_factory(provider=unverified_op, allow_unverified_email=True)
    browser, params, _ = begin_and_authorize(trusting, unverified_op, user)
    allowed = trusting.complete(browser, params)
    assert allowed.unverified == frozenset()
    assert (
        default.to_user(dict(allowed.claims), subject=allowed.subject).user_id
        == "alice@example.com"
    )


def test_a_verified_email_is_not_listed_as_unverified(rp_factory: Any, op: OpenIDProvider) -> None:
    """email_verified true (alice at the provider): nothing listed, the e-mail maps as before."""
    rp = rp_factory()
    browser, params, _ = begin_and_authorize(rp, op)
    login = rp.complete(browser, params)
    assert "$unverified" not in login.claims and login.unverified == frozenset()


# -- re-authentication -----------------------------------------------------------------------------
def test_prompt_and_max_age_settings_go_to_the_provider(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    rp = rp_factory(prompt="login", max_age=600)
    q = {k: v[0] for k, v in parse_qs(urlsplit(rp.begin(None).url).query).items()}
    assert q["prompt"] == "login" and q["max_age"] == "600"
    browser, params, _ = begin_and_authorize(rp, op)
    login = rp.complete(browser, params)
    assert login.auth_time is not None and abs(login.auth_time - time.time()) < 60
    from qlikauth.exceptions import ConfigurationError

    for bad in (
        {"prompt": "none"},
        {"prompt": "login please"},
        {"max_age": -1},
        {"max_age": "soon"},
    ):
        with pytest.raises(ConfigurationError):
            rp_factory(**bad)


def test_max_age_checks_auth_time(rp_factory: Any, op: OpenIDProvider) -> None:
    rp = rp_factory(max_age=300)
    token, _, nonce = real_tokens(rp, op)
    now = int(time.time())
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(resign(op, token, auth_time=now - 3600), nonce=nonce)
    assert info.value.code == "reauth"
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(resign(op, token, auth_time=None), nonce=nonce)
    assert info.value.code == "reauth"
    assert rp.validate_id_token(resign(op, token, auth_time=now - 10), nonce=nonce)


def test_force_reauth_after_an_idle_cap_asks_for_the_password_again(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    """The provider session is still live: a plain sign-in goes straight through (a wrong password
    is never asked for); with force_reauth the provider must ask, and an old auth_time is
    refused."""
    rp = rp_factory()
    session = requests.Session()
    browser, params, _ = begin_and_authorize(rp, op, session=session)
    first = rp.complete(browser, params)
    # the shared-workstation problem: the next person gets alice without any prompt
    silent = rp.begin(browser)
    got = op.sign_in(silent.url, "alice", password="not-the-password", session=session)
    assert rp.complete(browser, got["params"]).subject == first.subject
    forced = rp.begin(browser, force_reauth=True)
    q = {k: v[0] for k, v in parse_qs(urlsplit(forced.url).query).items()}
    assert q["prompt"] == "login" and q["max_age"] == "0"
    with pytest.raises(AssertionError, match="login refused"):
        op.sign_in(forced.url, "alice", password="not-the-password", session=session)
    forced = rp.begin(browser, force_reauth=True)
    got = op.sign_in(forced.url, "alice", session=session)
    again = rp.complete(browser, got["params"])
    assert again.subject == first.subject and again.auth_time is not None
    # a provider that ignored prompt=login answers with the old sign-in: refused
    token, _, nonce = real_tokens(rp, op)
    old = resign(op, token, auth_time=int(time.time()) - 900)
    with pytest.raises(OidcError) as info:
        rp.validate_id_token(old, nonce=nonce, max_age=0, authenticated_after=time.time() - 5)
    assert info.value.code == "reauth"


# -- private_key_jwt client keys ------------------------------------------------------------------
def _pem(key: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_private_key_jwt_keys_checked_by_type_and_size(op: OpenIDProvider) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    from qlikauth.bridges.oidc import OidcSettings
    from qlikauth.exceptions import ConfigurationError
    from qlikauth.store import MemoryStore

    base = {
        "issuer": op.issuer,
        "client_id": "portal-pkjwt",
        "redirect_uri": REDIRECT_URI,
        "token_endpoint_auth_method": "private_key_jwt",
        "ca_bundle": op.ca_bundle,
    }
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError, match="1024 bits"):
        OidcSettings(**base, client_private_key=_pem(weak))
    for odd in (ec.generate_private_key(ec.SECP256K1()), ed25519.Ed25519PrivateKey.generate()):
        with pytest.raises(ConfigurationError):
            OidcSettings(**base, client_private_key=_pem(odd))
    for curve, alg in (
        (ec.SECP256R1(), "ES256"),
        (ec.SECP384R1(), "ES384"),
        (ec.SECP521R1(), "ES512"),
    ):
        key = ec.generate_private_key(curve)
        rp = OidcRelyingParty(
            OidcSettings(**base, client_private_key=_pem(key), client_key_id="k1"), MemoryStore()
        )
        data: dict[str, str] = {}
        rp._client_auth(rp.metadata(), data)
        assertion = data["client_assertion"]
        assert pyjwt.get_unverified_header(assertion)["alg"] == alg
        claims = pyjwt.decode(
            assertion, key.public_key(), algorithms=[alg], audience=rp.metadata().token_endpoint
        )
        assert claims["iss"] == claims["sub"] == "portal-pkjwt"
        rp.close()


def test_private_key_jwt_with_an_ec_key_signs_in(rp_factory: Any, op: OpenIDProvider) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from op_peer import new_ec_jwk

    jwk = new_ec_jwk("portal-ec-1")
    op.add_client(
        {
            "client_id": "portal-pkjwt-ec",
            "token_endpoint_auth_method": "private_key_jwt",
            "token_endpoint_auth_signing_alg": "ES256",
            "jwks": {"keys": [public_jwk(jwk)]},
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
    )
    from op_peer import private_key_of

    key = private_key_of(jwk)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    rp = rp_factory(
        client_id="portal-pkjwt-ec",
        token_endpoint_auth_method="private_key_jwt",
        client_private_key=_pem(key),
        client_key_id="portal-ec-1",
    )
    browser, params, _ = begin_and_authorize(rp, op)
    assert rp.complete(browser, params).subject == "a1b2c3-alice"


# -- logout tokens: exp required, replay cache refuses when full, refetch slot --------------------
def test_logout_token_without_exp_is_refused(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    rp = rp_factory()
    token, _ = real_logout_token(rp, op, logout_sink)
    claims = claims_of(token)
    assert "exp" in claims  # the provider sends it, as Back-Channel Logout 1.0 requires
    with pytest.raises(OidcError) as info:
        rp.validate_logout_token(
            op.sign(
                {k: v for k, v in claims.items() if k != "exp"} | {"jti": "no-exp"},
                headers={"typ": "logout+jwt"},
            )
        )
    assert info.value.code == info.value.code == "expired" and info.value.status == 400
    assert rp.validate_logout_token(token).sid


def test_logout_replay_cache_is_the_one_given_and_refuses_when_full(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    from qlikauth.store import MemoryStore

    replay = MemoryStore(max_items=1, when_full="refuse")
    shared_state = MemoryStore()
    made = rp_factory()
    a = OidcRelyingParty(made.settings, shared_state, replay_cache=replay)
    b = OidcRelyingParty(made.settings, MemoryStore(), replay_cache=replay)
    try:
        token, _ = real_logout_token(made, op, logout_sink)
        assert a.validate_logout_token(token).sid
        with pytest.raises(OidcError) as info:
            b.validate_logout_token(token)  # another process sharing the replay cache
        assert info.value.code == "logout_replay"
        assert not shared_state.get("oidc:jti:x")  # nothing went to the evicting store
        other, _ = real_logout_token(made, op, logout_sink)
        with pytest.raises(OidcError) as info:
            a.validate_logout_token(other)
        assert info.value.code == "replay_cache_full" and info.value.status == 503
    finally:
        a.close()
        b.close()


def test_forged_logout_tokens_cannot_block_a_key_rotation(
    rp_factory: Any, certs_dir: Any, logout_sink: Any, client_key: Any
) -> None:
    provider = start_op(certs_dir, clients_for(logout_sink.url, client_key))
    try:
        rp = rp_factory(provider=provider)
        token, _ = real_logout_token(rp, provider, logout_sink)
        claims = claims_of(token)
        assert rp.jwks.fetches == 1
        # an anonymous POST with an unknown kid but a wrong audience: refused before any key lookup
        with pytest.raises(OidcError) as info:
            rp.validate_logout_token(
                provider.sign(
                    claims | {"aud": "other", "jti": "f0"},
                    jwk=new_rsa_jwk("forged-0"),
                    headers={"typ": "logout+jwt"},
                )
            )
        assert info.value.code == "audience" and rp.jwks.fetches == 1
        # a well-formed forgery with an unknown kid costs the logout path's refetch
        with pytest.raises(OidcError) as info:
            rp.validate_logout_token(
                provider.sign(
                    claims | {"jti": "f1"},
                    jwk=new_rsa_jwk("forged-1"),
                    headers={"typ": "logout+jwt"},
                )
            )
        assert info.value.code == "unknown_kid" and rp.jwks.fetches == 2
        # ... the provider rotates its key within the refetch interval: sign-ins still work
        new = provider.rotate_keys()
        browser, params, _ = begin_and_authorize(rp, provider)
        login = rp.complete(browser, params)
        assert (
            pyjwt.get_unverified_header(login.id_token)["kid"] == new["kid"]
            and rp.jwks.fetches == 3
        )
        # and more forgeries make no more fetches
        for i in range(5):
            with pytest.raises(OidcError):
                rp.validate_logout_token(
                    provider.sign(
                        claims | {"jti": f"g{i}"},
                        jwk=new_rsa_jwk(f"forged-g{i}"),
                        headers={"typ": "logout+jwt"},
                    )
                )
        assert rp.jwks.fetches == 3
    finally:
        provider.stop()


# -- errors that say what to do -------------------------------------------------------------------
def test_unreachable_provider_and_well_known_issuer_say_what_to_do(
    rp_factory: Any, op: OpenIDProvider
) -> None:
    from qlikauth.bridges.oidc import OidcSettings
    from qlikauth.exceptions import ConfigurationError
    from qlikauth.store import MemoryStore

    with pytest.raises(ConfigurationError) as info:
        OidcSettings(
            issuer=f"{op.issuer}/.well-known/openid-configuration",
            client_id="c",
            client_secret="s",
            redirect_uri=REDIRECT_URI,
        )
    assert "drop /.well-known/openid-configuration" in str(info.value) and repr(op.issuer) in str(
        info.value
    )
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    rp = OidcRelyingParty(
        OidcSettings(
            issuer=f"https://127.0.0.1:{port}",
            client_id="c",
            client_secret="s",
            redirect_uri=REDIRECT_URI,
            timeout=2,
        ),
        MemoryStore(),
    )
    with pytest.raises(OidcError) as info:
        rp.begin(None)
    assert info.value.code == "provider_unreachable"
    assert f"https://127.0.0.1:{port}" in str(info.value) and "check" in str(info.value)
    rp.close()
    wrong = OidcRelyingParty(
        OidcSettings(
            issuer=f"{op.issuer}/tenant-a",
            client_id="c",
            client_secret="s",
            redirect_uri=REDIRECT_URI,
            ca_bundle=op.ca_bundle,
        ),
        MemoryStore(),
    )
    with pytest.raises(OidcError) as info:
        wrong.begin(None)
    wrong.close()
    assert "HTTP 404" in str(info.value) and op.issuer in str(info.value)
    assert "/.well-known/openid-configuration itself" in str(info.value)


def _sign_raw_claims(op: OpenIDProvider, claims_json: str, typ: str = "JWT") -> str:
    """A JWS over exactly this JSON text (a lone surrogate escape survives; PyJWT would
    re-encode)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from op_peer import private_key_of

    header = b64(json.dumps({"alg": "RS256", "kid": op.signing_jwk["kid"], "typ": typ}).encode())
    signing_input = f"{header}.{b64(claims_json.encode())}"
    sig = private_key_of(op.signing_jwk).sign(
        signing_input.encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{b64(sig)}"


def test_lone_surrogates_in_claims_are_refused_not_a_crash(
    rp_factory: Any, op: OpenIDProvider, logout_sink: Any
) -> None:
    """JSON may escape a lone surrogate; no check, store key or mapping may then fail with a 500."""
    from qlikauth.exceptions import ClaimsError
    from qlikauth.mapping import ClaimsMapping

    rp = rp_factory()
    token, _, nonce = real_tokens(rp, op)
    claims = claims_of(token)
    as_json = json.dumps(claims)
    for name in ("sub", "nonce", "sid"):
        bad = as_json.replace(
            json.dumps(claims[name]), json.dumps(claims[name])[:-1] + '\\ud800"', 1
        )
        with pytest.raises(OidcError) as info:
            rp.validate_id_token(_sign_raw_claims(op, bad), nonce=nonce)
        assert info.value.code in ("subject", "nonce_mismatch", "malformed"), name
    # a surrogate in a claim the mapping reads: a ClaimsError, not a UnicodeEncodeError
    bad_email = _sign_raw_claims(
        op,
        json.dumps(claims | {"email": "PLACEHOLDER"}).replace(
            "PLACEHOLDER", "a\\ud800@example.com"
        ),
    )
    checked = rp.validate_id_token(bad_email, nonce=nonce)
    with pytest.raises(ClaimsError) as cinfo:
        ClaimsMapping(user_id="email", user_directory="OIDC").to_user(
            checked, subject=checked["sub"]
        )
    assert cinfo.value.code == "invalid_value" and "surrogate" in str(cinfo.value)
    logout, _ = real_logout_token(rp, op, logout_sink)
    lclaims = claims_of(logout)
    for name in ("jti", "sid"):
        raw = json.dumps(lclaims).replace(
            json.dumps(lclaims[name]), json.dumps(lclaims[name])[:-1] + '\\udfff"', 1
        )
        with pytest.raises(OidcError) as info:
            rp.validate_logout_token(_sign_raw_claims(op, raw, typ="logout+jwt"))
        assert info.value.status == 400 and info.value.code in ("logout_jti", "malformed"), name
