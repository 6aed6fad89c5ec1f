"""Request shapes of the QPS client, checked with responses and its matchers.

These are unit tests of what goes on the wire; the integration tests run the same
client over real mutual TLS against the emulator.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from qlikauth import (
    QlikUser,
    QpsClient,
    QpsConnectionError,
    QpsForbidden,
    QpsNotFound,
    QpsResponseError,
    QpsTimeout,
    QpsTooManySessions,
    RedirectError,
    SessionAuthenticator,
    TicketAuthenticator,
)
from qlikauth.exceptions import ConfigurationError, IdentityError

N1, N2 = "https://qs1.example.com:4243", "https://qs2.example.com:4243"
USER = QlikUser("ACME", "jdoe", [("group", "Sales"), ("group", "Finance"), ("email", "")])


def xrf_matches(request):
    """responses matcher: the xrfkey header equals the query parameter, 16 alnum chars."""
    key = request.headers.get("X-Qlik-Xrfkey")
    params = parse_qs(urlsplit(request.url).query)
    ok = key is not None and params.get("xrfkey") == [key] and re.fullmatch(r"[0-9A-Za-z]{16}", key)
    return bool(ok), "" if ok else f"xrfkey mismatch: header {key!r}, query {params.get('xrfkey')!r}"


@pytest.fixture
def qps(certs):
    client = QpsClient([N1, N2], certs, virtual_proxy="portal", timeout=2)
    yield client
    client.close()


@responses.activate
def test_ticket_request_shape(qps):
    responses.post(
        f"{N1}/qps/portal/ticket",
        match=[
            xrf_matches,
            matchers.json_params_matcher({
                "UserDirectory": "ACME", "UserId": "jdoe",
                "Attributes": [{"group": "Sales"}, {"group": "Finance"}, {"email": ""}],
            }),
            matchers.header_matcher({"Accept": "application/json"}),
        ],
        json={"UserDirectory": "ACME", "UserId": "jdoe", "Attributes": [], "Ticket": "T" * 16, "TargetUri": None},
        status=201,
    )
    t = qps.request_ticket(USER)
    assert t.ticket == "T" * 16 and t.node == N1 and t.target_uri is None
    assert "TTTT…" in repr(t) and "T" * 16 not in repr(t)


@responses.activate
def test_fresh_xrfkey_every_call(qps):
    responses.post(f"{N1}/qps/portal/ticket", match=[xrf_matches], json={"Ticket": "abc"}, status=201)
    for _ in range(5):
        qps.request_ticket(USER)
    keys = {c.request.headers["X-Qlik-Xrfkey"] for c in responses.calls}
    assert len(keys) == 5


@responses.activate
def test_target_id_sent_and_target_uri_returned(qps):
    responses.post(
        f"{N2}/qps/portal/ticket",
        match=[matchers.json_params_matcher({"TargetId": "a1b2-c3"}, strict_match=False)],
        json={"Ticket": "abc", "TargetUri": "https://qs2.example.com/portal/hub/"}, status=201,
    )
    t = qps.request_ticket(USER, target_id="a1b2-c3", node=N2)
    assert t.target_uri == "https://qs2.example.com/portal/hub/" and t.node == N2


@responses.activate
def test_failover_to_second_node_on_connection_error(qps):
    responses.post(f"{N1}/qps/portal/ticket", body=requests.exceptions.ConnectionError("refused"))
    responses.post(f"{N2}/qps/portal/ticket", json={"Ticket": "second"}, status=201)
    t = qps.request_ticket(USER)
    assert t.node == N2 and t.ticket == "second"
    # node 1 is now marked unhealthy: the next ticket goes straight to node 2
    qps.request_ticket(USER)
    assert [urlsplit(c.request.url).hostname for c in responses.calls][-1] == "qs2.example.com"


@responses.activate
def test_all_nodes_down_says_so(qps):
    responses.post(f"{N1}/qps/portal/ticket", body=requests.exceptions.ConnectTimeout("t"))
    responses.post(f"{N2}/qps/portal/ticket", body=requests.exceptions.ConnectTimeout("t"))
    with pytest.raises(QpsTimeout) as info:
        qps.request_ticket(USER)
    assert "every QPS node" in str(info.value)


@pytest.mark.parametrize(
    ("status", "exc", "text"),
    [
        (403, QpsForbidden, "client certificate not trusted or xrfkey rejected"),
        (404, QpsNotFound, "check the virtual proxy prefix"),
        (409, QpsTooManySessions, "too many sessions"),
    ],
)
@responses.activate
def test_http_errors_are_typed_and_say_what_to_do(qps, status, exc, text):
    responses.post(f"{N1}/qps/portal/ticket", status=status, body="nope")
    with pytest.raises(exc, match=text) as info:
        qps.request_ticket(USER)
    assert info.value.status_code == status and info.value.node == N1


@responses.activate
def test_redirects_are_not_followed(qps):
    responses.post(f"{N1}/qps/portal/ticket", status=302, headers={"Location": "https://evil.example/"})
    with pytest.raises(Exception) as info:
        qps.request_ticket(USER)
    assert "302" in str(info.value)
    assert len(responses.calls) == 1


@responses.activate
def test_malformed_and_oversized_answers(certs):
    qps = QpsClient(N1, certs, "portal", max_response_bytes=100)
    responses.post(f"{N1}/qps/portal/ticket", body="<html>not json</html>", status=201)
    with pytest.raises(QpsResponseError, match="not JSON"):
        qps.request_ticket(USER)
    responses.replace(responses.POST, f"{N1}/qps/portal/ticket", json={"NoTicket": 1}, status=201)
    with pytest.raises(QpsResponseError, match="no Ticket"):
        qps.request_ticket(USER)
    responses.replace(responses.POST, f"{N1}/qps/portal/ticket", body="x" * 500, status=201)
    with pytest.raises(QpsResponseError, match="limit"):
        qps.request_ticket(USER)


@responses.activate
def test_session_read_timeout_checks_before_retrying(qps):
    """After a read timeout the client asks GET /session/{id} and finds it: one session only."""
    posts = []

    def post_callback(request):
        posts.append(json.loads(request.body)["SessionId"])
        raise requests.exceptions.ReadTimeout("slow")

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=post_callback)
    responses.add_callback(
        responses.GET, re.compile(rf"{N1}/qps/portal/session/[^?]+\?xrfkey=\w+"),
        callback=lambda r: (200, {}, json.dumps({"UserDirectory": "ACME", "UserId": "jdoe",
                                                  "SessionId": posts[0], "Attributes": []})),
    )
    s = qps.add_session(USER)
    assert len(posts) == 1 and s.session_id == posts[0] and s.node == N1
    assert len(s.session_id) >= 43  # 256 bits, URL-safe


@responses.activate
def test_session_read_timeout_then_not_found_retries_with_same_id(qps):
    posts = []

    def post_callback(request):
        posts.append(json.loads(request.body)["SessionId"])
        if len(posts) == 1:
            raise requests.exceptions.ReadTimeout("slow")
        return 201, {}, json.dumps({"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": posts[-1]})

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=post_callback)
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), status=404)
    s = qps.add_session(USER)
    assert len(posts) == 2 and posts[0] == posts[1] == s.session_id


@responses.activate
def test_session_check_impossible_refuses_to_risk_two(qps):
    responses.post(f"{N1}/qps/portal/session", body=requests.exceptions.ReadTimeout("slow"))
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), body=requests.exceptions.ConnectionError("x"))
    with pytest.raises(QpsTimeout):
        qps.add_session(USER)
    assert not any(urlsplit(c.request.url).hostname == "qs2.example.com" for c in responses.calls)


@responses.activate
def test_bad_session_ids_make_no_call(qps):
    assert qps.get_session("../../user/ACME/jdoe") is None
    assert qps.delete_session("short") is False
    assert len(responses.calls) == 0
    with pytest.raises(IdentityError):
        qps.add_session(USER, session_id="guessable")


@responses.activate
def test_logout_user_visits_every_node(qps):
    body = [{"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "s" * 30, "Attributes": []}]
    responses.delete(f"{N1}/qps/portal/user/ACME/jdoe", json=body, match=[xrf_matches])
    responses.delete(f"{N2}/qps/portal/user/ACME/jdoe", json=[], match=[xrf_matches])
    ended = qps.logout_user(USER)
    assert [s.node for s in ended] == [N1]


@responses.activate
def test_logout_user_with_a_node_down_reports_partial(qps):
    body = [{"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "s" * 30}]
    responses.delete(f"{N1}/qps/portal/user/ACME/jdoe", json=body)
    responses.delete(f"{N2}/qps/portal/user/ACME/jdoe", body=requests.exceptions.ConnectionError("down"))
    with pytest.raises(QpsConnectionError) as info:
        qps.logout_user(USER)
    assert len(info.value.partial) == 1 and "qs2.example.com" in str(info.value)


@responses.activate
def test_user_paths_are_encoded(certs):
    qps = QpsClient(N1, certs)
    responses.get(f"{N1}/qps/user/ACME%2FX/j%20doe%3F", json=[])
    assert qps.user_sessions(QlikUser("ACME/X", "j doe?")) == []


@pytest.mark.parametrize(
    "uri",
    [
        "https://evil.example.com:4243/qps/portal/",
        "https://qs1.example.com:4244/qps/portal/",
        "http://qs1.example.com:4243/qps/portal/",
        "https://qs1.example.com:4243/qps/other/",
        "https://qs1.example.com:4243/qps/",
        "https://user@qs1.example.com:4243/qps/portal/",
        "https://qs1.example.com:4243/qps/portal/?x=1",
        "//qs1.example.com:4243/qps/portal/",
        "",
    ],
)
def test_proxy_rest_uri_must_be_configured(qps, uri):
    with pytest.raises(RedirectError):
        qps.node_for_rest_uri(uri)


def test_proxy_rest_uri_accepted_forms(qps):
    assert qps.node_for_rest_uri("https://QS2.example.com:4243/qps/portal/") == N2
    assert qps.node_for_rest_uri("https://qs1.example.com:4243/qps/portal") == N1


@responses.activate
def test_module_login_refuses_foreign_rest_uri_without_any_call(qps):
    auth = TicketAuthenticator(qps, hub_url="https://qs1.example.com/portal/hub/")
    with pytest.raises(RedirectError, match="not a configured QPS node"):
        auth.module_login(USER, "https://attacker.example/qps/portal/", "abc")
    assert len(responses.calls) == 0


@responses.activate
def test_module_request_vetted_before_any_call(qps):
    auth = TicketAuthenticator(qps, hub_url="https://qs1.example.com/portal/hub/")
    rest = f"{N2}/qps/portal/"
    assert auth.check_module_request(rest, "0b2b1a9e-4c5d-4f6a-9e8d-7c6b5a4f3e2d") == N2
    bad = [
        ("", "abc", "missing"), (rest, "", "missing"), (None, None, "missing"),
        (rest, "a b", "malformed"), (rest, "../x", "malformed"), (rest, "x" * 129, "malformed"),
        (rest, "id\r\nSet-Cookie:x", "malformed"),
        (f"{N1}/qps/other/", "abc", "not a configured"), ("https://qs1.example.com.evil/qps/portal/", "abc", "not a configured"),
    ]
    for rest_uri, target_id, why in bad:
        with pytest.raises(RedirectError, match=why):
            auth.check_module_request(rest_uri, target_id)
        with pytest.raises(RedirectError, match=why):
            auth.module_login(USER, rest_uri, target_id)
    assert len(responses.calls) == 0


@responses.activate
def test_module_login_replaces_foreign_target_uri(qps):
    auth = TicketAuthenticator(qps, hub_url="https://qs1.example.com/portal/hub/")
    responses.post(f"{N1}/qps/portal/ticket", json={"Ticket": "tk", "TargetUri": "https://evil.example/x"}, status=201)
    r = auth.module_login(USER, f"{N1}/qps/portal/", "abc")
    assert r.location == "https://qs1.example.com/portal/hub/?qlikTicket=tk"
    responses.replace(responses.POST, f"{N1}/qps/portal/ticket",
                      json={"Ticket": "tk2", "TargetUri": "https://qs1.example.com/portal/sense/app/1?x=1"}, status=201)
    r = auth.module_login(USER, f"{N1}/qps/portal/", "abc")
    assert r.location == "https://qs1.example.com/portal/sense/app/1?x=1&qlikTicket=tk2"


@responses.activate
def test_ticket_login_checks_target_before_calling(qps):
    auth = TicketAuthenticator(qps, hub_url="https://qs1.example.com/portal/hub/")
    with pytest.raises(RedirectError):
        auth.login(USER, target="https://evil.example/")
    assert len(responses.calls) == 0
    responses.post(f"{N1}/qps/portal/ticket", json={"Ticket": "a b/c"}, status=201)
    r = auth.login(USER, target="/portal/sense/app/42#sheet")
    assert r.location == "https://qs1.example.com/portal/sense/app/42?qlikTicket=a%20b%2Fc#sheet"
    assert "a b" not in repr(r)


@responses.activate
def test_session_authenticator_cookie(qps):
    def echo(request):
        body = json.loads(request.body)
        return 201, {}, json.dumps({**body, "NewUser": False})

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=echo)
    auth = SessionAuthenticator(qps, cookie_domain=".example.com")
    cookie = auth.login(USER)
    header = cookie.header_value()
    assert cookie.name == "X-Qlik-Session-portal"
    assert header.startswith("X-Qlik-Session-portal=")
    for part in ("Domain=.example.com", "Path=/", "Secure", "HttpOnly", "SameSite=None"):
        assert part in header
    assert "Max-Age" not in header and "Expires" not in header  # browser-session cookie
    sent = json.loads(responses.calls[0].request.body)["SessionId"]
    assert cookie.value == sent and sent not in repr(cookie)
    cleared = auth.clear_cookie().header_value()
    assert "Max-Age=0" in cleared and "X-Qlik-Session-portal=;" in cleared


def test_samesite_none_requires_secure(qps):
    with pytest.raises(ConfigurationError, match="Secure"):
        SessionAuthenticator(qps, secure=False, samesite="None")
    assert SessionAuthenticator(qps, secure=False, samesite="Lax").clear_cookie().samesite == "Lax"


@responses.activate
def test_session_resume_reuses_rechecks_and_replaces(qps):
    def echo(request):
        return 201, {}, json.dumps({**json.loads(request.body), "NewUser": False})

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=echo)
    auth = SessionAuthenticator(qps)
    # nothing remembered: one POST, a record owned by the Qlik user by default
    first = auth.resume(USER, None, now=100.0)
    assert first.created and first.record["owner"] == "acme\\jdoe" and first.record["checked"] == 100.0
    assert first.cookie.value == first.record["sid"] and len(responses.calls) == 1
    assert first.record["sid"] not in repr(first)
    # remembered, no recheck asked: no call at all, same cookie; the callable is never called
    never = lambda: pytest.fail("the user must not be mapped when nothing is created")  # noqa: E731
    again = auth.resume(never, first.record, owner="acme\\jdoe", now=10_000.0)
    assert again is not None and not again.created and again.record == first.record
    assert again.cookie.value == first.record["sid"] and len(responses.calls) == 1
    # another owner's record is never reused
    other = auth.resume(USER, {**first.record, "owner": "acme\\mallory"})
    assert other.created and other.record["sid"] != first.record["sid"] and len(responses.calls) == 2
    # recheck due and QPS still has it: one GET, kept, confirmed now
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), json={**USER.to_qps(), "SessionId": first.record["sid"]})
    kept = auth.resume(USER, first.record, recheck_after=60, now=200.0)
    assert not kept.created and kept.record["checked"] == 200.0 and len(responses.calls) == 3
    # not due yet: no call
    assert not auth.resume(USER, kept.record, recheck_after=60, now=250.0).created and len(responses.calls) == 3
    # Qlik has ended it (404 on every node): replaced by a new one
    responses.replace(responses.GET, re.compile(rf"{N1}/qps/portal/session/.+"), status=404)
    responses.get(re.compile(rf"{N2}/qps/portal/session/.+"), status=404)
    fresh = auth.resume(USER, kept.record, recheck_after=0, now=300.0)
    assert fresh.created and fresh.record["sid"] != first.record["sid"]
    # QPS cannot be asked: the remembered session is kept (the browser has it anyway)
    responses.replace(responses.GET, re.compile(rf"{N1}/qps/portal/session/.+"),
                      body=requests.exceptions.ConnectionError("down"))
    responses.replace(responses.GET, re.compile(rf"{N2}/qps/portal/session/.+"),
                      body=requests.exceptions.ConnectionError("down"))
    assert auth.resume(USER, fresh.record, recheck_after=0).record["sid"] == fresh.record["sid"]
    # a callable that says "no Qlik access": nothing is created
    before = len(responses.calls)
    assert auth.resume(lambda: None, None, owner="x") is None and len(responses.calls) == before
    with pytest.raises(ConfigurationError, match="owner"):
        auth.resume(lambda: USER, None)


@pytest.mark.parametrize("nodes", ["http://qs1:4243", "https://qs1:4243/qps/portal", "", [], ["https://a:1", "https://A:1"]])
def test_bad_node_configuration(certs, nodes):
    with pytest.raises(ConfigurationError):
        QpsClient(nodes, certs)


def test_bad_prefix(certs):
    with pytest.raises(ConfigurationError, match="lowercase"):
        QpsClient(N1, certs, virtual_proxy="Portal")


def test_session_trust_env_off_and_only_our_context(qps, certs):
    assert qps._session.trust_env is False
    ctx = qps.adapter._ssl_context
    import ssl
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    # only root.pem is trusted: no system CAs
    assert len(ctx.get_ca_certs()) == len(certs.root_certs)


@responses.activate
def test_session_id_mismatch_is_refused(qps):
    responses.post(f"{N1}/qps/portal/session", status=201,
                   json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "x" * 43})
    with pytest.raises(QpsResponseError, match="another SessionId"):
        qps.add_session(USER)


def test_xrfkeys_are_well_formed_unique_and_use_the_whole_alphabet():
    from collections import Counter

    from qlikauth.xrf import is_valid_xrfkey, new_xrfkey

    keys = [new_xrfkey() for _ in range(5000)]
    assert all(is_valid_xrfkey(k) for k in keys)
    assert len(set(keys)) == len(keys)
    counts = Counter("".join(keys))
    assert len(counts) == 62  # 0-9a-zA-Z, nothing else
    assert max(counts.values()) < 2 * min(counts.values())  # roughly uniform
