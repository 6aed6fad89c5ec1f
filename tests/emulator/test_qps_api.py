"""The emulated QPS REST API over real mutual TLS: xrfkey, certificates, tickets, sessions,
users."""

from __future__ import annotations

import socket
import ssl
import uuid

import pytest
from emu_helpers import api_session, call, ticket, xrf

from qlikauth.certgen import generate_certificates
from qlikauth.emulator import Emulator, EmulatorState, VirtualProxy

XSRF = "XSRF prevention check failed. Possible XSRF discovered."
USER = {"UserDirectory": "ACME", "UserId": "jdoe"}


@pytest.fixture
def emu(certs):
    with Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")], ticket_ttl=60) as e:
        yield e


@pytest.mark.parametrize(
    "query,header",
    [
        (None, None),  # neither
        ("abcdefghijklmnop", None),  # header missing
        (None, "abcdefghijklmnop"),  # query missing
        ("abcdefghijklmnop", "abcdefghijklmnoq"),  # mismatch
        ("abcdefghijklmn-p", "abcdefghijklmn-p"),  # bad character
        ("abcdefghijklmno", "abcdefghijklmno"),  # 15 characters
    ],
)
def test_xrfkey_rule(emu, api, query, header):
    url = emu.rest_uri_for("portal") + "ticket" + (f"?xrfkey={query}" if query else "")
    r = api.post(url, json=USER, headers={"X-Qlik-Xrfkey": header} if header else {})
    assert r.status_code == 403
    assert r.text == XSRF
    assert emu.state.tickets_issued == 0


def test_xrfkey_parameter_name_is_case_insensitive(emu, api):
    key = xrf()
    r = api.post(
        f"{emu.rest_uri_for('portal')}ticket?XrfKey={key}",
        json=USER,
        headers={"x-qlik-xrfkey": key},
    )
    assert r.status_code == 201


def _raw_request(certs, port, ctx):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            key = xrf()
            tls.sendall(
                f"GET /qps/alive?xrfkey={key} HTTP/1.1\r\nHost: localhost\r\n"
                f"X-Qlik-Xrfkey: {key}\r\n\r\n".encode()
            )
            return tls.recv(4096)


def test_client_certificate_is_required(emu, certs):
    port = emu.qps_port
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    # TLS 1.3 reports the refused client certificate after the handshake, on the first read.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _raw_request(certs, port, ctx)
    ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    assert b"HTTP/1.1 200" in _raw_request(certs, port, ctx)


def test_client_certificate_from_another_ca_is_refused(emu, certs, tmp_path):
    generate_certificates(tmp_path, ["localhost"])
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))  # trusts the server
    ctx.load_cert_chain(tmp_path / "client.pem", tmp_path / "client_key.pem")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _raw_request(certs, emu.qps_port, ctx)
    assert emu.state.connections_accepted == 0


def test_alive(emu, api):
    r = call(api, emu, "GET", "alive", prefix="")
    assert r.status_code == 200 and r.json() is True


def test_ticket_answer_upper_cases_the_user_directory(emu, api, browser):
    # as a published QPS answer does; the user id and attributes are echoed as sent
    r = call(
        api,
        emu,
        "POST",
        "ticket",
        json={"UserDirectory": "acme", "UserId": "JDoe", "Attributes": [{"Group": "Sales"}]},
    )
    assert r.status_code == 201
    body = r.json()
    assert body["UserDirectory"] == "ACME" and body["UserId"] == "JDoe"
    assert body["Attributes"] == [{"Group": "Sales"}]
    # the same body again (answered from the emulator's cache) says the same
    again = call(
        api,
        emu,
        "POST",
        "ticket",
        json={"UserDirectory": "acme", "UserId": "JDoe", "Attributes": [{"Group": "Sales"}]},
    ).json()
    assert again["UserDirectory"] == "ACME" and again["Ticket"] != body["Ticket"]


