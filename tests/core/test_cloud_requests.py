"""Request shapes of the Qlik Cloud client and the token cache's behaviour, with responses.

Unit tests of what goes on the wire (and how often); the emulated tenant tests run the
same client over real TLS.
"""

from __future__ import annotations

import json
import threading

import jwt as pyjwt
import pytest
import responses

from qlikauth.cloud import (
    AccessTokenCache,
    CloudAccess,
    CloudJwtIssuer,
    OAuthClient,
    QlikCloud,
    UserProvisioner,
)
from qlikauth.exceptions import (
    ConfigurationError,
    QlikEndpointConnectionError,
    QlikEndpointHTTPError,
)
from qlikauth.jwtkeys import SigningKey
from qlikauth.store import MemoryStore

T = "https://acme.eu.qlikcloud.com"


class Person:
    def __init__(self, sub, groups=()):
        self.sub, self.name, self.email, self.groups, self.email_verified = (
            sub,
            sub,
            sub,
            tuple(groups),
            True,
        )


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def cloud():
    c = QlikCloud(T)
    yield c
    c.close()


def _token_answer(n, expires_in=21600):
    return json.dumps(
        {
            "access_token": f"tok-{n}",
            "token_type": "bearer",
            "expires_in": expires_in,
            "scope": "user_default",
        }
    )


@responses.activate
def test_impersonation_and_client_credentials_bodies(cloud):
    seen = []

    def cb(request):
        seen.append(json.loads(request.body))
        return 200, {}, _token_answer(len(seen))

    responses.add_callback(responses.POST, f"{T}/oauth/token", callback=cb)
    client = OAuthClient("cid", client_secret="sec")
    tok = cloud.token(client, subject="ann@example.com")
    assert tok.access_token == "tok-1" and "tok-1" not in repr(tok)
    cloud.token(client, user_id="64f0")
    cloud.token(client, scope="admin_classic user_default")
    assert seen[0] == {
        "client_id": "cid",
        "client_secret": "sec",
        "scope": "user_default",
        "grant_type": "urn:qlik:oauth:user-impersonation",
        "user_lookup": {"field": "subject", "value": "ann@example.com"},
    }
    assert seen[1]["user_lookup"] == {"field": "userId", "value": "64f0"}
    assert seen[2] == {
        "client_id": "cid",
        "client_secret": "sec",
        "scope": "admin_classic user_default",
        "grant_type": "client_credentials",
    }
    assert "user_lookup" not in seen[2]
    assert responses.calls[0].request.headers["Content-Type"] == "application/json"


@responses.activate
def test_private_key_jwt_body(cloud):
    key = SigningKey.generate("ES384", kid="pk1")
    seen = []
    responses.add_callback(
        responses.POST,
        f"{T}/oauth/token",
        callback=lambda r: (seen.append(json.loads(r.body)), (200, {}, _token_answer(1)))[1],
    )
    cloud.token(OAuthClient("cid", private_key=key), subject="s")
    body = seen[0]
    assert "client_secret" not in body
    assert body["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    claims = pyjwt.decode(
        body["client_assertion"], key.public_key, algorithms=["ES384"], audience=f"{T}/oauth/token"
    )
    assert claims["iss"] == claims["sub"] == "cid"


@responses.activate
def test_expires_at_is_read_when_expires_in_is_absent(cloud):
    responses.add(
        responses.POST,
        f"{T}/oauth/token",
        json={
            "access_token": "a",
            "token_type": "bearer",
            "expires_at": "2030-01-01T00:00:00.000Z",
        },
    )
    tok = cloud.token(OAuthClient("c", client_secret="s"), subject="x")
    assert tok.expires_at == 1893456000.0


