"""Request shapes of the QPS client, checked with responses and its matchers.

These are unit tests of what goes on the wire. responses intercepts requests'
``HTTPAdapter.send``, which is the send production runs too (``QpsAdapter`` keeps it);
failures are injected as the transport's own types (``ConnectFailed``: nothing sent,
``SendFailed``: sent, QPS may have acted), which the pools raise over real sockets in
``tests/integration/test_qps_over_mtls.py``.
"""

from __future__ import annotations

import errno
import json
import re
import ssl
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
    QpsHTTPError,
    QpsNotFound,
    QpsResponseError,
    QpsTimeout,
    QpsTLSError,
    QpsTooManySessions,
    RedirectError,
    SessionAuthenticator,
    TicketAuthenticator,
)
from qlikauth.exceptions import ConfigurationError, IdentityError
from qlikauth.qps import ConnectFailed, SendFailed

N1, N2 = "https://qs1.example.com:4243", "https://qs2.example.com:4243"
USER = QlikUser("ACME", "jdoe", [("group", "Sales"), ("group", "Finance"), ("email", "")])


def refused() -> ConnectFailed:
    """What the transport raises when a node refuses the TCP connection: nothing was sent."""
    return ConnectFailed(ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"))


def read_timeout() -> SendFailed:
    """What the transport raises when the request went out and no answer came in time."""
    return SendFailed(TimeoutError("timed out"), timeout=True)


def xrf_matches(request):
    """responses matcher: the xrfkey header equals the query parameter, 16 alnum chars."""
    key = request.headers.get("X-Qlik-Xrfkey")
    params = parse_qs(urlsplit(request.url).query)
    ok = key is not None and params.get("xrfkey") == [key] and re.fullmatch(r"[0-9A-Za-z]{16}", key)
    return bool(
        ok
    ), "" if ok else f"xrfkey mismatch: header {key!r}, query {params.get('xrfkey')!r}"


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
            matchers.json_params_matcher(
                {
                    "UserDirectory": "ACME",
                    "UserId": "jdoe",
                    "Attributes": [{"group": "Sales"}, {"group": "Finance"}, {"email": ""}],
                }
            ),
            matchers.header_matcher({"Accept": "application/json"}),
        ],
        json={
            "UserDirectory": "ACME",
            "UserId": "jdoe",
            "Attributes": [],
            "Ticket": "T" * 16,
            "TargetUri": None,
        },
        status=201,
    )
    t = qps.request_ticket(USER)
    assert t.ticket == "T" * 16 and t.node == N1 and t.target_uri is None
    assert "TTTT" not in repr(t) and "(16 chars)" in repr(t)  # a fingerprint only


@responses.activate
def test_fresh_xrfkey_every_call(qps):
    responses.post(
        f"{N1}/qps/portal/ticket", match=[xrf_matches], json={"Ticket": "abc"}, status=201
    )
    for _ in range(5):
        qps.request_ticket(USER)
    keys = {c.request.headers["X-Qlik-Xrfkey"] for c in responses.calls}
    assert len(keys) == 5


@responses.activate
def test_target_id_sent_and_target_uri_returned(qps):
    responses.post(
        f"{N2}/qps/portal/ticket",
        match=[matchers.json_params_matcher({"TargetId": "a1b2-c3"}, strict_match=False)],
        json={"Ticket": "abc", "TargetUri": "https://qs2.example.com/portal/hub/"},
        status=201,
    )
    t = qps.request_ticket(USER, target_id="a1b2-c3", node=N2)
    assert t.target_uri == "https://qs2.example.com/portal/hub/" and t.node == N2


@responses.activate
def test_failover_to_second_node_on_connection_error(qps):
    responses.post(f"{N1}/qps/portal/ticket", body=refused())
    responses.post(f"{N2}/qps/portal/ticket", json={"Ticket": "second"}, status=201)
    t = qps.request_ticket(USER)
    assert t.node == N2 and t.ticket == "second"
    # node 1 is now marked unhealthy: the next ticket goes straight to node 2
    qps.request_ticket(USER)
    assert [urlsplit(c.request.url).hostname for c in responses.calls][-1] == "qs2.example.com"


@responses.activate
def test_all_nodes_down_says_so(qps):
    responses.post(
        f"{N1}/qps/portal/ticket", body=ConnectFailed(TimeoutError("timed out"), timeout=True)
    )
    responses.post(
        f"{N2}/qps/portal/ticket", body=ConnectFailed(TimeoutError("timed out"), timeout=True)
    )
    with pytest.raises(QpsTimeout) as info:
        qps.request_ticket(USER)
    assert type(info.value) is QpsTimeout and "every QPS node" in str(info.value)
    assert "timed out after 2s" in str(info.value) and len(info.value.errors) == 2


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
    assert type(info.value) is exc and info.value.status_code == status and info.value.node == N1