def test_ticket_answer_is_pascal_case_and_camel_case_input_is_accepted(emu, api):
    r = call(
        api,
        emu,
        "POST",
        "ticket",
        json={
            "userDirectory": " ACME ",
            "userId": "jdoe",
            "attributes": [{"group": "Sales"}, {"email": ""}],
        },
    )
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"UserDirectory", "UserId", "Attributes", "Ticket", "TargetUri"}
    assert body["UserDirectory"] == "ACME"  # trimmed, as Qlik does
    assert body["Attributes"] == [{"group": "Sales"}, {"email": ""}]
    assert body["TargetUri"] is None
    assert len(body["Ticket"]) >= 16


@pytest.mark.parametrize(
    "body,fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[1]", "JSON object"),
        (b'{"UserDirectory": "ACME", "UserId": "a\\\\b"}', "backslash"),
        (b'{"UserDirectory": "   ", "UserId": "x"}', "whitespace"),
        (b'{"UserDirectory": "ACME", "UserId": "x", "Attributes": [{"g": 5}]}', "string"),
        (b"{'UserDirectory': 'ACME', 'UserId': 'x}", "not valid JSON"),
    ],
)
def test_bad_bodies_get_400_with_a_message(emu, api, body, fragment):
    r = call(api, emu, "POST", "ticket", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert fragment in r.text
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "body",
    [
        # single quotes
        b"{'UserDirectory': 'ACME', 'UserId': 'jdoe', 'Attributes': [{'group': 'Sales'}]}",
        # any key case
        b'{"userdirectory": "ACME", "USERID": "jdoe", "attributes": [{"group": "Sales"}]}',
    ],
)
def test_bodies_qps_takes_though_they_are_not_strict_json(emu, api, body):
    """QPS's .NET JSON reader takes single-quoted strings and property names in any case."""
    r = call(api, emu, "POST", "ticket", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["UserId"] == "jdoe" and answer["Attributes"] == [{"group": "Sales"}]


def test_attribute_values_qlikauth_refuses_to_send_are_taken_as_qlik_takes_them(emu, api, browser):
    long_value = "x" * 2000
    r = call(
        api,
        emu,
        "POST",
        "ticket",
        json={
            "UserDirectory": "ACME",
            "UserId": "jdoe",
            "Attributes": [{"group": "a;b"}, {"note": long_value}],
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["Attributes"] == [{"group": "a;b"}, {"note": long_value}]
    page = browser.get(
        f"{emu.hub_url_for('portal')}?qlikTicket={r.json()['Ticket']}",
        headers={"Accept": "application/json"},
    )
    assert page.json()["attributes"] == [{"group": "a;b"}, {"note": long_value}]


def test_qps_paths_and_host_as_qlik_takes_them(emu, api, certs):
    # the route words in any case
    for path in ("Ticket", "TICKET"):
        assert call(api, emu, "POST", path, json=USER).status_code == 201
    key = xrf()
    r = api.get(f"{emu.qps_url}/QPS/Alive?xrfkey={key}", headers={"X-Qlik-Xrfkey": key}, timeout=10)
    assert r.status_code == 200 and r.json() is True
    # a Host other than the node's name (a load balancer's, an address) is served
    key = xrf()
    r = api.post(
        f"{emu.rest_uri_for('portal')}ticket?xrfkey={key}",
        json=USER,
        timeout=10,
        headers={"X-Qlik-Xrfkey": key, "Host": "qlik-lb.example.com"},
    )
    assert r.status_code == 201, r.text


def test_unknown_prefix_is_404(emu, api):
    assert call(api, emu, "POST", "ticket", prefix="nosuchproxy", json=USER).status_code == 404
    assert (
        call(api, emu, "POST", "ticket", prefix="", json=USER).status_code == 201
    )  # default proxy


def test_ticket_single_use(emu, api, browser):
    t = ticket(api, emu)
    url = f"{emu.hub_url_for('portal')}?qlikTicket={t}"
    assert browser.get(url, allow_redirects=False).status_code == 200
    browser.cookies.clear()
    again = browser.get(url, allow_redirects=False)
    # no module URI on this virtual proxy: back to Qlik's internal module (the form login)
    assert (
        again.status_code == 302
        and "/portal/internal_forms_authentication/?targetId=" in again.headers["Location"]
    )
    assert "Set-Cookie" not in again.headers


def test_ticket_expires(certs, api, browser):
    # An injected clock instead of sleeping: the emulator's state reads time only through it.
    now = [1000.0]
    emu = Emulator(certs_dir=certs, virtual_proxies=[VirtualProxy("portal")], ticket_ttl=60)
    emu.state = EmulatorState(ticket_ttl=60, clock=lambda: now[0])
    with emu:
        fresh, stale = ticket(api, emu), ticket(api, emu)
        now[0] += 59.0
        assert (
            browser.get(
                f"{emu.hub_url_for('portal')}?qlikTicket={fresh}", allow_redirects=False
            ).status_code
            == 200
        )
        browser.cookies.clear()
        now[0] += 2.0  # 61 s after issue: past ticket_ttl
        r = browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={stale}", allow_redirects=False)
        assert (
            r.status_code == 302
            and "/portal/internal_forms_authentication/" in r.headers["Location"]
        )
        assert [s.user.user_id for s in emu.state.sessions()] == [
            USER["UserId"]
        ]  # only the fresh one


def test_ticket_only_for_its_virtual_proxy(certs, api, browser):
    with Emulator(
        certs_dir=certs, virtual_proxies=[VirtualProxy("portal"), VirtualProxy("other")]
    ) as emu:
        t = ticket(api, emu, prefix="other")
        r = browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={t}", allow_redirects=False)
        assert (
            r.status_code == 302
            and "/portal/internal_forms_authentication/" in r.headers["Location"]
        )


def test_session_crud_and_user_logout(emu, api):
    sid = str(uuid.uuid4())
    r = call(
        api, emu, "POST", "session", json={**USER, "Attributes": [{"group": "X"}], "SessionId": sid}
    )
    assert r.status_code == 201
    assert r.json() == {
        "UserDirectory": "ACME",
        "UserId": "jdoe",
        "Attributes": [{"group": "X"}],
        "UserName": "jdoe",
        "SessionId": sid,
        "NewUser": True,
    }
    second = str(uuid.uuid4())
    r = call(
        api,
        emu,
        "POST",
        "session",
        json={"userDirectory": "acme", "userId": "JDOE", "sessionId": second},
    )
    assert r.status_code == 201 and r.json()["NewUser"] is False  # users compare case-insensitively
    assert call(api, emu, "GET", f"session/{sid}").json()["SessionId"] == sid
    assert {s["SessionId"] for s in call(api, emu, "GET", "session").json()} == {sid, second}
    assert len(call(api, emu, "GET", "user/ACME/jdoe").json()) == 2
    r = call(api, emu, "DELETE", f"session/{sid}")
    assert r.status_code == 200
    assert r.json()["Session"]["SessionId"] == sid and r.json()["LastSessionForUser"] is False
    assert call(api, emu, "GET", f"session/{sid}").status_code == 404
    assert call(api, emu, "DELETE", f"session/{sid}").status_code == 404
    removed = call(api, emu, "DELETE", "user/acme/jdoe")
    assert [s["SessionId"] for s in removed.json()] == [second]
    assert call(api, emu, "GET", "user/ACME/jdoe").json() == []
    assert call(api, emu, "POST", "session", json=USER).status_code == 400  # SessionId required


def test_five_sessions_per_user(emu, api, browser):
    for _ in range(5):
        assert (
            call(
                api, emu, "POST", "session", json={**USER, "SessionId": str(uuid.uuid4())}
            ).status_code
            == 201
        )
    r = call(api, emu, "POST", "session", json={**USER, "SessionId": str(uuid.uuid4())})
    assert r.status_code == 409 and "too many sessions active in parallel" in r.text
    t = ticket(api, emu)
    page = browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={t}", allow_redirects=False)
    assert page.status_code == 403 and "too many sessions active in parallel" in page.text
    assert len(call(api, emu, "DELETE", "user/ACME/jdoe").json()) == 5
    assert (
        call(api, emu, "POST", "session", json={**USER, "SessionId": str(uuid.uuid4())}).status_code
        == 201
    )


def test_connections_are_reused_by_a_pooled_client(emu, certs):
    with api_session(certs) as s:
        for _ in range(50):
            ticket(s, emu)
    assert emu.state.connections_accepted == 1
    assert emu.state.qps_requests == 50


def test_many_concurrent_clients(emu, certs):
    import threading

    errors: list[BaseException] = []

    def worker():
        try:
            with api_session(certs) as s:
                for _ in range(3):
                    ticket(s, emu)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert emu.state.tickets_issued == 600
    assert emu.state.connections_accepted == 200


def test_each_keep_alive_answer_is_one_tls_record(emu, certs):
    """Head and body in one write: no Nagle/delayed-ACK stall between them (was ~40 ms a
    request)."""
    ctx = ssl.create_default_context(cafile=str(certs / "root.pem"))
    ctx.load_cert_chain(certs / "client.pem", certs / "client_key.pem")
    body = b'{"UserDirectory":"ACME","UserId":"jdoe"}'
    with (
        socket.create_connection(("127.0.0.1", emu.qps_port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        for _ in range(20):
            key = xrf()
            tls.sendall(
                f"POST /qps/portal/ticket?xrfkey={key} HTTP/1.1\r\nHost: localhost\r\n"
                f"X-Qlik-Xrfkey: {key}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            # An SSL read returns at most one record: the whole answer comes in the first one.
            first = tls.recv(65536)
            assert first.startswith(b"HTTP/1.1 201") and first.endswith(b"}"), first
    assert emu.state.tickets_issued == 20 and emu.state.connections_accepted == 1


def test_health_and_about_as_the_spec_lists_them(emu, api):
    # qps-openapi.json: /health a string, /about/default an object of objects,
    # /about/description strings
    health = call(api, emu, "GET", "health", prefix="")
    assert health.status_code == 200 and isinstance(health.json(), str)
    default = call(api, emu, "GET", "about/default", prefix="").json()
    assert isinstance(default, dict) and all(isinstance(v, dict) for v in default.values())
    description = call(api, emu, "GET", "about/description", prefix="").json()
    assert isinstance(description, list) and all(isinstance(x, str) for x in description)
    assert call(api, emu, "POST", "health", prefix="").status_code == 405


def test_identifiers_as_qlik_makes_them(emu, api, browser):
    t = ticket(api, emu)
    assert len(t) == 16 and t.isalnum()
    browser.get(f"{emu.hub_url_for('portal')}?qlikTicket={t}")
    (made,) = emu.state.sessions("portal")
    assert str(uuid.UUID(made.session_id)) == made.session_id  # Qlik makes GUIDs
    answer = call(api, emu, "GET", f"session/{made.session_id}").json()
    assert answer["UserName"] == "jdoe" and answer["UserDirectory"] == "ACME"


def test_a_ticket_body_seen_again_gets_the_same_answer_as_the_first_time(emu, api):
    # The QPS API remembers ticket bodies it has checked (by their bytes) and writes the answer's
    # user part once: the answers must be what encoding the whole answer gives, every time.
    import json

    from qlikauth.emulator._web import json_bytes

    user = {
        "UserDirectory": "ACME",
        "UserId": 'zoë "quoted" ü',
        "Attributes": [
            {"group": "Ventes & Marketing"},
            {"email": "zoë@example.com"},
            {"emoji": "\U0001f600"},
        ],
    }
    target = emu.state.add_target("portal", "https://portal.example/hub/?x=1&y=é")
    bodies = [
        json.dumps(user).encode(),
        json.dumps({**user, "TargetId": target}).encode(),
        json.dumps({"UserDirectory": "ACME", "UserId": "jdoe"}).encode(),
    ]
    for body in bodies * 2:
        r = call(
            api, emu, "POST", "ticket", data=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 201, r.text
        data = r.json()
        sent = json.loads(body)
        expected_target = "https://portal.example/hub/?x=1&y=é" if "TargetId" in sent else None
        assert r.content == json_bytes(
            {
                "UserDirectory": sent["UserDirectory"],
                "UserId": sent["UserId"],
                "Attributes": sent.get("Attributes", []),
                "Ticket": data["Ticket"],
                "TargetUri": expected_target,
            }
        )
    # a body that failed once fails again (only bodies that passed are remembered)
    bad = json.dumps({"UserDirectory": "ACME", "UserId": "jdoe", "TargetId": 5}).encode()
    for _ in range(2):
        r = call(api, emu, "POST", "ticket", data=bad, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "TargetId must be a string" in r.text