@responses.activate
def test_errors_carry_qliks_codes_but_never_the_secret(cloud):
    responses.add(
        responses.POST,
        f"{T}/login/jwt-session",
        status=400,
        json={
            "errors": [
                {
                    "title": "Invalid token request",
                    "detail": "JWT_LOGIN_VALIDATIONS Missing required claim: nbf",
                    "code": "INTERNAL-TOKEN-1",
                    "status": "400",
                }
            ]
        },
    )
    with pytest.raises(QlikEndpointHTTPError) as exc:
        cloud.jwt_session("eyJ.secret.token")
    assert exc.value.status_code == 400 and exc.value.codes == ["INTERNAL-TOKEN-1"]
    assert "Missing required claim: nbf" in str(exc.value) and "secret" not in str(exc.value)
    responses.add(
        responses.POST,
        f"{T}/oauth/token",
        status=302,
        headers={"Location": "https://evil.example/"},
    )
    with pytest.raises(QlikEndpointHTTPError, match="redirect"):
        cloud.token(OAuthClient("c", client_secret="hunter2"), subject="x")
    assert len([c for c in responses.calls if "evil" in c.request.url]) == 0


@responses.activate
def test_jwt_session_csrf_and_me_shapes(cloud):
    responses.add(
        responses.POST,
        f"{T}/login/jwt-session",
        status=200,
        json={},
        headers=[
            ("Set-Cookie", "eas.sid=S1; path=/; secure; httponly"),
            ("Set-Cookie", "eas.sid.sig=G1; path=/"),
            ("Set-Cookie", "_csrfToken=C1; path=/"),
            ("Set-Cookie", "_csrfToken.sig=CG; path=/"),
        ],
    )
    responses.add(
        responses.GET, f"{T}/api/v1/csrf-token", status=204, headers={"qlik-csrf-token": "CSRF1"}
    )
    responses.add(responses.GET, f"{T}/api/v1/users/me", json={"subject": "ann"})
    s = cloud.jwt_session("tok", web_integration_id="wid", origin="https://portal.example.com")
    req = responses.calls[0].request
    assert (
        req.headers["Authorization"] == "Bearer tok"
        and req.headers["qlik-web-integration-id"] == "wid"
    )
    assert req.headers["Origin"] == "https://portal.example.com"
    assert s.cookies == {
        "eas.sid": "S1",
        "eas.sid.sig": "G1",
        "_csrfToken": "C1",
        "_csrfToken.sig": "CG",
    }
    assert "S1" not in repr(s)
    assert cloud.csrf_token(s) == "CSRF1"
    assert "eas.sid=S1" in responses.calls[1].request.headers["Cookie"]
    assert cloud.me(session=s) == {"subject": "ann"}


def test_channel_refuses_unverified_and_plain_http():
    with pytest.raises(ConfigurationError, match="verify=False"):
        QlikCloud(T, verify=False)
    with pytest.raises(ConfigurationError, match="https"):
        QlikCloud("http://acme.eu.qlikcloud.com")
    c = QlikCloud(T)
    assert c._channel.session.trust_env is False
    with responses.RequestsMock() as rm:
        import requests

        rm.add(responses.GET, f"{T}/api/v1/users/me", body=requests.exceptions.ConnectTimeout("x"))
        with pytest.raises(QlikEndpointConnectionError, match="did not answer"):
            c.me(access_token="t")


# -- the cache -------------------------------------------------------------------------


def _cache(cloud, clock, store=None, **kw):
    return AccessTokenCache(
        cloud, OAuthClient("cid", client_secret="sec"), store or MemoryStore(), clock=clock, **kw
    )


@responses.activate
def test_cache_reuses_until_refresh_then_refreshes_before_expiry(cloud):
    n = {"c": 0}

    def cb(request):
        n["c"] += 1
        return 200, {}, _token_answer(n["c"], expires_in=3600)

    responses.add_callback(responses.POST, f"{T}/oauth/token", callback=cb)
    clock = Clock()
    cache = _cache(cloud, clock)
    assert cache.get("ann").access_token == "tok-1"
    clock.t += 3600 - 361  # 10 % margin = 360 s: not yet
    assert cache.get("ann").access_token == "tok-1" and n["c"] == 1
    clock.t += 2  # inside the margin, still valid: refreshed early
    assert cache.get("ann").access_token == "tok-2" and n["c"] == 2
    assert cache.get("bob").access_token == "tok-3"  # per user
    clock.t += 3600 + 5  # everything expired
    assert cache.get("ann").access_token == "tok-4"