@responses.activate
def test_redirects_are_not_followed(qps):
    responses.post(
        f"{N1}/qps/portal/ticket", status=302, headers={"Location": "https://evil.example/"}
    )
    with pytest.raises(QpsHTTPError, match="answered 302 .*not followed") as info:
        qps.request_ticket(USER)
    assert type(info.value) is QpsHTTPError and info.value.status_code == 302
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
        raise read_timeout()

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=post_callback)
    responses.add_callback(
        responses.GET,
        re.compile(rf"{N1}/qps/portal/session/[^?]+\?xrfkey=\w+"),
        callback=lambda r: (
            200,
            {},
            json.dumps(
                {"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": posts[0], "Attributes": []}
            ),
        ),
    )
    s = qps.add_session(USER)
    assert len(posts) == 1 and s.session_id == posts[0] and s.node == N1
    # 256 bits as 64 hex digits: never a leading "-" that a command line reads as an option.
    assert re.fullmatch(r"[0-9a-f]{64}", s.session_id), s.session_id


@responses.activate
def test_session_read_timeout_then_not_found_retries_with_same_id(qps):
    posts = []

    def post_callback(request):
        posts.append(json.loads(request.body)["SessionId"])
        if len(posts) == 1:
            raise read_timeout()
        return (
            201,
            {},
            json.dumps({"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": posts[-1]}),
        )

    responses.add_callback(responses.POST, f"{N1}/qps/portal/session", callback=post_callback)
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), status=404)
    s = qps.add_session(USER)
    assert len(posts) == 2 and posts[0] == posts[1] == s.session_id


@responses.activate
def test_session_check_impossible_refuses_to_risk_two(qps):
    responses.post(f"{N1}/qps/portal/session", body=read_timeout())
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), body=refused())
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


@responses.activate(assert_all_requests_are_fired=True)
def test_logout_user_visits_every_node(qps):
    """Node 1 answers with the session; node 2 must be asked all the same (its sessions end too)."""
    body = [{"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "s" * 30, "Attributes": []}]
    responses.delete(f"{N1}/qps/portal/user/ACME/jdoe", json=body, match=[xrf_matches])
    responses.delete(f"{N2}/qps/portal/user/ACME/jdoe", json=[], match=[xrf_matches])
    ended = qps.logout_user(USER)
    assert [s.node for s in ended] == [N1]


@responses.activate(assert_all_requests_are_fired=True)
def test_add_session_fails_over_when_nothing_was_sent(qps):
    """A node that could not be connected to got nothing: the session is made on the next node."""
    responses.post(
        f"{N1}/qps/portal/session",
        body=ConnectFailed(OSError(errno.EHOSTUNREACH, "No route to host")),
    )

    def echo(request):
        return 201, {}, json.dumps({**json.loads(request.body), "NewUser": False})

    responses.add_callback(responses.POST, f"{N2}/qps/portal/session", callback=echo)
    s = qps.add_session(USER)
    assert s.node == N2


@responses.activate
def test_add_session_does_not_fail_over_after_sending(qps):
    """The connection broke after the POST went out: node 1 may hold the session, so the client
    asks node 1 before anything else, and never makes a second session on node 2."""
    responses.post(
        f"{N1}/qps/portal/session", body=SendFailed(ConnectionResetError(errno.ECONNRESET, "reset"))
    )
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), body=refused())
    with pytest.raises(QpsConnectionError, match="broke after the request was sent") as info:
        qps.add_session(USER)
    assert type(info.value) is QpsConnectionError and info.value.sent is True
    assert not any(urlsplit(c.request.url).hostname == "qs2.example.com" for c in responses.calls)


@pytest.mark.parametrize(
    ("failure", "exc", "sent", "text"),
    [
        (
            ConnectFailed(ConnectionRefusedError(errno.ECONNREFUSED, "x")),
            QpsConnectionError,
            False,
            "connection refused",
        ),
        (
            ConnectFailed(OSError(errno.EHOSTUNREACH, "x")),
            QpsConnectionError,
            False,
            "no route to host",
        ),
        (
            ConnectFailed(OSError(errno.ENETUNREACH, "x")),
            QpsConnectionError,
            False,
            "network is unreachable",
        ),
        (
            ConnectFailed(TimeoutError(), timeout=True),
            QpsTimeout,
            False,
            "connecting to .* timed out after 2s",
        ),
        (SendFailed(TimeoutError(), timeout=True), QpsTimeout, True, "did not answer within 2s"),
        (
            SendFailed(BrokenPipeError(errno.EPIPE, "x")),
            QpsConnectionError,
            True,
            "broke after the request was sent",
        ),
        (
            SendFailed(ssl.SSLEOFError(8, "x")),
            QpsTLSError,
            True,
            "most likely refused our client certificate",
        ),
    ],
)
@responses.activate
def test_transport_failures_map_to_typed_errors(certs, failure, exc, sent, text):
    """The transport's verdict (sent or not) decides, never the cause's class name or text."""
    qps = QpsClient(N1, certs, "portal", timeout=2)
    responses.post(f"{N1}/qps/portal/session", body=failure)
    with pytest.raises(exc, match=text) as info:
        qps.add_session(USER)
    assert type(info.value) is exc and info.value.sent is sent and info.value.node == N1


@responses.activate
def test_logout_user_with_a_node_down_reports_partial(qps):
    body = [{"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "s" * 30}]
    responses.delete(f"{N1}/qps/portal/user/ACME/jdoe", json=body)
    responses.delete(f"{N2}/qps/portal/user/ACME/jdoe", body=refused())
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
        ("", "abc", "missing"),
        (rest, "", "missing"),
        (None, None, "missing"),
        (rest, "a b", "malformed"),
        (rest, "../x", "malformed"),
        (rest, "x" * 129, "malformed"),
        (rest, "id\r\nSet-Cookie:x", "malformed"),
        (f"{N1}/qps/other/", "abc", "not a configured"),
        ("https://qs1.example.com.evil/qps/portal/", "abc", "not a configured"),
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
    responses.post(
        f"{N1}/qps/portal/ticket",
        json={"Ticket": "tk", "TargetUri": "https://evil.example/x"},
        status=201,
    )
    r = auth.module_login(USER, f"{N1}/qps/portal/", "abc")
    assert r.location == "https://qs1.example.com/portal/hub/?qlikTicket=tk"
    responses.replace(
        responses.POST,
        f"{N1}/qps/portal/ticket",
        json={"Ticket": "tk2", "TargetUri": "https://qs1.example.com/portal/sense/app/1?x=1"},
        status=201,
    )
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
    for part in ("Domain=.example.com", "Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
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
    assert (
        first.created and first.record["owner"] == "acme\\jdoe" and first.record["checked"] == 100.0
    )
    assert first.cookie.value == first.record["sid"] and len(responses.calls) == 1
    assert first.record["sid"] not in repr(first)
    # remembered, same identity, no recheck asked: no call at all, same cookie
    again = auth.resume(lambda: USER, first.record, owner="acme\\jdoe", now=10_000.0)
    assert again is not None and not again.created and again.record == first.record
    assert again.cookie.value == first.record["sid"] and len(responses.calls) == 1
    # the portal maps the user differently now (a group removed): the old one ends, a new one
    responses.delete(re.compile(rf"{N1}/qps/portal/session/.+"), json={})
    responses.delete(re.compile(rf"{N2}/qps/portal/session/.+"), status=404)
    fewer = auth.resume(USER.with_attributes([]), first.record, now=10_001.0)
    assert fewer.created and fewer.record["sid"] != first.record["sid"]
    assert [c.request.method for c in responses.calls[1:]] == ["DELETE", "DELETE", "POST"]
    assert first.record["sid"] in responses.calls[1].request.url
    # the same identity with its attributes in another order is the same identity
    swapped = QlikUser(USER.user_directory, USER.user_id, list(reversed(USER.attributes)))
    assert not auth.resume(swapped, first.record).created and len(responses.calls) == 4
    # the portal withdraws Qlik access: the remembered one is ended, nothing made
    assert auth.resume(lambda: None, first.record, owner="acme\\jdoe") is None
    assert [c.request.method for c in responses.calls[4:]] == ["DELETE", "DELETE"]
    # create=False (backing off, signed out): reuse only
    before = len(responses.calls)
    assert auth.resume(USER, None, create=False) is None and len(responses.calls) == before
    assert auth.resume(USER, first.record, create=False).record == first.record
    # another owner's record is never reused
    before = len(responses.calls)
    other = auth.resume(USER, {**first.record, "owner": "acme\\mallory"})
    assert (
        other.created
        and other.record["sid"] != first.record["sid"]
        and len(responses.calls) == before + 1
    )
    # recheck due and QPS still has it: one GET, kept, confirmed now
    responses.get(
        re.compile(rf"{N1}/qps/portal/session/.+"),
        json={**USER.to_qps(), "SessionId": first.record["sid"]},
    )
    kept = auth.resume(USER, first.record, recheck_after=60, now=200.0)
    assert (
        not kept.created and kept.record["checked"] == 200.0 and len(responses.calls) == before + 2
    )
    # not due yet: no call
    assert not auth.resume(USER, kept.record, recheck_after=60, now=250.0).created
    assert len(responses.calls) == before + 2
    # Qlik has ended it (404 on every node): replaced by a new one
    responses.replace(responses.GET, re.compile(rf"{N1}/qps/portal/session/.+"), status=404)
    responses.get(re.compile(rf"{N2}/qps/portal/session/.+"), status=404)
    fresh = auth.resume(USER, kept.record, recheck_after=0, now=300.0)
    assert fresh.created and fresh.record["sid"] != first.record["sid"]
    # the node holding it cannot be reached (nothing was sent): the browser cannot use that
    # session either, so it counts as gone and a new one is made on a node that answers
    held_on = fresh.record["node"]
    responses.replace(
        responses.GET, re.compile(rf"{held_on}/qps/portal/session/.+"), body=refused()
    )
    responses.add_callback(responses.POST, f"{N2}/qps/portal/session", callback=echo)
    ended: list[list[str]] = []
    moved = auth.resume(USER, fresh.record, recheck_after=0, end_replaced=ended.append)
    assert moved.created and moved.record["sid"] != fresh.record["sid"]
    assert moved.record["node"] != held_on and ended == [[fresh.record["sid"]]]
    # a callable that says "no Qlik access": nothing is created
    before = len(responses.calls)
    assert auth.resume(lambda: None, None, owner="x") is None and len(responses.calls) == before
    with pytest.raises(ConfigurationError, match="owner"):
        auth.resume(lambda: USER, None)


@pytest.mark.parametrize(
    "nodes",
    ["http://qs1:4243", "https://qs1:4243/qps/portal", "", [], ["https://a:1", "https://A:1"]],
)
def test_bad_node_configuration(certs, nodes):
    with pytest.raises(ConfigurationError):
        QpsClient(nodes, certs)


def test_bad_prefix(certs):
    with pytest.raises(ConfigurationError, match="lowercase"):
        QpsClient(N1, certs, virtual_proxy="Portal")


def test_one_transport_with_only_our_context(qps, certs):
    """The adapter keeps requests' own send (where responses intercepts) and pools per node over
    one context that trusts root.pem alone."""
    from requests.adapters import HTTPAdapter

    from qlikauth.qps.transport import QpsAdapter

    assert "send" not in vars(QpsAdapter) and isinstance(qps.adapter, HTTPAdapter)
    assert set(qps.adapter.pools) == {N1, N2}
    contexts = {id(p.context) for p in qps.adapter.pools.values()}
    assert len(contexts) == 1
    ctx = qps.adapter.pools[N1].context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert len(ctx.get_ca_certs()) == len(certs.root_certs)  # only root.pem: no system CAs


@responses.activate
def test_session_id_mismatch_is_refused(qps):
    responses.post(
        f"{N1}/qps/portal/session",
        status=201,
        json={"UserDirectory": "ACME", "UserId": "jdoe", "SessionId": "x" * 43},
    )
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


@responses.activate
def test_an_unexpected_requests_error_counts_as_sent(qps):
    """Only requests' own checks raise its exceptions (the pools raise the transport's types):
    whether anything went out is unknown, so the client assumes it did and never fails over."""
    responses.post(f"{N1}/qps/portal/session", body=requests.exceptions.ChunkedEncodingError("?"))
    responses.get(re.compile(rf"{N1}/qps/portal/session/.+"), body=refused())
    with pytest.raises(QpsConnectionError, match="may or may not have acted") as info:
        qps.add_session(USER)
    assert type(info.value) is QpsConnectionError and info.value.sent is True
    assert not any(urlsplit(c.request.url).hostname == "qs2.example.com" for c in responses.calls)


def test_the_adapter_sends_only_to_configured_nodes(qps):
    """Even handed a prepared request for another host, the transport refuses before connecting."""
    from qlikauth.qps.transport import QpsRequest, Timeout

    prep = QpsRequest()
    prep.prepare(method="GET", url="https://evil.example:4243/qps/portal/session/x", headers={})
    prep.path_url = "/qps/portal/session/x"
    with pytest.raises(
        requests.exceptions.InvalidURL, match="not on one of this client's QPS nodes"
    ):
        qps.adapter.send(prep, timeout=Timeout(1, 1))


def test_a_long_proxy_rest_uri_is_quoted_short(qps):
    # It comes from the browser's query string: 10 kB of it must not reach the message (the log).
    long = "https://evil.example/" + "a" * 10_000
    with pytest.raises(RedirectError) as info:
        qps.node_for_rest_uri(long)
    assert len(str(info.value)) < 400 and "a" * 100 not in str(info.value)