@responses.activate
def test_cache_keeps_a_valid_token_when_an_early_refresh_fails(cloud):
    responses.add(responses.POST, f"{T}/oauth/token", body=_token_answer(1, 600))
    clock = Clock()
    cache = _cache(cloud, clock, refresh_margin=100)
    cache.get("ann")
    responses.replace(
        responses.POST, f"{T}/oauth/token", status=503, json={"errors": [{"title": "down"}]}
    )
    clock.t += 550
    assert cache.get("ann").access_token == "tok-1"
    clock.t += 60  # now expired: the failure is raised
    with pytest.raises(QlikEndpointHTTPError):
        cache.get("ann")


@responses.activate
def test_single_flight_50_threads_make_one_token_request(cloud):
    gate = threading.Event()
    n = {"c": 0}

    def cb(request):
        n["c"] += 1
        gate.wait(5)  # hold the first fetch until every thread is waiting
        return 200, {}, _token_answer(n["c"])

    responses.add_callback(responses.POST, f"{T}/oauth/token", callback=cb)
    cache = _cache(cloud, Clock())
    got, errors = [], []
    barrier = threading.Barrier(50)

    def worker():
        barrier.wait()
        try:
            got.append(cache.get("ann").access_token)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    while n["c"] == 0:
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)
    gate.set()
    for t in threads:
        t.join(10)
    assert not errors
    assert got == ["tok-1"] * 50
    assert n["c"] == 1 and cache.fetches == 1


@responses.activate
def test_invalidate_revokes_and_forgets(cloud):
    responses.add(responses.POST, f"{T}/oauth/token", body=_token_answer(1))
    responses.add(responses.POST, f"{T}/oauth/revoke", status=200)
    cache = _cache(cloud, Clock())
    cache.get("ann")
    assert cache.invalidate("ann") is True
    assert json.loads(responses.calls[-1].request.body)["token"] == "tok-1"
    assert cache.invalidate("ann") is False


@responses.activate
def test_ensure_user_runs_once_per_user_and_group_set(cloud):
    key = SigningKey.generate("RS256", kid="k")
    responses.add(
        responses.POST,
        f"{T}/login/jwt-session",
        status=200,
        headers={"Set-Cookie": "eas.sid=S; path=/"},
    )
    responses.add(responses.POST, f"{T}/oauth/token", body=_token_answer(1))
    store = MemoryStore()
    prov = UserProvisioner(cloud, issuer=CloudJwtIssuer(key, "iss"), store=store)
    access = CloudAccess(_cache(cloud, Clock(), store), prov)
    ann = Person("ann", ["Sales"])
    for _ in range(3):
        assert access.access_token(ann).access_token == "tok-1"
    logins = [c for c in responses.calls if c.request.url.endswith("/login/jwt-session")]
    assert len(logins) == 1
    claims = pyjwt.decode(
        logins[0].request.headers["Authorization"][7:],
        key.public_key,
        algorithms=["RS256"],
        audience="qlik.api/login/jwt-session",
    )
    assert claims["groups"] == ["Sales"]
    access.access_token(Person("ann", ["Sales", "Finance"]))  # groups changed: log in again
    assert len([c for c in responses.calls if c.request.url.endswith("/login/jwt-session")]) == 2


@responses.activate
def test_ensure_user_by_users_api_creates_only_when_missing(cloud):
    responses.add(responses.POST, f"{T}/oauth/token", body=_token_answer(1))
    responses.add(responses.GET, f"{T}/api/v1/users", json={"data": []})
    responses.add(
        responses.POST, f"{T}/api/v1/users", status=201, json={"id": "u1", "subject": "ann"}
    )
    prov = UserProvisioner(
        cloud, method="users-api", admin_client=OAuthClient("adm", client_secret="s")
    )
    assert prov.ensure(Person("ann")) is True
    get = [c for c in responses.calls if c.request.method == "GET"][0]
    assert "filter=subject+eq+%22ann%22" in get.request.url
    post = [
        c
        for c in responses.calls
        if c.request.url == f"{T}/api/v1/users" and c.request.method == "POST"
    ][0]
    assert json.loads(post.request.body) == {
        "subject": "ann",
        "name": "ann",
        "email": "ann",
        "status": "active",
    }
    assert prov.ensure(Person("ann")) is False
